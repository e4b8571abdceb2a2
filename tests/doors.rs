//! The same money on every door: `/v1/messages` and `/v1/responses` are
//! held to a key's models, budget and rate limits, answer `Idempotency-Key`
//! repeats once, fall back from one provider to another, and can be looked
//! up in `/v1/generation`, as the chat route does.
#![cfg(feature = "ssr")]

mod common;

use common::{mock_calls, send, start_mock, use_mock, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(limits_hold_on_every_door);

/// A door: its path, a body for `model`, and the shape its errors take.
#[derive(Clone, Copy)]
enum Door {
    Messages,
    Responses,
}

impl Door {
    fn path(self) -> &'static str {
        match self {
            Door::Messages => "/v1/messages",
            Door::Responses => "/v1/responses",
        }
    }

    fn body(self, model: &str, text: &str) -> Value {
        match self {
            Door::Messages => json!({"model": model, "max_tokens": 50,
                "messages": [{"role": "user", "content": text}]}),
            Door::Responses => json!({"model": model, "input": text, "store": false}),
        }
    }

    /// The error's type, in the door's shape.
    fn error_type(self, error: &Value) -> String {
        match self {
            Door::Messages => error["error"]["type"].as_str().unwrap_or("").to_string(),
            Door::Responses => error["error"]["code"].as_str().unwrap_or("").to_string(),
        }
    }
}

const DOORS: [Door; 2] = [Door::Messages, Door::Responses];

async fn post(app: &TestApp, key: &str, door: Door, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url(door.path()))
        .bearer_auth(key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A user with $5 and a key with `settings`; returns the key.
async fn funded_key(app: &TestApp, user_id: &str, settings: Value) -> String {
    send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": user_id})),
    )
    .await;
    let credit = json!({"amount": "5"});
    send(
        app.admin(Method::POST, &format!("/v1/users/{user_id}/credits"))
            .json(&credit),
    )
    .await;
    let mut body = settings;
    body["user_id"] = json!(user_id);
    let (status, created) = send(app.admin(Method::POST, "/v1/keys").json(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["key"].as_str().unwrap().to_string()
}

async fn limits_hold_on_every_door(backend: Backend) {
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| use_mock(c, &mock)).await;
    for door in DOORS {
        let name = door.path().trim_start_matches("/v1/");
        // Models: another model is refused, before anything is sent.
        let models = json!({"allowed_models": ["openai:gpt-4o-mini"]});
        let key = funded_key(&app, &format!("{name}-models"), models).await;
        let calls = mock_calls(&mock).await;
        let refused = post(
            &app,
            &key,
            door,
            &door.body("anthropic:claude-3-5-haiku", "hi"),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let error: Value = refused.json().await.unwrap();
        let expected = match door {
            Door::Messages => "permission_error",
            Door::Responses => "model_not_allowed",
        };
        assert_eq!(door.error_type(&error), expected, "{error}");
        assert_eq!(mock_calls(&mock).await, calls, "nothing was sent");
        let allowed = post(&app, &key, door, &door.body("openai:gpt-4o-mini", "hi")).await;
        assert_eq!(allowed.status(), StatusCode::OK);

        // Requests per minute: the third is refused, with the headers.
        let key = funded_key(&app, &format!("{name}-rpm"), json!({"rpm_limit": 2})).await;
        for remaining in ["1", "0"] {
            let ok = post(&app, &key, door, &door.body("openai:gpt-4o-mini", "hi")).await;
            assert_eq!(ok.status(), StatusCode::OK);
            assert_eq!(ok.headers()["x-ratelimit-remaining-requests"], remaining);
        }
        let limited = post(&app, &key, door, &door.body("openai:gpt-4o-mini", "hi")).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.headers().contains_key("retry-after"));
        let error: Value = limited.json().await.unwrap();
        let expected = match door {
            Door::Messages => "rate_limit_error",
            Door::Responses => "rate_limit_exceeded",
        };
        assert_eq!(door.error_type(&error), expected, "{error}");

        // A budget smaller than one call's reservation: 402, nothing sent.
        let budget = json!({"max_budget": "0.000001"});
        let key = funded_key(&app, &format!("{name}-budget"), budget).await;
        let calls = mock_calls(&mock).await;
        let broke = post(&app, &key, door, &door.body("openai:gpt-4o-mini", "hi")).await;
        assert_eq!(broke.status(), StatusCode::PAYMENT_REQUIRED, "{name}");
        assert_eq!(mock_calls(&mock).await, calls, "nothing was sent");
    }
    app.audit().await;
    app.stop().await;
}

#[tokio::test]
async fn an_idempotent_repeat_is_answered_once_streamed_or_not() {
    let mock = start_mock().await;
    let app = TestApp::start_with(Backend::Sqlite, |c| use_mock(c, &mock)).await;
    let key = app.user_key("idem@example.com").await;
    for (i, door) in DOORS.into_iter().enumerate() {
        for model in ["anthropic:claude-3-5-haiku", "openai:gpt-4o-mini"] {
            for stream in [false, true] {
                let mut body = door.body(model, "once only");
                body["stream"] = json!(stream);
                let idem = format!("order-{i}-{model}-{stream}");
                let send = || {
                    reqwest::Client::new()
                        .post(app.url(door.path()))
                        .bearer_auth(&key)
                        .header("Idempotency-Key", &idem)
                        .json(&body)
                        .send()
                };
                let calls = mock_calls(&mock).await;
                let first = send().await.unwrap();
                assert_eq!(first.status(), StatusCode::OK);
                let id = first.headers()["x-generation-id"].clone();
                let text = first.text().await.unwrap();
                let again = send().await.unwrap();
                let context = format!("{} {model} stream={stream}", door.path());
                assert_eq!(again.status(), StatusCode::OK, "{context}");
                assert_eq!(again.headers()["idempotent-replayed"], "true", "{context}");
                assert_eq!(again.headers()["x-generation-id"], id);
                assert_eq!(again.text().await.unwrap(), text, "{context}");
                assert_eq!(mock_calls(&mock).await, calls + 1, "{context}: sent once");
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn fallbacks_cross_wire_formats_and_generation_reports_the_call() {
    let mock = start_mock().await;
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        use_mock(c, &mock);
        c.fallbacks.insert(
            "openai:gpt-status-503".into(),
            vec!["anthropic:claude-3-5-haiku".into()],
        );
    })
    .await;
    let key = app.user_key("fallback@example.com").await;
    for door in DOORS {
        for stream in [false, true] {
            let mut body = door.body("openai:gpt-status-503", "hi");
            body["stream"] = json!(stream);
            let response = post(&app, &key, door, &body).await;
            assert_eq!(response.status(), StatusCode::OK, "{}", door.path());
            let id = response.headers()["x-generation-id"]
                .to_str()
                .unwrap()
                .to_string();
            let text = response.text().await.unwrap();
            let finished = match (door, stream) {
                (_, false) => "mock provider.",
                (Door::Messages, true) => "event: message_stop",
                (Door::Responses, true) => "event: response.completed",
            };
            assert!(text.contains(finished), "{text}");
            let generation = loop {
                let (status, generation) = send(
                    reqwest::Client::new()
                        .get(app.url(&format!("/v1/generation?id={id}")))
                        .bearer_auth(&key),
                )
                .await;
                if status == StatusCode::OK {
                    break generation;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            };
            let data = &generation["data"];
            assert_eq!(data["provider"], "anthropic", "{generation}");
            assert_eq!(data["endpoint"], door.path().trim_start_matches("/v1/"));
            assert_eq!(data["streamed"], stream);
            assert!(data["cost"].as_f64().unwrap() > 0.0);
        }
    }
    app.stop().await;
}

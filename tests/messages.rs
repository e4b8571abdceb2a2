//! Anthropic's Messages API through the gateway, against the mock: to an
//! Anthropic upstream as sent, to OpenAI-compatible and Gemini upstreams
//! translated; streamed and not; tools; errors in Anthropic's shape; the
//! same cost as the chat route for the same tokens.
#![cfg(feature = "ssr")]

mod common;

use common::{mock_calls, start_mock, use_mock, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(each_target_is_billed_as_the_chat_route_bills_the_same_tokens);

const MODELS: [&str; 3] = [
    "anthropic:claude-3-5-haiku",
    "openai:gpt-4o-mini",
    "gemini:gemini-2.0-flash",
];

async fn app() -> (TestApp, String) {
    let mock = start_mock().await;
    let app = TestApp::start_with(Backend::Sqlite, |c| use_mock(c, &mock)).await;
    (app, mock)
}

fn message(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}]})
}

/// Posts to `/v1/messages` as the Anthropic SDKs do: `x-api-key`, `anthropic-version`.
async fn post(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// An SSE body's events: (name, data).
async fn events(response: reqwest::Response) -> Vec<(String, Value)> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let name = frame
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_string();
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn each_target_answers_in_anthropics_shape() {
    let (app, _mock) = app().await;
    let key = app.user_key("m@example.com").await;
    for model in MODELS {
        let response = post(&app, &key, &message(model, "hi there")).await;
        let status = response.status();
        if status != StatusCode::OK {
            panic!("{model}: {status} {:?}", response.text().await);
        }
        assert!(response.headers().contains_key("x-generation-id"));
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["type"], "message", "{model}: {answer}");
        assert_eq!(answer["role"], "assistant");
        assert_eq!(answer["content"][0]["type"], "text");
        assert_eq!(
            answer["content"][0]["text"],
            "Hello from the llm-gateway mock provider."
        );
        assert_eq!(answer["stop_reason"], "end_turn", "{model}");
        assert!(answer["usage"]["input_tokens"].as_i64().unwrap() > 0);
        assert!(answer["usage"]["output_tokens"].as_i64().unwrap() > 0);
    }
    let records = app.usage_records(3).await;
    assert!(records
        .iter()
        .all(|r| r.endpoint == "messages" && r.status == 200));
    assert!(records.iter().all(|r| r.cost > 0), "{records:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_anthropic_upstream_gets_the_body_as_sent_and_the_beta_header() {
    let (app, _mock) = app().await;
    let key = app.user_key("native@example.com").await;
    let mut body = message("anthropic:claude-3-5-haiku", "hi");
    body["some_future_field"] = json!({"keep": [1, 2]});
    body["system"] =
        json!([{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]);
    let response = reqwest::Client::new()
        .post(app.url("/api/v1/messages"))
        .bearer_auth(&key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    let sent = &answer["mock_request"];
    assert_eq!(sent["anthropic_beta"], "prompt-caching-2024-07-31");
    assert_eq!(sent["body"]["some_future_field"], json!({"keep": [1, 2]}));
    assert_eq!(sent["body"]["system"], body["system"]);
    assert_eq!(
        sent["body"]["model"], "claude-3-5-haiku",
        "the upstream's name"
    );
    app.stop().await;
}

#[tokio::test]
async fn each_target_streams_anthropics_event_sequence() {
    let (app, _mock) = app().await;
    let key = app.user_key("s@example.com").await;
    for model in MODELS {
        let mut body = message(model, "hi [mock prompt_tokens=40 completion_tokens=6]");
        body["stream"] = json!(true);
        let response = post(&app, &key, &body).await;
        assert_eq!(response.status(), StatusCode::OK);
        let events = events(response).await;
        let names: Vec<&str> = events
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != "ping")
            .collect();
        assert_eq!(names.first(), Some(&"message_start"), "{model}: {names:?}");
        assert_eq!(names[1], "content_block_start", "{model}");
        assert_eq!(names[names.len() - 3], "content_block_stop", "{model}");
        assert_eq!(names[names.len() - 2], "message_delta", "{model}");
        assert_eq!(names.last(), Some(&"message_stop"), "{model}");
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_str(), "an event is named by its type");
        }
        let text: String = events
            .iter()
            .filter_map(|(_, e)| e.pointer("/delta/text").and_then(Value::as_str))
            .collect();
        assert_eq!(text, "Hello from the llm-gateway mock provider.", "{model}");
        let delta = &events
            .iter()
            .rev()
            .find(|(n, _)| n == "message_delta")
            .unwrap()
            .1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn", "{model}");
        assert_eq!(delta["usage"]["output_tokens"], 6, "{model}: {delta}");
    }
    let records = app.usage_records(3).await;
    for record in &records {
        assert_eq!((record.streamed, record.status), (1, 200), "{record:?}");
        assert_eq!(
            (record.prompt_tokens, record.completion_tokens),
            (40, 6),
            "{record:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn tools_round_trip_on_every_target() {
    let (app, _mock) = app().await;
    let key = app.user_key("tools@example.com").await;
    let tools =
        json!([{"name": "lookup", "description": "Looks up", "input_schema": {"type": "object"}}]);
    for model in MODELS {
        let mut body = message(model, "use a tool");
        body["tools"] = tools.clone();
        let answer: Value = post(&app, &key, &body).await.json().await.unwrap();
        let block = answer["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{model}: {answer}"))
            .clone();
        assert_eq!(block["name"], "lookup");
        assert_eq!(block["input"], json!({"query": "mock"}), "{model}");
        assert_eq!(answer["stop_reason"], "tool_use", "{model}");

        // The result goes back as a tool_result block.
        body["messages"] = json!([
            {"role": "user", "content": "use a tool"},
            {"role": "assistant", "content": [block]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "42"}]},
        ]);
        body.as_object_mut().unwrap().remove("tools");
        let answer: Value = post(&app, &key, &body).await.json().await.unwrap();
        assert_eq!(answer["type"], "message", "{model}: {answer}");

        body["tools"] = tools.clone();
        body["messages"] = json!([{"role": "user", "content": "use a tool"}]);
        body["stream"] = json!(true);
        let events = events(post(&app, &key, &body).await).await;
        let start = events
            .iter()
            .find(|(n, e)| n == "content_block_start" && e["content_block"]["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{model}: {events:?}"));
        assert_eq!(start.1["content_block"]["name"], "lookup");
        let json: String = events
            .iter()
            .filter_map(|(_, e)| e.pointer("/delta/partial_json").and_then(Value::as_str))
            .collect();
        assert_eq!(json, r#"{"query":"mock"}"#, "{model}");
        let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use", "{model}");
    }
    app.stop().await;
}

async fn each_target_is_billed_as_the_chat_route_bills_the_same_tokens(backend: Backend) {
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| use_mock(c, &mock)).await;
    let key = app.user_key("cost@example.com").await;
    let text = "[mock prompt_tokens=1000 completion_tokens=50 cached=100 cache_write=20]";
    for model in MODELS {
        let chat = json!({"model": model, "messages": [{"role": "user", "content": text}]});
        assert_eq!(app.chat(&key, &chat).await.status(), StatusCode::OK);
        assert_eq!(
            post(&app, &key, &message(model, text)).await.status(),
            StatusCode::OK
        );
    }
    let records = app.usage_records(6).await;
    for model in MODELS {
        let (provider, name) = model.split_once(':').unwrap();
        let costs: Vec<(&str, i64, i64)> = records
            .iter()
            .filter(|r| r.provider.as_deref() == Some(provider) && r.model.as_deref() == Some(name))
            .map(|r| (r.endpoint.as_str(), r.prompt_tokens, r.cost))
            .collect();
        assert_eq!(costs.len(), 2, "{model}: {costs:?}");
        assert_eq!(costs[0].1, 1000, "{model}: {costs:?}");
        assert_eq!(costs[0].1, costs[1].1, "{model}: {costs:?}");
        assert_eq!(costs[0].2, costs[1].2, "{model}: the same cost: {costs:?}");
        assert!(costs[0].2 > 0);
    }
    app.audit().await;
    app.stop().await;
}

#[tokio::test]
async fn errors_come_in_anthropics_shape() {
    let mock = start_mock().await;
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        use_mock(c, &mock);
        c.signup_credit = 0.0;
    })
    .await;
    let key = app.user_key("e@example.com").await;
    let check = |status: StatusCode, kind: &'static str| {
        move |(got, body): (StatusCode, Value)| {
            assert_eq!(got, status, "{body}");
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], kind, "{body}");
            assert!(body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    };
    let read = |response: reqwest::Response| async move {
        (response.status(), response.json::<Value>().await.unwrap())
    };
    let no_key = reqwest::Client::new()
        .post(app.url("/v1/messages"))
        .json(&message("anthropic:claude-3-5-haiku", "hi"))
        .send()
        .await
        .unwrap();
    check(StatusCode::UNAUTHORIZED, "authentication_error")(read(no_key).await);
    let mut no_max = message("anthropic:claude-3-5-haiku", "hi");
    no_max.as_object_mut().unwrap().remove("max_tokens");
    check(StatusCode::BAD_REQUEST, "invalid_request_error")(
        read(post(&app, &key, &no_max).await).await,
    );
    let bad_role =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]});
    check(StatusCode::BAD_REQUEST, "invalid_request_error")(
        read(post(&app, &key, &bad_role).await).await,
    );
    let unknown = message("no-such-model", "hi");
    check(StatusCode::NOT_FOUND, "not_found_error")(read(post(&app, &key, &unknown).await).await);

    // No credit: 402, and nothing reaches the provider.
    let before = mock_calls(&mock).await;
    let broke = post(&app, &key, &message("anthropic:claude-3-5-haiku", "hi")).await;
    check(StatusCode::PAYMENT_REQUIRED, "invalid_request_error")(read(broke).await);
    assert_eq!(mock_calls(&mock).await, before, "nothing was forwarded");
    app.stop().await;
}

#[tokio::test]
async fn a_stream_that_fails_midway_ends_with_one_error_event() {
    let (app, _mock) = app().await;
    let key = app.user_key("cut@example.com").await;
    for model in MODELS {
        let mut body = message(model, "[mock disconnect_after=4]");
        body["stream"] = json!(true);
        let events = events(post(&app, &key, &body).await).await;
        let errors: Vec<&(String, Value)> = events.iter().filter(|(n, _)| n == "error").collect();
        assert_eq!(errors.len(), 1, "{model}: {events:?}");
        assert_eq!(errors[0].1["error"]["type"], "api_error");
        assert_eq!(
            events.last().unwrap().0,
            "error",
            "the error ends the stream"
        );
    }
    let records = app.usage_records(3).await;
    assert!(
        records.iter().all(|r| r.aborted == 1 && r.status == 502),
        "{records:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_server_tool_reaches_only_anthropic() {
    let (app, mock) = app().await;
    let key = app.user_key("server-tool@example.com").await;
    let mut body = message("openai:gpt-4o-mini", "search");
    body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    let before = mock_calls(&mock).await;
    let response = post(&app, &key, &body).await;
    assert_eq!(
        mock_calls(&mock).await,
        before,
        "refused before any upstream"
    );
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("web_search_20250305"));
    body["model"] = json!("anthropic:claude-3-5-haiku");
    assert_eq!(post(&app, &key, &body).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn count_tokens_asks_anthropic_or_estimates() {
    let (app, mock) = app().await;
    let key = app.user_key("count@example.com").await;
    let count = |model: &str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "one two three four five"}]});
        let request = reqwest::Client::new()
            .post(app.url("/v1/messages/count_tokens"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let before = mock_calls(&mock).await;
    let (status, native) = count("anthropic:claude-3-5-haiku").await;
    assert_eq!(status, StatusCode::OK, "{native}");
    assert_eq!(native["input_tokens"], 5, "the mock's own count");
    assert_eq!(mock_calls(&mock).await, before + 1);
    let (status, local) = count("openai:gpt-4o-mini").await;
    assert_eq!(status, StatusCode::OK);
    let estimate = local["input_tokens"].as_i64().unwrap();
    assert!((5..=20).contains(&estimate), "{local}");
    assert_eq!(mock_calls(&mock).await, before + 1, "estimated locally");
    let (status, missing) = count("no-such-model").await;
    assert_eq!(
        (status, &missing["error"]["type"]),
        (StatusCode::NOT_FOUND, &json!("not_found_error"))
    );
    // A count costs nothing.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.usage_records(0).await.is_empty());
    app.stop().await;
}

//! OpenAI's Responses API through the gateway, against the mock: every
//! target, streamed and not, function calls, stored responses and
//! `previous_response_id`, and the chat route's cost for the same tokens.
#![cfg(feature = "ssr")]

mod common;

use common::{send, start_mock, use_mock, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(stored_responses_continue_and_stay_with_their_user);

const MODELS: [&str; 3] = [
    "openai:gpt-4o-mini",
    "anthropic:claude-3-5-haiku",
    "gemini:gemini-2.0-flash",
];
const REPLY: &str = "Hello from the llm-gateway mock provider.";

async fn app() -> TestApp {
    let mock = start_mock().await;
    TestApp::start_with(Backend::Sqlite, |c| use_mock(c, &mock)).await
}

fn create(app: &TestApp, key: &str, body: &Value) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(app.url("/v1/responses"))
        .bearer_auth(key)
        .json(body)
}

fn call(app: &TestApp, method: Method, key: &str, id: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, app.url(&format!("/v1/responses/{id}")))
        .bearer_auth(key)
}

/// An SSE body's data objects.
async fn events(response: reqwest::Response) -> Vec<Value> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[tokio::test]
async fn each_target_answers_with_a_response_object() {
    let app = app().await;
    let key = app.user_key("r@example.com").await;
    for model in MODELS {
        let body = json!({"model": model, "input": "hi there", "instructions": "Be brief.",
            "max_output_tokens": 100, "metadata": {"ticket": "42"}, "store": false});
        let (status, response) = send(create(&app, &key, &body)).await;
        assert_eq!(status, StatusCode::OK, "{model}: {response}");
        assert_eq!(response["object"], "response");
        assert!(response["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(response["status"], "completed", "{model}");
        assert_eq!(response["output"][0]["type"], "message");
        assert_eq!(response["output"][0]["content"][0]["type"], "output_text");
        assert_eq!(
            response["output"][0]["content"][0]["text"], REPLY,
            "{model}"
        );
        assert_eq!(response["output_text"], REPLY);
        assert_eq!(response["metadata"]["ticket"], "42");
        assert_eq!(response["model"], model);
        let usage = &response["usage"];
        assert!(usage["input_tokens"].as_i64().unwrap() > 0, "{usage}");
        assert_eq!(
            usage["total_tokens"].as_i64().unwrap(),
            usage["input_tokens"].as_i64().unwrap() + usage["output_tokens"].as_i64().unwrap()
        );
        assert!(usage["input_tokens_details"]["cached_tokens"].is_i64());
        assert!(usage["output_tokens_details"]["reasoning_tokens"].is_i64());
    }
    let records = app.usage_records(3).await;
    assert!(records
        .iter()
        .all(|r| r.endpoint == "responses" && r.status == 200 && r.cost > 0));
    app.stop().await;
}

#[tokio::test]
async fn each_target_streams_the_responses_events() {
    let app = app().await;
    let key = app.user_key("rs@example.com").await;
    for model in MODELS {
        let body = json!({"model": model, "input": "hi [mock prompt_tokens=30 completion_tokens=6]", "stream": true});
        let response = create(&app, &key, &body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let events = events(response).await;
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            &kinds[..4],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added"
            ],
            "{model}"
        );
        assert_eq!(
            kinds.last(),
            Some(&"response.completed"),
            "{model}: {kinds:?}"
        );
        for kind in ["response.output_text.done", "response.output_item.done"] {
            assert!(kinds.contains(&kind), "{model}: {kinds:?}");
        }
        let text: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(text, REPLY, "{model}");
        let numbers: Vec<u64> = events
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
        let done = events.last().unwrap();
        assert_eq!(
            done["response"]["usage"]["input_tokens"], 30,
            "{model}: {done}"
        );
        assert_eq!(done["response"]["usage"]["output_tokens"], 6);
        assert_eq!(done["response"]["output_text"], REPLY);
    }
    let records = app.usage_records(3).await;
    assert!(records
        .iter()
        .all(|r| r.streamed == 1 && (r.prompt_tokens, r.completion_tokens) == (30, 6)));
    app.stop().await;
}

#[tokio::test]
async fn function_calls_go_out_and_their_output_comes_back() {
    let app = app().await;
    let key = app.user_key("fc@example.com").await;
    let tools = json!([{"type": "function", "name": "lookup", "description": "Looks up", "parameters": {"type": "object"}}]);
    for model in MODELS {
        let body = json!({"model": model, "input": "use a tool", "tools": tools, "store": false});
        let (status, response) = send(create(&app, &key, &body)).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        let item = response["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap_or_else(|| panic!("{model}: {response}"))
            .clone();
        assert_eq!(item["name"], "lookup");
        assert_eq!(item["arguments"], r#"{"query":"mock"}"#, "{model}");
        let call_id = item["call_id"].as_str().unwrap();
        assert!(!call_id.is_empty());

        let follow_up = json!({"model": model, "store": false, "tools": tools, "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "use a tool"}]},
            item,
            {"type": "function_call_output", "call_id": call_id, "output": "{\"answer\":42}"},
        ]});
        let (status, answer) = send(create(&app, &key, &follow_up)).await;
        assert_eq!(status, StatusCode::OK, "{model}: {answer}");

        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let events = events(create(&app, &key, &streamed).send().await.unwrap()).await;
        let arguments: String = events
            .iter()
            .filter(|e| e["type"] == "response.function_call_arguments.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(arguments, r#"{"query":"mock"}"#, "{model}: {events:?}");
        let done = events.last().unwrap();
        assert_eq!(
            done["response"]["output"][0]["type"], "function_call",
            "{model}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_same_tokens_cost_what_they_cost_on_the_chat_route() {
    let app = app().await;
    let key = app.user_key("rc@example.com").await;
    let text = "[mock prompt_tokens=1000 completion_tokens=50 cached=100]";
    for model in MODELS {
        let chat = json!({"model": model, "messages": [{"role": "user", "content": text}]});
        assert_eq!(app.chat(&key, &chat).await.status(), StatusCode::OK);
        let body = json!({"model": model, "input": text, "store": false});
        assert_eq!(send(create(&app, &key, &body)).await.0, StatusCode::OK);
    }
    let records = app.usage_records(6).await;
    for model in MODELS {
        let (provider, name) = model.split_once(':').unwrap();
        let costs: Vec<(&str, i64)> = records
            .iter()
            .filter(|r| r.provider.as_deref() == Some(provider) && r.model.as_deref() == Some(name))
            .map(|r| (r.endpoint.as_str(), r.cost))
            .collect();
        assert_eq!(costs.len(), 2, "{model}");
        assert_eq!(costs[0].1, costs[1].1, "{model}: {costs:?}");
        assert!(costs[0].1 > 0);
    }
    app.audit().await;
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let app = app().await;
    let key = app.user_key("rb@example.com").await;
    for (body, field) in [
        (json!({"input": "x"}), "model"),
        (json!({"model": "openai:gpt-4o-mini"}), "input"),
        (json!({"model": "openai:gpt-4o-mini", "input": 5}), "input"),
        (
            json!({"model": "openai:gpt-4o-mini", "input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"model": "openai:gpt-4o-mini", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools",
        ),
    ] {
        let (status, error) = send(create(&app, &key, &body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["param"], field, "{error}");
    }
    let (status, error) = send(create(
        &app,
        &key,
        &json!({"model": "openai:gpt-4o-mini", "input": "x", "previous_response_id": "resp_nope"}),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    let (status, _) = send(call(&app, Method::GET, &key, "resp_nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn stored_responses_continue_and_stay_with_their_user(backend: Backend) {
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| use_mock(c, &mock)).await;
    let key = app.user_key("store@example.com").await;
    let other = app.user_key("other@example.com").await;
    let first = json!({"model": "openai:gpt-4o-mini", "input": "one two three"});
    let (status, response) = send(create(&app, &key, &first)).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["store"], true, "stored by default, as OpenAI does");
    let id = response["id"].as_str().unwrap().to_string();
    let first_input = response["usage"]["input_tokens"].as_i64().unwrap();

    // The mock counts the words of every message it gets: the earlier turn
    // and its answer come along.
    let next = json!({"model": "openai:gpt-4o-mini", "input": "four", "previous_response_id": id});
    let (status, continued) = send(create(&app, &key, &next)).await;
    assert_eq!(status, StatusCode::OK, "{continued}");
    assert_eq!(continued["previous_response_id"], id.as_str());
    let words_in_reply = REPLY.split_whitespace().count() as i64;
    assert_eq!(
        continued["usage"]["input_tokens"].as_i64().unwrap(),
        first_input + words_in_reply + 1
    );

    // Streamed, it is stored before `response.completed` reaches the client.
    let mut streamed = next.clone();
    streamed["stream"] = json!(true);
    streamed["previous_response_id"] = continued["id"].clone();
    let events = events(create(&app, &key, &streamed).send().await.unwrap()).await;
    let streamed_id = events.last().unwrap()["response"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, kept) = send(call(&app, Method::GET, &key, &streamed_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kept["output_text"], REPLY);

    let (status, read) = send(call(&app, Method::GET, &key, &id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["id"], id.as_str());
    assert_eq!(read["output_text"], REPLY);
    // Another user's key sees nothing, and cannot continue from it.
    let (status, _) = send(call(&app, Method::GET, &other, &id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        send(create(&app, &other, &next)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(call(&app, Method::DELETE, &other, &id)).await.0,
        StatusCode::NOT_FOUND
    );

    // Deleted, it is gone.
    let (status, deleted) = send(call(&app, Method::DELETE, &key, &id)).await;
    assert_eq!(
        (status, &deleted["deleted"]),
        (StatusCode::OK, &json!(true))
    );
    assert_eq!(
        send(call(&app, Method::GET, &key, &id)).await.0,
        StatusCode::NOT_FOUND
    );

    // `store: false` keeps nothing.
    let unstored = json!({"model": "openai:gpt-4o-mini", "input": "x", "store": false});
    let (_, response) = send(create(&app, &key, &unstored)).await;
    let unstored_id = response["id"].as_str().unwrap();
    assert_eq!(
        send(call(&app, Method::GET, &key, unstored_id)).await.0,
        StatusCode::NOT_FOUND
    );

    // After 30 days, a response is gone, and the sweep deletes it.
    let kept_id = continued["id"].as_str().unwrap();
    assert_eq!(
        send(call(&app, Method::GET, &key, kept_id)).await.0,
        StatusCode::OK
    );
    app.clock().advance(31 * 24 * 3600 * 1000);
    assert_eq!(
        send(call(&app, Method::GET, &key, kept_id)).await.0,
        StatusCode::NOT_FOUND
    );
    let db = app.database().await;
    let pruned = llm_gateway::db::responses::prune(&db, app.clock().now_ms())
        .await
        .unwrap();
    assert_eq!(pruned, 2, "the continued and the streamed response");

    // A user's responses go with the user.
    let (_, fresh) = send(create(&app, &other, &first)).await;
    let fresh_id = fresh["id"].as_str().unwrap();
    // A response's id is its request's, `resp_` for `req_`.
    let request_id = fresh_id.replacen("resp_", "req_", 1);
    let other_user = loop {
        let records = app.usage_records(0).await;
        if let Some(record) = records.iter().find(|r| r.id == request_id) {
            break record.user_id.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (status, _) = send(app.admin(Method::DELETE, &format!("/v1/users/{other_user}"))).await;
    assert!(status.is_success(), "{status}");
    let now = app.clock().now_ms();
    let left = llm_gateway::db::responses::find(&db, fresh_id, &other_user, now)
        .await
        .unwrap();
    assert_eq!(left, None);
    db.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_stream_that_fails_midway_ends_with_response_failed() {
    let app = app().await;
    let key = app.user_key("rf@example.com").await;
    for model in MODELS {
        let body = json!({"model": model, "input": "[mock disconnect_after=4]", "stream": true});
        let events = events(create(&app, &key, &body).send().await.unwrap()).await;
        let failed: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "response.failed")
            .collect();
        assert_eq!(failed.len(), 1, "{model}: {events:?}");
        assert_eq!(events.last().unwrap()["type"], "response.failed");
        assert_eq!(failed[0]["response"]["status"], "failed");
        assert!(failed[0]["response"]["error"]["message"].is_string());
        assert!(!events.iter().any(|e| e["type"] == "response.completed"));
    }
    let records = app.usage_records(3).await;
    assert!(
        records.iter().all(|r| r.aborted == 1 && r.status == 502),
        "{records:?}"
    );
    app.stop().await;
}

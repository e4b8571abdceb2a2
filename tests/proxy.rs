//! The OpenAI-compatible proxy against the mock provider: every adapter,
//! streaming, tools, errors, faults, fallbacks and usage records.
#![cfg(feature = "ssr")]

mod common;

use common::{start_mock, use_mock, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(usage_is_recorded_once_per_request);

async fn app() -> TestApp {
    let mock = start_mock().await;
    TestApp::start_with(Backend::Sqlite, |c| use_mock(c, &mock)).await
}

async fn app_with(customize: impl FnOnce(&mut llm_gateway::config::Config)) -> TestApp {
    let mock = start_mock().await;
    TestApp::start_with(Backend::Sqlite, |c| {
        use_mock(c, &mock);
        customize(c);
    })
    .await
}

async fn post(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.chat(key, &body).await
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Reads an SSE body into its `data:` payloads.
async fn sse_events(response: reqwest::Response) -> Vec<String> {
    let text = response.text().await.unwrap_or_default();
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

fn assembled_content(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

const REPLY: &str = "Hello from the llm-gateway mock provider.";
const MODELS: [&str; 3] = [
    "openai:gpt-4o-mini",
    "anthropic:claude-3-5-haiku",
    "gemini:gemini-2.0-flash",
];

#[tokio::test]
async fn every_adapter_answers_non_streaming() {
    let app = app().await;
    let key = app.user_key("a@example.com").await;
    for model in MODELS {
        let response = post(&app, &key, chat(model, "one two three")).await;
        assert_eq!(response.status(), StatusCode::OK, "{model}");
        assert!(response.headers().get("x-request-id").is_some());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion", "{model}");
        assert_eq!(body["choices"][0]["message"]["content"], REPLY, "{model}");
        assert_eq!(body["choices"][0]["finish_reason"], "stop", "{model}");
        assert_eq!(body["usage"]["prompt_tokens"], 3, "{model}");
        assert_eq!(body["usage"]["completion_tokens"], 6, "{model}");
    }
    let records = app.usage_records(3).await;
    assert_eq!(records.len(), 3);
    let providers: Vec<_> = records.iter().filter_map(|r| r.provider.clone()).collect();
    for provider in ["openai", "anthropic", "gemini"] {
        assert!(providers.iter().any(|p| p == provider), "{providers:?}");
    }
    assert!(records
        .iter()
        .all(|r| r.status == 200 && r.prompt_tokens == 3 && r.completion_tokens == 6));
    app.stop().await;
}

#[tokio::test]
async fn every_adapter_streams_with_usage_captured() {
    let app = app().await;
    let key = app.user_key("s@example.com").await;
    for model in MODELS {
        // The client did not ask for usage: none reaches it, yet it is recorded.
        let mut body = chat(model, "stream please");
        body["stream"] = json!(true);
        let response = post(&app, &key, body.clone()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let events = sse_events(response).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{model}");
        assert_eq!(assembled_content(&events), REPLY, "{model}");
        assert!(
            !events.iter().any(|e| e.contains("\"usage\"")),
            "{model}: {events:?}"
        );

        // The client asked for usage: the final chunk carries it.
        body["stream_options"] = json!({"include_usage": true});
        let events = sse_events(post(&app, &key, body).await).await;
        let usage: Vec<Value> = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter(|c| c["usage"].is_object())
            .collect();
        assert_eq!(usage.len(), 1, "{model}: {events:?}");
        assert_eq!(usage[0]["usage"]["completion_tokens"], 6, "{model}");
        assert_eq!(usage[0]["choices"].as_array().map(Vec::len), Some(0));
    }
    let records = app.usage_records(6).await;
    assert_eq!(records.len(), 6);
    for record in &records {
        assert_eq!(
            (record.streamed, record.aborted, record.status),
            (1, 0, 200),
            "{record:?}"
        );
        assert_eq!(
            (record.prompt_tokens, record.completion_tokens),
            (2, 6),
            "{record:?}"
        );
        assert!(record.ttft_ms.is_some());
    }
    app.stop().await;
}

#[tokio::test]
async fn every_adapter_returns_tool_calls() {
    let app = app().await;
    let key = app.user_key("t@example.com").await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    for model in MODELS {
        let mut body = chat(model, "use a tool");
        body["tools"] = tools.clone();
        let value: Value = post(&app, &key, body.clone()).await.json().await.unwrap();
        let call = &value["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "lookup", "{model}: {value}");
        assert_eq!(
            call["function"]["arguments"], r#"{"query":"mock"}"#,
            "{model}"
        );
        assert_eq!(
            value["choices"][0]["finish_reason"], "tool_calls",
            "{model}"
        );

        body["stream"] = json!(true);
        let events = sse_events(post(&app, &key, body).await).await;
        let mut arguments = String::new();
        let mut name = None;
        for event in events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        {
            if let Some(call) = event.pointer("/choices/0/delta/tool_calls/0") {
                if let Some(n) = call.pointer("/function/name").and_then(Value::as_str) {
                    name = Some(n.to_string());
                }
                arguments.push_str(
                    call.pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                );
            }
        }
        assert_eq!(name.as_deref(), Some("lookup"), "{model}: {events:?}");
        assert_eq!(arguments, r#"{"query":"mock"}"#, "{model}");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_fields_reach_openai_compatible_upstreams() {
    let app = app().await;
    let key = app.user_key("f@example.com").await;
    let body = json!({
        "model": "groq:llama-3.1-8b", "messages": [{"role": "user", "content": "hi"}],
        "stop": ["\n"], "n": 1, "seed": 7, "logprobs": true, "some_future_field": {"x": 1}
    });
    let value: Value = post(&app, &key, body.clone()).await.json().await.unwrap();
    let received = &value["mock_request"];
    assert_eq!(received["model"], "llama-3.1-8b");
    for field in ["stop", "n", "seed", "logprobs", "some_future_field"] {
        assert_eq!(received[field], body[field], "{field}");
    }
    app.stop().await;
}

#[tokio::test]
async fn keys_are_accepted_from_every_header_and_bad_ones_refused() {
    let app = app().await;
    let key = app.user_key("h@example.com").await;
    let client = reqwest::Client::new();
    let body = chat("gpt-4o-mini", "hi");
    for (name, value) in [
        ("authorization", format!("Bearer {key}")),
        ("x-anyllm-key", format!("Bearer {key}")),
        ("x-api-key", key.clone()),
    ] {
        let response = client
            .post(app.url("/api/v1/chat/completions"))
            .header(name, value)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{name}");
    }
    for bad in [
        "",
        "llm_sk_short",
        "llm_sk_0123456789012345678901234567890123456789",
    ] {
        let response = post(&app, bad, body.clone()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "authentication_error");
    }
    // Revocation takes effect at once.
    let client_session = app.client();
    app.rpc(
        &client_session,
        "sign_in",
        &[
            ("email", "h@example.com"),
            ("password", "correct horse battery"),
        ],
    )
    .await;
    let (_, keys) = app.rpc(&client_session, "list_keys", &[]).await;
    let id = keys[0]["id"].as_str().unwrap().to_string();
    app.rpc(&client_session, "revoke_key", &[("id", &id)]).await;
    assert_eq!(
        post(&app, &key, body).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

#[tokio::test]
async fn master_key_needs_a_user() {
    let app = app().await;
    let master = "test-master-key-0123456789";
    let response = post(&app, master, chat("gpt-4o-mini", "hi")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "When using master key, 'user' field is required"
    );
    let mut body = chat("gpt-4o-mini", "hi");
    body["user"] = json!("demo-user");
    // The user is created on first use, with no credit yet.
    let response = post(&app, master, body.clone()).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let db = llm_gateway::db::Db::connect(&app.db.url).await.unwrap();
    llm_gateway::db::ledger::credit(
        &db,
        "demo-user",
        llm_gateway::db::ledger::EntryKind::Adjustment,
        1_000_000_000,
        None,
        app.clock().now_ms(),
    )
    .await
    .unwrap();
    db.close().await;
    assert_eq!(post(&app, master, body).await.status(), StatusCode::OK);
    let records = app.usage_records(2).await;
    let ok = records.iter().find(|r| r.status == 200).unwrap();
    assert_eq!(ok.user_id, "demo-user");
    assert_eq!(ok.key_id, None);
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let app = app_with(|c| c.max_request_bytes = 4096).await;
    let key = app.user_key("e@example.com").await;
    let cases = [
        (
            chat("no-such-model", "hi"),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
        (
            chat("nowhere:model", "hi"),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": []}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            chat("gpt-4o-mini", &"x".repeat(5000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let response = post(&app, &key, body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{error}");
        assert!(error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let response = reqwest::Client::new()
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let error: Value = post(&app, &key, chat("nowhere:model", "hi"))
        .await
        .json()
        .await
        .unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nowhere"));
    app.stop().await;
}

#[tokio::test]
async fn upstream_errors_are_mapped() {
    let app = app_with(|c| c.upstream.read_timeout_secs = 1).await;
    let key = app.user_key("u@example.com").await;
    for model in MODELS {
        let response = post(&app, &key, chat(model, "[mock status=400]")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{model}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(
            error["error"]["message"], "mock failure with status 400",
            "{model}"
        );

        let response = post(&app, &key, chat(model, "[mock status=500]")).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{model}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("sk-upstream-secret"), "{text}");

        // A 200 whose body is not JSON is the provider's fault, not a success.
        let response = post(&app, &key, chat(model, "[mock malformed]")).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{model}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "upstream_error", "{model}: {error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("invalid response"), "{model}: {message}");
    }
    let response = post(&app, &key, chat("gpt-4o-mini", "[mock first_byte_ms=3000]")).await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_timeout");
    app.stop().await;
}

#[tokio::test]
async fn fallbacks_are_tried_in_order() {
    let app = app_with(|c| {
        c.fallbacks.insert(
            "openai:gpt-status-503".into(),
            vec!["anthropic:claude-3-5-haiku".into()],
        );
    })
    .await;
    let key = app.user_key("fb@example.com").await;
    let response = post(&app, &key, chat("openai:gpt-status-503", "hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    let records = app.usage_records(1).await;
    assert_eq!(records[0].provider.as_deref(), Some("anthropic"));
    app.stop().await;
}

#[tokio::test]
async fn a_broken_stream_ends_with_one_error_event_and_is_billed() {
    let app = app().await;
    let key = app.user_key("b@example.com").await;
    for (i, model) in MODELS.iter().enumerate() {
        for fault in ["disconnect_after=4", "malformed"] {
            let mut body = chat(model, &format!("[mock {fault}]"));
            body["stream"] = json!(true);
            let events = sse_events(post(&app, &key, body).await).await;
            let errors: Vec<&String> = events.iter().filter(|e| e.contains("\"error\"")).collect();
            assert_eq!(errors.len(), 1, "{model} {fault}: {events:?}");
            let error: Value = serde_json::from_str(errors[0]).unwrap();
            assert!(error["error"]["message"].is_string());
            assert_eq!(events.last(), Some(errors[0]), "the error ends the stream");
        }
        let records = app.usage_records(2 * (i + 1)).await;
        assert_eq!(records.len(), 2 * (i + 1));
    }
    let records = app.usage_records(6).await;
    for record in &records {
        assert_eq!((record.aborted, record.status), (1, 502), "{record:?}");
        assert!(record.prompt_tokens > 0, "{record:?}");
    }
    assert!(
        records.iter().any(|r| r.completion_tokens > 0),
        "generated tokens are counted"
    );
    app.stop().await;
}

/// The record of the `count`th request, to `model`, whose upstream reported
/// no usage: checks that its tokens were counted locally.
async fn counted_locally(
    app: &TestApp,
    count: usize,
    model: &str,
) -> llm_gateway::db::usage::UsageRecord {
    let records = app.usage_records(count).await;
    let provider = model.split(':').next();
    let Some(record) = records.iter().find(|r| r.provider.as_deref() == provider) else {
        panic!("{model}: {records:?}");
    };
    // ≈4 characters a token: the 41-character reply is 11 tokens.
    assert!(record.prompt_tokens > 0, "{record:?}");
    assert_eq!(record.completion_tokens, 11, "{record:?}");
    record.clone()
}

#[tokio::test]
async fn a_stream_without_usage_is_counted_locally() {
    let app = app().await;
    let key = app.user_key("nu@example.com").await;
    for (i, model) in MODELS.iter().enumerate() {
        let mut body = chat(model, "[mock no_usage]");
        body["stream"] = json!(true);
        let events = sse_events(post(&app, &key, body).await).await;
        assert_eq!(assembled_content(&events), REPLY, "{model}");
        counted_locally(&app, i + 1, model).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_reply_without_usage_is_counted_and_billed_locally() {
    let app = app().await;
    let key = app.user_key("nun@example.com").await;
    for (i, model) in MODELS.iter().enumerate() {
        let response = post(&app, &key, chat(model, "[mock no_usage] say hello")).await;
        assert_eq!(response.status(), StatusCode::OK, "{model}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], REPLY, "{model}");
        let record = counted_locally(&app, i + 1, model).await;
        assert!(record.cost > 0, "{record:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_error_sent_with_a_200_is_an_upstream_error() {
    let app = app().await;
    let key = app.user_key("ib@example.com").await;
    let response = post(&app, &key, chat("gpt-4o-mini", "[mock in_band_error=400]")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["message"], "mock in-band failure 400");

    let response = post(&app, &key, chat("gpt-4o-mini", "[mock in_band_error]")).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);

    let mut body = chat("gpt-4o-mini", "[mock in_band_error=500]");
    body["stream"] = json!(true);
    let events = sse_events(post(&app, &key, body).await).await;
    let errors: Vec<&String> = events.iter().filter(|e| e.contains("\"error\"")).collect();
    assert_eq!(errors.len(), 1, "{events:?}");
    let error: Value = serde_json::from_str(errors[0]).unwrap();
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("mock in-band failure 500"), "{message}");

    let records = app.usage_records(3).await;
    let mut statuses: Vec<i32> = records.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [400, 502, 502], "{records:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_chunk_is_retried_then_an_http_error() {
    let app = app().await;
    let key = app.user_key("fb@example.com").await;
    for model in MODELS {
        let mut body = chat(model, "[mock disconnect_after=0]");
        body["stream"] = json!(true);
        let response = post(&app, &key, body).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{model}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].is_string(), "{model}: {error}");
    }
    let records = app.usage_records(MODELS.len()).await;
    assert!(records.iter().all(|r| r.status == 502), "{records:?}");
    // The tests allow one retry: two attempts at each provider.
    let metrics = app.admin(reqwest::Method::GET, "/metrics").send().await;
    let metrics = metrics.unwrap().text().await.unwrap();
    for provider in ["openai", "anthropic", "gemini"] {
        let line = format!(
            "llm_gateway_upstream_errors_total{{provider=\"{provider}\",kind=\"connect\"}} 2"
        );
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_disconnects_is_still_billed() {
    let app = app().await;
    let key = app.user_key("cd@example.com").await;
    let mut body = chat("gpt-4o-mini", "[mock chunks=50 delay_ms=100]");
    body["stream"] = json!(true);
    let mut response = post(&app, &key, body).await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    let _ = response.chunk().await;
    drop(response);
    let records = app.usage_records(1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].status, records[0].aborted, records[0].streamed),
        (499, 1, 1)
    );
    assert!(records[0].prompt_tokens > 0);
    app.stop().await;
}

#[tokio::test]
async fn embeddings_and_models() {
    let app = app().await;
    let key = app.user_key("em@example.com").await;
    let client = reqwest::Client::new();
    let response = client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&key)
        .json(&json!({"model": "openai:text-embedding-3-small", "input": ["a", "bb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    // Passed through as the provider sent it, with the gateway's cost added.
    assert!(
        body["usage"]["prompt_tokens"].as_i64().unwrap() > 0,
        "{body}"
    );
    assert!(body["usage"]["cost"].as_f64().unwrap() > 0.0, "{body}");
    let response = client
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&key)
        .json(&json!({"model": "anthropic:claude-3-5-haiku", "input": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let models: Value = client
        .get(app.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"openai:gpt-4o-mini") && ids.contains(&"gemini:gemini-2.0-flash"),
        "{ids:?}"
    );
    assert!(models["data"][0]["pricing"]["input_per_million"].is_number());
    let response = client.get(app.url("/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn usage_is_recorded_once_per_request(backend: Backend) {
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| use_mock(c, &mock)).await;
    let key = app.user_key("once@example.com").await;
    let ok = post(&app, &key, chat("gpt-4o-mini", "hi")).await;
    let id = ok.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        post(&app, &key, chat("no-such-model", "hi")).await.status(),
        StatusCode::NOT_FOUND
    );
    let bad_json = reqwest::Client::new()
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), StatusCode::BAD_REQUEST);
    let records = app.usage_records(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let records_later = app.usage_records(3).await;
    assert_eq!(records.len(), 3);
    assert_eq!(records_later.len(), 3, "exactly one record per request");
    let ok_record = records
        .iter()
        .find(|r| r.id == id)
        .expect("record under the request id");
    assert_eq!(ok_record.status, 200);
    assert!(ok_record.key_id.is_some());
    let mut failures: Vec<(i32, Option<&str>)> = records
        .iter()
        .filter(|r| r.id != id)
        .map(|r| (r.status, r.error_code.as_deref()))
        .collect();
    failures.sort();
    assert_eq!(
        failures,
        [
            (400, Some("invalid_request")),
            (404, Some("model_not_found"))
        ]
    );
    // The key's last use is stamped.
    let client = app.client();
    app.rpc(
        &client,
        "sign_in",
        &[
            ("email", "once@example.com"),
            ("password", "correct horse battery"),
        ],
    )
    .await;
    let (_, keys) = app.rpc(&client, "list_keys", &[]).await;
    assert!(keys[0]["last_used_at"].is_number(), "{keys}");
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = app().await;
    let key = app.user_key("ids@example.com").await;
    let client = reqwest::Client::new();
    let id_of = |response: &reqwest::Response| {
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let mut generated = Vec::new();
    for path in [
        "/health",
        "/v1/models",
        "/openapi.json",
        "/v1/no-such-route",
    ] {
        let response = client
            .get(app.url(path))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let id = id_of(&response);
        assert!(id.starts_with("req_"), "{path}: {id}");
        generated.push(id);
    }
    generated.dedup();
    assert_eq!(generated.len(), 4, "a new id each time");
    let echoed = [
        client.get(app.url("/v1/models")).bearer_auth(&key),
        app.admin(reqwest::Method::GET, "/v1/users"),
        client.get(app.url("/v1/key")),
    ];
    for request in echoed {
        let response = request
            .header("x-request-id", "trace-9")
            .send()
            .await
            .unwrap();
        assert_eq!(id_of(&response), "trace-9", "{}", response.url());
    }
    let unusable = client
        .get(app.url("/health"))
        .header("x-request-id", "has space")
        .send()
        .await
        .unwrap();
    assert!(id_of(&unusable).starts_with("req_"));
    app.stop().await;
}

/// A price for the catalog, in USD per million tokens.
fn price(input: f64, output: f64) -> llm_gateway::config::PriceConfig {
    llm_gateway::config::PriceConfig {
        input_price_per_million: input,
        output_price_per_million: output,
        cache_read_price_per_million: None,
        cache_write_price_per_million: None,
        cache_write_1h_price_per_million: None,
        margin_percent: None,
    }
}

#[tokio::test]
async fn a_request_is_billed_at_the_price_of_the_model_that_answered() {
    // Two models at one price; a dearer fallback behind one of them.
    let app = app_with(|c| {
        c.pricing
            .insert("anthropic:claude-3-5-haiku".into(), price(3.0, 15.0));
        for model in ["openai:gpt-4o-mini", "openai:gpt-status-503"] {
            c.fallbacks
                .insert(model.into(), vec!["anthropic:claude-3-5-haiku".into()]);
        }
    })
    .await;
    let key = app.user_key("price@example.com").await;
    let mut streamed = chat("openai:gpt-4o-mini", "one two three");
    streamed["stream"] = json!(true);
    let requests = [
        chat("openai:gpt-4o-mini", "one two three"),
        streamed,
        chat("groq:llama-3.1-8b", "one two three"),
        chat("openai:gpt-status-503", "one two three"),
    ];
    for body in requests {
        let response = post(&app, &key, body).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
    }
    let records = app.usage_records(4).await;
    let cost_of = |provider: &str, streamed: i32| {
        let record = records
            .iter()
            .find(|r| r.provider.as_deref() == Some(provider) && r.streamed == streamed)
            .unwrap_or_else(|| panic!("{provider}: {records:?}"));
        assert_eq!((record.prompt_tokens, record.completion_tokens), (3, 6));
        record.cost
    };
    let at_the_models_price = cost_of("groq", 0);
    assert!(at_the_models_price > 0);
    assert_eq!(cost_of("openai", 0), at_the_models_price);
    assert_eq!(cost_of("openai", 1), at_the_models_price);
    // The fallback that did answer is billed at its own, higher price.
    assert!(cost_of("anthropic", 0) > 10 * at_the_models_price);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_pays_its_prompt_and_holds_nothing() {
    let app = app().await;
    let key = app.user_key("early@example.com").await;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    for stream in [false, true] {
        let mut body = chat("gpt-4o-mini", "[mock first_byte_ms=1500] one two three");
        body["stream"] = json!(stream);
        let sent = impatient
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await;
        assert!(sent.is_err(), "the client gave up before the answer");
    }
    let records = app.usage_records(2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!((record.status, record.aborted), (499, 1), "{record:?}");
        assert!(record.prompt_tokens > 0 && record.cost > 0, "{record:?}");
        assert_eq!(record.completion_tokens, 0, "{record:?}");
    }
    let info: Value = reqwest::Client::new()
        .get(app.url("/v1/key"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["data"]["available"], info["data"]["balance"],
        "no reservation is left held: {info}"
    );
    assert!(info["data"]["balance"].as_f64().unwrap() < 10.0, "{info}");
    app.stop().await;
}

#[tokio::test]
async fn an_answer_that_ends_unfinished_is_an_upstream_error() {
    let app = app().await;
    let key = app.user_key("cut@example.com").await;
    for model in MODELS {
        // Cut after a few frames, cleanly: one error event ends the stream.
        let mut body = chat(model, "[mock end_after=3]");
        body["stream"] = json!(true);
        let events = sse_events(post(&app, &key, body).await).await;
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert_eq!(
            last["error"]["code"], "upstream_error",
            "{model}: {events:?}"
        );
        assert!(!events.iter().any(|e| e == "[DONE]"), "{model}: {events:?}");

        // Nothing at all, streaming or not: retried, then a 502.
        for stream in [true, false] {
            let mut body = chat(model, "[mock empty]");
            body["stream"] = json!(stream);
            let response = post(&app, &key, body).await;
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{model}");
            let error: Value = response.json().await.unwrap();
            let message = error["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("before finishing"), "{model}: {error}");
        }
    }
    let records = app.usage_records(3 * MODELS.len()).await;
    assert!(records.iter().all(|r| r.status == 502), "{records:?}");
    assert_eq!(
        records.iter().filter(|r| r.aborted == 1).count(),
        MODELS.len()
    );
    let metrics = app.admin(reqwest::Method::GET, "/metrics").send().await;
    let metrics = metrics.unwrap().text().await.unwrap();
    for provider in ["openai", "anthropic", "gemini"] {
        // Two empty answers, each tried twice, and one cut stream.
        let line = format!(
            "llm_gateway_upstream_errors_total{{provider=\"{provider}\",kind=\"truncated\"}} 5"
        );
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_provider_refusing_the_gateways_key_is_a_bad_gateway_and_falls_back() {
    let app = app_with(|c| {
        c.pricing
            .insert("openai:gpt-status-401".into(), price(0.15, 0.6));
        c.fallbacks.insert(
            "openai:gpt-status-401".into(),
            vec!["anthropic:claude-3-5-haiku".into()],
        );
    })
    .await;
    let key = app.user_key("401@example.com").await;
    for model in MODELS {
        let response = post(&app, &key, chat(model, "[mock status=401]")).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{model}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("gateway's credentials"),
            "{model}: {error}"
        );
        assert!(!message.contains("mock failure"), "{model}: {error}");
    }
    let response = post(&app, &key, chat("openai:gpt-status-401", "hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let records = app.usage_records(MODELS.len() + 1).await;
    assert!(records
        .iter()
        .any(|r| r.status == 200 && r.provider.as_deref() == Some("anthropic")));
    app.stop().await;
}

#[tokio::test]
async fn every_choice_asked_for_is_reserved() {
    let app = app().await;
    let key = app.user_key("n@example.com").await;
    // $10 of credit: one choice of 10M tokens fits, two do not.
    let mut body = chat("gpt-4o-mini", "hi");
    body["max_tokens"] = json!(10_000_000);
    let response = post(&app, &key, body.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    body["n"] = json!(2);
    let response = post(&app, &key, body).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    app.stop().await;
}

//! `GET /metrics`: Prometheus text, behind the master key unless opened.
#![cfg(feature = "ssr")]

mod common;

use common::{start_mock, use_mock, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The value of the sample whose line starts with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_tokens_cost_and_upstream_errors() {
    let mock = start_mock().await;
    let app = TestApp::start_with(Backend::Sqlite, |c| use_mock(c, &mock)).await;
    let key = app.user_key("metered@example.com").await;
    let ask = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "one two three"}]});
    assert_eq!(
        app.chat(&key, &ask("gpt-4o-mini", false)).await.status(),
        StatusCode::OK
    );
    let streamed = app
        .chat(&key, &ask("gpt-4o-mini", true))
        .await
        .text()
        .await
        .unwrap();
    assert!(streamed.contains("[DONE]"));
    let failed = app.chat(&key, &ask("openai:gpt-status-503", false)).await;
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    app.usage_records(3).await;

    let anonymous = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let response = app.admin(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    let model = r#"provider="openai",model="gpt-4o-mini""#;
    assert_eq!(
        value(
            &text,
            &format!("llm_gateway_requests_total{{{model},status=\"200\"}}")
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            &format!("llm_gateway_tokens_total{{{model},kind=\"prompt\"}}")
        ),
        6.0
    );
    assert_eq!(
        value(
            &text,
            &format!("llm_gateway_tokens_total{{{model},kind=\"completion\"}}")
        ),
        12.0
    );
    let cost = value(&text, &format!("llm_gateway_cost_usd_total{{{model}}}"));
    assert!((cost - 2.0 * 4860e-9).abs() < 1e-15, "{cost}");
    assert_eq!(
        value(
            &text,
            &format!("llm_gateway_request_duration_seconds_count{{{model}}}")
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            &format!("llm_gateway_time_to_first_token_seconds_count{{{model}}}")
        ),
        1.0
    );
    // One call and one retry of the failing model.
    assert_eq!(
        value(
            &text,
            r#"llm_gateway_upstream_errors_total{provider="openai",kind="503"}"#
        ),
        2.0
    );
    assert_eq!(value(&text, "llm_gateway_open_streams"), 0.0);
    assert_eq!(value(&text, "llm_gateway_open_reservations"), 0.0);
    app.stop().await;

    // Opened by config.
    let app = TestApp::start_with(Backend::Sqlite, |c| c.metrics_public = true).await;
    let response = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

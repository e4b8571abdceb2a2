//! The limits a user sets on their own keys (issue #26's quotas): a monthly
//! spend cap, allowed models and an expiry, set on the keys page (server
//! functions) or by `PATCH /api/keys/{id}`, enforced on top of the
//! operator's limits.
#![cfg(feature = "ssr")]

mod common;

use common::{mock_calls, send, start_mock, use_mock, Backend, TestApp};
use futures::future::join_all;
use llm_gateway::billing::money::format_usd;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    a_monthly_cap_refuses_beyond_it_and_resets_next_month,
    concurrent_requests_never_overshoot_a_cap,
    a_change_applies_on_the_next_request,
    allowed_models_narrow_the_operators,
    an_expiry_ends_the_key,
    only_the_owner_changes_an_active_key,
    the_rest_routes_set_and_check_limits,
    the_keys_page_shows_both_sets_of_limits,
);

/// Three prompt tokens and six completion tokens at 180 / 720 nano-USD.
const COST: i64 = 3 * 180 + 6 * 720;
const DAY: i64 = 86_400_000;

/// A gateway on the mock provider, and the mock's base URL.
async fn app(backend: Backend) -> (TestApp, String) {
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| use_mock(c, &mock)).await;
    (app, mock)
}

fn small_chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 6,
           "messages": [{"role": "user", "content": "one two three"}]})
}

/// What [`small_chat`]'s reservation holds.
fn estimate() -> i64 {
    let prompt =
        llm_gateway::billing::estimate::prompt_tokens(small_chat("x").as_object().unwrap(), &[]);
    prompt * 180 + 6 * 720
}

/// A signed-in browser for a new user (with the sign-up credit).
async fn user(app: &TestApp, email: &str) -> reqwest::Client {
    let client = app.client();
    app.sign_up(&client, email).await;
    client
}

/// Creates a key with the create form's `fields`; its secret and id.
async fn new_key(
    app: &TestApp,
    client: &reqwest::Client,
    fields: &[(&str, &str)],
) -> (String, String) {
    let mut form = vec![("name", "limited")];
    form.extend_from_slice(fields);
    let (status, created) = app.rpc(client, "create_key", &form).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    (
        created["secret"].as_str().unwrap().to_string(),
        created["key"]["id"].as_str().unwrap().to_string(),
    )
}

/// Submits the edit form of key `id` with `fields`.
async fn set_limits(
    app: &TestApp,
    client: &reqwest::Client,
    id: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![("id", id)];
    form.extend_from_slice(fields);
    app.rpc(client, "update_key_limits", &form).await
}

/// The status and error code of a chat with `key` for `model`.
async fn chat(app: &TestApp, key: &str, model: &str) -> (StatusCode, Value) {
    let response = app.chat(key, &small_chat(model)).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The server function's error: its variant's field, or its message.
fn rpc_field(body: &Value) -> Option<&str> {
    body.as_object()?.values().next()?.get("field")?.as_str()
}

/// The user's key `id` as the keys page lists it.
async fn listed(app: &TestApp, client: &reqwest::Client, id: &str) -> Value {
    let (status, keys) = app.rpc(client, "list_keys", &[]).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .expect("the key is listed")
}

async fn a_monthly_cap_refuses_beyond_it_and_resets_next_month(backend: Backend) {
    let (app, mock) = app(backend).await;
    let client = user(&app, "capped@example.com").await;
    // Three calls fit (two spent, then one estimate), a fourth does not.
    let cap = 2 * COST + estimate();
    let (key, id) = new_key(&app, &client, &[("monthly_cap", &format_usd(cap))]).await;
    assert_eq!(
        listed(&app, &client, &id).await["limits"]["monthly_cap"],
        cap
    );
    for n in 1..=3 {
        assert_eq!(chat(&app, &key, "gpt-4o-mini").await.0, StatusCode::OK);
        app.usage_records(n).await;
    }
    let sent = mock_calls(&mock).await;
    let (status, body) = chat(&app, &key, "gpt-4o-mini").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("the key's monthly cap of $"), "{message}");
    assert!(message.contains("set by its owner"), "{message}");
    assert_eq!(mock_calls(&mock).await, sent, "nothing was sent upstream");
    let shown = listed(&app, &client, &id).await;
    assert_eq!(shown["month_spend"], 3 * COST);

    // The first of next month, the cap starts over.
    app.clock().advance(32 * DAY);
    assert_eq!(listed(&app, &client, &id).await["month_spend"], 0);
    assert_eq!(chat(&app, &key, "gpt-4o-mini").await.0, StatusCode::OK);
    app.audit().await;
    app.stop().await;
}

async fn concurrent_requests_never_overshoot_a_cap(backend: Backend) {
    let (app, mock) = app(backend).await;
    let client = user(&app, "rush@example.com").await;
    let cap = 5 * COST;
    let (key, id) = new_key(&app, &client, &[("monthly_cap", &format_usd(cap))]).await;
    let http = reqwest::Client::new();
    let requests = (0..20).map(|_| {
        http.post(app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&small_chat("gpt-4o-mini"))
            .send()
    });
    let mut ok = 0;
    for response in join_all(requests).await {
        match response.unwrap().status() {
            StatusCode::OK => ok += 1,
            StatusCode::PAYMENT_REQUIRED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!((1..=5).contains(&ok), "{ok} requests succeeded");
    assert_eq!(mock_calls(&mock).await, ok as u64, "only those were sent");
    let records = app.usage_records(20).await;
    let spent: i64 = records
        .iter()
        .filter(|r| r.key_id.as_deref() == Some(id.as_str()))
        .map(|r| r.cost)
        .sum();
    assert_eq!(spent, ok * COST);
    assert!(spent <= cap, "{spent} spent of a cap of {cap}");
    app.stop().await;
}

async fn a_change_applies_on_the_next_request(backend: Backend) {
    let is_postgres = matches!(backend, Backend::Postgres { .. });
    let (app, _mock) = app(backend).await;
    let client = user(&app, "changer@example.com").await;
    let (key, id) = new_key(&app, &client, &[]).await;
    for n in 1..=2 {
        assert_eq!(chat(&app, &key, "gpt-4o-mini").await.0, StatusCode::OK);
        app.usage_records(n).await;
    }
    // A cap set mid-month counts what the key spent this month already, and
    // holds from the next request though the key is cached.
    let (status, shown) =
        set_limits(&app, &client, &id, &[("monthly_cap", &format_usd(COST))]).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["month_spend"], 2 * COST);
    let (status, body) = chat(&app, &key, "gpt-4o-mini").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    // An empty field removes the limit.
    let (status, shown) = set_limits(&app, &client, &id, &[("monthly_cap", "")]).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["limits"]["monthly_cap"], Value::Null);
    assert_eq!(chat(&app, &key, "gpt-4o-mini").await.0, StatusCode::OK);

    if is_postgres {
        // Another replica, which cached the key, hears of the change.
        let (replica, server) = app.replica().await;
        let on_replica = || {
            reqwest::Client::new()
                .post(format!("{replica}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&small_chat("gpt-4o-mini"))
                .send()
        };
        assert_eq!(on_replica().await.unwrap().status(), StatusCode::OK);
        let only_haiku = [("allowed_models", "anthropic:claude-3-5-haiku")];
        assert_eq!(
            set_limits(&app, &client, &id, &only_haiku).await.0,
            StatusCode::OK
        );
        // Far less than the key cache's own expiry (5 s).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(on_replica().await.unwrap().status(), StatusCode::FORBIDDEN);
        server.stop().await;
    }
    app.stop().await;
}

async fn allowed_models_narrow_the_operators(backend: Backend) {
    let (app, mock) = app(backend).await;
    let client = user(&app, "picky@example.com").await;
    let (key, id) = new_key(&app, &client, &[("allowed_models", "openai:gpt-4o-mini")]).await;
    assert_eq!(chat(&app, &key, "gpt-4o-mini").await.0, StatusCode::OK);
    let sent = mock_calls(&mock).await;
    let (status, body) = chat(&app, &key, "anthropic:claude-3-5-haiku").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(mock_calls(&mock).await, sent, "nothing was sent upstream");

    // The operator's list still applies when the user's allows more.
    let (status, body) = send(
        app.admin(Method::PATCH, &format!("/v1/keys/{id}"))
            .json(&json!({"allowed_models": ["openai:gpt-4o-mini"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let both = "openai:gpt-4o-mini, anthropic:claude-3-5-haiku";
    let (status, shown) = set_limits(&app, &client, &id, &[("allowed_models", both)]).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(
        shown["operator"]["allowed_models"],
        json!(["openai:gpt-4o-mini"])
    );
    assert_eq!(
        shown["limits"]["allowed_models"].as_array().unwrap().len(),
        2
    );
    let (status, body) = chat(&app, &key, "anthropic:claude-3-5-haiku").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(mock_calls(&mock).await, sent);

    // Names the gateway does not serve are refused, not stored.
    for typo in ["openai:gpt-4o-mni", "nobody:*"] {
        let (status, body) = set_limits(&app, &client, &id, &[("allowed_models", typo)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(rpc_field(&body), Some("allowed_models"), "{body}");
    }
    app.stop().await;
}

async fn an_expiry_ends_the_key(backend: Backend) {
    let (app, _mock) = app(backend).await;
    let client = user(&app, "brief@example.com").await;
    let date = |ms: i64| llm_gateway::format::datetime(ms)[..10].to_string();
    let now = app.clock().now_ms();
    let (status, body) = app
        .rpc(
            &client,
            "create_key",
            &[("name", "old"), ("expires_at", &date(now))],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "today has begun: {body}");
    assert_eq!(rpc_field(&body), Some("expires_at"));
    let (key, id) = new_key(&app, &client, &[("expires_at", &date(now + 2 * DAY))]).await;
    app.clock().advance(DAY);
    assert_eq!(chat(&app, &key, "gpt-4o-mini").await.0, StatusCode::OK);
    app.clock().advance(DAY);
    let (status, body) = chat(&app, &key, "gpt-4o-mini").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "key_expired");
    assert_eq!(listed(&app, &client, &id).await["status"], "Expired");

    // The owner may lift their own expiry, but not the operator's.
    let later = app.clock().now_ms() / 1000 + 3600;
    let (status, _) = send(
        app.admin(Method::PATCH, &format!("/v1/keys/{id}"))
            .json(&json!({"expires_at": later})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        set_limits(&app, &client, &id, &[("expires_at", "")])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(chat(&app, &key, "gpt-4o-mini").await.0, StatusCode::OK);
    app.clock().advance(3601 * 1000);
    assert_eq!(
        chat(&app, &key, "gpt-4o-mini").await.0,
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

async fn only_the_owner_changes_an_active_key(backend: Backend) {
    let (app, _mock) = app(backend).await;
    let alice = user(&app, "alice@example.com").await;
    let mallory = user(&app, "mallory@example.com").await;
    let (key, id) = new_key(&app, &alice, &[]).await;
    let cap = [("monthly_cap", "0")];
    let (status, body) = set_limits(&app, &mallory, &id, &cap).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = send(
        mallory
            .patch(app.url(&format!("/api/keys/{id}")))
            .json(&json!({"monthly_cap": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        set_limits(&app, &app.client(), &id, &cap).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        chat(&app, &key, "gpt-4o-mini").await.0,
        StatusCode::OK,
        "untouched"
    );
    assert_eq!(
        listed(&app, &alice, &id).await["limits"]["monthly_cap"],
        Value::Null
    );

    let (status, _) = app.rpc(&alice, "revoke_key", &[("id", &id)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = set_limits(&app, &alice, &id, &cap).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a revoked key: {body}");
    app.stop().await;
}

async fn the_rest_routes_set_and_check_limits(backend: Backend) {
    let (app, _mock) = app(backend).await;
    let client = user(&app, "script@example.com").await;
    let (status, created) = send(client.post(app.url("/api/keys")).json(&json!({
        "name": "ci", "monthly_cap": "1.50", "allowed_models": ["openai:*"], "expires_at": "2099-01-01"
    })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let limits = &created["key"]["limits"];
    assert_eq!(limits["monthly_cap"], 1_500_000_000i64);
    assert_eq!(limits["allowed_models"], json!(["openai:*"]));
    assert_eq!(limits["expires_at"], 4_070_908_800_000i64);
    let id = created["key"]["id"].as_str().unwrap();
    let path = app.url(&format!("/api/keys/{id}"));

    // Absent fields stay; null removes.
    let (status, shown) = send(client.patch(&path).json(&json!({"monthly_cap": 2}))).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["limits"]["monthly_cap"], 2_000_000_000i64);
    assert_eq!(shown["limits"]["allowed_models"], json!(["openai:*"]));
    let (status, shown) = send(
        client
            .patch(&path)
            .json(&json!({"allowed_models": null, "expires_at": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(
        shown["limits"],
        json!({"monthly_cap": 2_000_000_000i64, "allowed_models": null, "expires_at": null})
    );

    for (body, field) in [
        (json!({"monthly_cap": "lots"}), "monthly_cap"),
        (json!({"monthly_cap": -1}), "monthly_cap"),
        (json!({"allowed_models": []}), "allowed_models"),
        (
            json!({"allowed_models": ["openai:gpt-9"]}),
            "allowed_models",
        ),
        (json!({"expires_at": "2001-01-01"}), "expires_at"),
        (json!({"expires_at": "next week"}), "expires_at"),
    ] {
        let (status, error) = send(client.patch(&path).json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"]["param"], field, "{body}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    }
    let (status, error) = send(client.post(app.url("/api/keys")).json(&json!({
        "name": "refused", "allowed_models": ["nope:nope"]
    })))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (_, keys) = send(client.get(app.url("/api/keys"))).await;
    assert_eq!(
        keys.as_array().unwrap().len(),
        1,
        "a refused key is not issued"
    );
    app.stop().await;
}

async fn the_keys_page_shows_both_sets_of_limits(backend: Backend) {
    let (app, _mock) = app(backend).await;
    let client = user(&app, "reader@example.com").await;
    let fields = [
        ("monthly_cap", "12.5"),
        ("allowed_models", "openai:gpt-4o-mini"),
    ];
    let (key, id) = new_key(&app, &client, &fields).await;
    assert_eq!(chat(&app, &key, "gpt-4o-mini").await.0, StatusCode::OK);
    app.usage_records(1).await;
    let (status, _) = send(
        app.admin(Method::PATCH, &format!("/v1/keys/{id}"))
            .json(&json!({"max_budget": "3", "budget_duration": "30d", "rpm_limit": 60})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let html = client
        .get(app.url("/dashboard/keys"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for shown in [
        &format!(
            "{} of $12.50 this month",
            llm_gateway::format::dollars(COST)
        ),
        "openai:gpt-4o-mini",
        "no expiry",
        "Set by the operator: ",
        "budget $3.00 per 30 days",
        "60 requests/min",
        "Edit limits of",
        r#"name="monthly_cap""#,
        r#"value="12.50""#,
    ] {
        assert!(
            html.contains(shown),
            "`{shown}` is not on the page:\n{html}"
        );
    }
    app.stop().await;
}

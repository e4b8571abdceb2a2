//! otari, any-llm-gateway's new name: its `Otari-Key` header (bare or
//! `Bearer`) on the operator API and the proxy, every admin route under
//! `/api/v1`, and `POST /v1/keys` creating the user it names.
#![cfg(feature = "ssr")]

mod common;

use common::{send, start_mock, use_mock, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    otari_key_opens_the_operator_api,
    otari_key_opens_the_proxy,
    every_admin_route_is_served_under_api_v1,
    posting_a_key_creates_the_user_it_names,
);

async fn app(backend: Backend) -> TestApp {
    let mock = start_mock().await;
    TestApp::start_with(backend, |c| use_mock(c, &mock)).await
}

fn master(app: &TestApp) -> String {
    app.config.master_key.clone().unwrap()
}

/// `Otari-Key: <token>` and `Otari-Key: Bearer <token>`.
fn otari_forms(token: &str) -> [String; 2] {
    [token.to_string(), format!("Bearer {token}")]
}

/// A request with `Otari-Key` set to `value`, and no other credential.
fn otari(app: &TestApp, method: Method, path: &str, value: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, app.url(path))
        .header("Otari-Key", value)
}

fn hello() -> Value {
    json!({"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

/// The admin routes, with ids that need not exist.
const ADMIN_ROUTES: [(&str, &str); 20] = [
    ("POST", "/users"),
    ("GET", "/users"),
    ("GET", "/users/someone"),
    ("PATCH", "/users/someone"),
    ("DELETE", "/users/someone"),
    ("GET", "/users/someone/usage"),
    ("POST", "/users/someone/credits"),
    ("GET", "/debts"),
    ("GET", "/reconciliation"),
    ("POST", "/keys"),
    ("GET", "/keys"),
    ("GET", "/keys/k"),
    ("PATCH", "/keys/k"),
    ("DELETE", "/keys/k"),
    ("POST", "/budgets"),
    ("GET", "/budgets"),
    ("GET", "/budgets/b"),
    ("PATCH", "/budgets/b"),
    ("DELETE", "/budgets/b"),
    ("POST", "/pricing"),
];

async fn otari_key_opens_the_operator_api(backend: Backend) {
    let app = app(backend).await;
    let master = master(&app);
    for (i, value) in otari_forms(&master).iter().enumerate() {
        let user_id = format!("otari-{i}");
        let (status, created) =
            send(otari(&app, Method::POST, "/v1/users", value).json(&json!({"user_id": user_id})))
                .await;
        assert_eq!(status, StatusCode::CREATED, "Otari-Key: {value}: {created}");
        assert_eq!(created["user_id"], user_id.as_str());
        let (status, shown) = send(otari(
            &app,
            Method::GET,
            &format!("/v1/users/{user_id}"),
            value,
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shown["user_id"], user_id.as_str());
        // The master key's other door: /metrics.
        let response = otari(&app, Method::GET, "/metrics", value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "/metrics with {value}");
    }
    for wrong in ["wrong-master-key", "Bearer wrong-master-key", "Bearer ", ""] {
        let (status, body) = send(otari(&app, Method::GET, "/v1/users", wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "Otari-Key: {wrong:?}");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        let response = otari(&app, Method::GET, "/metrics", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // A user's key in Otari-Key is not the master key.
    let (_, key) = send(app.admin(Method::POST, "/v1/keys").json(&json!({}))).await;
    let key = key["key"].as_str().unwrap();
    for value in otari_forms(key) {
        let (status, _) = send(otari(&app, Method::GET, "/v1/users", &value)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    app.stop().await;
}

async fn otari_key_opens_the_proxy(backend: Backend) {
    let app = app(backend).await;
    let (status, created) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": "otari-caller"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let (status, _) = send(
        app.admin(Method::POST, "/v1/users/otari-caller/credits")
            .json(&json!({"amount": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for value in otari_forms(&key) {
        for path in ["/v1/chat/completions", "/api/v1/chat/completions"] {
            let (status, body) = send(otari(&app, Method::POST, path, &value).json(&hello())).await;
            assert_eq!(status, StatusCode::OK, "{path} Otari-Key: {value}: {body}");
            assert_eq!(body["object"], "chat.completion");
        }
        let (status, models) = send(otari(&app, Method::GET, "/v1/models", &value)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!models["data"].as_array().unwrap().is_empty());
        let (status, info) = send(otari(&app, Method::GET, "/v1/key", &value)).await;
        assert_eq!(status, StatusCode::OK, "{info}");
    }
    let records = app.usage_records(4).await;
    let billed: Vec<_> = records
        .iter()
        .filter(|r| r.user_id == "otari-caller" && r.status == 200)
        .collect();
    assert_eq!(billed.len(), 4, "{records:?}");
    assert!(billed
        .iter()
        .all(|r| r.key_id.as_deref() == created["id"].as_str()));

    // The master key in Otari-Key bills the body's `user`.
    let mut body = hello();
    body["user"] = json!("otari-caller");
    for value in otari_forms(&master(&app)) {
        let (status, answer) =
            send(otari(&app, Method::POST, "/v1/chat/completions", &value).json(&body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let records = app.usage_records(6).await;
    let by_master = records
        .iter()
        .filter(|r| r.user_id == "otari-caller" && r.key_id.is_none())
        .count();
    assert_eq!(by_master, 2);

    // A wrong key is refused, whichever form it comes in.
    let wrong = format!("llm_sk_{}", "x".repeat(40));
    for value in otari_forms(&wrong) {
        let (status, body) =
            send(otari(&app, Method::POST, "/v1/chat/completions", &value).json(&hello())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    app.stop().await;
}

async fn every_admin_route_is_served_under_api_v1(backend: Backend) {
    let app = app(backend).await;
    // Guarded there as under /v1: a 401 in JSON, not the site's 404 page.
    for (method, path) in ADMIN_ROUTES {
        let method: Method = method.parse().unwrap();
        let path = format!("/api/v1{path}");
        let (status, body) = send(
            reqwest::Client::new()
                .request(method.clone(), app.url(&path))
                .json(&json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_api_key", "{method} {path}");
    }
    let (status, _) = send(reqwest::Client::new().get(app.url("/api/v1/no-such-route"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the check above can fail");

    // And they work there, with either header.
    let master = master(&app);
    let value = format!("Bearer {master}");
    let (status, _) = send(
        otari(&app, Method::POST, "/api/v1/budgets", &master)
            .json(&json!({"budget_id": "team", "max_budget": "10", "period": "monthly"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, user) = send(
        otari(&app, Method::POST, "/api/v1/users", &value)
            .json(&json!({"user_id": "under-api", "budget_id": "team"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (status, credited) = send(
        app.admin(Method::POST, "/api/v1/users/under-api/credits")
            .json(&json!({"amount": "2"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(credited["balance_nanos"], 2_000_000_000i64);
    let (status, key) = send(
        otari(&app, Method::POST, "/api/v1/keys", &master)
            .json(&json!({"user_id": "under-api", "key_name": "ci"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let key_path = format!("/api/v1/keys/{}", key["id"].as_str().unwrap());
    let (status, shown) = send(otari(&app, Method::GET, &key_path, &value)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["key_name"], "ci");
    assert_eq!(shown["user_id"], "under-api");
    let (status, users) = send(otari(&app, Method::GET, "/api/v1/users", &master)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    let (status, prices) = send(otari(&app, Method::GET, "/api/v1/pricing", &master)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(prices.as_array().unwrap()[0]
        .get("input_price_per_million")
        .is_some());
    let (status, _) = send(otari(&app, Method::DELETE, &key_path, &master)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, shown) = send(otari(&app, Method::GET, &key_path, &master)).await;
    assert_eq!(shown["is_active"], false);
    app.stop().await;
}

async fn posting_a_key_creates_the_user_it_names(backend: Backend) {
    let app = app(backend).await;
    let user_ids = || async {
        let (_, users) = send(app.admin(Method::GET, "/v1/users?limit=100")).await;
        let mut ids: Vec<String> = users
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["user_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let (status, created) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": "new-user", "key_name": "first"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["user_id"], "new-user");
    let (status, user) = send(app.admin(Method::GET, "/v1/users/new-user")).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["user_id"], "new-user");
    assert_eq!(user["balance_nanos"], 0);
    assert_eq!(user_ids().await, ["new-user"]);

    // A second key joins the same user; no second user is made.
    let (status, second) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": "new-user", "key_name": "second"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["user_id"], "new-user");
    assert_eq!(user_ids().await, ["new-user"]);
    let (_, keys) = send(app.admin(Method::GET, "/v1/keys?user_id=new-user")).await;
    assert_eq!(keys.as_array().unwrap().len(), 2);

    // A refused key leaves no user behind, whatever refused it.
    for (body, param) in [
        (
            json!({"user_id": "never-made", "rpm_limit": 0}),
            "rpm_limit",
        ),
        (
            json!({"user_id": "never-made", "allowed_models": [""]}),
            "allowed_models",
        ),
        (json!({"user_id": "never-made", "key_name": ""}), "key_name"),
        (json!({"user_id": "never made"}), "user_id"),
    ] {
        let (status, error) = send(app.admin(Method::POST, "/v1/keys").json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    let (status, _) = send(app.admin(Method::GET, "/v1/users/never-made")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(user_ids().await, ["new-user"]);

    // A deleted user is not brought back by a key.
    send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": "gone"})),
    )
    .await;
    let (status, _) = send(app.admin(Method::DELETE, "/v1/users/gone")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, error) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": "gone"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert_eq!(error["error"]["code"], "user_deleted");
    assert_eq!(user_ids().await, ["new-user"]);
    app.stop().await;
}

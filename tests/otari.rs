//! otari, any-llm-gateway's new name: `POST /v1/keys` creating the user it
//! names.
#![cfg(feature = "ssr")]

mod common;

use common::{start_mock, use_mock, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(posting_a_key_creates_the_user_it_names);

async fn app(backend: Backend) -> TestApp {
    let mock = start_mock().await;
    TestApp::start_with(backend, |c| use_mock(c, &mock)).await
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
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

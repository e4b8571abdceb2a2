//! The reseller MVP's REST routes (seed 002) under `/api`: JSON in and out,
//! the dashboard's session cookie, the forms' rules, throttling and
//! messages, on SQLite and PostgreSQL.
#![cfg(feature = "ssr")]

mod common;

use common::{start_mock, use_mock, Backend, TestApp};
use llm_gateway::config::PaymentMode;
use reqwest::header::{HeaderMap, RETRY_AFTER, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    the_routes_work_end_to_end_with_cookies,
    without_a_session_they_answer_401,
    cross_origin_changes_are_refused,
    sign_in_is_throttled_like_the_form,
    errors_are_the_forms_in_openai_shape,
);

const PASSWORD: &str = "correct horse battery";

/// A gateway on the mock, with test-mode payments.
async fn app(backend: Backend) -> TestApp {
    let mock = start_mock().await;
    TestApp::start_with(backend, |c| {
        use_mock(c, &mock);
        c.payments.mode = PaymentMode::Test;
    })
    .await
}

/// Sends a request; returns its status, JSON body (`Null` if none) and headers.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value, HeaderMap) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body, headers)
}

/// A call to an MVP route on `client`, with a JSON body for writes.
async fn call(
    app: &TestApp,
    client: &reqwest::Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, HeaderMap) {
    let mut request = client.request(method, app.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

/// Asserts OpenAI's error shape with this message; returns the error.
fn error_with(body: &Value, message: &str) -> Value {
    let error = &body["error"];
    assert_eq!(error["message"], message, "{body}");
    assert!(
        error["type"].is_string() && error["code"].is_string(),
        "{body}"
    );
    error.clone()
}

fn credentials(email: &str, password: &str) -> Option<Value> {
    Some(json!({"email": email, "password": password}))
}

fn hello() -> Value {
    json!({"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]})
}

async fn the_routes_work_end_to_end_with_cookies(backend: Backend) {
    let app = app(backend).await;
    let client = app.client();
    let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);

    // Sign up: 201, signed in at once, with the sign-up credit.
    let (status, user, headers) = call(
        &app,
        &client,
        post.clone(),
        "/api/auth/signup",
        credentials(" Ada@Example.com ", PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["is_admin"], false);
    let user_id = user["id"].as_str().unwrap().to_string();
    assert!(user_id.starts_with("usr_"), "{user}");
    let cookie = headers[SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("llm_gateway_session="), "{cookie}");
    let (status, me, _) = call(&app, &client, get.clone(), "/api/auth/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me, user);
    let (status, figures, _) = call(&app, &client, get.clone(), "/api/balance", None).await;
    assert_eq!(status, StatusCode::OK, "{figures}");
    assert_eq!(figures["balance"], 10_000_000_000i64);
    assert_eq!(figures["self_top_up"], true);

    // Test-mode credit: a number or a decimal string of USD.
    let (status, charged, _) = call(
        &app,
        &client,
        post.clone(),
        "/api/balance/charge",
        Some(json!({"amount": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{charged}");
    assert_eq!(charged["balance"], 15_000_000_000i64);
    let (_, charged, _) = call(
        &app,
        &client,
        post.clone(),
        "/api/balance/charge",
        Some(json!({"amount": "0.25"})),
    )
    .await;
    assert_eq!(charged["balance"], 15_250_000_000i64);

    // A key: its secret once, then only its prefix.
    let (status, created, _) = call(
        &app,
        &client,
        post.clone(),
        "/api/keys",
        Some(json!({"name": " script "})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    let key_id = created["key"]["id"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("llm_sk_") && secret.len() == 47,
        "{created}"
    );
    assert_eq!(created["key"]["name"], "script");
    assert_eq!(created["key"]["status"], "Active");
    assert!(secret.starts_with(created["key"]["prefix"].as_str().unwrap()));
    let (status, keys, _) = call(&app, &client, get.clone(), "/api/keys", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0], created["key"]);
    assert!(!keys.to_string().contains(&secret));

    // The key works on the proxy, and the request is billed and listed.
    let response = app.chat(&secret, &hello()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let records = app.usage_records(1).await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert!(record.cost > 0);
    assert_eq!(record.key_id.as_deref(), Some(key_id.as_str()));
    let expected = 15_250_000_000i64 - record.cost;
    let mut figures = Value::Null;
    for _ in 0..200 {
        figures = call(&app, &client, get.clone(), "/api/balance", None)
            .await
            .1;
        if figures["balance"] == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(figures["balance"], expected, "{figures}");
    assert_eq!(figures["requests_month"], 1);
    assert_eq!(figures["spend_month"], record.cost);
    let (status, usage, _) = call(&app, &client, get.clone(), "/api/usage", None).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    let rows = usage["rows"]["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{usage}");
    assert_eq!(rows[0]["id"], record.id.as_str());
    assert_eq!(rows[0]["cost"], record.cost);
    assert_eq!(rows[0]["prompt_tokens"], record.prompt_tokens);
    assert_eq!(rows[0]["key_prefix"], created["key"]["prefix"]);
    assert_eq!(usage["rows"]["page"], 0);
    assert_eq!(usage["rows"]["has_more"], false);
    assert_eq!(usage["keys"][0][0], key_id.as_str());
    assert_eq!(usage["models"], json!([record.model]));

    // The usage page's filters and paging, from the query string.
    let model = record.model.clone().unwrap();
    for (query, count) in [
        (format!("?model={model}&key={key_id}"), 1),
        ("?model=openai:other".to_string(), 0),
        ("?key=key_other".to_string(), 0),
        ("?from=2000-01-01&to=2000-01-02".to_string(), 0),
        ("?page=1".to_string(), 0),
    ] {
        let (status, usage, _) = call(
            &app,
            &client,
            get.clone(),
            &format!("/api/usage{query}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{query}: {usage}");
        assert_eq!(
            usage["rows"]["items"].as_array().unwrap().len(),
            count,
            "{query}"
        );
    }

    // Deleting the key revokes it at once.
    let path = format!("/api/keys/{key_id}");
    let (status, body, _) = call(&app, &client, delete.clone(), &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        app.chat(&secret, &hello()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, body, _) = call(&app, &client, delete.clone(), &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_with(&body, "No active key with this id.");
    let (_, keys, _) = call(&app, &client, get.clone(), "/api/keys", None).await;
    assert_eq!(keys[0]["status"], "Revoked");

    // Signing out ends the session on the server; signing in starts another.
    let (status, _, _) = call(&app, &client, post.clone(), "/api/auth/signout", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = call(&app, &client, get.clone(), "/api/auth/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    error_with(&body, "Please sign in.");
    let (status, body, _) = call(&app, &client, get.clone(), "/api/keys", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, again, _) = call(
        &app,
        &client,
        post.clone(),
        "/api/auth/signin",
        credentials("ADA@example.com", PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], user_id.as_str());
    let (status, me, _) = call(&app, &client, get, "/api/auth/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], user_id.as_str());
    app.stop().await;
}

async fn without_a_session_they_answer_401(backend: Backend) {
    let app = app(backend).await;
    // A key of someone's, to show a signed-out caller cannot delete it.
    let owner = app.client();
    call(
        &app,
        &owner,
        Method::POST,
        "/api/auth/signup",
        credentials("owner@example.com", PASSWORD),
    )
    .await;
    let (_, created, _) = call(
        &app,
        &owner,
        Method::POST,
        "/api/keys",
        Some(json!({"name": "k"})),
    )
    .await;
    let key_path = format!("/api/keys/{}", created["key"]["id"].as_str().unwrap());
    let stranger = app.client();
    for (method, path) in [
        (Method::GET, "/api/auth/me"),
        (Method::GET, "/api/keys"),
        (Method::POST, "/api/keys"),
        (Method::DELETE, key_path.as_str()),
        (Method::GET, "/api/balance"),
        (Method::POST, "/api/balance/charge"),
        (Method::GET, "/api/usage"),
    ] {
        let body = (method == Method::POST).then(|| json!({"name": "x", "amount": 5}));
        let (status, error, _) = call(&app, &stranger, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let error = error_with(&error, "Please sign in.");
        assert_eq!(error["type"], "authentication_error");
    }
    // A made-up cookie is no session either.
    let (status, _, _) = send(
        reqwest::Client::new()
            .get(app.url("/api/auth/me"))
            .header("cookie", "llm_gateway_session=forged"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The owner's key is untouched.
    let (_, keys, _) = call(&app, &owner, Method::GET, "/api/keys", None).await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["status"], "Active");
    app.stop().await;
}

async fn cross_origin_changes_are_refused(backend: Backend) {
    let app = app(backend).await;
    let client = app.client();
    let evil = |method: Method, path: &str| {
        client
            .request(method, app.url(path))
            .header("origin", "https://evil.example")
    };
    // Not even an account: sign-up from another site is refused.
    let (status, body, _) = send(
        evil(Method::POST, "/api/auth/signup")
            .json(&json!({"email": "csrf@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_with(&body, "Cross-origin requests are not allowed.");
    let (status, _, _) = call(
        &app,
        &client,
        Method::POST,
        "/api/auth/signin",
        credentials("csrf@example.com", PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no account was made");

    call(
        &app,
        &client,
        Method::POST,
        "/api/auth/signup",
        credentials("victim@example.com", PASSWORD),
    )
    .await;
    let (_, created, _) = call(
        &app,
        &client,
        Method::POST,
        "/api/keys",
        Some(json!({"name": "mine"})),
    )
    .await;
    let key_path = format!("/api/keys/{}", created["key"]["id"].as_str().unwrap());
    let writes = [
        evil(Method::POST, "/api/keys").json(&json!({"name": "stolen"})),
        evil(Method::DELETE, &key_path),
        evil(Method::POST, "/api/balance/charge").json(&json!({"amount": 5})),
        evil(Method::POST, "/api/auth/signout"),
        client
            .post(app.url("/api/keys"))
            .header("sec-fetch-site", "cross-site")
            .json(&json!({"name": "stolen"})),
    ];
    for request in writes {
        let (status, body, _) = send(request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        error_with(&body, "Cross-origin requests are not allowed.");
    }
    // Nothing changed, and the session is still there.
    let (status, keys, _) = call(&app, &client, Method::GET, "/api/keys", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["status"], "Active");
    let (_, figures, _) = call(&app, &client, Method::GET, "/api/balance", None).await;
    assert_eq!(figures["balance"], 10_000_000_000i64);
    // The same call from the gateway's own origin works.
    let (status, _, _) = send(
        client
            .post(app.url("/api/keys"))
            .header("origin", app.base.as_str())
            .json(&json!({"name": "second"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}

async fn sign_in_is_throttled_like_the_form(backend: Backend) {
    let app = app(backend).await;
    call(
        &app,
        &app.client(),
        Method::POST,
        "/api/auth/signup",
        credentials("target@example.com", PASSWORD),
    )
    .await;
    let client = app.client();
    for _ in 0..5 {
        let (status, body, _) = call(
            &app,
            &client,
            Method::POST,
            "/api/auth/signin",
            credentials("target@example.com", "guess-guess"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        error_with(&body, "Invalid email or password.");
    }
    // Even the right password is refused while throttled, on both doors.
    let (status, body, headers) = call(
        &app,
        &client,
        Method::POST,
        "/api/auth/signin",
        credentials("target@example.com", PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Too many failed sign-in attempts."));
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let retry_after: u64 = headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
    let (status, _) = app
        .rpc(
            &client,
            "sign_in",
            &[("email", "target@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the form's count");
    let (status, body, _) = call(&app, &client, Method::GET, "/api/auth/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Once the window has passed, the right password works again.
    app.clock().advance(15 * 60 * 1000 + 1000);
    let (status, body, _) = call(
        &app,
        &client,
        Method::POST,
        "/api/auth/signin",
        credentials("target@example.com", PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

async fn errors_are_the_forms_in_openai_shape(backend: Backend) {
    // Payments are off here: no self-service credit.
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| use_mock(c, &mock)).await;
    let client = app.client();
    let post = Method::POST;
    for (body, param, message) in [
        (
            json!({"email": "nobody", "password": PASSWORD}),
            "email",
            "Enter a valid email address.",
        ),
        (
            json!({"email": "a@example.com", "password": "short"}),
            "password",
            "Use a password of at least 8 characters.",
        ),
        (
            json!({"password": PASSWORD}),
            "email",
            "Enter a valid email address.",
        ),
    ] {
        let (status, error, _) =
            call(&app, &client, post.clone(), "/api/auth/signup", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error = error_with(&error, message);
        assert_eq!(error["param"], param);
        assert_eq!(error["type"], "invalid_request_error");
    }
    let (status, body, _) = send(
        client
            .post(app.url("/api/auth/signup"))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_request");
    let signup = credentials("taken@example.com", PASSWORD);
    let (status, _, _) = call(
        &app,
        &client,
        post.clone(),
        "/api/auth/signup",
        signup.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body, _) = call(
        &app,
        &app.client(),
        post.clone(),
        "/api/auth/signup",
        signup,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    error_with(&body, "An account with this email already exists.");

    // Keys need a name; charges need test-mode payments.
    let (status, body, _) = call(
        &app,
        &client,
        post.clone(),
        "/api/keys",
        Some(json!({"name": "  "})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_with(&body, "Give the key a name.")["param"], "name");
    let (status, body, _) = call(
        &app,
        &client,
        post.clone(),
        "/api/balance/charge",
        Some(json!({"amount": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_with(
        &body,
        "Adding credit yourself is not enabled on this gateway; ask an operator.",
    );
    let (_, figures, _) = call(&app, &client, Method::GET, "/api/balance", None).await;
    assert_eq!(figures["balance"], 10_000_000_000i64);
    assert_eq!(figures["self_top_up"], false);
    let (status, body, _) = call(
        &app,
        &client,
        Method::GET,
        "/api/usage?from=yesterday",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_with(&body, "Use a date like 2026-11-23.")["param"],
        "from"
    );
    let (status, body, _) = call(&app, &client, Method::GET, "/api/usage?page=-1", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid query"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_are_checked_like_the_balance_form() {
    let app = app(Backend::Sqlite).await;
    let client = app.client();
    call(
        &app,
        &client,
        Method::POST,
        "/api/auth/signup",
        credentials("payer@example.com", PASSWORD),
    )
    .await;
    for amount in [
        json!(0),
        json!(0.001),
        json!(1001),
        json!("five"),
        json!(null),
    ] {
        let (status, body, _) = call(
            &app,
            &client,
            Method::POST,
            "/api/balance/charge",
            Some(json!({"amount": amount})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{amount}");
        let error = error_with(&body, "Enter an amount from 0.01 to 1000 USD.");
        assert_eq!(error["param"], "amount");
    }
    let (status, charged, _) = call(
        &app,
        &client,
        Method::POST,
        "/api/balance/charge",
        Some(json!({"amount": 1000})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(charged["balance"], 1_010_000_000_000i64);
    app.stop().await;
}

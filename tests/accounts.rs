//! Accounts, sessions and API keys through the dashboard's server functions,
//! against a real server on SQLite and PostgreSQL.
#![cfg(feature = "ssr")]

mod common;

use common::{Backend, TestApp};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::Value;

on_both_backends!(
    sign_up_validates_input,
    sign_up_signs_in_and_stores_argon2id,
    sign_in_errors_do_not_reveal_accounts,
    sign_in_rotates_the_session_id,
    sign_out_destroys_the_server_session,
    failed_sign_ins_are_throttled_per_account,
    failed_sign_ins_are_throttled_per_ip,
    session_cookie_flags,
    cross_origin_server_function_calls_are_refused,
    protected_pages_redirect_to_login,
    keys_are_shown_once_and_listed_by_prefix,
    keys_of_other_users_cannot_be_listed_or_revoked,
    revoked_keys_stay_revoked,
    health_reports_the_database,
);

fn error_message(body: &Value) -> String {
    // AppError is externally tagged: {"Variant": ...}.
    let (_, inner) = body
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("an error body");
    inner
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| inner.as_str())
        .unwrap_or_default()
        .to_string()
}

async fn sign_up_validates_input(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = app.client();
    let cases: [(&str, &str, &str); 3] = [
        ("not-an-email", "long enough password", "valid email"),
        ("", "long enough password", "valid email"),
        ("ada@example.com", "short", "at least 8"),
    ];
    for (email, password, expected) in cases {
        let (status, body) = app
            .rpc(
                &client,
                "sign_up",
                &[("email", email), ("password", password)],
            )
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{email}/{password}: {body}"
        );
        assert!(error_message(&body).contains(expected), "{body}");
    }
    app.sign_up(&client, "ada@example.com").await;
    let (status, body) = app
        .rpc(
            &app.client(),
            "sign_up",
            &[
                ("email", "ADA@example.com "),
                ("password", "another password"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    app.stop().await;
}

async fn sign_up_signs_in_and_stores_argon2id(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = app.client();
    let user = app.sign_up(&client, "Grace@Example.com").await;
    assert_eq!(user["email"], "grace@example.com");
    let (status, me) = app.rpc(&client, "me", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "grace@example.com");

    let db = llm_gateway::db::Db::connect(&app.db.url).await.unwrap();
    let hash: String = llm_gateway::with_pool!(&db, pool => {
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
            .bind("grace@example.com")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    db.close().await;
    app.stop().await;
}

async fn sign_in_errors_do_not_reveal_accounts(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.sign_up(&app.client(), "known@example.com").await;
    let client = app.client();
    let (unknown_status, unknown) = app
        .rpc(
            &client,
            "sign_in",
            &[("email", "nobody@example.com"), ("password", "whatever123")],
        )
        .await;
    let (wrong_status, wrong) = app
        .rpc(
            &client,
            "sign_in",
            &[
                ("email", "known@example.com"),
                ("password", "wrong password"),
            ],
        )
        .await;
    assert_eq!(unknown_status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown, wrong);
    assert_eq!(error_message(&wrong), "Invalid email or password.");

    let (status, body) = app
        .rpc(
            &client,
            "sign_in",
            &[
                ("email", " KNOWN@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email"], "known@example.com");
    app.stop().await;
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("llm_gateway_session="))
        .map(str::to_owned)
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

/// Posts a server function with an explicit cookie (no cookie jar), returning
/// the status, the body, and the session Set-Cookie if any.
async fn rpc_with_cookie(
    app: &TestApp,
    name: &str,
    form: &str,
    cookie: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let mut request = reqwest::Client::new()
        .post(app.url(&format!("/rpc/{name}")))
        .header(ACCEPT, "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string());
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let set_cookie = session_cookie(response.headers());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, set_cookie)
}

async fn sign_in_rotates_the_session_id(backend: Backend) {
    let app = TestApp::start(backend).await;
    let form = "email=rot%40example.com&password=correct+horse+battery";
    let (_, _, first) = rpc_with_cookie(&app, "sign_up", form, None).await;
    let first = cookie_pair(&first.expect("sign-up sets a session cookie"));
    let (status, _, second) = rpc_with_cookie(&app, "sign_in", form, Some(&first)).await;
    assert_eq!(status, StatusCode::OK);
    let second = cookie_pair(&second.expect("sign-in sets a session cookie"));
    assert_ne!(first, second, "the session id must change at sign-in");

    let (_, me_old, _) = rpc_with_cookie(&app, "me", "", Some(&first)).await;
    assert_eq!(me_old, Value::Null, "the old session id must not work");
    let (_, me_new, _) = rpc_with_cookie(&app, "me", "", Some(&second)).await;
    assert_eq!(me_new["email"], "rot@example.com");
    app.stop().await;
}

async fn sign_out_destroys_the_server_session(backend: Backend) {
    let app = TestApp::start(backend).await;
    let form = "email=out%40example.com&password=correct+horse+battery";
    let (_, _, cookie) = rpc_with_cookie(&app, "sign_up", form, None).await;
    let cookie = cookie_pair(&cookie.unwrap());
    let (status, _, _) = rpc_with_cookie(&app, "sign_out", "", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    // Replaying the old cookie must not sign anyone in.
    let (_, me, _) = rpc_with_cookie(&app, "me", "", Some(&cookie)).await;
    assert_eq!(me, Value::Null);
    let (status, _, _) = rpc_with_cookie(&app, "list_keys", "", Some(&cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn failed_sign_ins_are_throttled_per_account(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.sign_up(&app.client(), "target@example.com").await;
    let client = app.client();
    for _ in 0..5 {
        let (status, _) = app
            .rpc(
                &client,
                "sign_in",
                &[("email", "target@example.com"), ("password", "guess-guess")],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while throttled.
    let (status, body) = app
        .rpc(
            &client,
            "sign_in",
            &[
                ("email", "target@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(error_message(&body).contains("Too many failed sign-in attempts"));
    // Other accounts are unaffected.
    app.sign_up(&app.client(), "other@example.com").await;
    let (status, _) = app
        .rpc(
            &client,
            "sign_in",
            &[
                ("email", "other@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

async fn failed_sign_ins_are_throttled_per_ip(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.sign_up(&app.client(), "victim@example.com").await;
    let client = app.client();
    for i in 0..20 {
        let email = format!("probe{i}@example.com");
        let (status, _) = app
            .rpc(
                &client,
                "sign_in",
                &[("email", &email), ("password", "guess-guess")],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = app
        .rpc(
            &client,
            "sign_in",
            &[
                ("email", "victim@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

async fn session_cookie_flags(backend: Backend) {
    let app = TestApp::start(backend.clone()).await;
    let (_, _, cookie) = rpc_with_cookie(
        &app,
        "sign_up",
        "email=c%40example.com&password=12345678",
        None,
    )
    .await;
    let cookie = cookie.unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http must not set Secure: {cookie}"
    );
    assert!(cookie.contains("Path=/"), "{cookie}");
    app.stop().await;

    let app = TestApp::start_with(backend, |c| {
        c.public_url = Some("https://gateway.example".into())
    })
    .await;
    let (_, _, cookie) = rpc_with_cookie(
        &app,
        "sign_up",
        "email=c%40example.com&password=12345678",
        None,
    )
    .await;
    let cookie = cookie.unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    app.stop().await;
}

async fn cross_origin_server_function_calls_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = app.client();
    app.sign_up(&client, "csrf@example.com").await;

    let mut evil = HeaderMap::new();
    evil.insert("origin", HeaderValue::from_static("https://evil.example"));
    let (status, body) = app
        .rpc_with(&client, "create_key", &[("name", "stolen")], evil)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let mut cross_site = HeaderMap::new();
    cross_site.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    let (status, _) = app.rpc_with(&client, "sign_out", &[], cross_site).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Nothing was created; the same call from our own origin works.
    let (_, keys) = app.rpc(&client, "list_keys", &[]).await;
    assert_eq!(keys.as_array().unwrap().len(), 0);
    let mut same = HeaderMap::new();
    same.insert("origin", HeaderValue::from_str(&app.base).unwrap());
    let (status, _) = app
        .rpc_with(&client, "create_key", &[("name", "mine")], same)
        .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

async fn protected_pages_redirect_to_login(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = app.client();
    for page in ["/dashboard", "/dashboard/keys"] {
        let response = client
            .get(app.url(page))
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FOUND, "{page}");
        let location = response.headers()[LOCATION].to_str().unwrap();
        assert_eq!(location, format!("/login?next={page}"));
    }
    app.sign_up(&client, "page@example.com").await;
    let response = client
        .get(app.url("/dashboard/keys"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Key name") && html.contains("page@example.com"),
        "{html}"
    );

    // A plain form post (no JavaScript) signs in and lands on `next`.
    let form = "email=page%40example.com&password=correct+horse+battery&next=";
    let response = html_form_post(&app, "sign_in", &format!("{form}%2Fdashboard%2Fkeys")).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[LOCATION], "/dashboard/keys");
    // ...but never off-site.
    let response = html_form_post(&app, "sign_in", &format!("{form}%2F%2Fevil.example")).await;
    assert_eq!(response.headers()[LOCATION], "/dashboard");
    app.stop().await;
}

/// Posts a server function as a plain HTML form does, without JavaScript.
async fn html_form_post(app: &TestApp, name: &str, form: &str) -> reqwest::Response {
    app.client()
        .post(app.url(&format!("/rpc/{name}")))
        .header(ACCEPT, "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap()
}

async fn keys_are_shown_once_and_listed_by_prefix(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = app.client();
    app.sign_up(&client, "keys@example.com").await;
    let (status, created) = app
        .rpc(&client, "create_key", &[("name", "  production ")])
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("llm_sk_") && secret.len() >= 7 + 32,
        "{secret}"
    );
    assert!(secret[7..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(created["key"]["name"], "production");
    let prefix = created["key"]["prefix"].as_str().unwrap();
    assert!(secret.starts_with(prefix) && prefix.len() < secret.len());

    let (_, keys) = app.rpc(&client, "list_keys", &[]).await;
    let listed = keys.to_string();
    assert!(listed.contains(prefix), "{listed}");
    assert!(
        !listed.contains(secret),
        "the list must never carry the secret"
    );
    assert_eq!(keys[0]["status"], "Active");
    assert_eq!(keys[0]["last_used_at"], Value::Null);

    let (status, body) = app.rpc(&client, "create_key", &[("name", "   ")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The database holds only the hash.
    let db = llm_gateway::db::Db::connect(&app.db.url).await.unwrap();
    let stored: Vec<(String, String)> = llm_gateway::with_pool!(&db, pool => {
        sqlx::query_as("SELECT key_hash, key_prefix FROM api_keys").fetch_all(pool).await.unwrap()
    });
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, llm_gateway::auth::api_key::hash(secret));
    assert!(!stored[0].0.contains(secret));
    db.close().await;
    app.stop().await;
}

async fn keys_of_other_users_cannot_be_listed_or_revoked(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = app.client();
    let mallory = app.client();
    app.sign_up(&alice, "alice@example.com").await;
    app.sign_up(&mallory, "mallory@example.com").await;
    let (_, created) = app
        .rpc(&alice, "create_key", &[("name", "alice-key")])
        .await;
    let alice_key = created["key"]["id"].as_str().unwrap().to_string();

    let (_, mallory_keys) = app.rpc(&mallory, "list_keys", &[]).await;
    assert_eq!(mallory_keys.as_array().unwrap().len(), 0);

    let (status, body) = app.rpc(&mallory, "revoke_key", &[("id", &alice_key)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = app
        .rpc(&mallory, "revoke_key", &[("id", "key_doesnotexist")])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .rpc(&app.client(), "revoke_key", &[("id", &alice_key)])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (_, keys) = app.rpc(&alice, "list_keys", &[]).await;
    assert_eq!(keys[0]["status"], "Active", "alice's key must be untouched");
    app.stop().await;
}

async fn revoked_keys_stay_revoked(backend: Backend) {
    let app = TestApp::start(backend).await;
    let client = app.client();
    app.sign_up(&client, "rev@example.com").await;
    let (_, created) = app.rpc(&client, "create_key", &[("name", "temp")]).await;
    let id = created["key"]["id"].as_str().unwrap().to_string();
    let (status, _) = app.rpc(&client, "revoke_key", &[("id", &id)]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, keys) = app.rpc(&client, "list_keys", &[]).await;
    assert_eq!(keys[0]["status"], "Revoked");
    let (status, _) = app.rpc(&client, "revoke_key", &[("id", &id)]).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "revoking twice is not a success"
    );
    app.stop().await;
}

async fn health_reports_the_database(backend: Backend) {
    let is_postgres = matches!(backend, Backend::Postgres { .. });
    let app = TestApp::start(backend).await;
    let response = reqwest::get(app.url("/health")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["database"]["status"], "ok");
    assert_eq!(
        body["database"]["backend"],
        if is_postgres { "postgres" } else { "sqlite" }
    );

    if is_postgres {
        // Make the database unreachable: refuse and cut every connection.
        let name = app.db.url.rsplit('/').next().unwrap().to_string();
        let admin_url = app.db.url.replace(&name, "postgres");
        let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            .execute(&admin)
            .await
            .unwrap();
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .execute(&admin)
            .await
            .unwrap();
        let response = reqwest::get(app.url("/health")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["database"]["status"], "unreachable");
        sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    }
    app.stop().await;
}

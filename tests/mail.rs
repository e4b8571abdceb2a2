//! Mail, end to end on SQLite and PostgreSQL, caught by an SMTP sink:
//! address verification, password reset (and the sessions it signs out),
//! account changes, `require_verified_email`, the outbox's retries, and
//! the low-balance and budget alerts.
#![cfg(feature = "ssr")]

mod common;

use common::mail::{assert_no_more_mail, link_in, start_sink, use_sink, wait_for_mail};
use common::{send, start_mock, use_mock, Backend, TestApp};
use llm_gateway::mock::smtp::SmtpSink;
use llm_gateway::server_fns::account::RESET_REQUESTED;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both_backends!(
    a_verification_link_works_once_and_for_a_day,
    a_password_reset_signs_out_every_session_and_works_once,
    a_reset_link_expires_after_an_hour,
    forgot_password_reveals_no_account,
    changing_the_password_signs_out_the_other_sessions,
    changing_the_email_needs_the_new_address_verified,
    deleting_the_account_ends_it,
    unverified_accounts_cannot_create_keys_when_verification_is_required,
    a_mail_the_server_refuses_is_sent_again,
    a_low_balance_mail_goes_once_per_crossing,
    budget_alerts_go_at_80_and_100_percent_once_each,
    the_monthly_cap_a_user_sets_alerts_too,
    old_mail_and_expired_links_are_pruned,
);

const PASSWORD: &str = "correct horse battery";
const HOUR_MS: i64 = 3_600_000;

/// A gateway sending its mail to a fresh sink, after `customize`.
async fn app_with(
    backend: Backend,
    customize: impl FnOnce(&mut llm_gateway::config::Config),
) -> (TestApp, SmtpSink) {
    let sink = start_sink().await;
    let app = TestApp::start_with(backend, |config| {
        use_sink(config, &sink);
        customize(config);
    })
    .await;
    (app, sink)
}

async fn app(backend: Backend) -> (TestApp, SmtpSink) {
    app_with(backend, |_| {}).await
}

/// Signs `email` up on a new client; returns the client and the user's id.
async fn signed_up(app: &TestApp, email: &str) -> (reqwest::Client, String) {
    let client = app.client();
    let user = app.sign_up(&client, email).await;
    (client, user["id"].as_str().unwrap().to_string())
}

/// Signs `email` in with `password` on a new client; its status.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> (StatusCode, reqwest::Client) {
    let client = app.client();
    let (status, _) = app
        .rpc(
            &client,
            "sign_in",
            &[("email", email), ("password", password)],
        )
        .await;
    (status, client)
}

/// `GET /api/auth/me` on `client`: 200 signed in, 401 signed out.
async fn me_status(app: &TestApp, client: &reqwest::Client) -> StatusCode {
    send(client.get(app.url("/api/auth/me"))).await.0
}

/// The account page's figures on `client`.
async fn account(app: &TestApp, client: &reqwest::Client) -> Value {
    let (status, body) = app.rpc(client, "account_overview", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The token of the latest mail to `to` about `subject`, waiting for the
/// `count`-th one.
async fn token_of(sink: &SmtpSink, to: &str, subject: &str, count: usize) -> String {
    let mails = wait_for_mail(sink, to, subject, count).await;
    link_in(&mails[count - 1]).1
}

async fn a_verification_link_works_once_and_for_a_day(backend: Backend) {
    let (app, sink) = app(backend).await;
    let (client, _) = signed_up(&app, "ada@example.com").await;
    let mails = wait_for_mail(&sink, "ada@example.com", "Verify your email", 1).await;
    let (path, token) = link_in(&mails[0]);
    assert!(path.starts_with("/verify-email?token="), "{path}");
    assert_eq!(account(&app, &client).await["email_verified"], false);

    // The page the link opens renders, and confirming works once.
    let page = app.client().get(app.url(&path)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let anonymous = app.client();
    let (status, body) = app
        .rpc(&anonymous, "confirm_email", &[("token", &token)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(account(&app, &client).await["email_verified"], true);
    let (status, body) = app
        .rpc(&anonymous, "confirm_email", &[("token", &token)])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a second use: {body}");

    // A link is good for 24 hours, not more; a new one can be asked for.
    let (late, _) = signed_up(&app, "late@example.com").await;
    let stale = token_of(&sink, "late@example.com", "Verify your email", 1).await;
    app.clock().advance(24 * HOUR_MS + 1_000);
    let (status, _) = app
        .rpc(&anonymous, "confirm_email", &[("token", &stale)])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an expired link");
    assert_eq!(account(&app, &late).await["email_verified"], false);
    let (status, body) = app.rpc(&late, "resend_verification", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fresh = token_of(&sink, "late@example.com", "Verify your email", 2).await;
    assert_ne!(fresh, stale);
    let (status, _) = app
        .rpc(&anonymous, "confirm_email", &[("token", &fresh)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account(&app, &late).await["email_verified"], true);
    let (status, _) = app.rpc(&late, "resend_verification", &[]).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "nothing to verify any more"
    );
    app.stop().await;
}

async fn a_password_reset_signs_out_every_session_and_works_once(backend: Backend) {
    let (app, sink) = app(backend).await;
    let (first, _) = signed_up(&app, "ada@example.com").await;
    let (status, second) = sign_in(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me_status(&app, &first).await, StatusCode::OK);
    assert_eq!(me_status(&app, &second).await, StatusCode::OK);

    let stranger = app.client();
    let (status, body) = app
        .rpc(
            &stranger,
            "forgot_password",
            &[("email", "Ada@Example.com")],
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, Some(RESET_REQUESTED))
    );
    let mails = wait_for_mail(&sink, "ada@example.com", "Reset your password", 1).await;
    let (path, token) = link_in(&mails[0]);
    assert!(path.starts_with("/reset-password?token="), "{path}");
    let page = app.client().get(app.url(&path)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);

    let new_password = "a brand new secret";
    let (status, body) = app
        .rpc(
            &stranger,
            "reset_password",
            &[("token", &token), ("password", "short")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "too short: {body}");
    let (status, body) = app
        .rpc(
            &stranger,
            "reset_password",
            &[("token", &token), ("password", new_password)],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the short try left the link usable: {body}"
    );
    // The playground, which spends, refuses the old session too.
    let playground = first
        .post(app.url("/rpc/playground/chat"))
        .header("origin", &app.base)
        .json(&json!({"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(playground.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&app, &first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&app, &second).await, StatusCode::UNAUTHORIZED);
    let dashboard = first.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(
        dashboard.status(),
        StatusCode::FOUND,
        "the pages sign it out too"
    );

    let (status, _) = app
        .rpc(
            &stranger,
            "reset_password",
            &[("token", &token), ("password", "yet another one")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a link works once");
    assert_eq!(
        sign_in(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, fresh) = sign_in(&app, "ada@example.com", new_password).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me_status(&app, &fresh).await, StatusCode::OK);
    app.stop().await;
}

async fn a_reset_link_expires_after_an_hour(backend: Backend) {
    let (app, sink) = app(backend).await;
    signed_up(&app, "ada@example.com").await;
    let anonymous = app.client();
    let ask = async || {
        let (status, _) = app
            .rpc(
                &anonymous,
                "forgot_password",
                &[("email", "ada@example.com")],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    };
    let reset = async |token: &str| {
        app.rpc(
            &anonymous,
            "reset_password",
            &[("token", token), ("password", "new password 1")],
        )
        .await
        .0
    };
    ask().await;
    let expired = token_of(&sink, "ada@example.com", "Reset your password", 1).await;
    app.clock().advance(HOUR_MS + 1_000);
    assert_eq!(reset(&expired).await, StatusCode::BAD_REQUEST);

    ask().await;
    let first = token_of(&sink, "ada@example.com", "Reset your password", 2).await;
    ask().await;
    let latest = token_of(&sink, "ada@example.com", "Reset your password", 3).await;
    assert_eq!(
        reset(&first).await,
        StatusCode::BAD_REQUEST,
        "a newer link replaces it"
    );
    app.clock().advance(HOUR_MS - 60_000);
    assert_eq!(
        reset(&latest).await,
        StatusCode::OK,
        "still valid after 59 minutes"
    );
    assert_eq!(
        sign_in(&app, "ada@example.com", "new password 1").await.0,
        StatusCode::OK
    );
    app.stop().await;
}

async fn forgot_password_reveals_no_account(backend: Backend) {
    let (app, sink) = app(backend).await;
    signed_up(&app, "ada@example.com").await;
    let anonymous = app.client();
    let ask = async |email: &str| {
        app.rpc(&anonymous, "forgot_password", &[("email", email)])
            .await
    };
    for _ in 0..3 {
        let known = ask("ada@example.com").await;
        let unknown = ask("nobody@example.com").await;
        assert_eq!(known, unknown, "the same answer for an unknown address");
        assert_eq!(known.0, StatusCode::OK);
    }
    // The fourth request for an address is refused, known or not.
    let (known, unknown) = (
        ask("ada@example.com").await,
        ask("nobody@example.com").await,
    );
    assert_eq!(known.0, StatusCode::TOO_MANY_REQUESTS, "{known:?}");
    assert_eq!(known, unknown);
    wait_for_mail(&sink, "ada@example.com", "Reset your password", 3).await;
    assert_no_more_mail(&sink, "ada@example.com", "Reset your password", 3).await;
    assert!(sink.messages_to("nobody@example.com").is_empty());
    app.stop().await;
}

async fn changing_the_password_signs_out_the_other_sessions(backend: Backend) {
    let (app, _sink) = app(backend).await;
    let (this, _) = signed_up(&app, "ada@example.com").await;
    let (_, other) = sign_in(&app, "ada@example.com", PASSWORD).await;
    let change = |current: &'static str| {
        [
            ("current_password", current),
            ("new_password", "a changed password"),
        ]
    };
    let (status, body) = app
        .rpc(&this, "change_password", &change("wrong password"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        me_status(&app, &other).await,
        StatusCode::OK,
        "nothing changed yet"
    );

    let (status, body) = app.rpc(&this, "change_password", &change(PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        me_status(&app, &this).await,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(me_status(&app, &other).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        sign_in(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in(&app, "ada@example.com", "a changed password")
            .await
            .0,
        StatusCode::OK
    );
    app.stop().await;
}

async fn changing_the_email_needs_the_new_address_verified(backend: Backend) {
    let (app, sink) = app(backend).await;
    let (client, _) = signed_up(&app, "ada@example.com").await;
    signed_up(&app, "taken@example.com").await;
    let change = |email: &'static str, password: &'static str| {
        [("new_email", email), ("password", password)]
    };

    let (status, _) = app
        .rpc(
            &client,
            "change_email",
            &change("new@example.com", "wrong one"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the password is needed");
    let (status, body) = app
        .rpc(
            &client,
            "change_email",
            &change("Taken@example.com", PASSWORD),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body.to_string()
            .contains("An account with this email already exists."),
        "{body}"
    );

    let (status, body) = app
        .rpc(
            &client,
            "change_email",
            &change("New@Example.com", PASSWORD),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = token_of(&sink, "new@example.com", "Confirm your new email", 1).await;
    assert_eq!(
        account(&app, &client).await["email"],
        "ada@example.com",
        "not before the link"
    );

    let (status, body) = app
        .rpc(&app.client(), "confirm_email", &[("token", &token)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let now = account(&app, &client).await;
    assert_eq!(
        (now["email"].as_str(), now["email_verified"].as_bool()),
        (Some("new@example.com"), Some(true))
    );
    assert_eq!(
        sign_in(&app, "new@example.com", PASSWORD).await.0,
        StatusCode::OK
    );
    assert_eq!(
        sign_in(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

async fn deleting_the_account_ends_it(backend: Backend) {
    let mock = start_mock().await;
    let (app, _sink) = app_with(backend, |c| use_mock(c, &mock)).await;
    let (client, _) = signed_up(&app, "ada@example.com").await;
    let (status, created) = app.rpc(&client, "create_key", &[("name", "k")]).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let key = created["secret"].as_str().unwrap().to_string();
    let hello =
        json!({"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(app.chat(&key, &hello).await.status(), StatusCode::OK);

    let (status, _) = app
        .rpc(&client, "delete_account", &[("password", "wrong one")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        me_status(&app, &client).await,
        StatusCode::OK,
        "still there"
    );
    let (status, body) = app
        .rpc(&client, "delete_account", &[("password", PASSWORD)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(me_status(&app, &client).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        sign_in(&app, "ada@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.chat(&key, &hello).await.status(),
        StatusCode::UNAUTHORIZED,
        "its keys too"
    );
    app.stop().await;
}

async fn unverified_accounts_cannot_create_keys_when_verification_is_required(backend: Backend) {
    let (app, sink) = app_with(backend, |c| c.require_verified_email = true).await;
    let (client, _) = signed_up(&app, "ada@example.com").await;
    let (status, body) = app.rpc(&client, "create_key", &[("name", "k")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.to_string().contains("Verify your email address"),
        "{body}"
    );
    let (status, body) = send(
        client
            .post(app.url("/api/keys"))
            .json(&json!({"name": "k"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "email_not_verified", "{body}");
    assert_eq!(account(&app, &client).await["verification_required"], true);

    // An operator's key is not affected.
    let user_id = account_id(&app, &client).await;
    let (status, body) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": user_id})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let token = token_of(&sink, "ada@example.com", "Verify your email", 1).await;
    let (status, _) = app
        .rpc(&client, "confirm_email", &[("token", &token)])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.rpc(&client, "create_key", &[("name", "k")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(
        client
            .post(app.url("/api/keys"))
            .json(&json!({"name": "k2"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.stop().await;
}

/// The signed-in user's id, from `GET /api/auth/me`.
async fn account_id(app: &TestApp, client: &reqwest::Client) -> String {
    let (_, me) = send(client.get(app.url("/api/auth/me"))).await;
    me["id"].as_str().unwrap().to_string()
}

async fn a_mail_the_server_refuses_is_sent_again(backend: Backend) {
    let (app, sink) = app(backend).await;
    sink.fail_next(1);
    signed_up(&app, "ada@example.com").await;
    let db = app.database().await;
    let first_try = wait_until(|| async {
        let rows = llm_gateway::db::outbox::all(&db).await.unwrap();
        rows.into_iter()
            .find(|row| row.attempts == 1 && row.last_error.is_some())
    })
    .await;
    assert!(
        first_try.last_error.as_deref().unwrap().contains("451"),
        "{first_try:?}"
    );
    assert!(first_try.sent_at.is_none() && first_try.failed_at.is_none());
    assert!(sink.messages().is_empty());

    // The retry waits for its backoff (10 s), by the gateway's clock.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(sink.messages().is_empty(), "not before the backoff");
    app.clock().advance(10_000);
    wait_for_mail(&sink, "ada@example.com", "Verify your email", 1).await;
    let sent = wait_until(|| async {
        let rows = llm_gateway::db::outbox::all(&db).await.unwrap();
        rows.into_iter().find(|row| row.sent_at.is_some())
    })
    .await;
    assert_eq!(
        (sent.id, sent.attempts, sent.last_error),
        (first_try.id, 2, None)
    );
    assert_no_more_mail(&sink, "ada@example.com", "Verify your email", 1).await;
    db.close().await;
    app.stop().await;
}

/// Polls `probe` (up to 15 s) until it finds something.
async fn wait_until<T, F, Fut>(probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "waited in vain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A chat whose usage the mock reports as `prompt_tokens`: at the mock
/// catalog's price with the 20 % margin, 0.18 USD per million.
fn chat_costing(prompt_tokens: u64) -> Value {
    json!({"model": "openai:gpt-4o-mini", "max_tokens": 5,
           "messages": [{"role": "user", "content": format!("[mock prompt_tokens={prompt_tokens} completion_tokens=0]")}]})
}

async fn a_low_balance_mail_goes_once_per_crossing(backend: Backend) {
    let mock = start_mock().await;
    let (app, sink) = app_with(backend, |c| use_mock(c, &mock)).await;
    let (client, user_id) = signed_up(&app, "ada@example.com").await;
    let (_, created) = app.rpc(&client, "create_key", &[("name", "k")]).await;
    let key = created["secret"].as_str().unwrap().to_string();
    let (status, body) = app
        .rpc(&client, "set_low_balance_alert", &[("threshold", "9.50")])
        .await;
    assert_eq!(
        (status, body.clone()),
        (StatusCode::OK, json!(9_500_000_000i64)),
        "{body}"
    );
    let (_, current) = app.rpc(&client, "low_balance_alert", &[]).await;
    assert_eq!(current, json!(9_500_000_000i64));

    // 10.00 - 0.54 = 9.46: below 9.50, one mail.
    let spend = chat_costing(3_000_000);
    assert_eq!(app.chat(&key, &spend).await.status(), StatusCode::OK);
    let mails = wait_for_mail(&sink, "ada@example.com", "Your balance is low", 1).await;
    assert!(
        mails[0].text.contains("$9.46") && mails[0].text.contains("$9.50"),
        "{}",
        mails[0].text
    );
    // 8.92: still below, no new mail.
    assert_eq!(app.chat(&key, &spend).await.status(), StatusCode::OK);
    assert_no_more_mail(&sink, "ada@example.com", "Your balance is low", 1).await;

    // Back above (9.92) re-arms it; the next fall (9.38) mails again.
    let (status, body) = send(
        app.admin(Method::POST, &format!("/v1/users/{user_id}/credits"))
            .json(&json!({"amount": "1"})),
    )
    .await;
    assert!(status.is_success(), "{body}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_no_more_mail(&sink, "ada@example.com", "Your balance is low", 1).await;
    assert_eq!(app.chat(&key, &spend).await.status(), StatusCode::OK);
    wait_for_mail(&sink, "ada@example.com", "Your balance is low", 2).await;
    assert_no_more_mail(&sink, "ada@example.com", "Your balance is low", 2).await;

    // Turned off, it stays quiet.
    let (status, body) = app
        .rpc(&client, "set_low_balance_alert", &[("threshold", "")])
        .await;
    assert_eq!((status, body), (StatusCode::OK, Value::Null));
    app.stop().await;
}

async fn budget_alerts_go_at_80_and_100_percent_once_each(backend: Backend) {
    let mock = start_mock().await;
    let (app, sink) = app_with(backend, |c| use_mock(c, &mock)).await;
    let (_, user_id) = signed_up(&app, "ada@example.com").await;
    // A key with its own budget of $1, and the account's budget of $2.
    let (status, created) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": user_id, "key_name": "ci", "max_budget": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let (status, budget) = send(
        app.admin(Method::POST, "/v1/budgets")
            .json(&json!({"max_budget": "2"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{budget}");
    let (status, body) = send(
        app.admin(Method::PATCH, &format!("/v1/users/{user_id}"))
            .json(&json!({"budget_id": budget["budget_id"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // $0.90 of the key's $1 (90 %), 45 % of the account's $2.
    let spend = chat_costing(5_000_000);
    assert_eq!(app.chat(&key, &spend).await.status(), StatusCode::OK);
    let mails = wait_for_mail(
        &sink,
        "ada@example.com",
        "80% of the budget of your API key",
        1,
    )
    .await;
    assert!(
        mails[0].text.contains("$0.90 of its $1.00"),
        "{}",
        mails[0].text
    );
    assert_no_more_mail(&sink, "ada@example.com", "budget", 1).await;

    // $1.80: the key's budget is used up, the account's at 90 %.
    assert_eq!(app.chat(&key, &spend).await.status(), StatusCode::OK);
    wait_for_mail(
        &sink,
        "ada@example.com",
        "all of the budget of your API key",
        1,
    )
    .await;
    wait_for_mail(&sink, "ada@example.com", "80% of your account's budget", 1).await;
    // Nothing more fits the key's budget, and nothing is sent twice.
    assert_eq!(
        app.chat(&key, &spend).await.status(),
        StatusCode::PAYMENT_REQUIRED
    );
    assert_no_more_mail(&sink, "ada@example.com", "budget", 3).await;
    app.stop().await;
}

async fn the_monthly_cap_a_user_sets_alerts_too(backend: Backend) {
    let mock = start_mock().await;
    let (app, sink) = app_with(backend, |c| use_mock(c, &mock)).await;
    let (client, _) = signed_up(&app, "ada@example.com").await;
    let (status, created) = app.rpc(&client, "create_key", &[("name", "capped")]).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let key = created["secret"].as_str().unwrap().to_string();
    let id = created["key"]["id"].as_str().unwrap().to_string();
    let (status, body) = app
        .rpc(
            &client,
            "update_key_limits",
            &[("id", &id), ("monthly_cap", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // $0.90 of the $1 cap.
    assert_eq!(
        app.chat(&key, &chat_costing(5_000_000)).await.status(),
        StatusCode::OK
    );
    let mails = wait_for_mail(
        &sink,
        "ada@example.com",
        "80% of the monthly cap you set",
        1,
    )
    .await;
    assert!(
        mails[0].text.contains("$0.90 of its $1.00"),
        "{}",
        mails[0].text
    );
    assert_no_more_mail(&sink, "ada@example.com", "cap", 1).await;
    app.stop().await;
}

async fn old_mail_and_expired_links_are_pruned(backend: Backend) {
    use llm_gateway::db::{email_tokens, outbox};
    let (mut app, sink) = app_with(backend, |_| {}).await;
    signed_up(&app, "ada@example.com").await; // a verification mail and its link
    wait_for_mail(&sink, "ada@example.com", "", 1).await;
    let now = app.clock().now_ms();
    app.stop_server().await; // no sender from here on
    let db = app.database().await;
    let day = 24 * HOUR_MS;
    let unsent = outbox::NewMail {
        to: "bob@example.com",
        subject: "s",
        body: "b",
    };
    outbox::insert(&db, unsent, now - 90 * day).await.unwrap();
    let queued = outbox::all(&db).await.unwrap();
    let verification = queued
        .iter()
        .find(|m| m.recipient == "ada@example.com")
        .unwrap();
    let sent_at = verification.sent_at.expect("sent");
    // Sent mail goes once older than the cutoff; unsent mail stays.
    assert_eq!(outbox::prune(&db, sent_at).await.unwrap(), 0);
    assert_eq!(outbox::prune(&db, now + 60 * day).await.unwrap(), 1);
    let left = outbox::all(&db).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].recipient, "bob@example.com");
    // The 24-hour link stays until it has expired.
    assert_eq!(
        email_tokens::prune(&db, now + day - 60_000).await.unwrap(),
        0
    );
    assert_eq!(email_tokens::prune(&db, now + 2 * day).await.unwrap(), 1);
    db.close().await;
}

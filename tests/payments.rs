//! Paying with Stripe, offline: Checkout through the mock Stripe, credit
//! only from signed webhook events, each event once, refunds and disputes
//! on the ledger (a debt when the credit was spent), on SQLite and
//! PostgreSQL.
#![cfg(feature = "ssr")]

mod common;

use common::mail::{assert_no_more_mail, start_sink, use_sink, wait_for_mail};
use common::stripe::{
    completed, connect, deliver, event, pay, post_signed, sent_events, session_id, signature,
    start_checkout, start_stripe_mock, use_stripe, WEBHOOK_SECRET,
};
use common::{send, start_mock, use_mock, Backend, TestApp};
use llm_gateway::billing::money::NANOS_PER_USD;
use llm_gateway::mock::smtp::SmtpSink;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    checkout_credits_the_amount_before_the_fee_once_stripe_reports_it,
    a_bad_signature_is_refused_and_credits_nothing,
    a_replayed_event_credits_once,
    the_same_event_delivered_at_once_credits_once,
    a_refund_after_the_credit_was_spent_is_a_debt,
    an_event_for_an_unknown_session_is_kept_and_credits_nothing,
    a_refund_that_comes_before_its_payment_waits_for_it,
    disputes_take_back_and_a_won_dispute_gives_back,
    an_amount_stripe_did_not_charge_is_not_credited,
    bad_top_ups_get_clear_errors_and_leave_no_credit,
);

const EMAIL: &str = "payer@example.com";

/// A gateway with Stripe payments on the mock Stripe (and the mock
/// provider), a 3 % fee, no sign-up credit, and mail to a sink; the mock
/// Stripe's URL.
async fn app(backend: Backend) -> (TestApp, String) {
    let (app, stripe, _) = app_with_mail(backend).await;
    (app, stripe)
}

async fn app_with_mail(backend: Backend) -> (TestApp, String, SmtpSink) {
    let stripe = start_stripe_mock().await;
    let mock = start_mock().await;
    let sink = start_sink().await;
    let app = TestApp::start_with(backend, |c| {
        use_mock(c, &mock);
        use_sink(c, &sink);
        use_stripe(c, &stripe, 3.0);
        c.signup_credit = 0.0;
        // About 12 cents a token with the margin: a few calls spend dollars.
        let mut dear = c.pricing["openai:gpt-4o-mini"].clone();
        dear.input_price_per_million = 100_000.0;
        dear.output_price_per_million = 100_000.0;
        c.pricing.insert("openai:gpt-dear".into(), dear);
    })
    .await;
    connect(&stripe, &app).await;
    (app, stripe, sink)
}

/// A key for the signed-in `client`.
async fn create_key(app: &TestApp, client: &reqwest::Client) -> String {
    let (status, created) = app.rpc(client, "create_key", &[("name", "spend")]).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["secret"].as_str().unwrap().to_string()
}

/// A signed-in client and the user's id.
async fn payer(app: &TestApp) -> (reqwest::Client, String) {
    let client = app.client();
    app.sign_up(&client, EMAIL).await;
    let db = app.database().await;
    let user = llm_gateway::db::users::find_by_email(&db, EMAIL)
        .await
        .unwrap()
        .unwrap();
    db.close().await;
    (client, user.id)
}

async fn balance(app: &TestApp, client: &reqwest::Client) -> i64 {
    let (status, figures) = app.rpc(client, "account_summary", &[]).await;
    assert_eq!(status, StatusCode::OK, "{figures}");
    figures["balance"].as_i64().unwrap()
}

async fn payments(app: &TestApp, client: &reqwest::Client) -> Vec<Value> {
    let (status, page) = app.rpc(client, "payments_page", &[("page", "0")]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// Ledger entries of `user_id` that name a payment: (kind, amount).
async fn payment_entries(app: &TestApp, user_id: &str) -> Vec<(String, i64)> {
    let db = app.database().await;
    let rows: Vec<(String, i64)> = llm_gateway::with_pool!(&db, pool => {
        sqlx::query_as(
            "SELECT kind, amount FROM ledger_entries WHERE user_id = $1 AND payment_id IS NOT NULL \
             ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await
        .unwrap()
    });
    db.close().await;
    rows
}

/// Stripe events as kept: (id, outcome).
async fn kept_events(app: &TestApp) -> Vec<(String, String)> {
    let db = app.database().await;
    let events = llm_gateway::db::payments::events(&db, 100, 0)
        .await
        .unwrap();
    db.close().await;
    events.into_iter().map(|e| (e.id, e.outcome)).collect()
}

/// The mock Stripe's Checkout Session behind a Checkout URL.
async fn session_of(stripe: &str, checkout_url: &str) -> Value {
    let url = format!("{stripe}/v1/checkout/sessions/{}", session_id(checkout_url));
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// A payment of $10 (+3 % fee) paid through the mock's checkout page;
/// returns its payment intent.
async fn paid_ten(app: &TestApp, stripe: &str, client: &reqwest::Client) -> String {
    let (_, url) = start_checkout(app, client, "10").await;
    pay(&url).await;
    let session = session_of(stripe, &url).await;
    session["payment_intent"].as_str().unwrap().to_string()
}

async fn checkout_credits_the_amount_before_the_fee_once_stripe_reports_it(backend: Backend) {
    let (app, stripe, sink) = app_with_mail(backend).await;
    let (client, user_id) = payer(&app).await;
    let (status, figures) = app.rpc(&client, "account_summary", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(figures["top_up"]["mode"], "stripe");
    assert_eq!(
        figures["top_up"]["fee_bp"], 300,
        "the fee is shown before paying"
    );

    let (payment_id, url) = start_checkout(&app, &client, "10").await;
    assert!(url.starts_with(&stripe), "{url}");
    let session = session_of(&stripe, &url).await;
    assert_eq!(session["amount_total"], 1030, "$10 plus the 3 % fee");
    assert_eq!(session["client_reference_id"], user_id.as_str());
    assert_eq!(session["metadata"]["payment_id"], payment_id.as_str());
    assert_eq!(
        balance(&app, &client).await,
        0,
        "nothing before Stripe reports"
    );
    assert_eq!(payments(&app, &client).await[0]["status"], "open");

    let back = pay(&url).await;
    assert!(
        back.ends_with("/dashboard/balance?checkout=success"),
        "{back}"
    );
    let sent = sent_events(&stripe).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "checkout.session.completed");
    assert_eq!(sent[0]["delivery_status"], 200);

    assert_eq!(balance(&app, &client).await, 10 * NANOS_PER_USD);
    let listed = payments(&app, &client).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "paid");
    assert_eq!(listed[0]["credit"], 10 * NANOS_PER_USD);
    assert_eq!(listed[0]["fee"], 3 * NANOS_PER_USD / 10);
    assert_eq!(listed[0]["charged_cents"], 1030);
    assert_eq!(
        payment_entries(&app, &user_id).await,
        vec![("topup".to_string(), 10 * NANOS_PER_USD)]
    );
    let receipt = &wait_for_mail(&sink, EMAIL, "receipt", 1).await[0];
    for line in [
        listed[0]["id"].as_str().unwrap(),
        "$10.00",
        "$0.30",
        "10.30 USD",
    ] {
        assert!(receipt.text.contains(line), "{line} in {}", receipt.text);
    }
    // The REST route opens a Checkout page too.
    let (status, charged) = send(
        client
            .post(app.url("/api/balance/charge"))
            .json(&json!({"amount": "25.50"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{charged}");
    assert!(charged["checkout_url"]
        .as_str()
        .unwrap()
        .starts_with(&stripe));
    assert!(charged.get("balance").is_none());
    app.audit().await;
    app.stop().await;
}

async fn a_bad_signature_is_refused_and_credits_nothing(backend: Backend) {
    let (app, _stripe) = app(backend).await;
    let (client, _) = payer(&app).await;
    let (_, url) = start_checkout(&app, &client, "10").await;
    let payload = completed("evt_sig", &session_id(&url), 1030, "pi_sig").to_string();
    let now = app.clock().now_secs();
    let refused = [
        ("no header", None),
        (
            "another secret",
            Some(signature(&payload, now, "whsec_other")),
        ),
        (
            "six minutes old",
            Some(signature(&payload, now - 360, WEBHOOK_SECRET)),
        ),
        ("not a signature", Some("t=1,v1=zz".to_string())),
        ("v0 only", Some(format!("t={now},v0={}", "ab".repeat(32)))),
    ];
    for (case, header) in refused {
        let (status, body) = post_signed(&app, &payload, header).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some(),
            "{case}: {body}"
        );
    }
    // The body signed is not the body sent.
    let tampered = payload.replace("1030", "9999");
    let header = signature(&payload, now, WEBHOOK_SECRET);
    let (status, _) = post_signed(&app, &tampered, Some(header)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(balance(&app, &client).await, 0);
    assert!(
        kept_events(&app).await.is_empty(),
        "nothing read from a refused body"
    );
    // Several v1 signatures: any one that matches will do.
    let good = hex_signature(&payload, now, WEBHOOK_SECRET);
    let header = format!("t={now},v1={},v1={good}", "00".repeat(32));
    let (status, body) = post_signed(&app, &payload, Some(header)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(balance(&app, &client).await, 10 * NANOS_PER_USD);
    app.audit().await;
    app.stop().await;
}

fn hex_signature(payload: &str, timestamp: i64, secret: &str) -> String {
    signature(payload, timestamp, secret)
        .split_once(",v1=")
        .unwrap()
        .1
        .to_string()
}

async fn a_replayed_event_credits_once(backend: Backend) {
    let (app, _stripe, sink) = app_with_mail(backend).await;
    let (client, user_id) = payer(&app).await;
    let (_, url) = start_checkout(&app, &client, "10").await;
    let event = completed("evt_replayed", &session_id(&url), 1030, "pi_replayed");
    let (status, first) = deliver(&app, &event).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["outcome"], "credited");
    for _ in 0..3 {
        let (status, again) = deliver(&app, &event).await;
        assert_eq!(status, StatusCode::OK, "Stripe must stop retrying");
        assert_eq!(again["duplicate"], true);
    }
    // Another event for the same session (async_payment_succeeded after
    // completed) finds it paid already.
    let mut late = completed("evt_async", &session_id(&url), 1030, "pi_replayed");
    late["type"] = json!("checkout.session.async_payment_succeeded");
    let (status, body) = deliver(&app, &late).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outcome"], "ignored");
    assert_eq!(balance(&app, &client).await, 10 * NANOS_PER_USD);
    assert_eq!(payment_entries(&app, &user_id).await.len(), 1);
    wait_for_mail(&sink, EMAIL, "receipt", 1).await;
    assert_no_more_mail(&sink, EMAIL, "receipt", 1).await;
    app.audit().await;
    app.stop().await;
}

async fn the_same_event_delivered_at_once_credits_once(backend: Backend) {
    let (app, _stripe) = app(backend).await;
    let (client, user_id) = payer(&app).await;
    let (_, url) = start_checkout(&app, &client, "10").await;
    let event = completed("evt_racing", &session_id(&url), 1030, "pi_racing");
    let deliveries = (0..8).map(|_| deliver(&app, &event));
    let answers = futures::future::join_all(deliveries).await;
    let credited = answers
        .iter()
        .filter(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["outcome"] == "credited"
        })
        .count();
    assert_eq!(credited, 1, "{answers:?}");
    assert_eq!(balance(&app, &client).await, 10 * NANOS_PER_USD);
    assert_eq!(payment_entries(&app, &user_id).await.len(), 1);
    app.audit().await;
    app.stop().await;
}

async fn a_refund_after_the_credit_was_spent_is_a_debt(backend: Backend) {
    let (app, stripe) = app(backend).await;
    let (client, user_id) = payer(&app).await;
    let intent = paid_ten(&app, &stripe, &client).await;
    // Spend most of it on a dear model.
    let key = create_key(&app, &client).await;
    let mut calls = 0;
    while balance(&app, &client).await > 4 * NANOS_PER_USD {
        calls += 1;
        let response = app
            .chat(
                &key,
                &json!({"model": "openai:gpt-dear", "max_tokens": 8,
                               "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(app.usage_records(calls).await.len(), calls, "settled");
    }
    let spent_to = balance(&app, &client).await;
    assert!(spent_to > 0);
    // Stripe refunds the whole charge: the $10 credit goes back.
    let (status, refund) = send(
        reqwest::Client::new()
            .post(format!("{stripe}/v1/refunds"))
            .bearer_auth("sk_test_gateway")
            .form(&[("payment_intent", intent.as_str())]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refund}");
    let owed = 10 * NANOS_PER_USD - spent_to;
    assert_eq!(balance(&app, &client).await, -owed, "a debt");
    let db = app.database().await;
    let debt = llm_gateway::db::ledger::debt(&db, &user_id)
        .await
        .unwrap()
        .unwrap();
    db.close().await;
    assert_eq!(debt.amount, owed);
    let refused = app
        .chat(
            &key,
            &json!({"model": "openai:gpt-dear", "max_tokens": 8,
                           "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(
        refused.status(),
        StatusCode::PAYMENT_REQUIRED,
        "no spending while in debt"
    );
    assert_eq!(
        payment_entries(&app, &user_id).await,
        vec![
            ("topup".to_string(), 10 * NANOS_PER_USD),
            ("refund".to_string(), -10 * NANOS_PER_USD)
        ]
    );
    let listed = payments(&app, &client).await;
    assert_eq!(listed[0]["status"], "refunded");
    assert_eq!(listed[0]["taken_back"], 10 * NANOS_PER_USD);
    assert!(listed[0]["receipt_url"]
        .as_str()
        .unwrap()
        .contains("/receipts/"));
    app.audit().await;
    app.stop().await;
}

async fn an_event_for_an_unknown_session_is_kept_and_credits_nothing(backend: Backend) {
    let (app, _stripe) = app(backend).await;
    let (client, user_id) = payer(&app).await;
    let mut stranger = completed("evt_stranger", "cs_not_ours", 100_000, "pi_stranger");
    // Even naming a real user and a made-up payment earns nothing.
    stranger["data"]["object"]["client_reference_id"] = json!(user_id);
    stranger["data"]["object"]["metadata"] = json!({"payment_id": "pay_made_up"});
    let (status, body) = deliver(&app, &stranger).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "ignored");
    // Events the gateway does not act on are kept too.
    let other = event("evt_other", "customer.created", json!({"id": "cus_1"}));
    assert_eq!(deliver(&app, &other).await.0, StatusCode::OK);
    assert_eq!(balance(&app, &client).await, 0);
    let kept = kept_events(&app).await;
    assert_eq!(kept.len(), 2);
    assert!(
        kept.iter().all(|(_, outcome)| outcome == "ignored"),
        "{kept:?}"
    );
    app.audit().await;
    app.stop().await;
}

async fn a_refund_that_comes_before_its_payment_waits_for_it(backend: Backend) {
    let (app, _stripe) = app(backend).await;
    let (client, user_id) = payer(&app).await;
    let (_, url) = start_checkout(&app, &client, "10").await;
    let refund = event(
        "evt_refund_first",
        "charge.refunded",
        json!({"id": "ch_early", "object": "charge", "amount": 1030, "amount_refunded": 515,
               "payment_intent": "pi_early", "currency": "usd"}),
    );
    let (status, body) = deliver(&app, &refund).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outcome"], "deferred");
    assert_eq!(balance(&app, &client).await, 0);
    let (_, body) = deliver(
        &app,
        &completed("evt_paid_late", &session_id(&url), 1030, "pi_early"),
    )
    .await;
    assert_eq!(body["outcome"], "credited");
    // Credited $10, then half the charge refunded: $5 taken back.
    assert_eq!(balance(&app, &client).await, 5 * NANOS_PER_USD);
    assert_eq!(
        payment_entries(&app, &user_id).await,
        vec![
            ("topup".to_string(), 10 * NANOS_PER_USD),
            ("refund".to_string(), -5 * NANOS_PER_USD)
        ]
    );
    let kept = kept_events(&app).await;
    assert!(
        kept.contains(&("evt_refund_first".into(), "applied_late".into())),
        "{kept:?}"
    );
    assert_eq!(
        payments(&app, &client).await[0]["status"],
        "partially_refunded"
    );
    app.audit().await;
    app.stop().await;
}

async fn disputes_take_back_and_a_won_dispute_gives_back(backend: Backend) {
    let (app, stripe) = app(backend).await;
    let (client, user_id) = payer(&app).await;
    let intent = paid_ten(&app, &stripe, &client).await;
    let (status, opened) = send(
        reqwest::Client::new()
            .post(format!("{stripe}/mock/stripe/disputes"))
            .json(&json!({"payment_intent": intent})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    assert_eq!(balance(&app, &client).await, 0);
    assert_eq!(payments(&app, &client).await[0]["status"], "disputed");
    let won = event(
        "evt_won",
        "charge.dispute.closed",
        json!({"id": opened["dispute"]["id"], "object": "dispute", "amount": 1030,
               "payment_intent": intent, "status": "won"}),
    );
    let (_, body) = deliver(&app, &won).await;
    assert_eq!(body["outcome"], "dispute_won");
    assert_eq!(balance(&app, &client).await, 10 * NANOS_PER_USD);
    assert_eq!(
        payment_entries(&app, &user_id).await,
        vec![
            ("topup".to_string(), 10 * NANOS_PER_USD),
            ("chargeback".to_string(), -10 * NANOS_PER_USD),
            ("chargeback".to_string(), 10 * NANOS_PER_USD)
        ]
    );
    assert_eq!(payments(&app, &client).await[0]["status"], "paid");
    app.audit().await;
    // The audit holds each payment to its entries.
    let db = app.database().await;
    let tamper = "UPDATE payments SET taken_back = taken_back + 1";
    llm_gateway::with_pool!(&db, pool => {
        sqlx::query(tamper).execute(pool).await.unwrap();
    });
    let report = llm_gateway::billing::audit::run(&db, app.clock().now_ms(), 0)
        .await
        .unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == "payment_vs_ledger"),
        "{:?}",
        report.findings
    );
    db.close().await;
    app.stop().await;
}

async fn an_amount_stripe_did_not_charge_is_not_credited(backend: Backend) {
    let (app, _stripe) = app(backend).await;
    let (client, _) = payer(&app).await;
    let (_, url) = start_checkout(&app, &client, "10").await;
    let (_, body) = deliver(
        &app,
        &completed("evt_short", &session_id(&url), 50, "pi_short"),
    )
    .await;
    assert_eq!(body["outcome"], "amount_mismatch");
    assert_eq!(balance(&app, &client).await, 0);
    assert_eq!(
        payments(&app, &client).await[0]["status"],
        "amount_mismatch"
    );
    app.stop().await;
}

async fn bad_top_ups_get_clear_errors_and_leave_no_credit(backend: Backend) {
    let (app, _stripe) = app(backend).await;
    let (client, _) = payer(&app).await;
    for amount in ["0.50", "1000.01", "12.345", "lots"] {
        let (status, body) = app
            .rpc(&client, "start_top_up", &[("amount", amount)])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{amount}: {body}");
    }
    let (status, body) = send(
        client
            .post(app.url("/api/balance/charge"))
            .json(&json!({"amount": "abc"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "amount", "{body}");
    assert!(payments(&app, &client).await.is_empty());
    app.stop().await;

    // Stripe out of reach: 502, and the payment is marked failed.
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        use_stripe(c, "http://127.0.0.1:9", 0.0);
    })
    .await;
    let client = app.client();
    app.sign_up(&client, EMAIL).await;
    let (status, body) = app.rpc(&client, "start_top_up", &[("amount", "10")]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(payments(&app, &client).await[0]["status"], "failed");
    // An unverified address may not pay where verification is required.
    let strict = TestApp::start_with(Backend::Sqlite, |c| {
        use_stripe(c, "http://127.0.0.1:9", 0.0);
        c.require_verified_email = true;
    })
    .await;
    let unverified = strict.client();
    strict.sign_up(&unverified, EMAIL).await;
    let (status, body) = strict
        .rpc(&unverified, "start_top_up", &[("amount", "10")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        payments(&strict, &unverified).await.is_empty(),
        "no payment opened"
    );
    strict.stop().await;
    // And without Stripe configured the webhook is not there.
    let plain = TestApp::start(Backend::Sqlite).await;
    let (status, _) = deliver(&plain, &completed("evt_x", "cs_x", 100, "pi_x")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    plain.stop().await;
    app.stop().await;
}

//! Stripe in tests: the mock Stripe in-process, a gateway pointed at it,
//! and events signed by hand.

use llm_gateway::config::{Config, PaymentMode};
use llm_gateway::mock::stripe::StripeMock;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::TestApp;

/// The webhook secret the tests' gateways and mocks share.
pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// Starts the mock Stripe in-process on an ephemeral port; its base URL.
pub async fn start_stripe_mock() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = StripeMock::new(None).routes();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// Stripe payments through the mock at `stripe`, with `fee_percent`.
pub fn use_stripe(config: &mut Config, stripe: &str, fee_percent: f64) {
    config.payments.mode = PaymentMode::Stripe;
    config.payments.secret_key = Some("sk_test_gateway".into());
    config.payments.webhook_secret = Some(WEBHOOK_SECRET.into());
    config.payments.api_base = stripe.to_string();
    config.payments.fee_percent = fee_percent;
    config.payments.min_usd = 1.0;
}

/// Points the mock's webhook events at `app`.
pub async fn connect(stripe: &str, app: &TestApp) {
    let status = reqwest::Client::new()
        .post(format!("{stripe}/mock/stripe/endpoint"))
        .json(&json!({"url": app.url("/webhooks/stripe"), "secret": WEBHOOK_SECRET}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// Starts a top-up of `amount` USD as the signed-in `client`; the
/// payment's id and its Checkout URL.
pub async fn start_checkout(
    app: &TestApp,
    client: &reqwest::Client,
    amount: &str,
) -> (String, String) {
    let (status, body) = app.rpc(client, "start_top_up", &[("amount", amount)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "checkout", "{body}");
    (
        body["payment_id"].as_str().unwrap().to_string(),
        body["url"].as_str().unwrap().to_string(),
    )
}

/// The Checkout Session id in a Checkout URL.
pub fn session_id(checkout_url: &str) -> String {
    checkout_url.rsplit('/').next().unwrap().to_string()
}

/// "Pays" on the mock's checkout page; returns where it sends the browser.
pub async fn pay(checkout_url: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(format!("{checkout_url}/pay"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    response.headers()["location"].to_str().unwrap().to_string()
}

/// The mock's record of what it sent, newest last.
pub async fn sent_events(stripe: &str) -> Vec<Value> {
    let body: Value = reqwest::get(format!("{stripe}/mock/stripe/events"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"].as_array().unwrap().clone()
}

/// A Stripe event of `kind` around `object`.
pub fn event(id: &str, kind: &str, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": kind, "created": 0, "livemode": false,
           "data": {"object": object}})
}

/// The `checkout.session.completed` event Stripe would send for a paid session.
pub fn completed(event_id: &str, session_id: &str, amount_cents: i64, intent: &str) -> Value {
    event(
        event_id,
        "checkout.session.completed",
        json!({"id": session_id, "object": "checkout.session", "payment_status": "paid",
               "status": "complete", "amount_total": amount_cents, "currency": "usd",
               "payment_intent": intent, "metadata": {}}),
    )
}

/// A `Stripe-Signature` header for `payload` at `timestamp` under `secret`.
pub fn signature(payload: &str, timestamp: i64, secret: &str) -> String {
    let mac = llm_gateway::billing::stripe_signature::sign(payload.as_bytes(), timestamp, secret);
    format!("t={timestamp},v1={}", hex::encode(mac))
}

/// Posts `payload` to the webhook with `header` as its signature.
pub async fn post_signed(
    app: &TestApp,
    payload: &str,
    header: Option<String>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(payload.to_string());
    if let Some(header) = header {
        request = request.header("stripe-signature", header);
    }
    super::send(request).await
}

/// Posts `event` signed now with the shared secret.
pub async fn deliver(app: &TestApp, event: &Value) -> (StatusCode, Value) {
    let payload = event.to_string();
    let header = signature(&payload, app.clock().now_secs(), WEBHOOK_SECRET);
    post_signed(app, &payload, Some(header)).await
}

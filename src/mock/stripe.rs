//! A stand-in for Stripe, so the whole payment flow runs offline: the
//! Checkout Session API (`POST /v1/checkout/sessions`, `GET …/{id}`,
//! `POST …/{id}/expire`), a checkout page (`GET /checkout/{id}`) whose
//! "Pay" button completes the session, the Refunds API
//! (`POST /v1/refunds`), and a way to open a dispute
//! (`POST /mock/stripe/disputes`). Each of these sends the webhook event
//! Stripe would, signed as Stripe signs them, to the endpoint set with
//! `--stripe-webhook-url`/`--stripe-webhook-secret` or
//! `POST /mock/stripe/endpoint {"url","secret"}`. `GET /mock/stripe/events`
//! lists what was sent and how the endpoint answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::billing::money::format_cents;
use crate::billing::stripe_signature::sign;

/// Where events go: the gateway's webhook URL and its signing secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Endpoint {
    pub url: String,
    pub secret: String,
}

/// The mock's sessions, charges and sent events.
#[derive(Clone, Default)]
pub struct StripeMock {
    inner: Arc<Mutex<Books>>,
    http: reqwest::Client,
}

#[derive(Default)]
struct Books {
    endpoint: Option<Endpoint>,
    sessions: HashMap<String, Value>,
    /// Idempotency key → session id.
    idempotent: HashMap<String, String>,
    /// Payment intent → (charge id, amount, refunded so far).
    charges: HashMap<String, (String, i64, i64)>,
    sent: Vec<Value>,
    serial: u64,
}

impl Books {
    fn next_id(&mut self, prefix: &str) -> String {
        self.serial += 1;
        format!(
            "{prefix}_mock{:06}{}",
            self.serial,
            uuid::Uuid::new_v4().simple()
        )
    }
}

impl StripeMock {
    /// A mock that sends events to `endpoint` (or nowhere until one is set).
    pub fn new(endpoint: Option<Endpoint>) -> Self {
        let mock = Self::default();
        mock.books().endpoint = endpoint;
        mock
    }

    /// Its routes.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .route("/v1/checkout/sessions/{id}", get(retrieve_session))
            .route("/v1/checkout/sessions/{id}/expire", post(expire_session))
            .route("/v1/refunds", post(refund))
            .route("/checkout/{id}", get(checkout_page))
            .route("/checkout/{id}/pay", post(pay))
            .route("/mock/stripe/disputes", post(dispute))
            .route("/mock/stripe/endpoint", post(set_endpoint))
            .route("/mock/stripe/events", get(sent_events))
            .with_state(self.clone())
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signs `object` into an event of `kind` and posts it to the endpoint;
    /// the event, with the endpoint's status, is kept for
    /// `GET /mock/stripe/events`.
    async fn send(&self, kind: &str, object: Value) -> Value {
        let (endpoint, id) = {
            let mut books = self.books();
            (books.endpoint.clone(), books.next_id("evt"))
        };
        let now = now_secs();
        let event = json!({
            "id": id, "object": "event", "api_version": "2024-06-20", "created": now,
            "type": kind, "livemode": false, "pending_webhooks": 1,
            "data": {"object": object},
            "request": {"id": null, "idempotency_key": null},
        });
        let status = match &endpoint {
            Some(endpoint) => self.deliver(endpoint, &event, now).await,
            None => json!("no endpoint set"),
        };
        let mut kept = event.clone();
        kept["delivery_status"] = status;
        self.books().sent.push(kept);
        event
    }

    /// Posts `event` as Stripe does; tries three times, as Stripe retries.
    async fn deliver(&self, endpoint: &Endpoint, event: &Value, now: i64) -> Value {
        let payload = event.to_string();
        let signature = hex::encode(sign(payload.as_bytes(), now, &endpoint.secret));
        let mut last = json!(null);
        for _ in 0..3 {
            let sent = self
                .http
                .post(&endpoint.url)
                .header("Stripe-Signature", format!("t={now},v1={signature}"))
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(payload.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    return json!(response.status().as_u16())
                }
                Ok(response) => last = json!(response.status().as_u16()),
                Err(err) => last = json!(err.to_string()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        last
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn stripe_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"type": "invalid_request_error", "message": message}});
    (status, Json(body)).into_response()
}

/// The site the request came to, for the URLs the mock hands out.
fn base_of(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The session's total from its line items, in cents.
fn amount_total(form: &[(String, String)]) -> i64 {
    (0..)
        .map_while(|i| {
            let amount = field(form, &format!("line_items[{i}][price_data][unit_amount]"))?;
            let quantity = field(form, &format!("line_items[{i}][quantity]")).unwrap_or("1");
            Some(amount.parse::<i64>().unwrap_or(0) * quantity.parse::<i64>().unwrap_or(1))
        })
        .sum()
}

/// `metadata[k]=v` fields as an object.
fn metadata(form: &[(String, String)]) -> Value {
    let entries = form.iter().filter_map(|(k, v)| {
        let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
        Some((key.to_string(), Value::String(v.clone())))
    });
    Value::Object(entries.collect())
}

async fn create_session(
    State(mock): State<StripeMock>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.starts_with("Bearer sk_"));
    if !authorized {
        return stripe_error(StatusCode::UNAUTHORIZED, "Invalid API Key provided.");
    }
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let mut books = mock.books();
    if let Some(existing) = idempotency
        .as_ref()
        .and_then(|key| books.idempotent.get(key))
        .and_then(|id| books.sessions.get(id))
    {
        return Json(existing.clone()).into_response();
    }
    let (Some(success_url), Some(cancel_url)) =
        (field(&form, "success_url"), field(&form, "cancel_url"))
    else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "Missing success_url or cancel_url.",
        );
    };
    let total = amount_total(&form);
    if total < 50 {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "The Checkout Session's total amount due must add up to at least $0.50 usd",
        );
    }
    let id = books.next_id("cs_test");
    let session = json!({
        "id": id, "object": "checkout.session", "mode": "payment",
        "url": format!("{}/checkout/{id}", base_of(&headers)),
        "amount_total": total, "amount_subtotal": total,
        "currency": field(&form, "line_items[0][price_data][currency]").unwrap_or("usd"),
        "client_reference_id": field(&form, "client_reference_id"),
        "customer_email": field(&form, "customer_email"),
        "metadata": metadata(&form),
        "payment_status": "unpaid", "status": "open", "payment_intent": null,
        "success_url": success_url, "cancel_url": cancel_url,
        "created": now_secs(), "livemode": false,
    });
    books.sessions.insert(id.clone(), session.clone());
    if let Some(key) = idempotency {
        books.idempotent.insert(key, id);
    }
    Json(session).into_response()
}

async fn retrieve_session(State(mock): State<StripeMock>, Path(id): Path<String>) -> Response {
    match mock.books().sessions.get(&id) {
        Some(session) => Json(session.clone()).into_response(),
        None => stripe_error(
            StatusCode::NOT_FOUND,
            &format!("No such checkout.session: '{id}'"),
        ),
    }
}

async fn expire_session(State(mock): State<StripeMock>, Path(id): Path<String>) -> Response {
    let session = {
        let mut books = mock.books();
        let Some(session) = books.sessions.get_mut(&id) else {
            return stripe_error(
                StatusCode::NOT_FOUND,
                &format!("No such checkout.session: '{id}'"),
            );
        };
        if session["status"] != "open" {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "Only open sessions can be expired.",
            );
        }
        session["status"] = json!("expired");
        session.clone()
    };
    mock.send("checkout.session.expired", session.clone()).await;
    Json(session).into_response()
}

/// The checkout page: the amount, a "Pay" button and a way back.
async fn checkout_page(State(mock): State<StripeMock>, Path(id): Path<String>) -> Response {
    let Some(session) = mock.books().sessions.get(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>No such checkout session</h1>"),
        )
            .into_response();
    };
    let cents = session["amount_total"].as_i64().unwrap_or(0);
    let currency = session["currency"].as_str().unwrap_or("usd").to_uppercase();
    let cancel = session["cancel_url"].as_str().unwrap_or("/");
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Mock checkout</title></head>\
         <body><main><h1>Mock Stripe checkout</h1>\
         <p>Total due: <strong id=\"total\">{} {currency}</strong></p>\
         <p>Status: {}</p>\
         <form method=\"post\" action=\"/checkout/{id}/pay\"><button type=\"submit\">Pay</button></form>\
         <p><a href=\"{}\">Cancel and go back</a></p></main></body></html>",
        format_cents(cents),
        html_escape(session["status"].as_str().unwrap_or("")),
        html_escape(cancel),
    );
    Html(page).into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// "Pays" the session: completes it, sends `checkout.session.completed`,
/// then sends the browser to the success URL.
async fn pay(State(mock): State<StripeMock>, Path(id): Path<String>) -> Response {
    let session = {
        let mut books = mock.books();
        let intent = books.next_id("pi");
        let charge = books.next_id("ch");
        let Some(session) = books.sessions.get_mut(&id) else {
            return stripe_error(
                StatusCode::NOT_FOUND,
                &format!("No such checkout.session: '{id}'"),
            );
        };
        if session["status"] != "open" {
            return stripe_error(StatusCode::BAD_REQUEST, "This session is no longer open.");
        }
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["payment_intent"] = json!(intent);
        let session = session.clone();
        let amount = session["amount_total"].as_i64().unwrap_or(0);
        books.charges.insert(intent, (charge, amount, 0));
        session
    };
    mock.send("checkout.session.completed", session.clone())
        .await;
    let success = session["success_url"]
        .as_str()
        .unwrap_or("/")
        .replace("{CHECKOUT_SESSION_ID}", &id);
    Redirect::to(&success).into_response()
}

/// The charge object Stripe sends with charge events.
fn charge_object(intent: &str, charge: &(String, i64, i64), base: &str) -> Value {
    let (id, amount, refunded) = charge;
    json!({
        "id": id, "object": "charge", "amount": amount, "amount_refunded": refunded,
        "currency": "usd", "payment_intent": intent, "paid": true,
        "refunded": refunded >= amount, "status": "succeeded",
        "receipt_url": format!("{base}/receipts/{id}"),
    })
}

/// `POST /v1/refunds`: refunds `amount` (cents; the rest by default) of
/// `payment_intent`, and sends `charge.refunded`.
async fn refund(
    State(mock): State<StripeMock>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let Some(intent) = field(&form, "payment_intent").map(str::to_string) else {
        return stripe_error(StatusCode::BAD_REQUEST, "Missing payment_intent.");
    };
    let (charge, refund_id, amount) = {
        let mut books = mock.books();
        let refund_id = books.next_id("re");
        let Some(charge) = books.charges.get_mut(&intent) else {
            return stripe_error(
                StatusCode::NOT_FOUND,
                &format!("No such payment_intent: '{intent}'"),
            );
        };
        let left = charge.1 - charge.2;
        let amount = field(&form, "amount")
            .and_then(|a| a.parse::<i64>().ok())
            .unwrap_or(left);
        if amount <= 0 || amount > left {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "The refund exceeds what is left to refund.",
            );
        }
        charge.2 += amount;
        (charge.clone(), refund_id, amount)
    };
    let object = charge_object(&intent, &charge, &base_of(&headers));
    mock.send("charge.refunded", object).await;
    Json(json!({
        "id": refund_id, "object": "refund", "amount": amount, "charge": charge.0,
        "payment_intent": intent, "status": "succeeded", "currency": "usd",
    }))
    .into_response()
}

/// `POST /mock/stripe/disputes {"payment_intent", "amount"?}`: opens a
/// dispute (the whole charge by default) and sends `charge.dispute.created`.
async fn dispute(State(mock): State<StripeMock>, Json(body): Json<Value>) -> Response {
    let Some(intent) = body["payment_intent"].as_str().map(str::to_string) else {
        return stripe_error(StatusCode::BAD_REQUEST, "Missing payment_intent.");
    };
    let (charge, id) = {
        let mut books = mock.books();
        let id = books.next_id("dp");
        let Some(charge) = books.charges.get(&intent).cloned() else {
            return stripe_error(
                StatusCode::NOT_FOUND,
                &format!("No such payment_intent: '{intent}'"),
            );
        };
        (charge, id)
    };
    let amount = body["amount"].as_i64().unwrap_or(charge.1);
    let object = json!({
        "id": id, "object": "dispute", "amount": amount, "charge": charge.0,
        "payment_intent": intent, "currency": "usd", "reason": "fraudulent",
        "status": "needs_response",
    });
    let event = mock.send("charge.dispute.created", object.clone()).await;
    Json(json!({"dispute": object, "event": event["id"]})).into_response()
}

async fn set_endpoint(
    State(mock): State<StripeMock>,
    Json(endpoint): Json<Endpoint>,
) -> StatusCode {
    mock.books().endpoint = Some(endpoint);
    StatusCode::NO_CONTENT
}

async fn sent_events(State(mock): State<StripeMock>) -> Json<Value> {
    Json(json!({"data": mock.books().sent.clone()}))
}

//! Stripe's door: `POST /webhooks/stripe`. Credit comes only from here.
//! The body is checked against `Stripe-Signature` before anything is read
//! from it; each event is applied once by id (`db::payments::apply_event`),
//! whatever order events arrive in and however often. A 2xx tells Stripe
//! the event is kept; a 5xx makes Stripe deliver it again later.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use crate::billing::payments::{action_for, taken_back_total};
use crate::billing::stripe_signature::{self, TOLERANCE_SECS};
use crate::config::PaymentMode;
use crate::db::ledger::EntryKind;
use crate::db::payments::{self, Applied, BalanceChange, Delivery};
use crate::error::{AppError, ErrorBody};
use crate::mail::templates::{payment_receipt, ReceiptFacts};
use crate::state::AppState;

/// The webhook routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/webhooks/stripe", post(stripe))
}

/// What the gateway answers Stripe.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WebhookAnswer {
    pub received: bool,
    /// What the event did: `credited`, `refund`, `dispute`, `dispute_won`,
    /// `deferred` (a refund or dispute before its payment), `failed`,
    /// `expired`, `no_change`, `amount_mismatch` or `ignored`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The event was applied before; nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

/// Receives one Stripe event. The body must carry a valid
/// `Stripe-Signature` for the configured `payments.webhook_secret` (within
/// five minutes). Each event id is applied once; a repeat answers
/// `duplicate`.
#[utoipa::path(post, path = "/webhooks/stripe", operation_id = "stripe_webhook", tag = "payments",
    request_body(content = Object, description = "A Stripe event, as Stripe sends it"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix time>,v1=<hex HMAC-SHA256 of t.payload>")),
    responses((status = 200, body = WebhookAnswer),
        (status = 400, description = "No valid signature, or not an event", body = ErrorBody),
        (status = 404, description = "Stripe payments are not enabled", body = ErrorBody),
        (status = 500, description = "Not applied; Stripe delivers it again", body = ErrorBody)))]
pub async fn stripe(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match receive(&state, &headers, &body).await {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => err.into_response(),
    }
}

/// Verifies, reads and applies one delivery; what to answer Stripe.
async fn receive(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<WebhookAnswer, AppError> {
    let payments_config = &state.config.payments;
    let secret = match (&payments_config.mode, &payments_config.webhook_secret) {
        (PaymentMode::Stripe, Some(secret)) => secret,
        _ => {
            return Err(AppError::NotFound(
                "Stripe payments are not enabled on this gateway.".into(),
            ))
        }
    };
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::invalid(
                "Stripe-Signature",
                "The Stripe-Signature header is missing.",
            )
        })?;
    stripe_signature::verify(body, header, secret, state.clock.now_secs(), TOLERANCE_SECS)
        .map_err(|err| {
            tracing::warn!(%err, "a Stripe webhook failed its signature check");
            AppError::invalid(
                "Stripe-Signature",
                format!("The signature does not verify: {err}."),
            )
        })?;
    let event: Value = serde_json::from_slice(body)
        .map_err(|_| AppError::invalid("body", "The event is not JSON."))?;
    let (Some(event_id), Some(event_type)) = (event["id"].as_str(), event["type"].as_str()) else {
        return Err(AppError::invalid("body", "The event has no id or type."));
    };
    let delivery = Delivery {
        event_id,
        event_type,
        received_at: state.clock.now_ms(),
    };
    let applied = payments::apply_event(
        &state.db,
        &delivery,
        &action_for(&event),
        taken_back_total,
    )
    .await
    .map_err(|err| {
        tracing::error!(%err, event_id, "applying a Stripe event failed; Stripe will retry");
        AppError::Internal
    })?;
    match applied {
        Applied::Duplicate => {
            tracing::info!(
                event_id,
                event_type,
                "a Stripe event came again; already applied"
            );
            Ok(WebhookAnswer {
                received: true,
                outcome: None,
                duplicate: Some(true),
            })
        }
        Applied::Done { outcome, changes } => {
            tracing::info!(event_id, event_type, %outcome, "a Stripe event was applied");
            for change in &changes {
                after_commit(state, change).await;
            }
            Ok(WebhookAnswer {
                received: true,
                outcome: Some(outcome),
                duplicate: None,
            })
        }
    }
}

/// Tells the in-memory accounts of a committed balance change, and mails
/// a receipt for a payment credited.
async fn after_commit(state: &AppState, change: &BalanceChange) {
    state
        .recorder
        .credited(&change.payment.user_id, change.amount);
    if change.kind == EntryKind::TopUp {
        if let Err(err) = mail_receipt(state, change).await {
            tracing::warn!(%err, payment_id = %change.payment.id, "the receipt could not be queued");
        }
    }
    tracing::info!(
        payment_id = %change.payment.id,
        user_id = %change.payment.user_id,
        amount = change.amount,
        balance = change.balance_after,
        kind = change.kind.as_str(),
        "a payment moved a balance"
    );
}

/// Queues the receipt of a credited payment to its user.
async fn mail_receipt(state: &AppState, change: &BalanceChange) -> Result<(), AppError> {
    let payment = &change.payment;
    let user = crate::db::users::find_by_id(&state.db, &payment.user_id).await?;
    let Some(to) = user.and_then(|u| u.email) else {
        return Ok(());
    };
    let facts = ReceiptFacts {
        payment_id: payment.id.clone(),
        credit: payment.credit,
        fee: payment.fee,
        charged_cents: payment.charged_cents,
        currency: payment.currency.clone(),
        paid_at: payment.paid_at.unwrap_or(payment.updated_at),
        balance_after: change.balance_after,
    };
    state
        .mail
        .enqueue(&payment_receipt(&to, &facts), state.clock.now_ms())
        .await
}

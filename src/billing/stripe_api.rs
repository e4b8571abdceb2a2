//! The part of Stripe's REST API the gateway calls: creating a Checkout
//! Session (`POST /v1/checkout/sessions`, form-encoded, with the secret key
//! as a bearer token and an `Idempotency-Key`).

use std::time::Duration;

use serde::Deserialize;

use crate::config::PaymentsConfig;

/// Talks to Stripe (or the mock's stand-in at `api_base`).
#[derive(Clone, Debug)]
pub struct StripeClient {
    http: reqwest::Client,
    api_base: String,
    secret_key: String,
}

/// Why Stripe did not create a session.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("Stripe could not be reached: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("Stripe refused ({status}): {message}")]
    Refused { status: u16, message: String },
}

/// What a Checkout Session needs from the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// Our payment id: the idempotency key and a metadata field.
    pub payment_id: String,
    pub user_id: String,
    pub email: Option<String>,
    pub currency: String,
    pub credit_cents: i64,
    pub fee_cents: i64,
    pub success_url: String,
    pub cancel_url: String,
}

/// The session Stripe made: where to send the user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

#[derive(Deserialize)]
struct StripeErrorBody {
    error: StripeErrorDetail,
}

#[derive(Deserialize)]
struct StripeErrorDetail {
    message: Option<String>,
}

impl StripeClient {
    /// A client for `payments`; `None` unless its mode is `stripe`.
    pub fn from_config(payments: &PaymentsConfig) -> Option<Self> {
        if payments.mode != crate::config::PaymentMode::Stripe {
            return None;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .ok()?;
        Some(Self {
            http,
            api_base: payments.api_base.trim_end_matches('/').to_string(),
            secret_key: payments.secret_key.clone()?,
        })
    }

    /// Creates a Checkout Session for one payment.
    pub async fn create_checkout_session(
        &self,
        request: &CheckoutRequest,
    ) -> Result<CheckoutSession, StripeError> {
        let response = self
            .http
            .post(format!("{}/v1/checkout/sessions", self.api_base))
            .bearer_auth(&self.secret_key)
            .header("Idempotency-Key", &request.payment_id)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form_body(&checkout_form(request)))
            .send()
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.json().await?);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<StripeErrorBody>(&text)
            .ok()
            .and_then(|body| body.error.message)
            .unwrap_or(text);
        Err(StripeError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}

/// The session's fields, in Stripe's bracketed form notation: one line for
/// the credit, one for the fee if there is one.
pub fn checkout_form(request: &CheckoutRequest) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = vec![
        ("mode".into(), "payment".into()),
        ("success_url".into(), request.success_url.clone()),
        ("cancel_url".into(), request.cancel_url.clone()),
        ("client_reference_id".into(), request.user_id.clone()),
        ("metadata[payment_id]".into(), request.payment_id.clone()),
        ("metadata[user_id]".into(), request.user_id.clone()),
        (
            "payment_intent_data[metadata][payment_id]".into(),
            request.payment_id.clone(),
        ),
    ];
    if let Some(email) = &request.email {
        form.push(("customer_email".into(), email.clone()));
    }
    let lines = [
        ("Gateway credit", request.credit_cents),
        ("Processing fee", request.fee_cents),
    ];
    for (index, (name, cents)) in lines.into_iter().filter(|(_, c)| *c > 0).enumerate() {
        let line = format!("line_items[{index}]");
        form.extend([
            (format!("{line}[quantity]"), "1".into()),
            (
                format!("{line}[price_data][currency]"),
                request.currency.clone(),
            ),
            (
                format!("{line}[price_data][unit_amount]"),
                cents.to_string(),
            ),
            (
                format!("{line}[price_data][product_data][name]"),
                name.into(),
            ),
        ]);
    }
    form
}

/// `application/x-www-form-urlencoded` text of `pairs`.
pub fn form_body(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fee_cents: i64) -> CheckoutRequest {
        CheckoutRequest {
            payment_id: "pay_1".into(),
            user_id: "usr_1".into(),
            email: Some("a+b@example.com".into()),
            currency: "usd".into(),
            credit_cents: 1000,
            fee_cents,
            success_url: "https://gw.example/dashboard/balance?checkout=success".into(),
            cancel_url: "https://gw.example/dashboard/balance?checkout=cancelled".into(),
        }
    }

    fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_fee_is_a_second_line_only_when_there_is_one() {
        let with_fee = checkout_form(&request(30));
        assert_eq!(
            field(&with_fee, "line_items[0][price_data][unit_amount]"),
            Some("1000")
        );
        assert_eq!(
            field(&with_fee, "line_items[1][price_data][unit_amount]"),
            Some("30")
        );
        assert_eq!(field(&with_fee, "client_reference_id"), Some("usr_1"));
        assert_eq!(field(&with_fee, "metadata[payment_id]"), Some("pay_1"));
        let without = checkout_form(&request(0));
        assert_eq!(field(&without, "line_items[1][quantity]"), None);
    }

    #[test]
    fn form_values_are_percent_encoded() {
        let body = form_body(&[("metadata[a]".into(), "x y&z+é".into())]);
        assert_eq!(body, "metadata%5Ba%5D=x%20y%26z%2B%C3%A9");
    }
}

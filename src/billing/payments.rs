//! Paying with Stripe: what a payment costs (the credit plus the fee), what
//! each webhook event means for a payment, and how much refunds and
//! disputes take back. The SQL is `db::payments`'s; the HTTP calls are
//! `stripe_api`'s.

use serde_json::Value;

use super::money::{fee_cents, format_cents, NANOS_PER_USD};
use super::percent_to_bp;
use crate::config::PaymentsConfig;
use crate::db::payments::{Action, Claw, ClawChange, PaymentRow};
use crate::error::AppError;

/// Nano-USD in one cent.
pub const NANOS_PER_CENT: i64 = NANOS_PER_USD / 100;

/// What a payment of a given credit costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub credit_cents: i64,
    pub fee_cents: i64,
}

impl Quote {
    /// The credit bought, in nano-USD.
    pub fn credit(&self) -> i64 {
        self.credit_cents * NANOS_PER_CENT
    }

    /// The fee, in nano-USD.
    pub fn fee(&self) -> i64 {
        self.fee_cents * NANOS_PER_CENT
    }

    /// What the card is charged, in cents.
    pub fn charged_cents(&self) -> i64 {
        self.credit_cents + self.fee_cents
    }
}

/// Prices the credit the user typed (`"25"`, `"12.50"`), within the
/// configured bounds and in whole cents.
pub fn quote(payments: &PaymentsConfig, amount: &str) -> Result<Quote, AppError> {
    let min = (payments.min_usd * 100.0).round() as i64;
    let max = (payments.max_usd * 100.0).round() as i64;
    let out_of_range = || {
        AppError::invalid(
            "amount",
            format!(
                "Enter an amount from {} to {} {} in whole cents.",
                format_cents(min),
                format_cents(max),
                payments.currency.to_uppercase()
            ),
        )
    };
    let nanos = super::money::parse_usd(amount).ok_or_else(out_of_range)?;
    if nanos % NANOS_PER_CENT != 0 {
        return Err(out_of_range());
    }
    let credit_cents = nanos / NANOS_PER_CENT;
    if !(min..=max).contains(&credit_cents) {
        return Err(out_of_range());
    }
    Ok(Quote {
        credit_cents,
        fee_cents: fee_cents(credit_cents, percent_to_bp(payments.fee_percent)),
    })
}

/// What refunds and disputes should have taken back of `payment` in all:
/// its credit in proportion to the share of the charge refunded or
/// disputed (a full refund takes back the whole credit; the fee is not
/// credit, so it is never taken).
pub fn taken_back_total(payment: &PaymentRow) -> i64 {
    if payment.charged_cents <= 0 {
        return 0;
    }
    let clawed = (payment.refunded_cents + payment.disputed_cents).clamp(0, payment.charged_cents);
    (i128::from(payment.credit) * i128::from(clawed) / i128::from(payment.charged_cents)) as i64
}

/// What a verified Stripe event asks of the gateway's payments. Amounts
/// come from Stripe's objects, never from the browser.
pub fn action_for(event: &Value) -> Action {
    let object = &event["data"]["object"];
    let text = |field: &str| object[field].as_str().map(str::to_string);
    let cents = |field: &str| object[field].as_i64().unwrap_or(0);
    match event["type"].as_str().unwrap_or("") {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            credit_action(object)
        }
        "checkout.session.async_payment_failed" => close_action(object, "failed"),
        "checkout.session.expired" => close_action(object, "expired"),
        "charge.refunded" => claw_action(
            text("payment_intent"),
            ClawChange::RefundedTotal(cents("amount_refunded")),
            text("receipt_url"),
        ),
        "charge.dispute.created" => claw_action(
            text("payment_intent"),
            ClawChange::DisputeOpened(cents("amount")),
            None,
        ),
        "charge.dispute.closed" if object["status"] == "won" => claw_action(
            text("payment_intent"),
            ClawChange::DisputeWon(cents("amount")),
            None,
        ),
        "charge.dispute.closed" => Action::Ignore(format!(
            "dispute closed as {}; what it took stays taken",
            object["status"].as_str().unwrap_or("unknown")
        )),
        other => Action::Ignore(format!("the gateway does not act on {other}")),
    }
}

fn credit_action(session: &Value) -> Action {
    let Some(session_id) = session["id"].as_str() else {
        return Action::Ignore("a session without an id".into());
    };
    if session["payment_status"] != "paid" {
        return Action::Ignore(format!(
            "payment_status is {}: waiting for the payment",
            session["payment_status"].as_str().unwrap_or("missing")
        ));
    }
    Action::Credit {
        session_id: session_id.into(),
        payment_id: session["metadata"]["payment_id"]
            .as_str()
            .map(str::to_string),
        amount_cents: session["amount_total"].as_i64().unwrap_or(0),
        currency: session["currency"].as_str().unwrap_or("").to_string(),
        payment_intent: session["payment_intent"].as_str().map(str::to_string),
    }
}

fn close_action(session: &Value, status: &str) -> Action {
    match session["id"].as_str() {
        Some(id) => Action::Close {
            session_id: id.into(),
            status: status.into(),
        },
        None => Action::Ignore("a session without an id".into()),
    }
}

fn claw_action(intent: Option<String>, change: ClawChange, receipt_url: Option<String>) -> Action {
    match intent {
        Some(payment_intent) => Action::Claw(Claw {
            payment_intent,
            change,
            receipt_url,
        }),
        None => Action::Ignore("no payment_intent to match a payment by".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payments(fee_percent: f64) -> PaymentsConfig {
        PaymentsConfig {
            fee_percent,
            ..PaymentsConfig::default()
        }
    }

    #[test]
    fn a_quote_adds_the_fee_rounded_half_up() {
        let ten = quote(&payments(2.9), "10").unwrap();
        assert_eq!((ten.credit_cents, ten.fee_cents), (1000, 29));
        assert_eq!(ten.charged_cents(), 1029);
        assert_eq!(ten.credit(), 10 * NANOS_PER_USD);
        // 7.77 × 2.9 % = 22.533 cents → 23
        assert_eq!(quote(&payments(2.9), "7.77").unwrap().fee_cents, 23);
        // 5.50 × 3 % = 16.5 cents → 17
        assert_eq!(quote(&payments(3.0), "5.50").unwrap().fee_cents, 17);
        assert_eq!(quote(&payments(0.0), "5").unwrap().fee_cents, 0);
    }

    #[test]
    fn amounts_outside_the_bounds_or_between_cents_are_refused() {
        for bad in ["4.99", "1000.01", "10.001", "ten", "", "-5"] {
            assert!(quote(&payments(0.0), bad).is_err(), "{bad}");
        }
        assert!(quote(&payments(0.0), "1000").is_ok());
    }

    fn paid(credit_usd: i64, charged_cents: i64) -> PaymentRow {
        PaymentRow {
            id: "pay_1".into(),
            user_id: "u".into(),
            checkout_session_id: Some("cs_1".into()),
            payment_intent: Some("pi_1".into()),
            status: "paid".into(),
            credit: credit_usd * NANOS_PER_USD,
            fee: 0,
            charged_cents,
            currency: "usd".into(),
            refunded_cents: 0,
            disputed_cents: 0,
            taken_back: 0,
            receipt_url: None,
            created_at: 0,
            updated_at: 0,
            paid_at: Some(0),
        }
    }

    #[test]
    fn refunds_take_back_credit_in_proportion_to_the_charge() {
        let mut payment = paid(10, 1030);
        payment.refunded_cents = 1030;
        assert_eq!(taken_back_total(&payment), 10 * NANOS_PER_USD);
        payment.refunded_cents = 515;
        assert_eq!(taken_back_total(&payment), 5 * NANOS_PER_USD);
        payment.disputed_cents = 5_000; // never more than the credit
        assert_eq!(taken_back_total(&payment), 10 * NANOS_PER_USD);
    }

    #[test]
    fn events_become_actions_with_stripes_amounts() {
        let completed = json!({"type": "checkout.session.completed", "data": {"object": {
            "id": "cs_1", "payment_status": "paid", "amount_total": 1029, "currency": "usd",
            "payment_intent": "pi_1", "metadata": {"payment_id": "pay_1"}}}});
        assert_eq!(
            action_for(&completed),
            Action::Credit {
                session_id: "cs_1".into(),
                payment_id: Some("pay_1".into()),
                amount_cents: 1029,
                currency: "usd".into(),
                payment_intent: Some("pi_1".into()),
            }
        );
        let unpaid = json!({"type": "checkout.session.completed", "data": {"object": {
            "id": "cs_1", "payment_status": "unpaid"}}});
        assert!(matches!(action_for(&unpaid), Action::Ignore(_)));
        let refunded = json!({"type": "charge.refunded", "data": {"object": {
            "payment_intent": "pi_1", "amount_refunded": 500, "receipt_url": "https://r"}}});
        assert_eq!(
            action_for(&refunded),
            Action::Claw(Claw {
                payment_intent: "pi_1".into(),
                change: ClawChange::RefundedTotal(500),
                receipt_url: Some("https://r".into()),
            })
        );
        let dispute = json!({"type": "charge.dispute.created", "data": {"object": {
            "payment_intent": "pi_1", "amount": 1029}}});
        assert!(matches!(
            action_for(&dispute),
            Action::Claw(Claw {
                change: ClawChange::DisputeOpened(1029),
                ..
            })
        ));
        let other = json!({"type": "customer.created", "data": {"object": {}}});
        assert!(matches!(action_for(&other), Action::Ignore(_)));
    }
}

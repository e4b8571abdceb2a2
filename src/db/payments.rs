//! Payments through Stripe Checkout and the webhook events that move them:
//! each event is applied once, by id, in one transaction with the balance
//! and ledger entries it causes. What an event means is `billing::payments`'s.

use super::ledger::{post, EntryKind, Posting};
use super::Db;
use crate::with_pool;

/// A payment as stored. Money is nano-USD, except `*_cents`, which count
/// the charged currency's smallest unit as Stripe does.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: String,
    pub user_id: String,
    pub checkout_session_id: Option<String>,
    pub payment_intent: Option<String>,
    /// `open`, `paid`, `failed`, `expired`, `refunded`,
    /// `partially_refunded`, `disputed` or `amount_mismatch`.
    pub status: String,
    pub credit: i64,
    pub fee: i64,
    pub charged_cents: i64,
    pub currency: String,
    pub refunded_cents: i64,
    pub disputed_cents: i64,
    /// What refunds and disputes took back off the balance so far.
    pub taken_back: i64,
    pub receipt_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub paid_at: Option<i64>,
}

const COLUMNS: &str = "id, user_id, checkout_session_id, payment_intent, status, credit, fee, \
     charged_cents, currency, refunded_cents, disputed_cents, taken_back, receipt_url, \
     created_at, updated_at, paid_at";

/// A payment about to be sent to Checkout.
pub struct NewPayment<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub credit: i64,
    pub fee: i64,
    pub charged_cents: i64,
    pub currency: &'a str,
    pub now: i64,
}

/// Stores a new payment as `open`.
pub async fn create(db: &Db, payment: &NewPayment<'_>) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO payments (id, user_id, status, credit, fee, charged_cents, currency, \
             created_at, updated_at) VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $7)",
        )
        .bind(payment.id)
        .bind(payment.user_id)
        .bind(payment.credit)
        .bind(payment.fee)
        .bind(payment.charged_cents)
        .bind(payment.currency)
        .bind(payment.now)
        .execute(pool)
        .await?;
        Ok(())
    })
}

/// Notes the Checkout Session created for an open payment.
pub async fn attach_session(
    db: &Db,
    id: &str,
    session_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE payments SET checkout_session_id = $1, updated_at = $2 \
             WHERE id = $3 AND checkout_session_id IS NULL",
        )
        .bind(session_id)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?;
        Ok(())
    })
}

/// Marks an open payment `failed` (its Checkout Session could not be made).
pub async fn mark_failed(db: &Db, id: &str, now: i64) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE payments SET status = 'failed', updated_at = $1 WHERE id = $2 AND status = 'open'")
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?;
        Ok(())
    })
}

/// One payment, if it is `user_id`'s.
pub async fn find_for_user(
    db: &Db,
    user_id: &str,
    id: &str,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE id = $1 AND user_id = $2");
    with_pool!(db, pool => {
        sqlx::query_as(&sql).bind(id).bind(user_id).fetch_optional(pool).await
    })
}

/// A user's payments, newest first.
pub async fn list_for_user(
    db: &Db,
    user_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<PaymentRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payments WHERE user_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    );
    with_pool!(db, pool => {
        sqlx::query_as(&sql).bind(user_id).bind(limit).bind(offset).fetch_all(pool).await
    })
}

/// A payment with its user's email, for the admin pages.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminPaymentRow {
    #[sqlx(flatten)]
    pub payment: PaymentRow,
    pub email: Option<String>,
}

/// Every user's payments, newest first.
pub async fn list_all(
    db: &Db,
    limit: i64,
    offset: i64,
) -> Result<Vec<AdminPaymentRow>, sqlx::Error> {
    let columns = COLUMNS
        .split(", ")
        .map(|c| format!("p.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns}, u.email FROM payments p JOIN users u ON u.id = p.user_id \
         ORDER BY p.created_at DESC, p.id DESC LIMIT $1 OFFSET $2"
    );
    with_pool!(db, pool => {
        sqlx::query_as(&sql).bind(limit).bind(offset).fetch_all(pool).await
    })
}

/// A webhook event as kept.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub received_at: i64,
    pub outcome: String,
    pub payment_id: Option<String>,
    pub user_id: Option<String>,
    pub payment_intent: Option<String>,
    pub amount_cents: Option<i64>,
    pub detail: Option<String>,
}

/// The latest webhook events, newest first.
pub async fn events(db: &Db, limit: i64, offset: i64) -> Result<Vec<EventRow>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT id, type, received_at, outcome, payment_id, user_id, payment_intent, \
             amount_cents, detail FROM stripe_events \
             ORDER BY received_at DESC, id DESC LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await
    })
}

/// An event as delivered: its id, its type, and when it came.
pub struct Delivery<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub received_at: i64,
}

/// What an event asks of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stripe took the money for a Checkout Session: credit it.
    Credit {
        session_id: String,
        /// Our payment id, from the session's metadata.
        payment_id: Option<String>,
        amount_cents: i64,
        currency: String,
        payment_intent: Option<String>,
    },
    /// The session ended without payment: `failed` or `expired`.
    Close { session_id: String, status: String },
    /// The money went back, or is contested.
    Claw(Claw),
    /// Nothing to do; the reason is kept with the event.
    Ignore(String),
}

/// A refund or dispute on a payment intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claw {
    pub payment_intent: String,
    pub change: ClawChange,
    pub receipt_url: Option<String>,
}

/// How a claw moves a payment's refunded or disputed amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClawChange {
    /// Refunded in all so far (Stripe's `amount_refunded`).
    RefundedTotal(i64),
    /// A dispute opened for this much.
    DisputeOpened(i64),
    /// A dispute for this much was won: the money is back.
    DisputeWon(i64),
}

impl ClawChange {
    fn amount_cents(self) -> i64 {
        match self {
            Self::RefundedTotal(c) | Self::DisputeOpened(c) | Self::DisputeWon(c) => c,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::RefundedTotal(_) => "refund",
            Self::DisputeOpened(_) => "dispute",
            Self::DisputeWon(_) => "dispute_won",
        }
    }

    fn from_parts(kind: &str, cents: i64) -> Option<Self> {
        match kind {
            "refund" => Some(Self::RefundedTotal(cents)),
            "dispute" => Some(Self::DisputeOpened(cents)),
            "dispute_won" => Some(Self::DisputeWon(cents)),
            _ => None,
        }
    }
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The event was seen before; nothing changed.
    Duplicate,
    /// Kept, with the outcome named, and these balance changes made.
    Done {
        outcome: String,
        changes: Vec<BalanceChange>,
    },
}

/// A balance change an event made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceChange {
    pub payment: PaymentRow,
    pub amount: i64,
    pub balance_after: i64,
    pub kind: EntryKind,
}

/// What the payment's refunds and disputes should have taken back in all,
/// in nano-USD (`billing::payments` decides).
pub type TakeBackRule = fn(&PaymentRow) -> i64;

/// Applies `$claw` to the payment `$current` inside the open transaction
/// `$tx`: the payment's amounts and status, and the ledger entry for what
/// it takes back (or gives back), pushed onto `$changes`. Evaluates to the
/// updated payment and the balance change.
macro_rules! claw {
    ($tx:expr, $current:expr, $claw:expr, $event_id:expr, $now:expr, $take_back:expr, $changes:expr) => {{
        let claw: &Claw = $claw;
        let (updated, kind, amount) = claw_update($current, claw, $take_back);
        sqlx::query(
            "UPDATE payments SET status = $1, refunded_cents = $2, disputed_cents = $3, \
             taken_back = $4, receipt_url = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(&updated.status)
        .bind(updated.refunded_cents)
        .bind(updated.disputed_cents)
        .bind(updated.taken_back)
        .bind(&updated.receipt_url)
        .bind($now)
        .bind(&updated.id)
        .execute(&mut *$tx)
        .await?;
        if amount != 0 {
            let note = format!(
                "{} of payment {} (Stripe event {})",
                claw_label(claw.change),
                updated.id,
                $event_id
            );
            let posting = Posting {
                user_id: &updated.user_id,
                kind,
                amount,
                note: Some(&note),
                payment_id: Some(&updated.id),
                may_owe: true,
                now: $now,
            };
            let balance = post!($tx, &posting)?.ok_or(sqlx::Error::RowNotFound)?;
            $changes.push(BalanceChange {
                payment: updated.clone(),
                amount,
                balance_after: balance,
                kind,
            });
        }
        Ok::<(PaymentRow, i64), sqlx::Error>((updated, amount))
    }};
}

/// Applies `action` for the event `delivery`, once: a repeated event id is
/// a [`Applied::Duplicate`]. The event, the payment, the balance and the
/// ledger change in one transaction.
pub async fn apply_event(
    db: &Db,
    delivery: &Delivery<'_>,
    action: &Action,
    take_back: TakeBackRule,
) -> Result<Applied, sqlx::Error> {
    let lock = match db {
        Db::Postgres(_) => " FOR UPDATE",
        Db::Sqlite(_) => "",
    };
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        // The first statement writes, so on SQLite the transaction holds
        // the write lock from here on; a second delivery waits, then sees
        // the row.
        let fresh = sqlx::query(
            "INSERT INTO stripe_events (id, type, received_at, outcome) VALUES ($1, $2, $3, 'processing') \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(delivery.event_id)
        .bind(delivery.event_type)
        .bind(delivery.received_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fresh == 0 {
            return Ok(Applied::Duplicate);
        }
        let now = delivery.received_at;
        let mut record = EventRecord { outcome: String::new(), payment: None, intent: None, cents: None, detail: None };
        let mut changes = Vec::new();
        match action {
            Action::Ignore(reason) => {
                record.outcome = "ignored".into();
                record.detail = Some(reason.clone());
            }
            Action::Close { session_id, status } => {
                let sql = format!(
                    "UPDATE payments SET status = $1, updated_at = $2 \
                     WHERE checkout_session_id = $3 AND status = 'open' RETURNING {COLUMNS}"
                );
                let closed: Option<PaymentRow> = sqlx::query_as(&sql)
                    .bind(status).bind(now).bind(session_id)
                    .fetch_optional(&mut *tx).await?;
                record.outcome = if closed.is_some() { status.clone() } else { "ignored".into() };
                if closed.is_none() {
                    record.detail = Some(format!("no open payment for session {session_id}"));
                }
                record.payment = closed;
            }
            Action::Credit { session_id, payment_id, amount_cents, currency, payment_intent } => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM payments WHERE checkout_session_id = $1 \
                     OR (checkout_session_id IS NULL AND id = $2){lock}"
                );
                let found: Option<PaymentRow> = sqlx::query_as(&sql)
                    .bind(session_id).bind(payment_id.as_deref().unwrap_or(""))
                    .fetch_optional(&mut *tx).await?;
                record.intent = payment_intent.clone();
                record.cents = Some(*amount_cents);
                match found {
                    None => {
                        record.outcome = "ignored".into();
                        record.detail = Some(format!("unknown checkout session {session_id}"));
                    }
                    Some(payment) if payment.status != "open" => {
                        record.outcome = "ignored".into();
                        record.detail = Some(format!("payment already {}", payment.status));
                        record.payment = Some(payment);
                    }
                    Some(payment) if payment.charged_cents != *amount_cents
                        || !payment.currency.eq_ignore_ascii_case(currency) => {
                        sqlx::query("UPDATE payments SET status = 'amount_mismatch', updated_at = $1 WHERE id = $2")
                            .bind(now).bind(&payment.id).execute(&mut *tx).await?;
                        record.outcome = "amount_mismatch".into();
                        record.detail = Some(format!(
                            "Stripe reports {amount_cents} {currency}; the payment was for {} {}",
                            payment.charged_cents, payment.currency
                        ));
                        record.payment = Some(payment);
                    }
                    Some(payment) => {
                        let sql = format!(
                            "UPDATE payments SET status = 'paid', payment_intent = $1, \
                             checkout_session_id = $2, paid_at = $3, updated_at = $3 \
                             WHERE id = $4 RETURNING {COLUMNS}"
                        );
                        let paid: PaymentRow = sqlx::query_as(&sql)
                            .bind(payment_intent).bind(session_id).bind(now).bind(&payment.id)
                            .fetch_one(&mut *tx).await?;
                        let note = format!("Payment {} (Stripe)", paid.id);
                        let posting = Posting {
                            user_id: &paid.user_id, kind: EntryKind::TopUp, amount: paid.credit,
                            note: Some(&note), payment_id: Some(&paid.id), may_owe: true, now,
                        };
                        let balance = post!(tx, &posting)?.ok_or(sqlx::Error::RowNotFound)?;
                        changes.push(BalanceChange { payment: paid.clone(), amount: paid.credit, balance_after: balance, kind: EntryKind::TopUp });
                        record.outcome = "credited".into();
                        record.payment = Some(paid.clone());
                        // Refunds and disputes that came first wait for this.
                        if let Some(intent) = &paid.payment_intent {
                            let waiting: Vec<(String, Option<i64>, Option<String>)> = sqlx::query_as(
                                "SELECT id, amount_cents, detail FROM stripe_events \
                                 WHERE payment_intent = $1 AND outcome = 'deferred' ORDER BY received_at, id",
                            )
                            .bind(intent).fetch_all(&mut *tx).await?;
                            for (event_id, cents, kind) in waiting {
                                let Some(change) = ClawChange::from_parts(kind.as_deref().unwrap_or(""), cents.unwrap_or(0)) else { continue };
                                let claw = Claw { payment_intent: intent.clone(), change, receipt_url: None };
                                let sql = format!("SELECT {COLUMNS} FROM payments WHERE id = $1");
                                let current: PaymentRow = sqlx::query_as(&sql).bind(&paid.id).fetch_one(&mut *tx).await?;
                                let (updated, _) = claw!(tx, &current, &claw, &event_id, now, take_back, changes)?;
                                sqlx::query("UPDATE stripe_events SET outcome = 'applied_late', payment_id = $1, user_id = $2 WHERE id = $3")
                                    .bind(&updated.id).bind(&updated.user_id).bind(&event_id)
                                    .execute(&mut *tx).await?;
                            }
                        }
                    }
                }
            }
            Action::Claw(claw) => {
                let sql = format!("SELECT {COLUMNS} FROM payments WHERE payment_intent = $1{lock}");
                let found: Option<PaymentRow> = sqlx::query_as(&sql)
                    .bind(&claw.payment_intent).fetch_optional(&mut *tx).await?;
                record.intent = Some(claw.payment_intent.clone());
                record.cents = Some(claw.change.amount_cents());
                match found {
                    None => {
                        record.outcome = "deferred".into();
                        record.detail = Some(claw.change.kind().into());
                    }
                    Some(current) => {
                        let (updated, amount) = claw!(tx, &current, claw, delivery.event_id, now, take_back, changes)?;
                        record.outcome = if amount == 0 { "no_change".into() } else { claw.change.kind().into() };
                        record.payment = Some(updated);
                    }
                }
            }
        }
        sqlx::query(
            "UPDATE stripe_events SET outcome = $1, payment_id = $2, user_id = $3, payment_intent = $4, \
             amount_cents = $5, detail = $6 WHERE id = $7",
        )
        .bind(&record.outcome)
        .bind(record.payment.as_ref().map(|p| p.id.clone()))
        .bind(record.payment.as_ref().map(|p| p.user_id.clone()))
        .bind(&record.intent)
        .bind(record.cents)
        .bind(&record.detail)
        .bind(delivery.event_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Applied::Done { outcome: record.outcome, changes })
    })
}

/// What the event row will say.
struct EventRecord {
    outcome: String,
    payment: Option<PaymentRow>,
    intent: Option<String>,
    cents: Option<i64>,
    detail: Option<String>,
}

/// The payment after `claw`, the ledger kind, and the balance change (a
/// removal is negative; a won dispute gives back).
fn claw_update(
    current: &PaymentRow,
    claw: &Claw,
    take_back: TakeBackRule,
) -> (PaymentRow, EntryKind, i64) {
    let mut updated = current.clone();
    let kind = match claw.change {
        ClawChange::RefundedTotal(total) => {
            updated.refunded_cents = updated.refunded_cents.max(total);
            EntryKind::Refund
        }
        ClawChange::DisputeOpened(cents) => {
            updated.disputed_cents += cents;
            EntryKind::Chargeback
        }
        ClawChange::DisputeWon(cents) => {
            updated.disputed_cents = (updated.disputed_cents - cents).max(0);
            EntryKind::Chargeback
        }
    };
    if claw.receipt_url.is_some() {
        updated.receipt_url = claw.receipt_url.clone();
    }
    let target = take_back(&updated);
    let amount = current.taken_back - target;
    updated.taken_back = target;
    updated.status = status_of(&updated).into();
    (updated, kind, amount)
}

/// A paid payment's status from what was refunded and disputed.
fn status_of(payment: &PaymentRow) -> &'static str {
    if payment.disputed_cents > 0 {
        "disputed"
    } else if payment.refunded_cents >= payment.charged_cents {
        "refunded"
    } else if payment.refunded_cents > 0 {
        "partially_refunded"
    } else {
        "paid"
    }
}

fn claw_label(change: ClawChange) -> &'static str {
    match change {
        ClawChange::RefundedTotal(_) => "Refund",
        ClawChange::DisputeOpened(_) => "Dispute",
        ClawChange::DisputeWon(_) => "Dispute won",
    }
}

//! Payments through Stripe Checkout and the webhook events that move them:
//! each event is applied once, by id, in one transaction with the balance
//! and ledger entries it causes. What an event means is `billing::payments`'s.

use sqlx::{Postgres, Sqlite, Transaction};

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

/// Applies `action` for the event `delivery`, once: a repeated event id is
/// a [`Applied::Duplicate`]. The event, the payment, the balance and the
/// ledger change in one transaction.
pub async fn apply_event(
    db: &Db,
    delivery: &Delivery<'_>,
    action: &Action,
    take_back: TakeBackRule,
) -> Result<Applied, sqlx::Error> {
    let mut tx = PaymentTx::begin(db).await?;
    // The first statement writes, so on SQLite the transaction holds the
    // write lock from here on; a second delivery waits, then sees the row.
    if !tx.insert_event(delivery).await? {
        return Ok(Applied::Duplicate);
    }
    let mut step = Step {
        now: delivery.received_at,
        take_back,
        record: EventRecord::default(),
        changes: Vec::new(),
    };
    match action {
        Action::Ignore(reason) => step.record.ignored(reason.clone()),
        Action::Close { session_id, status } => {
            close(&mut tx, &mut step, session_id, status).await?
        }
        Action::Credit { .. } => credit(&mut tx, &mut step, action).await?,
        Action::Claw(claw) => claw_or_defer(&mut tx, &mut step, claw, delivery.event_id).await?,
    }
    tx.record(delivery.event_id, &step.record).await?;
    tx.commit().await?;
    Ok(Applied::Done {
        outcome: step.record.outcome,
        changes: step.changes,
    })
}

/// What applying one event carries from step to step.
struct Step {
    now: i64,
    take_back: TakeBackRule,
    record: EventRecord,
    changes: Vec<BalanceChange>,
}

/// Ends an open session's payment as `failed` or `expired`.
async fn close(
    tx: &mut PaymentTx,
    step: &mut Step,
    session_id: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    match tx.close(session_id, status, step.now).await? {
        Some(closed) => {
            step.record.outcome = status.into();
            step.record.payment = Some(closed);
        }
        None => step
            .record
            .ignored(format!("no open payment for session {session_id}")),
    }
    Ok(())
}

/// Credits an open payment that Stripe charged as asked, then applies the
/// refunds and disputes that arrived before it.
async fn credit(tx: &mut PaymentTx, step: &mut Step, action: &Action) -> Result<(), sqlx::Error> {
    let Action::Credit {
        session_id,
        payment_id,
        amount_cents,
        currency,
        payment_intent,
    } = action
    else {
        return Ok(());
    };
    step.record.intent = payment_intent.clone();
    step.record.cents = Some(*amount_cents);
    let found = tx
        .payment_for_session(session_id, payment_id.as_deref())
        .await?;
    let payment = match found {
        None => {
            step.record
                .ignored(format!("unknown checkout session {session_id}"));
            return Ok(());
        }
        Some(payment) if payment.status != "open" => {
            step.record
                .ignored(format!("payment already {}", payment.status));
            step.record.payment = Some(payment);
            return Ok(());
        }
        Some(payment) => payment,
    };
    if payment.charged_cents != *amount_cents || !payment.currency.eq_ignore_ascii_case(currency) {
        tx.set_status(&payment.id, "amount_mismatch", step.now)
            .await?;
        step.record.outcome = "amount_mismatch".into();
        step.record.detail = Some(format!(
            "Stripe reports {amount_cents} {currency}; the payment was for {} {}",
            payment.charged_cents, payment.currency
        ));
        step.record.payment = Some(payment);
        return Ok(());
    }
    let paid = tx
        .mark_paid(&payment.id, payment_intent.as_deref(), session_id, step.now)
        .await?;
    let note = format!("Payment {} (Stripe)", paid.id);
    let balance = tx
        .post(&paid, EntryKind::TopUp, paid.credit, &note, step.now)
        .await?;
    step.changes.push(BalanceChange {
        payment: paid.clone(),
        amount: paid.credit,
        balance_after: balance,
        kind: EntryKind::TopUp,
    });
    step.record.outcome = "credited".into();
    step.record.payment = Some(paid.clone());
    apply_waiting(tx, step, &paid).await
}

/// Applies the refunds and disputes that waited for `paid`, oldest first.
async fn apply_waiting(
    tx: &mut PaymentTx,
    step: &mut Step,
    paid: &PaymentRow,
) -> Result<(), sqlx::Error> {
    let Some(intent) = &paid.payment_intent else {
        return Ok(());
    };
    for (event_id, cents, kind) in tx.deferred(intent).await? {
        let Some(change) =
            ClawChange::from_parts(kind.as_deref().unwrap_or(""), cents.unwrap_or(0))
        else {
            continue;
        };
        let claw = Claw {
            payment_intent: intent.clone(),
            change,
            receipt_url: None,
        };
        let current = tx.payment(&paid.id).await?;
        let (updated, _) = apply_claw(tx, step, &current, &claw, &event_id).await?;
        tx.mark_applied_late(&event_id, &updated).await?;
    }
    Ok(())
}

/// Applies a refund or dispute to its payment, or keeps it for later when
/// the payment is not credited yet.
async fn claw_or_defer(
    tx: &mut PaymentTx,
    step: &mut Step,
    claw: &Claw,
    event_id: &str,
) -> Result<(), sqlx::Error> {
    step.record.intent = Some(claw.payment_intent.clone());
    step.record.cents = Some(claw.change.amount_cents());
    let Some(current) = tx.payment_for_intent(&claw.payment_intent).await? else {
        step.record.outcome = "deferred".into();
        step.record.detail = Some(claw.change.kind().into());
        return Ok(());
    };
    let (updated, amount) = apply_claw(tx, step, &current, claw, event_id).await?;
    step.record.outcome = if amount == 0 {
        "no_change".into()
    } else {
        claw.change.kind().into()
    };
    step.record.payment = Some(updated);
    Ok(())
}

/// Moves `current` by `claw`, with the ledger entry for what it takes back
/// (or gives back); the updated payment and the balance change.
async fn apply_claw(
    tx: &mut PaymentTx,
    step: &mut Step,
    current: &PaymentRow,
    claw: &Claw,
    event_id: &str,
) -> Result<(PaymentRow, i64), sqlx::Error> {
    let (updated, kind, amount) = claw_update(current, claw, step.take_back);
    tx.save_claw(&updated, step.now).await?;
    if amount != 0 {
        let note = format!(
            "{} of payment {} (Stripe event {event_id})",
            claw_label(claw.change),
            updated.id
        );
        let balance = tx.post(&updated, kind, amount, &note, step.now).await?;
        step.changes.push(BalanceChange {
            payment: updated.clone(),
            amount,
            balance_after: balance,
            kind,
        });
    }
    Ok((updated, amount))
}

/// What the event row will say.
#[derive(Default)]
struct EventRecord {
    outcome: String,
    payment: Option<PaymentRow>,
    intent: Option<String>,
    cents: Option<i64>,
    detail: Option<String>,
}

impl EventRecord {
    fn ignored(&mut self, reason: String) {
        self.outcome = "ignored".into();
        self.detail = Some(reason);
    }
}

/// The transaction an event is applied in, on either backend.
enum PaymentTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$conn`, the transaction's connection, and `$lock`,
/// what locks a selected row on this backend.
macro_rules! on_tx {
    ($tx:expr, $conn:ident, $lock:ident => $body:expr) => {
        match $tx {
            PaymentTx::Sqlite(tx) => {
                let $conn = &mut **tx;
                let $lock = "";
                let _ = $lock;
                $body
            }
            PaymentTx::Postgres(tx) => {
                let $conn = &mut **tx;
                let $lock = " FOR UPDATE";
                let _ = $lock;
                $body
            }
        }
    };
}

impl PaymentTx {
    async fn begin(db: &Db) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Db::Sqlite(pool) => Self::Sqlite(pool.begin().await?),
            Db::Postgres(pool) => Self::Postgres(pool.begin().await?),
        })
    }

    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
    }

    /// Keeps the event as `processing`; `false` if it was kept before.
    async fn insert_event(&mut self, delivery: &Delivery<'_>) -> Result<bool, sqlx::Error> {
        const SQL: &str = "INSERT INTO stripe_events (id, type, received_at, outcome) \
            VALUES ($1, $2, $3, 'processing') ON CONFLICT (id) DO NOTHING";
        on_tx!(self, conn, _lock => {
            let done = sqlx::query(SQL)
                .bind(delivery.event_id)
                .bind(delivery.event_type)
                .bind(delivery.received_at)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Writes what the event did.
    async fn record(&mut self, event_id: &str, record: &EventRecord) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE stripe_events SET outcome = $1, payment_id = $2, user_id = $3, \
            payment_intent = $4, amount_cents = $5, detail = $6 WHERE id = $7";
        on_tx!(self, conn, _lock => {
            sqlx::query(SQL)
                .bind(&record.outcome)
                .bind(record.payment.as_ref().map(|p| p.id.as_str()))
                .bind(record.payment.as_ref().map(|p| p.user_id.as_str()))
                .bind(&record.intent)
                .bind(record.cents)
                .bind(&record.detail)
                .bind(event_id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }

    /// The payment of a Checkout Session (or, before its session was
    /// noted, of our id in its metadata), locked.
    async fn payment_for_session(
        &mut self,
        session_id: &str,
        payment_id: Option<&str>,
    ) -> Result<Option<PaymentRow>, sqlx::Error> {
        on_tx!(self, conn, lock => {
            let sql = format!(
                "SELECT {COLUMNS} FROM payments WHERE checkout_session_id = $1 \
                 OR (checkout_session_id IS NULL AND id = $2){lock}"
            );
            sqlx::query_as(&sql)
                .bind(session_id)
                .bind(payment_id.unwrap_or(""))
                .fetch_optional(&mut *conn)
                .await
        })
    }

    /// The payment of a payment intent, locked.
    async fn payment_for_intent(
        &mut self,
        intent: &str,
    ) -> Result<Option<PaymentRow>, sqlx::Error> {
        on_tx!(self, conn, lock => {
            let sql = format!("SELECT {COLUMNS} FROM payments WHERE payment_intent = $1{lock}");
            sqlx::query_as(&sql).bind(intent).fetch_optional(&mut *conn).await
        })
    }

    async fn payment(&mut self, id: &str) -> Result<PaymentRow, sqlx::Error> {
        on_tx!(self, conn, _lock => {
            let sql = format!("SELECT {COLUMNS} FROM payments WHERE id = $1");
            sqlx::query_as(&sql).bind(id).fetch_one(&mut *conn).await
        })
    }

    /// Ends the open payment of `session_id` with `status`.
    async fn close(
        &mut self,
        session_id: &str,
        status: &str,
        now: i64,
    ) -> Result<Option<PaymentRow>, sqlx::Error> {
        on_tx!(self, conn, _lock => {
            let sql = format!(
                "UPDATE payments SET status = $1, updated_at = $2 \
                 WHERE checkout_session_id = $3 AND status = 'open' RETURNING {COLUMNS}"
            );
            sqlx::query_as(&sql).bind(status).bind(now).bind(session_id).fetch_optional(&mut *conn).await
        })
    }

    async fn set_status(&mut self, id: &str, status: &str, now: i64) -> Result<(), sqlx::Error> {
        on_tx!(self, conn, _lock => {
            sqlx::query("UPDATE payments SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status).bind(now).bind(id).execute(&mut *conn).await?;
            Ok(())
        })
    }

    /// Marks a payment paid by `intent` through `session_id`.
    async fn mark_paid(
        &mut self,
        id: &str,
        intent: Option<&str>,
        session_id: &str,
        now: i64,
    ) -> Result<PaymentRow, sqlx::Error> {
        on_tx!(self, conn, _lock => {
            let sql = format!(
                "UPDATE payments SET status = 'paid', payment_intent = $1, checkout_session_id = $2, \
                 paid_at = $3, updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
            );
            sqlx::query_as(&sql).bind(intent).bind(session_id).bind(now).bind(id).fetch_one(&mut *conn).await
        })
    }

    /// Stores a payment's refunded and disputed amounts, what was taken
    /// back, its status and receipt.
    async fn save_claw(&mut self, payment: &PaymentRow, now: i64) -> Result<(), sqlx::Error> {
        const SQL: &str =
            "UPDATE payments SET status = $1, refunded_cents = $2, disputed_cents = $3, \
            taken_back = $4, receipt_url = $5, updated_at = $6 WHERE id = $7";
        on_tx!(self, conn, _lock => {
            sqlx::query(SQL)
                .bind(&payment.status)
                .bind(payment.refunded_cents)
                .bind(payment.disputed_cents)
                .bind(payment.taken_back)
                .bind(&payment.receipt_url)
                .bind(now)
                .bind(&payment.id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }

    /// Posts `amount` of `payment` to its user's balance and ledger (below
    /// zero if need be); the balance after.
    async fn post(
        &mut self,
        payment: &PaymentRow,
        kind: EntryKind,
        amount: i64,
        note: &str,
        now: i64,
    ) -> Result<i64, sqlx::Error> {
        let posting = Posting {
            user_id: &payment.user_id,
            kind,
            amount,
            note: Some(note),
            payment_id: Some(&payment.id),
            may_owe: true,
            now,
        };
        on_tx!(self, conn, _lock => {
            post!(conn, &posting)?.ok_or(sqlx::Error::RowNotFound)
        })
    }

    /// The events that wait for `intent`'s payment: (id, cents, kind).
    async fn deferred(
        &mut self,
        intent: &str,
    ) -> Result<Vec<(String, Option<i64>, Option<String>)>, sqlx::Error> {
        const SQL: &str = "SELECT id, amount_cents, detail FROM stripe_events \
            WHERE payment_intent = $1 AND outcome = 'deferred' ORDER BY received_at, id";
        on_tx!(self, conn, _lock => sqlx::query_as(SQL).bind(intent).fetch_all(&mut *conn).await)
    }

    async fn mark_applied_late(
        &mut self,
        event_id: &str,
        payment: &PaymentRow,
    ) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE stripe_events SET outcome = 'applied_late', payment_id = $1, \
            user_id = $2 WHERE id = $3";
        on_tx!(self, conn, _lock => {
            sqlx::query(SQL).bind(&payment.id).bind(&payment.user_id).bind(event_id).execute(&mut *conn).await?;
            Ok(())
        })
    }
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

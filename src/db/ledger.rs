//! The ledger, balances and reservations. Every balance change happens in the
//! same transaction as the ledger entry that explains it.

use super::Db;
use crate::with_pool;

/// Kinds of ledger entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    TopUp,
    Usage,
    Refund,
    Adjustment,
    SignupGrant,
    /// What a card dispute took back (or gave back, once won).
    Chargeback,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TopUp => "topup",
            Self::Usage => "usage",
            Self::Refund => "refund",
            Self::Adjustment => "adjustment",
            Self::SignupGrant => "signup_grant",
            Self::Chargeback => "chargeback",
        }
    }
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Entry {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub request_id: Option<String>,
    pub note: Option<String>,
    pub created_at: i64,
}

/// Why a credit could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    #[error("no such user")]
    NoUser,
    #[error("the balance cannot go below zero")]
    WouldGoNegative,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A new ledger entry id; time-ordered (UUIDv7), so inserts append to the index.
pub(crate) fn entry_id() -> String {
    format!("led_{}", uuid::Uuid::now_v7().simple())
}

/// One change to a user's balance and the ledger entry that explains it.
pub struct Posting<'a> {
    pub user_id: &'a str,
    pub kind: EntryKind,
    /// Nano-USD; negative removes.
    pub amount: i64,
    pub note: Option<&'a str>,
    /// The payment the entry comes from, if any.
    pub payment_id: Option<&'a str>,
    /// Whether a removal may take the balance below zero (a debt).
    pub may_owe: bool,
    pub now: i64,
}

/// Applies a [`Posting`] inside the open transaction `$conn` (a
/// `&mut` connection of either backend): the balance, its ledger entry,
/// and the debt record. Evaluates to `Ok(Some(balance after))`, or
/// `Ok(None)` when the user is missing or a removal would owe what it
/// may not.
macro_rules! post {
    ($conn:expr, $posting:expr) => {{
        let posting: &$crate::db::ledger::Posting = $posting;
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET balance = balance + $1, updated_at = $2 \
             WHERE id = $3 AND ($1 >= 0 OR $4 OR balance + $1 >= 0) RETURNING balance",
        )
        .bind(posting.amount)
        .bind(posting.now)
        .bind(posting.user_id)
        .bind(posting.may_owe)
        .fetch_optional(&mut *$conn)
        .await?;
        if let Some(balance) = balance {
            sqlx::query(
                "INSERT INTO ledger_entries \
                 (id, user_id, kind, amount, balance_after, note, created_at, payment_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind($crate::db::ledger::entry_id())
            .bind(posting.user_id)
            .bind(posting.kind.as_str())
            .bind(posting.amount)
            .bind(balance)
            .bind(posting.note)
            .bind(posting.now)
            .bind(posting.payment_id)
            .execute(&mut *$conn)
            .await?;
            if balance < 0 {
                sqlx::query($crate::db::ledger::NOTE_DEBT)
                    .bind(posting.user_id)
                    .bind(-balance)
                    .bind(posting.now)
                    .bind(None::<&str>)
                    .bind(posting.now)
                    .execute(&mut *$conn)
                    .await?;
            } else {
                sqlx::query("DELETE FROM debts WHERE user_id = $1")
                    .bind(posting.user_id)
                    .execute(&mut *$conn)
                    .await?;
            }
        }
        Ok::<Option<i64>, sqlx::Error>(balance)
    }};
}
pub(super) use post;

/// Adds `amount` (negative to remove) to a user's balance with its ledger
/// entry, atomically. A removal may not take the balance below zero (only
/// usage makes a debt); an addition always applies, and one that brings a
/// debt back to zero or above clears its record. Returns the new balance.
pub async fn credit(
    db: &Db,
    user_id: &str,
    kind: EntryKind,
    amount: i64,
    note: Option<&str>,
    now: i64,
) -> Result<i64, CreditError> {
    let posting = Posting {
        user_id,
        kind,
        amount,
        note,
        payment_id: None,
        may_owe: false,
        now,
    };
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let Some(balance) = post!(tx, &posting)? else {
            let exists: Option<i64> = sqlx::query_scalar("SELECT balance FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(if exists.is_some() { CreditError::WouldGoNegative } else { CreditError::NoUser });
        };
        tx.commit().await?;
        Ok(balance)
    })
}

/// A user's debt: what they owe, since when, and the request that took
/// their balance below zero.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Debt {
    pub user_id: String,
    pub amount: i64,
    pub since: i64,
    pub request_id: Option<String>,
}

/// The user's debt, if their balance is below zero.
pub async fn debt(db: &Db, user_id: &str) -> Result<Option<Debt>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as("SELECT user_id, amount, since, request_id FROM debts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await
    })
}

/// How many users owe, and what they owe in all.
pub async fn debt_total(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM debts")
            .fetch_one(pool)
            .await
    })
}

/// Every debt, largest first.
pub async fn debts(db: &Db, limit: i64, offset: i64) -> Result<Vec<Debt>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT user_id, amount, since, request_id FROM debts \
             ORDER BY amount DESC, user_id LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await
    })
}

/// A user's balance and the part of it held by reservations.
pub async fn balance(db: &Db, user_id: &str) -> Result<Option<(i64, i64)>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as("SELECT balance, reserved FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await
    })
}

/// The sum of a user's ledger entries (equals their balance, always).
pub async fn ledger_sum(db: &Db, user_id: &str) -> Result<i64, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(pool)
        .await
    })
}

/// A page of a user's ledger, newest first.
pub async fn entries(
    db: &Db,
    user_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, Entry>(
            "SELECT id, user_id, kind, amount, balance_after, request_id, note, created_at \
             FROM ledger_entries WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .bind(user_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await
    })
}

/// Releases reservations that expired before `now` (their requests died).
pub async fn release_expired(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    release_matching(db, "expires_at < $1", now).await
}

/// Releases the reservations and budget holds matching `condition` (SQL
/// over either table's columns, with `arg` as `$1`), charging nothing;
/// returns how many reservations it released.
pub async fn release_matching(db: &Db, condition: &str, arg: i64) -> Result<u64, sqlx::Error> {
    release_budget_holds(db, condition, arg).await?;
    release_where(db, condition, arg).await
}

/// Releases every open reservation (SQLite at startup: no other process can hold one).
pub async fn release_all(db: &Db) -> Result<u64, sqlx::Error> {
    release_budget_holds(db, "$1 = $1", 0).await?;
    release_where(db, "$1 = $1", 0).await
}

/// Releases budget holds matching `condition`, charging nothing.
async fn release_budget_holds(db: &Db, condition: &str, arg: i64) -> Result<(), sqlx::Error> {
    let delete = format!("DELETE FROM budget_holds WHERE {condition} RETURNING scope, amount");
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let holds: Vec<(String, i64)> = sqlx::query_as(&delete).bind(arg).fetch_all(&mut *tx).await?;
        for (scope, amount) in holds {
            sqlx::query(UNHOLD_BUDGET).bind(amount).bind(0i64).bind(&scope).execute(&mut *tx).await?;
        }
        tx.commit().await
    })
}

/// Takes `$1` from user `$2`'s balance, below zero if need be; returns
/// the balance after.
pub(super) const DEBIT: &str =
    "UPDATE users SET balance = balance - $1 WHERE id = $2 RETURNING balance";
/// Records that user `$1` owes `$2` (their balance is `-$2`): in debt
/// since `$3`, taken there by request `$4`; a debt already recorded keeps
/// its start and request, and only its amount changes (at `$5`).
pub(crate) const NOTE_DEBT: &str =
    "INSERT INTO debts (user_id, amount, since, request_id, updated_at) \
    VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (user_id) DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at";
/// Notes key `$2`'s use at `$1` (the latest use wins).
pub(super) const TOUCH: &str = "UPDATE api_keys SET last_used_at = $1 \
    WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)";

/// Releases `$1` held of budget scope `$3` and adds `$2` to what it spent.
pub(super) const UNHOLD_BUDGET: &str =
    "UPDATE budget_windows SET reserved = reserved - $1, spent = spent + $2 \
    WHERE scope = $3";

async fn release_where(db: &Db, condition: &str, arg: i64) -> Result<u64, sqlx::Error> {
    let select = format!("SELECT request_id, user_id, amount FROM reservations WHERE {condition}");
    let stale: Vec<(String, String, i64)> = with_pool!(db, pool => {
        sqlx::query_as(&select).bind(arg).fetch_all(pool).await?
    });
    let mut released = 0;
    for (request_id, user_id, amount) in stale {
        with_pool!(db, pool => {
            let mut tx = pool.begin().await?;
            let gone = sqlx::query("DELETE FROM reservations WHERE request_id = $1")
                .bind(&request_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if gone == 1 {
                sqlx::query("UPDATE users SET reserved = reserved - $1 WHERE id = $2")
                    .bind(amount)
                    .bind(&user_id)
                    .execute(&mut *tx)
                    .await?;
                released += 1;
            }
            tx.commit().await?;
        });
    }
    Ok(released)
}

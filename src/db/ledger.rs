//! The ledger, balances and reservations. Every balance change happens in the
//! same transaction as the ledger entry that explains it.

use super::{now_ms, Db};
use crate::with_pool;

/// Kinds of ledger entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    TopUp,
    Usage,
    Refund,
    Adjustment,
    SignupGrant,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TopUp => "topup",
            Self::Usage => "usage",
            Self::Refund => "refund",
            Self::Adjustment => "adjustment",
            Self::SignupGrant => "signup_grant",
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

fn entry_id() -> String {
    format!("led_{}", uuid::Uuid::new_v4().simple())
}

/// Adds `amount` (negative to remove) to a user's balance with its ledger
/// entry, atomically. Refuses to take the balance below zero.
pub async fn credit(
    db: &Db,
    user_id: &str,
    kind: EntryKind,
    amount: i64,
    note: Option<&str>,
) -> Result<i64, CreditError> {
    let now = now_ms();
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET balance = balance + $1, updated_at = $2 \
             WHERE id = $3 AND balance + $1 >= 0 RETURNING balance",
        )
        .bind(amount)
        .bind(now)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(balance) = balance else {
            let exists: Option<i64> = sqlx::query_scalar("SELECT balance FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(if exists.is_some() { CreditError::WouldGoNegative } else { CreditError::NoUser });
        };
        sqlx::query(
            "INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, note, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(entry_id())
        .bind(user_id)
        .bind(kind.as_str())
        .bind(amount)
        .bind(balance)
        .bind(note)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(balance)
    })
}

/// Sets money aside for a request if the available balance covers it.
/// Returns `false` (and changes nothing) when it does not.
pub async fn reserve(
    db: &Db,
    request_id: &str,
    user_id: &str,
    amount: i64,
    ttl_ms: i64,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let held = sqlx::query(
            "UPDATE users SET reserved = reserved + $1 WHERE id = $2 AND balance - reserved >= $1",
        )
        .bind(amount)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if held != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO reservations (request_id, user_id, amount, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(request_id)
        .bind(user_id)
        .bind(amount)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
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
    release_where(db, "expires_at < $1", now).await
}

/// Releases every open reservation (SQLite at startup: no other process can hold one).
pub async fn release_all(db: &Db) -> Result<u64, sqlx::Error> {
    release_where(db, "$1 = $1", 0).await
}

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

//! The ledger, balances and reservations. Every balance change happens in the
//! same transaction as the ledger entry that explains it.

use std::sync::Arc;

use super::usage::UsageRecord;
use super::{bulk, now_ms, Db};
use crate::billing::budget::BudgetLimit;
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

/// A new ledger entry id; time-ordered (UUIDv7), so inserts append to the index.
fn entry_id() -> String {
    format!("led_{}", uuid::Uuid::now_v7().simple())
}

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
) -> Result<i64, CreditError> {
    let now = now_ms();
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET balance = balance + $1, updated_at = $2 \
             WHERE id = $3 AND ($1 >= 0 OR balance + $1 >= 0) RETURNING balance",
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
        if balance < 0 {
            sqlx::query(NOTE_DEBT)
                .bind(user_id)
                .bind(-balance)
                .bind(now)
                .bind(None::<&str>)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("DELETE FROM debts WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
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
const DEBIT: &str = "UPDATE users SET balance = balance - $1 WHERE id = $2 RETURNING balance";
/// Records that user `$1` owes `$2` (their balance is `-$2`): in debt
/// since `$3`, taken there by request `$4`; a debt already recorded keeps
/// its start and request, and only its amount changes (at `$5`).
const NOTE_DEBT: &str = "INSERT INTO debts (user_id, amount, since, request_id, updated_at) \
    VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (user_id) DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at";
/// Notes key `$2`'s use at `$1` (the latest use wins).
const TOUCH: &str = "UPDATE api_keys SET last_used_at = $1 \
    WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)";

/// Releases `$1` held of budget scope `$3` and adds `$2` to what it spent.
const UNHOLD_BUDGET: &str =
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

/// One write to the money tables, applied by [`apply_batch`].
// `Settle`, the largest, is also the op of every request: boxing its record
// would cost an allocation per request to save memory in a short queue.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Hold `amount` of the user's available balance for a request, on
    /// behalf of replica `replica_id` (released should it die).
    Reserve {
        request_id: String,
        user_id: String,
        amount: i64,
        expires_at: i64,
        replica_id: Arc<str>,
    },
    /// Hold `amount` of each budget the request must fit in; all or none.
    /// Every budget belongs to the one user whose request it is.
    ReserveBudget {
        request_id: String,
        user_id: String,
        limits: Vec<BudgetLimit>,
        amount: i64,
        now: i64,
        expires_at: i64,
        replica_id: Arc<str>,
    },
    /// Write a usage record and settle its billing: the whole cost is
    /// taken, below zero if need be. `in_memory` when the in-memory
    /// accounts already held and charged it (SQLite); otherwise the
    /// request's reservation row is released here.
    Settle {
        record: UsageRecord,
        in_memory: bool,
        /// The budget scopes the request falls under, to release what it
        /// holds of each (if a sweep has not already) and charge its cost.
        budgets: Option<Arc<[String]>>,
        /// The key's rate-limit window to count the completion tokens in.
        rate_window: Option<i64>,
    },
}

impl WriteOp {
    /// The user whose money or budgets the op touches.
    fn user_id(&self) -> &str {
        match self {
            WriteOp::Reserve { user_id, .. } | WriteOp::ReserveBudget { user_id, .. } => user_id,
            WriteOp::Settle { record, .. } => &record.user_id,
        }
    }

    /// A settlement charged in memory, with nothing else to settle (no
    /// budget, no token window): the common case on SQLite, written in bulk.
    fn charged_in_memory(&self) -> Option<&UsageRecord> {
        match self {
            WriteOp::Settle {
                record,
                in_memory: true,
                budgets: None,
                rate_window: None,
            } => Some(record),
            _ => None,
        }
    }
}

/// Applies writes in order in one transaction (group commit): reservations,
/// and usage records with their settlement — the record, the release of its
/// reservation, the debit and its ledger entry, the key's `last_used_at`.
/// A record already written is skipped with everything that goes with it,
/// so a request is billed (and counted against its rate limit) exactly once.
/// Consecutive settlements charged in memory are written together by
/// [`settle_in_bulk`]. Returns, per op, whether it took effect (a
/// reservation may be refused).
pub async fn apply_batch(db: &Db, ops: &[WriteOp]) -> Result<Vec<bool>, sqlx::Error> {
    const RESERVE: &str =
        "UPDATE users SET reserved = reserved + $1 WHERE id = $2 AND balance - reserved >= $1";
    const HOLD: &str =
        "INSERT INTO reservations (request_id, user_id, amount, created_at, expires_at, replica_id) \
        VALUES ($1, $2, $3, $4, $5, $6)";
    const OPEN_WINDOW: &str = "INSERT INTO budget_windows (scope, period_start) VALUES ($1, $2) \
        ON CONFLICT (scope) DO NOTHING";
    const RESET_WINDOW: &str = "UPDATE budget_windows SET spent = 0, period_start = $2 \
        WHERE scope = $1 AND period_start = $3";
    const HOLD_BUDGET: &str = "UPDATE budget_windows SET reserved = reserved + $1 \
        WHERE scope = $2 AND spent + reserved + $1 <= $3";
    let now = now_ms();
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        lock_users(&mut tx, ops).await?;
        let mut results = Vec::with_capacity(ops.len());
        let charged_in_memory = |a: &WriteOp, b: &WriteOp| {
            a.charged_in_memory().is_some() == b.charged_in_memory().is_some()
        };
        for run in ops.chunk_by(charged_in_memory) {
            if run[0].charged_in_memory().is_some() {
                let group = run.iter().filter_map(WriteOp::charged_in_memory).collect();
                settle_in_bulk(&mut tx, group, now).await?;
                results.extend(std::iter::repeat_n(true, run.len()));
                continue;
            }
            for op in run {
                let (r, in_memory_charge, settle_budgets, rate_window) = match op {
                    WriteOp::Reserve { request_id, user_id, amount, expires_at, replica_id } => {
                        let held = sqlx::query(RESERVE)
                            .bind(amount)
                            .bind(user_id)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected()
                            == 1;
                        if held {
                            sqlx::query(HOLD)
                                .bind(request_id)
                                .bind(user_id)
                                .bind(amount)
                                .bind(now)
                                .bind(expires_at)
                                .bind(&**replica_id)
                                .execute(&mut *tx)
                                .await?;
                        }
                        results.push(held);
                        continue;
                    }
                    WriteOp::ReserveBudget { request_id, limits, amount, now, expires_at, replica_id, .. } => {
                        let mut taken: Vec<&str> = Vec::with_capacity(limits.len());
                        for limit in limits {
                            let fresh = limit.period.current_start(*now, *now);
                            sqlx::query(OPEN_WINDOW).bind(&limit.scope).bind(fresh).execute(&mut *tx).await?;
                            let stored: i64 = sqlx::query_scalar("SELECT period_start FROM budget_windows WHERE scope = $1")
                                .bind(&limit.scope)
                                .fetch_one(&mut *tx)
                                .await?;
                            let current = limit.period.current_start(stored, *now);
                            if current != stored {
                                sqlx::query(RESET_WINDOW)
                                    .bind(&limit.scope)
                                    .bind(current)
                                    .bind(stored)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            let held = sqlx::query(HOLD_BUDGET)
                                .bind(amount)
                                .bind(&limit.scope)
                                .bind(limit.max)
                                .execute(&mut *tx)
                                .await?
                                .rows_affected()
                                == 1;
                            if !held {
                                break;
                            }
                            taken.push(&limit.scope);
                        }
                        let all_held = taken.len() == limits.len();
                        for scope in taken {
                            if all_held {
                                sqlx::query(
                                    "INSERT INTO budget_holds (request_id, scope, amount, expires_at, replica_id) \
                                     VALUES ($1, $2, $3, $4, $5)",
                                )
                                .bind(request_id)
                                .bind(scope)
                                .bind(amount)
                                .bind(expires_at)
                                .bind(&**replica_id)
                                .execute(&mut *tx)
                                .await?;
                            } else {
                                sqlx::query(UNHOLD_BUDGET).bind(amount).bind(0i64).bind(scope).execute(&mut *tx).await?;
                            }
                        }
                        results.push(all_held);
                        continue;
                    }
                    WriteOp::Settle { record, in_memory, budgets, rate_window } => {
                        (record, *in_memory, budgets, *rate_window)
                    }
                };
                let written = insert_records(&mut tx, &[r]).await?.len();
                if written == 0 {
                    results.push(true);
                    continue;
                }
                if let (Some(window), Some(key_id)) = (rate_window, &r.key_id) {
                    sqlx::query(
                        "UPDATE rate_windows SET tokens = tokens + $1 WHERE key_id = $2 AND window_start = $3",
                    )
                    .bind(r.completion_tokens)
                    .bind(key_id)
                    .bind(window)
                    .execute(&mut *tx)
                    .await?;
                }
                if !in_memory_charge {
                    let reserved: Option<i64> = sqlx::query_scalar(
                        "DELETE FROM reservations WHERE request_id = $1 RETURNING amount",
                    )
                    .bind(&r.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(reserved) = reserved {
                        sqlx::query("UPDATE users SET reserved = reserved - $1 WHERE id = $2")
                            .bind(reserved)
                            .bind(&r.user_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                if r.cost > 0 {
                    let after: i64 = sqlx::query_scalar(DEBIT)
                        .bind(r.cost)
                        .bind(&r.user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, request_id, created_at) \
                         VALUES ($1, $2, 'usage', $3, $4, $5, $6)",
                    )
                    .bind(entry_id())
                    .bind(&r.user_id)
                    .bind(-r.cost)
                    .bind(after)
                    .bind(&r.id)
                    .bind(r.created_at)
                    .execute(&mut *tx)
                    .await?;
                    if after < 0 {
                        sqlx::query(NOTE_DEBT)
                            .bind(&r.user_id)
                            .bind(-after)
                            .bind(r.created_at)
                            .bind(&r.id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                // Each budget is charged in full, even when its hold was
                // released meanwhile (its replica was given up for dead).
                for scope in settle_budgets.iter().flat_map(|scopes| scopes.iter()) {
                    let held: i64 = sqlx::query_scalar(
                        "DELETE FROM budget_holds WHERE request_id = $1 AND scope = $2 RETURNING amount",
                    )
                    .bind(&r.id)
                    .bind(scope)
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or(0);
                    sqlx::query(UNHOLD_BUDGET).bind(held).bind(r.cost).bind(scope).execute(&mut *tx).await?;
                }
                if let Some(key_id) = &r.key_id {
                    sqlx::query(TOUCH).bind(r.created_at).bind(key_id).execute(&mut *tx).await?;
                }
                results.push(true);
            }
        }
        tx.commit().await?;
        Ok(results)
    })
}

/// A usage ledger entry about to be written.
struct UsageDebit<'a> {
    user_id: &'a str,
    balance_after: i64,
    record: &'a UsageRecord,
}

/// Writes a run of settlements charged in memory, in a few statements
/// whatever its length: the records (skipping any already written), one
/// debit per user, the ledger entries, the debts, the keys' last use. Each
/// record's whole cost is taken, below zero if need be.
async fn settle_in_bulk<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    group: Vec<&UsageRecord>,
    now: i64,
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i32: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let written: std::collections::HashSet<String> =
        insert_records(tx, &group).await?.into_iter().collect();
    let group: Vec<&UsageRecord> = group
        .into_iter()
        .filter(|r| written.contains(&r.id))
        .collect();
    let mut entries: Vec<UsageDebit> = Vec::with_capacity(group.len());
    for (user_id, records) in bulk::by_user(&group) {
        let charged: Vec<&UsageRecord> = records.into_iter().filter(|r| r.cost > 0).collect();
        let total: i64 = charged.iter().map(|r| r.cost).sum();
        if total == 0 {
            continue;
        }
        let after: i64 = sqlx::query_scalar(DEBIT)
            .bind(total)
            .bind(user_id)
            .fetch_one(&mut **tx)
            .await?;
        let mut balance = after + total;
        // The request that took the balance below zero, if one here did.
        let mut into_debt = None;
        for r in charged {
            if balance >= 0 && balance - r.cost < 0 {
                into_debt = Some(r);
            }
            balance -= r.cost;
            entries.push(UsageDebit {
                user_id,
                balance_after: balance,
                record: r,
            });
        }
        if after < 0 {
            let first = into_debt.unwrap_or(entries[entries.len() - 1].record);
            sqlx::query(NOTE_DEBT)
                .bind(user_id)
                .bind(-after)
                .bind(first.created_at)
                .bind(first.id.as_str())
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
    }
    for rows in bulk::chunks(&entries) {
        let mut insert = sqlx::query(bulk::ledger_insert_sql(
            rows.len(),
            bulk::Placeholders::of::<DB>(),
        ));
        for debit in rows {
            insert = insert
                .bind(entry_id())
                .bind(debit.user_id)
                .bind(EntryKind::Usage.as_str())
                .bind(-debit.record.cost)
                .bind(debit.balance_after)
                .bind(debit.record.id.as_str())
                .bind(debit.record.created_at);
        }
        insert.execute(&mut **tx).await?;
    }
    for (key_id, at) in bulk::last_use_by_key(&group) {
        sqlx::query(TOUCH)
            .bind(at)
            .bind(key_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Locks the rows of every user `ops` touch, in id order, before the batch
/// writes anything (PostgreSQL; SQLite locks the whole database). A
/// budget window or rate window belongs to one user, so batches from
/// several replicas then take every lock they share in one order and
/// cannot deadlock with each other. (The hourly sweeper of expired holds
/// still can, rarely; the writer retries a batch the database rolled back.)
async fn lock_users<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    ops: &[WriteOp],
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    if bulk::Placeholders::of::<DB>() == bulk::Placeholders::Positional {
        return Ok(());
    }
    let mut users: Vec<&str> = ops.iter().map(WriteOp::user_id).collect();
    users.sort_unstable();
    users.dedup();
    for ids in bulk::chunks(&users) {
        let mut lock = sqlx::query(bulk::lock_users_sql(ids.len()));
        for id in ids {
            lock = lock.bind(*id);
        }
        lock.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts usage records in as few statements as their number allows;
/// records already written are skipped. Returns the ids it wrote.
async fn insert_records<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    records: &[&UsageRecord],
) -> Result<Vec<String>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i32: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let style = bulk::Placeholders::of::<DB>();
    let mut written = Vec::with_capacity(records.len());
    for rows in bulk::chunks(records) {
        let mut insert = sqlx::query_scalar::<_, String>(bulk::usage_insert_sql(rows.len(), style));
        for r in rows {
            insert = insert
                .bind(r.id.as_str())
                .bind(r.user_id.as_str())
                .bind(r.key_id.as_deref())
                .bind(r.endpoint.as_str())
                .bind(r.provider.as_deref())
                .bind(r.model.as_deref())
                .bind(r.prompt_tokens)
                .bind(r.completion_tokens)
                .bind(r.cached_tokens)
                .bind(r.status)
                .bind(r.error_code.as_deref())
                .bind(r.latency_ms)
                .bind(r.ttft_ms)
                .bind(r.streamed)
                .bind(r.aborted)
                .bind(r.created_at)
                .bind(r.cost)
                .bind(r.client_request_id.as_deref())
                .bind(r.cache_write_tokens)
                .bind(r.cache_write_1h_tokens)
                .bind(r.provider_cost)
                .bind(r.tokens_source.as_str());
        }
        written.extend(insert.fetch_all(&mut **tx).await?);
    }
    Ok(written)
}

//! The SQL steps of a billing batch, in one transaction on either backend.
//! Which steps each write takes, and the arithmetic between them, is
//! `billing::batch`'s; here is only the SQL.

use sqlx::{Postgres, Sqlite, Transaction};

use super::bulk::{self, Placeholders};
use super::ledger::{entry_id, EntryKind, DEBIT, NOTE_DEBT, TOUCH, UNHOLD_BUDGET};
use super::usage::UsageRecord;
use super::Db;

/// An open transaction of the billing writer.
pub enum BatchTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$conn`, the transaction's connection, and `$style`,
/// its backend's placeholders.
macro_rules! on_tx {
    ($tx:expr, $conn:ident, $style:ident => $body:expr) => {
        match $tx {
            BatchTx::Sqlite(tx) => {
                let $conn = &mut **tx;
                let $style = Placeholders::Positional;
                let _ = $style;
                $body
            }
            BatchTx::Postgres(tx) => {
                let $conn = &mut **tx;
                let $style = Placeholders::Numbered;
                let _ = $style;
                $body
            }
        }
    };
}

/// Runs one statement with its arguments; how many rows it changed.
macro_rules! execute {
    ($tx:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        on_tx!($tx, conn, _style => {
            let done = sqlx::query($sql)$(.bind($arg))*.execute(&mut *conn).await?;
            Ok::<u64, sqlx::Error>(done.rows_affected())
        })
    };
}

/// A hold on a user's balance for one request.
#[derive(Clone, Copy)]
pub struct BalanceHold<'a> {
    pub request_id: &'a str,
    pub user_id: &'a str,
    pub amount: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub replica_id: &'a str,
}

/// A usage charge's ledger entry.
pub struct UsageEntry<'a> {
    pub user_id: &'a str,
    pub amount: i64,
    pub balance_after: i64,
    pub request_id: &'a str,
    pub created_at: i64,
}

/// What a user owes, and since which charge (a debt already recorded
/// keeps its own start).
#[derive(Clone, Copy)]
pub struct DebtNote<'a> {
    pub charge: &'a UsageEntry<'a>,
    /// The balance below zero, as a positive amount.
    pub owed: i64,
    /// When the note is written.
    pub now: i64,
}

impl BatchTx {
    /// Opens a transaction.
    pub async fn begin(db: &Db) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Db::Sqlite(pool) => Self::Sqlite(pool.begin().await?),
            Db::Postgres(pool) => Self::Postgres(pool.begin().await?),
        })
    }

    /// Commits it.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
    }

    /// Locks the users' rows in id order (PostgreSQL; SQLite locks the
    /// whole database), so that batches from several replicas take every
    /// lock they share in one order and cannot deadlock with each other.
    pub async fn lock_users(&mut self, mut users: Vec<&str>) -> Result<(), sqlx::Error> {
        let BatchTx::Postgres(tx) = self else {
            return Ok(());
        };
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

    /// Holds an amount of the user's available balance; `false` when it
    /// cannot cover it.
    pub async fn hold_balance(&mut self, hold: &BalanceHold<'_>) -> Result<bool, sqlx::Error> {
        const RESERVE: &str =
            "UPDATE users SET reserved = reserved + $1 WHERE id = $2 AND balance - reserved >= $1";
        const HOLD: &str = "INSERT INTO reservations \
            (request_id, user_id, amount, created_at, expires_at, replica_id) \
            VALUES ($1, $2, $3, $4, $5, $6)";
        let BalanceHold {
            request_id,
            user_id,
            amount,
            created_at,
            expires_at,
            replica_id,
        } = *hold;
        let held = execute!(self, RESERVE, amount, user_id)? == 1;
        if held {
            execute!(self, HOLD, request_id, user_id, amount, created_at, expires_at, replica_id)?;
        }
        Ok(held)
    }

    /// The start of a budget scope's stored window, opening it at `fresh`
    /// if it has none.
    pub async fn budget_window_start(
        &mut self,
        scope: &str,
        fresh: i64,
    ) -> Result<i64, sqlx::Error> {
        const OPEN: &str = "INSERT INTO budget_windows (scope, period_start) VALUES ($1, $2) \
            ON CONFLICT (scope) DO NOTHING";
        const START: &str = "SELECT period_start FROM budget_windows WHERE scope = $1";
        on_tx!(self, conn, _style => {
            sqlx::query(OPEN).bind(scope).bind(fresh).execute(&mut *conn).await?;
            sqlx::query_scalar(START).bind(scope).fetch_one(&mut *conn).await
        })
    }

    /// Starts a scope's window afresh at `start`, unless another batch did
    /// since it was read at `stored`.
    pub async fn restart_budget_window(
        &mut self,
        scope: &str,
        start: i64,
        stored: i64,
    ) -> Result<(), sqlx::Error> {
        const RESET: &str = "UPDATE budget_windows SET spent = 0, period_start = $2 \
            WHERE scope = $1 AND period_start = $3";
        execute!(self, RESET, scope, start, stored).map(drop)
    }

    /// Holds `amount` of a scope's budget of `max`; `false` when what is
    /// spent and held leaves too little.
    pub async fn hold_budget(
        &mut self,
        scope: &str,
        amount: i64,
        max: i64,
    ) -> Result<bool, sqlx::Error> {
        const HOLD: &str = "UPDATE budget_windows SET reserved = reserved + $1 \
            WHERE scope = $2 AND spent + reserved + $1 <= $3";
        Ok(execute!(self, HOLD, amount, scope, max)? == 1)
    }

    /// Notes which request holds `amount` of a scope, for its settlement
    /// (or a sweep) to release; a lease's hold (`db::leases::lease_id`)
    /// grows by `amount`.
    pub async fn note_budget_hold(
        &mut self,
        hold: &BalanceHold<'_>,
        scope: &str,
    ) -> Result<(), sqlx::Error> {
        const NOTE: &str =
            "INSERT INTO budget_holds (request_id, scope, amount, expires_at, replica_id) \
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id, scope) \
            DO UPDATE SET amount = budget_holds.amount + excluded.amount";
        let (id, amount, expires_at) = (hold.request_id, hold.amount, hold.expires_at);
        execute!(self, NOTE, id, scope, amount, expires_at, hold.replica_id).map(drop)
    }

    /// Releases `held` of a scope and adds `charged` to what it spent.
    pub async fn unhold_budget(
        &mut self,
        scope: &str,
        held: i64,
        charged: i64,
    ) -> Result<(), sqlx::Error> {
        execute!(self, UNHOLD_BUDGET, held, charged, scope).map(drop)
    }

    /// Takes the note of what a request holds of a scope; 0 if there is
    /// none (a sweep released it).
    pub async fn take_budget_hold(
        &mut self,
        request_id: &str,
        scope: &str,
    ) -> Result<i64, sqlx::Error> {
        const TAKE: &str =
            "DELETE FROM budget_holds WHERE request_id = $1 AND scope = $2 RETURNING amount";
        on_tx!(self, conn, _style => {
            let held: Option<i64> = sqlx::query_scalar(TAKE)
                .bind(request_id)
                .bind(scope)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(held.unwrap_or(0))
        })
    }

    /// Takes up to `amount` off lease `lease`'s hold of a scope, deleting
    /// the hold when nothing is left of it; returns what it took (the
    /// caller releases that of the scope).
    pub async fn take_budget_lease(
        &mut self,
        lease: &str,
        scope: &str,
        amount: i64,
    ) -> Result<i64, sqlx::Error> {
        const HELD: &str = "SELECT amount FROM budget_holds WHERE request_id = $1 AND scope = $2";
        const SHRINK: &str =
            "UPDATE budget_holds SET amount = amount - $1 WHERE request_id = $2 AND scope = $3";
        const DROP: &str = "DELETE FROM budget_holds WHERE request_id = $1 AND scope = $2";
        let held: Option<i64> = on_tx!(self, conn, _style => {
            sqlx::query_scalar(HELD).bind(lease).bind(scope).fetch_optional(&mut *conn).await?
        });
        let taken = held.unwrap_or(0).min(amount.max(0));
        if taken == 0 {
            return Ok(0);
        }
        // A sweep may have released the hold since it was read: then
        // nothing is taken.
        let changed = if Some(taken) == held {
            execute!(self, DROP, lease, scope)?
        } else {
            execute!(self, SHRINK, taken, lease, scope)?
        };
        Ok(if changed == 1 { taken } else { 0 })
    }

    /// Inserts usage records in as few statements as their number allows;
    /// records already written are skipped. Returns the ids it wrote.
    pub async fn insert_records(
        &mut self,
        records: &[&UsageRecord],
    ) -> Result<Vec<String>, sqlx::Error> {
        on_tx!(self, conn, style => {
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
                written.extend(insert.fetch_all(&mut *conn).await?);
            }
            Ok(written)
        })
    }

    /// Counts `tokens` in a key's rate-limit window.
    pub async fn count_tokens(
        &mut self,
        key_id: &str,
        window: i64,
        tokens: i64,
    ) -> Result<(), sqlx::Error> {
        const COUNT: &str =
            "UPDATE rate_windows SET tokens = tokens + $1 WHERE key_id = $2 AND window_start = $3";
        execute!(self, COUNT, tokens, key_id, window).map(drop)
    }

    /// Releases a request's reservation of the user's balance, if it has one.
    pub async fn release_reservation(
        &mut self,
        request_id: &str,
        user_id: &str,
    ) -> Result<(), sqlx::Error> {
        const TAKE: &str = "DELETE FROM reservations WHERE request_id = $1 RETURNING amount";
        const RELEASE: &str = "UPDATE users SET reserved = reserved - $1 WHERE id = $2";
        on_tx!(self, conn, _style => {
            let reserved: Option<i64> =
                sqlx::query_scalar(TAKE).bind(request_id).fetch_optional(&mut *conn).await?;
            if let Some(reserved) = reserved {
                sqlx::query(RELEASE).bind(reserved).bind(user_id).execute(&mut *conn).await?;
            }
            Ok(())
        })
    }

    /// Takes `amount` (down to nothing) from lease `lease` and from the
    /// user's reserved total: what a call charged to the lease cost
    /// (PostgreSQL; SQLite has no leases).
    pub async fn take_lease(
        &mut self,
        lease: &str,
        user_id: &str,
        amount: i64,
    ) -> Result<i64, sqlx::Error> {
        match self {
            BatchTx::Postgres(tx) => super::leases::take(tx, lease, user_id, amount).await,
            BatchTx::Sqlite(_) => Ok(0),
        }
    }

    /// Takes `amount` from a user's balance, below zero if need be;
    /// returns the balance after.
    pub async fn debit(&mut self, user_id: &str, amount: i64) -> Result<i64, sqlx::Error> {
        on_tx!(self, conn, _style => {
            sqlx::query_scalar(DEBIT).bind(amount).bind(user_id).fetch_one(&mut *conn).await
        })
    }

    /// Writes usage ledger entries, in as few statements as their number allows.
    pub async fn insert_usage_entries(
        &mut self,
        entries: &[UsageEntry<'_>],
    ) -> Result<(), sqlx::Error> {
        on_tx!(self, conn, style => {
            for rows in bulk::chunks(entries) {
                let mut insert = sqlx::query(bulk::ledger_insert_sql(rows.len(), style));
                for entry in rows {
                    insert = insert
                        .bind(entry_id())
                        .bind(entry.user_id)
                        .bind(EntryKind::Usage.as_str())
                        .bind(entry.amount)
                        .bind(entry.balance_after)
                        .bind(entry.request_id)
                        .bind(entry.created_at);
                }
                insert.execute(&mut *conn).await?;
            }
            Ok(())
        })
    }

    /// Records what a user owes (a debt already recorded keeps its start).
    pub async fn note_debt(&mut self, debt: &DebtNote<'_>) -> Result<(), sqlx::Error> {
        let DebtNote { charge, owed, now } = *debt;
        let (user, since, request) = (charge.user_id, charge.created_at, charge.request_id);
        execute!(self, NOTE_DEBT, user, owed, since, request, now).map(drop)
    }

    /// Notes a key's use at `at` (the latest use wins).
    pub async fn touch_key(&mut self, key_id: &str, at: i64) -> Result<(), sqlx::Error> {
        execute!(self, TOUCH, at, key_id).map(drop)
    }
}

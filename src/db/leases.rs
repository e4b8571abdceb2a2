//! Leases. On credit (PostgreSQL): the part of a user's available balance
//! one replica may spend without asking, held as one reservation row of its
//! own (`lease:<replica>:<user>`). Being a reservation, a lease counts in
//! `users.reserved`, so leases and per-call reservations together never
//! hold more than the balance; and, carrying its replica's id, it is freed
//! with that replica's other holds when the replica stops beating
//! (`replicas::release_dead`). On a budget (either backend): a budget hold
//! of its own (`lease:<replica>:<scope>`), in `budget_windows.reserved`
//! like the holds of single calls, grown and shrunk in transactions of their
//! own through `db::batch_tx`'s steps (`billing::batch`).

use super::Db;

/// The reservation id of `replica_id`'s lease on `user_id`'s credit.
pub fn lease_id(replica_id: &str, user_id: &str) -> String {
    format!("lease:{replica_id}:{user_id}")
}

/// A lease never expires by time: only its replica returns it, or the
/// liveness sweep when its replica is gone.
pub const NEVER: i64 = i64::MAX;

/// Adds `amount` to the lease, if the user's available balance covers it;
/// `false` (and nothing changed) when it does not.
pub async fn grow(
    db: &Db,
    replica_id: &str,
    user_id: &str,
    amount: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    const RESERVE: &str =
        "UPDATE users SET reserved = reserved + $1 WHERE id = $2 AND balance - reserved >= $1";
    const LEASE: &str = "INSERT INTO reservations \
        (request_id, user_id, amount, created_at, expires_at, replica_id) \
        VALUES ($1, $2, $3, $4, $5, $6) \
        ON CONFLICT (request_id) DO UPDATE SET amount = reservations.amount + excluded.amount";
    let Db::Postgres(pool) = db else {
        return Ok(false);
    };
    if amount <= 0 {
        return Ok(false);
    }
    let mut tx = pool.begin().await?;
    let reserved = sqlx::query(RESERVE)
        .bind(amount)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if reserved != 1 {
        return Ok(false); // rolled back on drop
    }
    sqlx::query(LEASE)
        .bind(lease_id(replica_id, user_id))
        .bind(user_id)
        .bind(amount)
        .bind(now)
        .bind(NEVER)
        .bind(replica_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Gives back up to `amount` of the lease; returns what was given back
/// (less when settlements took part of it meanwhile). A lease given back
/// whole is deleted.
pub async fn shrink(
    db: &Db,
    replica_id: &str,
    user_id: &str,
    amount: i64,
) -> Result<i64, sqlx::Error> {
    let Db::Postgres(pool) = db else {
        return Ok(0);
    };
    if amount <= 0 {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    // The user's row first, as the billing writer locks it: the other
    // order deadlocks against a batch settling the same user.
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let given = take(&mut tx, &lease_id(replica_id, user_id), user_id, amount).await?;
    tx.commit().await?;
    Ok(given)
}

/// Takes up to `amount` off lease `lease` and off the user's `reserved`,
/// deleting the lease when nothing is left of it; returns what it took.
/// Shared by [`shrink`] and the settlement of a call spent from a lease;
/// the caller holds the user's row locked.
pub async fn take(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    lease: &str,
    user_id: &str,
    amount: i64,
) -> Result<i64, sqlx::Error> {
    const HELD: &str = "SELECT amount FROM reservations WHERE request_id = $1 FOR UPDATE";
    const SHRINK: &str = "UPDATE reservations SET amount = amount - $1 WHERE request_id = $2";
    const DROP: &str = "DELETE FROM reservations WHERE request_id = $1";
    const UNRESERVE: &str = "UPDATE users SET reserved = reserved - $1 WHERE id = $2";
    let held: Option<i64> = sqlx::query_scalar(HELD)
        .bind(lease)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(held) = held else {
        return Ok(0);
    };
    let taken = held.min(amount.max(0));
    if taken == 0 {
        return Ok(0);
    }
    if taken == held {
        sqlx::query(DROP).bind(lease).execute(&mut **tx).await?;
    } else {
        sqlx::query(SHRINK)
            .bind(taken)
            .bind(lease)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(UNRESERVE)
        .bind(taken)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(taken)
}

/// What `user_id`'s leases hold in all, every replica's.
pub async fn total(db: &Db, user_id: &str) -> Result<i64, sqlx::Error> {
    let Db::Postgres(pool) = db else {
        return Ok(0);
    };
    sqlx::query_scalar::<_, i64>(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM reservations \
         WHERE user_id = $1 AND request_id LIKE 'lease:%'",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await
}

/// Whether any reservation but lease `own` holds `user_id`'s credit:
/// another replica's lease, or a call's reservation.
pub async fn held_besides(db: &Db, user_id: &str, own: &str) -> Result<bool, sqlx::Error> {
    let Db::Postgres(pool) = db else {
        return Ok(false);
    };
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM reservations WHERE user_id = $1 AND request_id <> $2)",
    )
    .bind(user_id)
    .bind(own)
    .fetch_one(pool)
    .await
}

/// Whether anything holds part of budget `scope`: a call, or a lease.
pub async fn budget_held(db: &Db, scope: &str) -> Result<bool, sqlx::Error> {
    const HELD: &str = "SELECT EXISTS (SELECT 1 FROM budget_holds WHERE scope = $1)";
    crate::with_pool!(db, pool => sqlx::query_scalar::<_, bool>(HELD).bind(scope).fetch_one(pool).await)
}

/// Gives back every lease `replica_id` holds, on credit and on budgets (a
/// clean shutdown, once its calls are settled); returns how many.
pub async fn return_all(db: &Db, replica_id: &str) -> Result<u64, sqlx::Error> {
    let budgets = return_budget_leases(db, replica_id).await?;
    let Db::Postgres(pool) = db else {
        return Ok(budgets);
    };
    let mut tx = pool.begin().await?;
    // The users' rows first, in id order, as the billing writer locks them.
    sqlx::query(
        "SELECT 1 FROM users WHERE id IN (SELECT user_id FROM reservations \
         WHERE replica_id = $1 AND request_id LIKE 'lease:%') ORDER BY id FOR UPDATE",
    )
    .bind(replica_id)
    .execute(&mut *tx)
    .await?;
    let returned: Vec<(String, i64)> = sqlx::query_as(
        "DELETE FROM reservations WHERE replica_id = $1 AND request_id LIKE 'lease:%' \
         RETURNING user_id, amount",
    )
    .bind(replica_id)
    .fetch_all(&mut *tx)
    .await?;
    for (user_id, amount) in &returned {
        sqlx::query("UPDATE users SET reserved = reserved - $1 WHERE id = $2")
            .bind(amount)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(budgets + returned.len() as u64)
}

/// Gives back every lease `replica_id` holds on budgets; returns how many.
async fn return_budget_leases(db: &Db, replica_id: &str) -> Result<u64, sqlx::Error> {
    const RETURN: &str = "DELETE FROM budget_holds \
        WHERE replica_id = $1 AND request_id LIKE 'lease:%' RETURNING scope, amount";
    crate::with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let returned: Vec<(String, i64)> =
            sqlx::query_as(RETURN).bind(replica_id).fetch_all(&mut *tx).await?;
        for (scope, amount) in &returned {
            sqlx::query(super::ledger::UNHOLD_BUDGET)
                .bind(amount)
                .bind(0i64)
                .bind(scope)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(returned.len() as u64)
    })
}

/// A user's balance, what reservations hold of it, and how much of that
/// is leases, read in one snapshot (PostgreSQL).
pub async fn balance_and_leases(
    db: &Db,
    user_id: &str,
) -> Result<Option<(i64, i64, i64)>, sqlx::Error> {
    let Db::Postgres(pool) = db else {
        return Ok(None);
    };
    sqlx::query_as(
        "SELECT balance, reserved, CAST(COALESCE((SELECT SUM(amount) FROM reservations \
         WHERE user_id = $1 AND request_id LIKE 'lease:%'), 0) AS BIGINT) \
         FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

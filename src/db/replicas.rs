//! Gateway processes sharing a PostgreSQL database: each registers, beats
//! a heartbeat, and releases what a replica that stopped beating held.
//! Every time here is the database's clock, so replicas whose own clocks
//! disagree still agree on who is alive. On SQLite (one process) these do
//! nothing.

use super::ledger;
use super::Db;

/// The database's time, in epoch milliseconds (PostgreSQL).
const NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// Registers replica `id`, alive now.
pub async fn register(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    let Db::Postgres(pool) = db else {
        return Ok(());
    };
    let sql = format!(
        "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES ($1, {NOW_MS}, {NOW_MS}) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"
    );
    sqlx::query(&sql).bind(id).execute(pool).await?;
    Ok(())
}

/// Notes that replica `id` is alive now; `false` if it was given up for
/// dead meanwhile (its holds are gone: it registers again).
pub async fn heartbeat(db: &Db, id: &str) -> Result<bool, sqlx::Error> {
    let Db::Postgres(pool) = db else {
        return Ok(true);
    };
    let sql = format!("UPDATE replicas SET heartbeat_at = {NOW_MS} WHERE id = $1");
    let beat = sqlx::query(&sql)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(beat == 1)
}

/// Removes replica `id` (a clean shutdown, once everything is settled).
pub async fn unregister(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    let Db::Postgres(pool) = db else {
        return Ok(());
    };
    sqlx::query("DELETE FROM replicas WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// What releasing a dead replica's holds freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    pub reservations: u64,
    pub idempotency_claims: u64,
}

/// Releases every reservation, budget hold and idempotency claim of a
/// replica silent for more than `timeout_ms` (or unknown), then forgets
/// such replicas.
pub async fn release_dead(db: &Db, timeout_ms: i64) -> Result<Released, sqlx::Error> {
    let Db::Postgres(pool) = db else {
        return Ok(Released::default());
    };
    let dead = format!(
        "replica_id IS NOT NULL AND replica_id NOT IN \
         (SELECT id FROM replicas WHERE heartbeat_at >= {NOW_MS} - $1)"
    );
    let reservations = ledger::release_matching(db, &dead, timeout_ms).await?;
    let idempotency_claims = sqlx::query(&format!(
        "DELETE FROM idempotent_requests WHERE state = 'in_flight' AND {dead}"
    ))
    .bind(timeout_ms)
    .execute(pool)
    .await?
    .rows_affected();
    sqlx::query(&format!(
        "DELETE FROM replicas WHERE heartbeat_at < {NOW_MS} - $1"
    ))
    .bind(timeout_ms)
    .execute(pool)
    .await?;
    Ok(Released {
        reservations,
        idempotency_claims,
    })
}

//! Gateway processes sharing a PostgreSQL database: each registers, beats
//! a heartbeat, and releases what a replica that stopped beating held.

use super::ledger;
use super::Db;
use crate::with_pool;

/// Registers replica `id`, alive at `now`.
pub async fn register(db: &Db, id: &str, now: i64) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Notes that replica `id` is alive at `now`; `false` if it was given up
/// for dead meanwhile (its holds are gone: it registers again).
pub async fn heartbeat(db: &Db, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let beat = with_pool!(db, pool => {
        sqlx::query("UPDATE replicas SET heartbeat_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(beat == 1)
}

/// Removes replica `id` (a clean shutdown, once everything is settled).
pub async fn unregister(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("DELETE FROM replicas WHERE id = $1").bind(id).execute(pool).await?;
    });
    Ok(())
}

/// What releasing a dead replica's holds freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    pub reservations: u64,
    pub idempotency_claims: u64,
}

/// Releases every reservation, budget hold and idempotency claim of a
/// replica that has not beaten since `stale_before` (or is unknown), then
/// forgets such replicas.
pub async fn release_dead(db: &Db, stale_before: i64) -> Result<Released, sqlx::Error> {
    const DEAD: &str = "replica_id IS NOT NULL AND replica_id NOT IN \
        (SELECT id FROM replicas WHERE heartbeat_at >= $1)";
    let reservations = ledger::release_matching(db, DEAD, stale_before).await?;
    let idempotency_claims = with_pool!(db, pool => {
        sqlx::query(&format!("DELETE FROM idempotent_requests WHERE state = 'in_flight' AND {DEAD}"))
            .bind(stale_before)
            .execute(pool)
            .await?
            .rows_affected()
    });
    with_pool!(db, pool => {
        sqlx::query("DELETE FROM replicas WHERE heartbeat_at < $1")
            .bind(stale_before)
            .execute(pool)
            .await?;
    });
    Ok(Released {
        reservations,
        idempotency_claims,
    })
}

//! Per-key request and token counts per minute, in the database so that
//! every replica counts against the same limits.

use super::Db;
use crate::with_pool;

/// The length of a rate-limit window.
pub const WINDOW_MS: i64 = 60_000;

/// The start of the window holding `now`.
pub fn window_start(now: i64) -> i64 {
    now - now.rem_euclid(WINDOW_MS)
}

/// Counts a slice of `requests` and `tokens` in the key's window if that
/// stays within both limits; the window's counts after it, or `None` (and
/// nothing counted) when it does not fit.
pub async fn claim(
    db: &Db,
    key_id: &str,
    window: i64,
    requests: i64,
    tokens: i64,
    rpm: i64,
    tpm: i64,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    const CLAIM: &str = "INSERT INTO rate_windows (key_id, window_start, requests, tokens) \
        SELECT $1, $2, $3, $4 WHERE $3 <= $5 AND $4 <= $6 \
        ON CONFLICT (key_id, window_start) DO UPDATE \
        SET requests = rate_windows.requests + $3, tokens = rate_windows.tokens + $4 \
        WHERE rate_windows.requests + $3 <= $5 AND rate_windows.tokens + $4 <= $6 \
        RETURNING requests, tokens";
    with_pool!(db, pool => {
        sqlx::query_as(CLAIM)
            .bind(key_id)
            .bind(window)
            .bind(requests)
            .bind(tokens)
            .bind(rpm)
            .bind(tpm)
            .fetch_optional(pool)
            .await
    })
}

/// The requests and tokens counted in the key's window starting at `window`.
pub async fn counts(db: &Db, key_id: &str, window: i64) -> Result<(i64, i64), sqlx::Error> {
    const COUNTS: &str =
        "SELECT requests, tokens FROM rate_windows WHERE key_id = $1 AND window_start = $2";
    with_pool!(db, pool => {
        Ok(sqlx::query_as(COUNTS)
            .bind(key_id)
            .bind(window)
            .fetch_optional(pool)
            .await?
            .unwrap_or((0, 0)))
    })
}

/// Deletes windows that ended before `cutoff`.
pub async fn prune(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    let sql = "DELETE FROM rate_windows WHERE window_start < $1";
    Ok(with_pool!(db, pool => sqlx::query(sql).bind(cutoff).execute(pool).await?.rows_affected()))
}

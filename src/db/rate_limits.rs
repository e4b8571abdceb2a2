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

/// Counts one request of `tokens` in the key's current window if that stays
/// within both limits. Returns the window's counts after the request, and
/// whether it was admitted (when refused, the counts are as they stand).
pub async fn admit(
    db: &Db,
    key_id: &str,
    window: i64,
    tokens: i64,
    rpm: i64,
    tpm: i64,
) -> Result<(bool, i64, i64), sqlx::Error> {
    const ADMIT: &str = "INSERT INTO rate_windows (key_id, window_start, requests, tokens) \
        VALUES ($1, $2, 1, $3) ON CONFLICT (key_id, window_start) DO UPDATE \
        SET requests = rate_windows.requests + 1, tokens = rate_windows.tokens + $3 \
        WHERE rate_windows.requests + 1 <= $4 AND rate_windows.tokens + $3 <= $5 \
        RETURNING requests, tokens";
    with_pool!(db, pool => {
        let admitted: Option<(i64, i64)> = sqlx::query_as(ADMIT)
            .bind(key_id)
            .bind(window)
            .bind(tokens)
            .bind(rpm)
            .bind(tpm)
            .fetch_optional(pool)
            .await?;
        if let Some((requests, tokens)) = admitted {
            return Ok((true, requests, tokens));
        }
        let (requests, tokens) = counts(db, key_id, window).await?;
        Ok((false, requests, tokens))
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

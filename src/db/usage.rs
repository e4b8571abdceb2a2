//! Queries on `usage_records`: one row per proxied request.

use super::Db;
use crate::with_pool;

/// Everything measured about one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRecord {
    pub id: String,
    pub user_id: String,
    pub key_id: Option<String>,
    pub endpoint: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub status: i32,
    pub error_code: Option<String>,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub streamed: i32,
    pub aborted: i32,
    pub created_at: i64,
    /// What the user was charged, in nano-USD.
    pub cost: i64,
}

/// One request's record, if it belongs to `user_id`.
pub async fn find_for_user(
    db: &Db,
    id: &str,
    user_id: &str,
) -> Result<Option<UsageRecord>, sqlx::Error> {
    let sql = "SELECT * FROM usage_records WHERE id = $1 AND user_id = $2";
    with_pool!(db, pool => {
        sqlx::query_as::<_, UsageRecord>(sql).bind(id).bind(user_id).fetch_optional(pool).await
    })
}

/// Every record, oldest first (for tests and exports).
pub async fn all(db: &Db) -> Result<Vec<UsageRecord>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, UsageRecord>("SELECT * FROM usage_records ORDER BY created_at, id")
            .fetch_all(pool)
            .await
    })
}

/// Requests and spend (nano-USD) of one key since `since_ms`.
pub async fn key_spend(db: &Db, key_id: &str, since_ms: i64) -> Result<(i64, i64), sqlx::Error> {
    let sql = "SELECT COUNT(*), CAST(COALESCE(SUM(cost), 0) AS BIGINT) FROM usage_records \
               WHERE key_id = $1 AND created_at >= $2";
    with_pool!(db, pool => {
        sqlx::query_as::<_, (i64, i64)>(sql).bind(key_id).bind(since_ms).fetch_one(pool).await
    })
}

/// Totals of a user's requests since `since_ms`.
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct Totals {
    pub requests: i64,
    pub cost: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// A user's request count, spend and tokens since `since_ms`.
pub async fn user_totals(db: &Db, user_id: &str, since_ms: i64) -> Result<Totals, sqlx::Error> {
    let sql = "SELECT COUNT(*) AS requests, CAST(COALESCE(SUM(cost), 0) AS BIGINT) AS cost, \
               CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
               CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens \
               FROM usage_records WHERE user_id = $1 AND created_at >= $2";
    with_pool!(db, pool => {
        sqlx::query_as::<_, Totals>(sql).bind(user_id).bind(since_ms).fetch_one(pool).await
    })
}

/// Spend per UTC day and model since `since_ms`: (day start in ms, model, nano-USD).
pub async fn daily_spend(
    db: &Db,
    user_id: &str,
    since_ms: i64,
) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
    let sql = "SELECT (created_at / 86400000) * 86400000 AS day, COALESCE(model, '?') AS model, \
               CAST(SUM(cost) AS BIGINT) AS cost FROM usage_records \
               WHERE user_id = $1 AND created_at >= $2 AND cost > 0 \
               GROUP BY (created_at / 86400000) * 86400000, COALESCE(model, '?') ORDER BY day, model";
    with_pool!(db, pool => {
        sqlx::query_as::<_, (i64, String, i64)>(sql).bind(user_id).bind(since_ms).fetch_all(pool).await
    })
}

/// Filters for a user's request list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub key_id: Option<String>,
    pub model: Option<String>,
}

/// A page of a user's requests, newest first.
pub async fn list_for_user(
    db: &Db,
    user_id: &str,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<Vec<UsageRecord>, sqlx::Error> {
    let sql = "SELECT * FROM usage_records WHERE user_id = $1 \
               AND ($2 IS NULL OR created_at >= $2) AND ($3 IS NULL OR created_at < $3) \
               AND ($4 IS NULL OR key_id = $4) AND ($5 IS NULL OR model = $5) \
               ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7";
    with_pool!(db, pool => {
        sqlx::query_as::<_, UsageRecord>(sql)
            .bind(user_id)
            .bind(filter.from_ms)
            .bind(filter.to_ms)
            .bind(filter.key_id.as_deref())
            .bind(filter.model.as_deref())
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await
    })
}

/// The models a user has called, for the usage filter.
pub async fn models_for_user(db: &Db, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT model FROM usage_records WHERE user_id = $1 AND model IS NOT NULL ORDER BY model",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await
    })
}

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
    /// Prompt tokens read from the provider's cache.
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
    /// The client's own `x-request-id`, if it sent one.
    pub client_request_id: Option<String>,
    /// Prompt tokens written to the provider's cache for 5 minutes (its
    /// default), and for an hour; both are part of `prompt_tokens`.
    pub cache_write_tokens: i64,
    pub cache_write_1h_tokens: i64,
    /// What the provider charges the operator for the request, in nano-USD
    /// (`cost` less the margin).
    pub provider_cost: i64,
    /// How the tokens were known (see `billing::TokensSource`).
    pub tokens_source: String,
}

/// One request's record, if it belongs to `user_id`: by the gateway's id,
/// or else by the client's own `x-request-id` (its latest use).
pub async fn find_for_user(
    db: &Db,
    id: &str,
    user_id: &str,
) -> Result<Option<UsageRecord>, sqlx::Error> {
    const BY_ID: &str = "SELECT * FROM usage_records WHERE id = $1 AND user_id = $2";
    const BY_CLIENT_ID: &str = "SELECT * FROM usage_records \
        WHERE user_id = $2 AND client_request_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1";
    for sql in [BY_ID, BY_CLIENT_ID] {
        let found = with_pool!(db, pool => {
            sqlx::query_as::<_, UsageRecord>(sql).bind(id).bind(user_id).fetch_optional(pool).await
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Every record, oldest first (for tests and exports).
pub async fn all(db: &Db) -> Result<Vec<UsageRecord>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, UsageRecord>("SELECT * FROM usage_records ORDER BY created_at, id")
            .fetch_all(pool)
            .await
    })
}

/// The SQL of [`key_spend`] (public for the query-plan tests).
pub const KEY_SPEND_SQL: &str = "SELECT COUNT(*), CAST(COALESCE(SUM(cost), 0) AS BIGINT) \
     FROM usage_records WHERE key_id = $1 AND created_at >= $2";

/// Requests and spend (nano-USD) of one key since `since_ms`.
pub async fn key_spend(db: &Db, key_id: &str, since_ms: i64) -> Result<(i64, i64), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, (i64, i64)>(KEY_SPEND_SQL).bind(key_id).bind(since_ms).fetch_one(pool).await
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

/// The SQL of [`user_totals`] (public for the query-plan tests).
pub const USER_TOTALS_SQL: &str =
    "SELECT COUNT(*) AS requests, CAST(COALESCE(SUM(cost), 0) AS BIGINT) AS cost, \
     CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
     CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens \
     FROM usage_records WHERE user_id = $1 AND created_at >= $2";

/// A user's request count, spend and tokens since `since_ms`.
pub async fn user_totals(db: &Db, user_id: &str, since_ms: i64) -> Result<Totals, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, Totals>(USER_TOTALS_SQL).bind(user_id).bind(since_ms).fetch_one(pool).await
    })
}

/// The SQL of [`daily_spend`] (public for the query-plan tests).
pub const DAILY_SPEND_SQL: &str =
    "SELECT (created_at / 86400000) * 86400000 AS day, COALESCE(model, '?') AS model, \
     CAST(SUM(cost) AS BIGINT) AS cost FROM usage_records \
     WHERE user_id = $1 AND created_at >= $2 AND cost > 0 \
     GROUP BY (created_at / 86400000) * 86400000, COALESCE(model, '?') ORDER BY day, model";

/// Spend per UTC day and model since `since_ms`: (day start in ms, model, nano-USD).
pub async fn daily_spend(
    db: &Db,
    user_id: &str,
    since_ms: i64,
) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, (i64, String, i64)>(DAILY_SPEND_SQL).bind(user_id).bind(since_ms).fetch_all(pool).await
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

/// A page of a user's requests, newest first. Only the filters in use go
/// into the SQL, so the planner can pick the index that fits them.
pub async fn list_for_user(
    db: &Db,
    user_id: &str,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<Vec<UsageRecord>, sqlx::Error> {
    let sql = list_sql(filter);
    with_pool!(db, pool => {
        let query = bind_filter!(sqlx::query_as::<_, UsageRecord>(&sql), user_id, filter);
        query.bind(limit).bind(offset).fetch_all(pool).await
    })
}

/// Binds a user and the filters in use, in [`filter_sql`]'s order.
macro_rules! bind_filter {
    ($query:expr, $user_id:expr, $filter:expr) => {{
        let filter: &Filter = $filter;
        let mut query = $query.bind($user_id);
        if let Some(from) = filter.from_ms {
            query = query.bind(from);
        }
        if let Some(to) = filter.to_ms {
            query = query.bind(to);
        }
        if let Some(key_id) = &filter.key_id {
            query = query.bind(key_id);
        }
        if let Some(model) = &filter.model {
            query = query.bind(model);
        }
        query
    }};
}
use bind_filter;

/// The SQL of [`list_for_user`]: placeholders in the order values are bound.
pub fn list_sql(filter: &Filter) -> String {
    let (conditions, n) = filter_sql(filter, "");
    format!(
        "SELECT * FROM usage_records WHERE {conditions} \
         ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    )
}

/// The conditions of a user's filtered requests, on columns named with
/// `prefix` (a table alias and a dot, or nothing): `$1` is the user, then
/// the filters in use. Returns them and the last placeholder's number.
fn filter_sql(filter: &Filter, prefix: &str) -> (String, usize) {
    let mut sql = format!("{prefix}user_id = $1");
    let mut n = 1;
    let mut condition = |column: &str, op: &str, present: bool| {
        if present {
            n += 1;
            sql.push_str(&format!(" AND {prefix}{column} {op} ${n}"));
        }
    };
    condition("created_at", ">=", filter.from_ms.is_some());
    condition("created_at", "<", filter.to_ms.is_some());
    condition("key_id", "=", filter.key_id.is_some());
    condition("model", "=", filter.model.is_some());
    (sql, n)
}

/// A usage record as the CSV export writes it: with its key's prefix.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportRow {
    #[sqlx(flatten)]
    pub record: UsageRecord,
    pub key_prefix: Option<String>,
}

/// Where an export page starts: after the row with this time and id (the
/// order is newest first).
pub type ExportCursor = (i64, String);

/// The SQL of [`export_page`]: like [`list_sql`], with key prefixes, and a
/// page that starts after the cursor (when `after`) instead of an offset.
pub fn export_sql(filter: &Filter, after: bool) -> String {
    let (conditions, n) = filter_sql(filter, "r.");
    let cursor = if after {
        // `created_at <= a` alone bounds the index range, so each page
        // starts where the last ended instead of scanning up to it.
        format!(
            " AND r.created_at <= ${a} AND (r.created_at < ${a} OR r.id < ${b})",
            a = n + 1,
            b = n + 2
        )
    } else {
        String::new()
    };
    let limit = if after { n + 3 } else { n + 1 };
    format!(
        "SELECT r.*, k.key_prefix FROM usage_records r LEFT JOIN api_keys k ON k.id = r.key_id \
         WHERE {conditions}{cursor} ORDER BY r.created_at DESC, r.id DESC LIMIT ${limit}"
    )
}

/// A page of a user's requests that match `filter`, newest first, after
/// `after`: the CSV export reads them a page at a time, each on a
/// connection held only for its query, so a slow download holds no
/// connection (and no snapshot) while it waits.
pub async fn export_page(
    db: &Db,
    user_id: &str,
    filter: &Filter,
    after: Option<&ExportCursor>,
    limit: i64,
) -> Result<Vec<ExportRow>, sqlx::Error> {
    let sql = export_sql(filter, after.is_some());
    with_pool!(db, pool => {
        let mut query = bind_filter!(sqlx::query_as::<_, ExportRow>(&sql), user_id, filter);
        if let Some((at, id)) = after {
            query = query.bind(*at).bind(id.as_str());
        }
        query.bind(limit).fetch_all(pool).await
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

/// The SQL of [`all_totals`]: every user's requests since `$1`.
pub const ALL_TOTALS_SQL: &str =
    "SELECT COUNT(*) AS requests, CAST(COALESCE(SUM(cost), 0) AS BIGINT) AS cost, \
     CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
     CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens \
     FROM usage_records WHERE created_at >= $1";

/// Every user's request count, spend and tokens since `since_ms` (admins).
pub async fn all_totals(db: &Db, since_ms: i64) -> Result<Totals, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, Totals>(ALL_TOTALS_SQL).bind(since_ms).fetch_one(pool).await
    })
}

/// The SQL of [`all_daily_spend`].
pub const ALL_DAILY_SPEND_SQL: &str =
    "SELECT (created_at / 86400000) * 86400000 AS day, COALESCE(model, '?') AS model, \
     CAST(SUM(cost) AS BIGINT) AS cost FROM usage_records \
     WHERE created_at >= $1 AND cost > 0 \
     GROUP BY (created_at / 86400000) * 86400000, COALESCE(model, '?') ORDER BY day, model";

/// Every user's spend per UTC day and model since `since_ms` (admins).
pub async fn all_daily_spend(
    db: &Db,
    since_ms: i64,
) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, (i64, String, i64)>(ALL_DAILY_SPEND_SQL).bind(since_ms).fetch_all(pool).await
    })
}

//! Queries on `api_keys`. Every query a dashboard user can reach is scoped by
//! `user_id`, so no id sent by a client reaches another user's keys.

use super::Db;
use crate::with_pool;

/// A row of `api_keys`; the key itself is never stored, only its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub key_prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The operator's allow-list (JSON array), shown to the owner read-only.
    pub allowed_models: Option<String>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub max_budget: Option<i64>,
    pub budget_duration_sec: Option<i64>,
    #[sqlx(flatten)]
    pub own: OwnLimits,
}

const COLUMNS: &str = "id, user_id, name, key_prefix, created_at, last_used_at, expires_at, \
     revoked_at, allowed_models, rpm_limit, tpm_limit, max_budget, budget_duration_sec, \
     self_monthly_cap, self_allowed_models, self_expires_at";

/// The limits a key's owner sets on it (the keys page, `PATCH /api/keys/{id}`),
/// stored apart from the operator's so that they only ever narrow them.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct OwnLimits {
    /// Nano-USD per calendar month (UTC); `None`: no cap.
    #[sqlx(rename = "self_monthly_cap")]
    pub monthly_cap: Option<i64>,
    /// JSON array, as stored; `None`: whatever the operator allows.
    #[sqlx(rename = "self_allowed_models")]
    pub allowed_models: Option<String>,
    /// Epoch milliseconds; `None`: no expiry of the owner's.
    #[sqlx(rename = "self_expires_at")]
    pub expires_at: Option<i64>,
}

/// The budget scope a key's monthly cap is held under.
pub fn cap_scope(key_id: &str) -> String {
    format!("keycap:{key_id}")
}

/// Replaces the limits `user_id` set on their key `key_id`, if it is theirs
/// and not revoked; `None` otherwise. With a cap, the cap's window starts
/// at `month_start` holding what the key spent since (so a cap set
/// mid-month counts the month's spend), and every replica is told to
/// forget its cached copy of the key when the change commits.
pub async fn update_own_limits(
    db: &Db,
    user_id: &str,
    key_id: &str,
    limits: &OwnLimits,
    month_start: i64,
) -> Result<Option<KeyRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE api_keys SET self_monthly_cap = $3, self_allowed_models = $4, self_expires_at = $5 \
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING {COLUMNS}"
    );
    let row = with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let row = sqlx::query_as::<_, KeyRow>(&sql)
            .bind(key_id)
            .bind(user_id)
            .bind(limits.monthly_cap)
            .bind(&limits.allowed_models)
            .bind(limits.expires_at)
            .fetch_optional(&mut *tx)
            .await?;
        if row.as_ref().is_some_and(|r| r.own.monthly_cap.is_some()) {
            sqlx::query(SEED_CAP_WINDOW)
                .bind(cap_scope(key_id))
                .bind(month_start)
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
        }
        if row.is_some() {
            super::notify(&mut tx, super::Change::User(user_id.to_string())).await?;
        }
        tx.commit().await?;
        row
    });
    Ok(row)
}

/// Opens (or restarts) a cap's window at `$2` with what key `$3` spent since.
const SEED_CAP_WINDOW: &str = "INSERT INTO budget_windows (scope, period_start, spent) \
     SELECT $1, $2, CAST(COALESCE(SUM(cost), 0) AS BIGINT) FROM usage_records \
     WHERE key_id = $3 AND created_at >= $2 \
     ON CONFLICT (scope) DO UPDATE SET period_start = excluded.period_start, spent = excluded.spent";

/// Lists one user's keys, newest first.
pub async fn list_for_user(db: &Db, user_id: &str) -> Result<Vec<KeyRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, KeyRow>(&sql).bind(user_id).fetch_all(pool).await
    })
}

/// `user_id`'s key `key_id`; `None` if there is no such key of theirs.
pub async fn find_for_user(
    db: &Db,
    user_id: &str,
    key_id: &str,
) -> Result<Option<KeyRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND user_id = $2");
    with_pool!(db, pool => {
        sqlx::query_as::<_, KeyRow>(&sql).bind(key_id).bind(user_id).fetch_optional(pool).await
    })
}

/// Revokes a key if, and only if, it belongs to `user_id` and is still active.
/// Returns whether a key was revoked.
pub async fn revoke_for_user(
    db: &Db,
    user_id: &str,
    key_id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let sql = "UPDATE api_keys SET revoked_at = $1 \
               WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL";
    let result = with_pool!(db, pool => {
        sqlx::query(sql).bind(now).bind(key_id).bind(user_id).execute(pool).await?.rows_affected()
    });
    if result == 1 {
        super::announce(db, super::Change::User(user_id.to_string())).await;
    }
    Ok(result == 1)
}

/// A key and what authenticating a request needs about its owner, as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct KeyAuthRow {
    #[sqlx(flatten)]
    pub standing: KeyStanding,
    pub allowed_models: Option<String>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub max_budget: Option<i64>,
    pub budget_duration_sec: Option<i64>,
    pub user_max_budget: Option<i64>,
    pub user_budget_duration_sec: Option<i64>,
    pub user_budget_period: Option<String>,
    #[sqlx(flatten)]
    pub own: OwnLimits,
}

/// Where a key and its owner stand: what authenticating a request checks.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyStanding {
    pub id: String,
    pub user_id: String,
    pub key_prefix: String,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub user_blocked_at: Option<i64>,
    pub user_deleted_at: Option<i64>,
}

/// A stored `allowed_models` JSON array; anything else allows every model.
pub fn parse_models(json: Option<&str>) -> Option<Vec<String>> {
    json.and_then(|text| serde_json::from_str(text).ok())
}

/// Looks a key up by hash, with its owner's status and budget.
pub async fn find_for_auth(db: &Db, key_hash: &str) -> Result<Option<KeyAuthRow>, sqlx::Error> {
    let sql = "SELECT k.id, k.user_id, k.key_prefix, k.revoked_at, k.expires_at, \
               u.blocked_at AS user_blocked_at, u.deleted_at AS user_deleted_at, \
               k.allowed_models, k.rpm_limit, k.tpm_limit, k.max_budget, k.budget_duration_sec, \
               b.max_budget AS user_max_budget, b.budget_duration_sec AS user_budget_duration_sec, \
               b.period AS user_budget_period, \
               k.self_monthly_cap, k.self_allowed_models, k.self_expires_at \
               FROM api_keys k JOIN users u ON u.id = k.user_id \
               LEFT JOIN budgets b ON b.id = u.budget_id WHERE k.key_hash = $1";
    with_pool!(db, pool => {
        sqlx::query_as::<_, KeyAuthRow>(sql).bind(key_hash).fetch_optional(pool).await
    })
}

/// Everything an operator sees about a key (never its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub key_prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub allowed_models: Option<String>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub max_budget: Option<i64>,
    pub budget_duration_sec: Option<i64>,
    pub metadata: Option<String>,
    #[sqlx(flatten)]
    pub own: OwnLimits,
}

const ADMIN_COLUMNS: &str = "id, user_id, name, key_prefix, created_at, last_used_at, expires_at, \
     revoked_at, allowed_models, rpm_limit, tpm_limit, max_budget, budget_duration_sec, metadata, \
     self_monthly_cap, self_allowed_models, self_expires_at";

impl From<AdminKeyRow> for KeyRow {
    fn from(row: AdminKeyRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            key_prefix: row.key_prefix,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            allowed_models: row.allowed_models,
            rpm_limit: row.rpm_limit,
            tpm_limit: row.tpm_limit,
            max_budget: row.max_budget,
            budget_duration_sec: row.budget_duration_sec,
            own: row.own,
        }
    }
}

/// A key's settings, as an operator sets them.
#[derive(Debug, Clone, Default)]
pub struct KeySettings {
    pub name: String,
    pub expires_at: Option<i64>,
    /// JSON array, as stored.
    pub allowed_models: Option<String>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub max_budget: Option<i64>,
    pub budget_duration_sec: Option<i64>,
    /// JSON object, as stored.
    pub metadata: Option<String>,
    /// Whether the key is revoked (the time it was).
    pub revoked_at: Option<i64>,
}

/// Stores a new key, created at `created_at`, with its settings (see
/// `auth::keys::issue`, the one caller).
pub async fn insert(
    db: &Db,
    user_id: &str,
    key_hash: &str,
    key_prefix: &str,
    created_at: i64,
    settings: &KeySettings,
) -> Result<AdminKeyRow, sqlx::Error> {
    let id = format!("key_{}", uuid::Uuid::new_v4().simple());
    let sql = format!(
        "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, created_at, expires_at, \
         allowed_models, rpm_limit, tpm_limit, max_budget, budget_duration_sec, metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {ADMIN_COLUMNS}"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, AdminKeyRow>(&sql)
            .bind(&id)
            .bind(user_id)
            .bind(&settings.name)
            .bind(key_hash)
            .bind(key_prefix)
            .bind(created_at)
            .bind(settings.expires_at)
            .bind(&settings.allowed_models)
            .bind(settings.rpm_limit)
            .bind(settings.tpm_limit)
            .bind(settings.max_budget)
            .bind(settings.budget_duration_sec)
            .bind(&settings.metadata)
            .fetch_one(pool)
            .await
    })
}

/// One key by id, for an operator.
pub async fn find_admin(db: &Db, id: &str) -> Result<Option<AdminKeyRow>, sqlx::Error> {
    let sql = format!("SELECT {ADMIN_COLUMNS} FROM api_keys WHERE id = $1");
    with_pool!(db, pool => sqlx::query_as::<_, AdminKeyRow>(&sql).bind(id).fetch_optional(pool).await)
}

/// A page of keys, oldest first, optionally of one user.
pub async fn list_admin(
    db: &Db,
    user_id: Option<&str>,
    skip: i64,
    limit: i64,
) -> Result<Vec<AdminKeyRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ADMIN_COLUMNS} FROM api_keys WHERE ($3 IS NULL OR user_id = $3) \
         ORDER BY created_at, id LIMIT $1 OFFSET $2"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, AdminKeyRow>(&sql)
            .bind(limit)
            .bind(skip)
            .bind(user_id)
            .fetch_all(pool)
            .await
    })
}

/// Replaces a key's settings; `None` if there is no such key.
pub async fn update_settings(
    db: &Db,
    id: &str,
    settings: &KeySettings,
) -> Result<Option<AdminKeyRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE api_keys SET name = $2, expires_at = $3, allowed_models = $4, rpm_limit = $5, \
         tpm_limit = $6, max_budget = $7, budget_duration_sec = $8, metadata = $9, revoked_at = $10 \
         WHERE id = $1 RETURNING {ADMIN_COLUMNS}"
    );
    let row = with_pool!(db, pool => {
        sqlx::query_as::<_, AdminKeyRow>(&sql)
            .bind(id)
            .bind(&settings.name)
            .bind(settings.expires_at)
            .bind(&settings.allowed_models)
            .bind(settings.rpm_limit)
            .bind(settings.tpm_limit)
            .bind(settings.max_budget)
            .bind(settings.budget_duration_sec)
            .bind(&settings.metadata)
            .bind(settings.revoked_at)
            .fetch_optional(pool)
            .await
    })?;
    if let Some(row) = &row {
        super::announce(db, super::Change::User(row.user_id.clone())).await;
    }
    Ok(row)
}

/// Revokes every active key of a user; returns how many.
pub async fn revoke_all_for_user(db: &Db, user_id: &str, now: i64) -> Result<u64, sqlx::Error> {
    let sql = "UPDATE api_keys SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL";
    let revoked = with_pool!(db, pool => {
        sqlx::query(sql).bind(now).bind(user_id).execute(pool).await?.rows_affected()
    });
    super::announce(db, super::Change::User(user_id.to_string())).await;
    Ok(revoked)
}

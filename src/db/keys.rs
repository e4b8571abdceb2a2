//! Queries on `api_keys`. Every query a dashboard user can reach is scoped by
//! `user_id`, so no id sent by a client reaches another user's keys.

use super::{now_ms, Db};
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
}

const COLUMNS: &str =
    "id, user_id, name, key_prefix, created_at, last_used_at, expires_at, revoked_at";

/// The parts of a new key that are stored.
pub struct NewKey<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
    pub key_hash: &'a str,
    pub key_prefix: &'a str,
}

/// Stores a new key and returns its row.
pub async fn insert(db: &Db, key: NewKey<'_>) -> Result<KeyRow, sqlx::Error> {
    let id = format!("key_{}", uuid::Uuid::new_v4().simple());
    let sql = format!(
        "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, KeyRow>(&sql)
            .bind(&id)
            .bind(key.user_id)
            .bind(key.name)
            .bind(key.key_hash)
            .bind(key.key_prefix)
            .bind(now_ms())
            .fetch_one(pool)
            .await
    })
}

/// Lists one user's keys, newest first.
pub async fn list_for_user(db: &Db, user_id: &str) -> Result<Vec<KeyRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, KeyRow>(&sql).bind(user_id).fetch_all(pool).await
    })
}

/// Revokes a key if, and only if, it belongs to `user_id` and is still active.
/// Returns whether a key was revoked.
pub async fn revoke_for_user(db: &Db, user_id: &str, key_id: &str) -> Result<bool, sqlx::Error> {
    let sql = "UPDATE api_keys SET revoked_at = $1 \
               WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL";
    let result = with_pool!(db, pool => {
        sqlx::query(sql).bind(now_ms()).bind(key_id).bind(user_id).execute(pool).await?.rows_affected()
    });
    Ok(result == 1)
}

/// What authenticating a request needs about a key and its owner, in one query.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyAuth {
    pub id: String,
    pub user_id: String,
    pub key_prefix: String,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub user_blocked_at: Option<i64>,
    pub user_deleted_at: Option<i64>,
}

/// Looks a key up by hash, with its owner's status.
pub async fn find_for_auth(db: &Db, key_hash: &str) -> Result<Option<KeyAuth>, sqlx::Error> {
    let sql = "SELECT k.id, k.user_id, k.key_prefix, k.revoked_at, k.expires_at, \
               u.blocked_at AS user_blocked_at, u.deleted_at AS user_deleted_at \
               FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1";
    with_pool!(db, pool => {
        sqlx::query_as::<_, KeyAuth>(sql).bind(key_hash).fetch_optional(pool).await
    })
}

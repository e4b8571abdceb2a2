//! Queries on `users`.

use super::{now_ms, Db};
use crate::with_pool;

/// A row of `users`, minus nothing: callers decide what to expose.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub role: String,
    pub balance: i64,
    pub blocked_at: Option<i64>,
    pub created_at: i64,
}

impl UserRow {
    /// Whether the user may sign in or spend: not blocked, not deleted.
    pub fn is_active(&self) -> bool {
        self.blocked_at.is_none()
    }
}

const COLUMNS: &str = "id, email, password_hash, role, balance, blocked_at, created_at";

/// Creates a dashboard user. Returns `None` if the email is taken.
pub async fn create_with_password(
    db: &Db,
    email: &str,
    password_hash: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    let id = format!("usr_{}", uuid::Uuid::new_v4().simple());
    let now = now_ms();
    let sql = format!(
        "INSERT INTO users (id, email, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (email) DO NOTHING RETURNING {COLUMNS}"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(&id)
            .bind(email)
            .bind(password_hash)
            .bind(now)
            .fetch_optional(pool)
            .await
    })
}

/// Finds a live (not deleted) user by normalised email.
pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = $1 AND deleted_at IS NULL");
    with_pool!(db, pool => {
        sqlx::query_as::<_, UserRow>(&sql).bind(email).fetch_optional(pool).await
    })
}

/// Finds a live (not deleted) user by id.
pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
    with_pool!(db, pool => {
        sqlx::query_as::<_, UserRow>(&sql).bind(id).fetch_optional(pool).await
    })
}

/// Finds a live user by id, creating an API-only user if none exists
/// (as any-llm-gateway does for the master key's `user` field).
pub async fn find_or_create(db: &Db, id: &str) -> Result<UserRow, sqlx::Error> {
    let now = now_ms();
    with_pool!(db, pool => {
        sqlx::query("INSERT INTO users (id, created_at, updated_at) VALUES ($1, $2, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?;
    });
    find_by_id(db, id).await?.ok_or(sqlx::Error::RowNotFound)
}

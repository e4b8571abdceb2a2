//! Queries on `users`.

use super::Db;
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
    /// When the user proved they read mail at `email`; `None`: not yet.
    pub email_verified_at: Option<i64>,
    /// A session signed in under another epoch is signed out.
    pub session_epoch: i64,
}

impl UserRow {
    /// Whether the user may sign in or spend: not blocked, not deleted.
    pub fn is_active(&self) -> bool {
        self.blocked_at.is_none()
    }
}

const COLUMNS: &str = "id, email, password_hash, role, balance, blocked_at, created_at, \
    email_verified_at, session_epoch";

/// Creates a dashboard user. Returns `None` if the email is taken. With
/// `first_is_admin`, the user made on an empty table is an admin. (SQLite
/// needs the `WHERE` to tell the upsert's `ON` from a join's.)
pub async fn create_with_password(
    db: &Db,
    email: &str,
    password_hash: &str,
    first_is_admin: bool,
    now: i64,
) -> Result<Option<UserRow>, sqlx::Error> {
    let id = format!("usr_{}", uuid::Uuid::new_v4().simple());
    let sql = format!(
        "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) \
         SELECT $1, $2, $3, CASE WHEN $5 AND NOT EXISTS (SELECT 1 FROM users) \
         THEN 'admin' ELSE 'user' END, $4, $4 WHERE true \
         ON CONFLICT (email) DO NOTHING RETURNING {COLUMNS}"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, UserRow>(&sql)
            .bind(&id)
            .bind(email)
            .bind(password_hash)
            .bind(now)
            .bind(first_is_admin)
            .fetch_optional(pool)
            .await
    })
}

/// Whether the table has no user at all (deleted ones count).
pub async fn none_yet(db: &Db) -> Result<bool, sqlx::Error> {
    let sql = "SELECT NOT EXISTS (SELECT 1 FROM users)";
    with_pool!(db, pool => sqlx::query_scalar::<_, bool>(sql).fetch_one(pool).await)
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
pub async fn find_or_create(db: &Db, id: &str, now: i64) -> Result<UserRow, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("INSERT INTO users (id, created_at, updated_at) VALUES ($1, $2, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?;
    });
    find_by_id(db, id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// Everything an operator sees about a user (never the password hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminUserRow {
    pub id: String,
    pub email: Option<String>,
    pub alias: Option<String>,
    pub role: String,
    pub balance: i64,
    pub budget_id: Option<String>,
    pub metadata: Option<String>,
    pub blocked_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const ADMIN_COLUMNS: &str =
    "id, email, alias, role, balance, budget_id, metadata, blocked_at, created_at, updated_at";

/// A user's profile, as an operator sets it.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub email: Option<String>,
    pub alias: Option<String>,
    pub budget_id: Option<String>,
    /// JSON object, as stored.
    pub metadata: Option<String>,
    pub blocked_at: Option<i64>,
}

/// Whether a database error is a unique-constraint violation (a duplicate).
pub fn is_duplicate(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// Creates a user from the admin API. `None` if the id or email is taken
/// (by a live or a deleted user).
pub async fn create_admin(
    db: &Db,
    id: &str,
    profile: &Profile,
    now: i64,
) -> Result<Option<AdminUserRow>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO users (id, email, alias, budget_id, metadata, blocked_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING RETURNING {ADMIN_COLUMNS}"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, AdminUserRow>(&sql)
            .bind(id)
            .bind(&profile.email)
            .bind(&profile.alias)
            .bind(&profile.budget_id)
            .bind(&profile.metadata)
            .bind(profile.blocked_at)
            .bind(now)
            .fetch_optional(pool)
            .await
    })
}

/// A live user, for an operator.
pub async fn find_admin(db: &Db, id: &str) -> Result<Option<AdminUserRow>, sqlx::Error> {
    let sql = format!("SELECT {ADMIN_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
    with_pool!(db, pool => sqlx::query_as::<_, AdminUserRow>(&sql).bind(id).fetch_optional(pool).await)
}

/// A page of live users, oldest first; `search` matches id, email or alias.
pub async fn list_admin(
    db: &Db,
    search: Option<&str>,
    skip: i64,
    limit: i64,
) -> Result<Vec<AdminUserRow>, sqlx::Error> {
    let pattern = search.map(|s| format!("%{}%", s.to_lowercase()));
    let sql = format!(
        "SELECT {ADMIN_COLUMNS} FROM users WHERE deleted_at IS NULL AND ($3 IS NULL \
         OR LOWER(id) LIKE $3 OR LOWER(COALESCE(email, '')) LIKE $3 OR LOWER(COALESCE(alias, '')) LIKE $3) \
         ORDER BY created_at, id LIMIT $1 OFFSET $2"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, AdminUserRow>(&sql)
            .bind(limit)
            .bind(skip)
            .bind(pattern)
            .fetch_all(pool)
            .await
    })
}

/// Replaces a live user's profile; `None` if there is no such user.
pub async fn update_admin(
    db: &Db,
    id: &str,
    profile: &Profile,
    now: i64,
) -> Result<Option<AdminUserRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE users SET email = $2, alias = $3, budget_id = $4, metadata = $5, blocked_at = $6, \
         updated_at = $7 WHERE id = $1 AND deleted_at IS NULL RETURNING {ADMIN_COLUMNS}"
    );
    let row = with_pool!(db, pool => {
        sqlx::query_as::<_, AdminUserRow>(&sql)
            .bind(id)
            .bind(&profile.email)
            .bind(&profile.alias)
            .bind(&profile.budget_id)
            .bind(&profile.metadata)
            .bind(profile.blocked_at)
            .bind(now)
            .fetch_optional(pool)
            .await
    })?;
    if row.is_some() {
        super::announce(db, super::Change::User(id.to_string())).await;
    }
    Ok(row)
}

/// Soft-deletes a live user and revokes their keys, in one transaction.
/// Returns whether there was such a user.
pub async fn soft_delete(db: &Db, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let deleted = sqlx::query(
            "UPDATE users SET deleted_at = $1, updated_at = $1 WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if deleted {
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // Stored answers and responses go with their user.
            for table in ["idempotent_requests", "stored_responses"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            super::notify(&mut tx, super::Change::User(id.to_string())).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    })
}

/// Sets a live user's role (`user` or `admin`); returns whether they exist.
pub async fn set_role(db: &Db, id: &str, role: &str, now: i64) -> Result<bool, sqlx::Error> {
    let sql = "UPDATE users SET role = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL";
    let updated = with_pool!(db, pool => {
        sqlx::query(sql).bind(role).bind(now).bind(id).execute(pool).await?.rows_affected()
    });
    Ok(updated == 1)
}

/// How many live users there are, and what their balances add up to.
pub async fn census(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    let sql = "SELECT COUNT(*), CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM users \
               WHERE deleted_at IS NULL";
    with_pool!(db, pool => sqlx::query_as::<_, (i64, i64)>(sql).fetch_one(pool).await)
}

/// Sets a live user's password hash and bumps their session epoch, which
/// signs out every session; returns the new epoch (`None`: no such user).
pub async fn set_password(
    db: &Db,
    id: &str,
    password_hash: &str,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    const SET: &str = "UPDATE users SET password_hash = $2, session_epoch = session_epoch + 1, \
        updated_at = $3 WHERE id = $1 AND deleted_at IS NULL RETURNING session_epoch";
    with_pool!(db, pool => {
        sqlx::query_scalar::<_, i64>(SET)
            .bind(id)
            .bind(password_hash)
            .bind(now)
            .fetch_optional(pool)
            .await
    })
}

/// Marks a live user's address verified, if it is still `email`; returns
/// whether it was (or already had been).
pub async fn mark_email_verified(
    db: &Db,
    id: &str,
    email: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    const VERIFY: &str = "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $3), \
        updated_at = $3 WHERE id = $1 AND email = $2 AND deleted_at IS NULL";
    let updated = with_pool!(db, pool => {
        sqlx::query(VERIFY).bind(id).bind(email).bind(now).execute(pool).await?.rows_affected()
    });
    Ok(updated == 1)
}

/// Changes a live user's address to `email`, verified at `now`. `Ok(false)`
/// when the address is taken (by any user, deleted ones included).
pub async fn change_email(db: &Db, id: &str, email: &str, now: i64) -> Result<bool, sqlx::Error> {
    const CHANGE: &str = "UPDATE users SET email = $2, email_verified_at = $3, updated_at = $3 \
        WHERE id = $1 AND deleted_at IS NULL";
    let result = with_pool!(db, pool => {
        sqlx::query(CHANGE).bind(id).bind(email).bind(now).execute(pool).await.map(|done| done.rows_affected())
    });
    match result {
        Ok(changed) => Ok(changed == 1),
        Err(err) if is_duplicate(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether any user, deleted ones included, has this (normalised) address.
pub async fn email_taken(db: &Db, email: &str) -> Result<bool, sqlx::Error> {
    const TAKEN: &str = "SELECT COUNT(*) FROM users WHERE email = $1";
    let count = with_pool!(db, pool => {
        sqlx::query_scalar::<_, i64>(TAKEN).bind(email).fetch_one(pool).await?
    });
    Ok(count > 0)
}

/// A live user's low-balance threshold, in nano-USD (`None`: off).
pub async fn low_balance_threshold(db: &Db, id: &str) -> Result<Option<i64>, sqlx::Error> {
    const GET: &str =
        "SELECT low_balance_threshold FROM users WHERE id = $1 AND deleted_at IS NULL";
    let threshold = with_pool!(db, pool => {
        sqlx::query_scalar::<_, Option<i64>>(GET).bind(id).fetch_optional(pool).await?
    });
    Ok(threshold.flatten())
}

/// Sets (or, with `None`, clears) a live user's low-balance threshold. The
/// alert is armed only if the balance is at or above it: a threshold set
/// under the balance already fires on the next crossing, not at once.
pub async fn set_low_balance_threshold(
    db: &Db,
    id: &str,
    threshold: Option<i64>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    const SET: &str = "UPDATE users SET low_balance_threshold = $2, \
        low_balance_alerted_at = CASE WHEN $2 IS NOT NULL AND balance < $2 THEN $3 ELSE NULL END, \
        updated_at = $3 WHERE id = $1 AND deleted_at IS NULL";
    let updated = with_pool!(db, pool => {
        sqlx::query(SET).bind(id).bind(threshold).bind(now).execute(pool).await?.rows_affected()
    });
    Ok(updated == 1)
}

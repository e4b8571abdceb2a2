//! Queries on `email_tokens`: the single-use links mailed to users, kept
//! only as the SHA-256 of their token.

use super::Db;
use crate::with_pool;

/// What a redeemed token was for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Redeemed {
    pub user_id: String,
    pub purpose: String,
    /// The address the link proves (see the migration).
    pub new_email: Option<String>,
}

/// A token to store.
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    pub token_hash: &'a str,
    pub user_id: &'a str,
    pub purpose: &'a str,
    pub new_email: Option<&'a str>,
    pub expires_at: i64,
}

/// Stores a token, after using up the user's earlier unused ones of the
/// same purpose (only the latest link works).
pub async fn insert(db: &Db, token: NewToken<'_>, now: i64) -> Result<(), sqlx::Error> {
    const SUPERSEDE: &str = "UPDATE email_tokens SET used_at = $3 \
        WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL";
    const INSERT: &str = "INSERT INTO email_tokens \
        (token_hash, user_id, purpose, new_email, expires_at, created_at) \
        VALUES ($1, $2, $3, $4, $5, $6)";
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query(SUPERSEDE)
            .bind(token.user_id)
            .bind(token.purpose)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT)
            .bind(token.token_hash)
            .bind(token.user_id)
            .bind(token.purpose)
            .bind(token.new_email)
            .bind(token.expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    })
}

/// Uses up the unexpired, unused token with this hash and one of
/// `purposes`, in one conditional update (a token is redeemed once, even
/// by two requests at the same time); `None` if there is none.
pub async fn redeem(
    db: &Db,
    token_hash: &str,
    purposes: &[&str],
    now: i64,
) -> Result<Option<Redeemed>, sqlx::Error> {
    const REDEEM: &str = "UPDATE email_tokens SET used_at = $2 \
        WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
        AND purpose IN ($3, $4) RETURNING user_id, purpose, new_email";
    let first = purposes.first().copied().unwrap_or_default();
    let second = purposes.get(1).copied().unwrap_or(first);
    with_pool!(db, pool => {
        sqlx::query_as::<_, Redeemed>(REDEEM)
            .bind(token_hash)
            .bind(now)
            .bind(first)
            .bind(second)
            .fetch_optional(pool)
            .await
    })
}

/// Deletes tokens that expired before `before` (used or not): a link past
/// its time can do nothing. Returns how many.
pub async fn prune(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    const SQL: &str = "DELETE FROM email_tokens WHERE expires_at < $1";
    with_pool!(db, pool => Ok(sqlx::query(SQL).bind(before).execute(pool).await?.rows_affected()))
}

//! Queries on `stored_responses`: Responses API answers kept with
//! `store: true`, readable only by their user.

use super::Db;
use crate::with_pool;

/// A response to keep.
#[derive(Debug, Clone)]
pub struct NewResponse<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub key_id: Option<&'a str>,
    /// The response object, as JSON.
    pub response: &'a str,
    /// Every item up to and including its output, as a JSON array.
    pub conversation: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A kept response, as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredResponse {
    pub response: String,
    pub conversation: String,
}

/// Keeps a response.
pub async fn insert(db: &Db, new: &NewResponse<'_>) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO stored_responses \
             (id, user_id, key_id, response, conversation, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new.id)
        .bind(new.user_id)
        .bind(new.key_id)
        .bind(new.response)
        .bind(new.conversation)
        .bind(new.created_at)
        .bind(new.expires_at)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// The user's response `id`, unless it has expired.
pub async fn find(
    db: &Db,
    id: &str,
    user_id: &str,
    now: i64,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, StoredResponse>(
            "SELECT response, conversation FROM stored_responses \
             WHERE id = $1 AND user_id = $2 AND expires_at >= $3",
        )
        .bind(id)
        .bind(user_id)
        .bind(now)
        .fetch_optional(pool)
        .await
    })
}

/// Deletes the user's response `id`; returns whether there was one.
pub async fn delete(db: &Db, id: &str, user_id: &str) -> Result<bool, sqlx::Error> {
    Ok(with_pool!(db, pool => {
        sqlx::query("DELETE FROM stored_responses WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
            == 1
    }))
}

/// Deletes the responses kept past their time.
pub async fn prune(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    Ok(with_pool!(db, pool => {
        sqlx::query("DELETE FROM stored_responses WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}

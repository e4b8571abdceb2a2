//! Queries on `idempotent_requests`: a request sent with an
//! `Idempotency-Key` is claimed here before it goes anywhere, and its answer
//! is kept for a day to be replayed to a repeat.

use super::Db;
use crate::with_pool;

/// A request claiming an idempotency key.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// Whose keys these are: `key:<api key id>` or `master`.
    pub scope: &'a str,
    pub idem_key: &'a str,
    pub user_id: &'a str,
    pub endpoint: &'a str,
    /// A digest of the request body.
    pub body_hash: &'a str,
    pub request_id: &'a str,
    pub replica_id: &'a str,
    pub now: i64,
    /// When the claim and its answer are forgotten.
    pub expires_at: i64,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The key was free: this request is the first, and holds it.
    Fresh,
    /// An earlier request holds the key and is still being answered.
    InFlight { body_hash: String },
    /// An earlier request was answered.
    Done(Stored),
}

/// An answer kept for replay.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Stored {
    pub body_hash: String,
    pub request_id: String,
    pub status: i32,
    pub streamed: i32,
    pub response: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    state: String,
    body_hash: String,
    request_id: String,
    status: Option<i32>,
    streamed: i32,
    response: Option<String>,
    expires_at: i64,
}

/// Claims `claim.idem_key` for a request, or says who has it. An expired
/// claim is cleared and the key claimed afresh.
pub async fn claim(db: &Db, claim: &Claim<'_>) -> Result<Claimed, sqlx::Error> {
    const INSERT: &str = "INSERT INTO idempotent_requests (scope, idem_key, user_id, endpoint, \
        body_hash, request_id, replica_id, state, created_at, expires_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_flight', $8, $9) \
        ON CONFLICT (scope, idem_key) DO NOTHING";
    const FIND: &str =
        "SELECT state, body_hash, request_id, status, streamed, response, expires_at \
        FROM idempotent_requests WHERE scope = $1 AND idem_key = $2";
    for _ in 0..3 {
        let inserted = with_pool!(db, pool => {
            sqlx::query(INSERT)
                .bind(claim.scope)
                .bind(claim.idem_key)
                .bind(claim.user_id)
                .bind(claim.endpoint)
                .bind(claim.body_hash)
                .bind(claim.request_id)
                .bind(claim.replica_id)
                .bind(claim.now)
                .bind(claim.expires_at)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if inserted == 1 {
            return Ok(Claimed::Fresh);
        }
        let row: Option<Row> = with_pool!(db, pool => {
            sqlx::query_as(FIND).bind(claim.scope).bind(claim.idem_key).fetch_optional(pool).await?
        });
        let Some(row) = row else {
            continue; // Released meanwhile: claim it again.
        };
        if row.expires_at <= claim.now {
            with_pool!(db, pool => {
                sqlx::query("DELETE FROM idempotent_requests WHERE scope = $1 AND idem_key = $2 AND expires_at <= $3")
                    .bind(claim.scope)
                    .bind(claim.idem_key)
                    .bind(claim.now)
                    .execute(pool)
                    .await?;
            });
            continue;
        }
        return Ok(match (row.state.as_str(), row.status, row.response) {
            ("done", Some(status), Some(response)) => Claimed::Done(Stored {
                body_hash: row.body_hash,
                request_id: row.request_id,
                status,
                streamed: row.streamed,
                response,
            }),
            _ => Claimed::InFlight {
                body_hash: row.body_hash,
            },
        });
    }
    Err(sqlx::Error::Protocol(
        "an idempotency key kept changing hands".into(),
    ))
}

/// Keeps the answer of the request holding the key.
pub async fn complete(
    db: &Db,
    scope: &str,
    idem_key: &str,
    request_id: &str,
    status: i32,
    streamed: bool,
    response: &str,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE idempotent_requests SET state = 'done', status = $1, streamed = $2, response = $3 \
             WHERE scope = $4 AND idem_key = $5 AND request_id = $6",
        )
        .bind(status)
        .bind(i32::from(streamed))
        .bind(response)
        .bind(scope)
        .bind(idem_key)
        .bind(request_id)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Frees the key held by a request that got no answer worth keeping (it
/// failed, or its client left): a repeat is then sent anew.
pub async fn release(
    db: &Db,
    scope: &str,
    idem_key: &str,
    request_id: &str,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "DELETE FROM idempotent_requests \
             WHERE scope = $1 AND idem_key = $2 AND request_id = $3 AND state = 'in_flight'",
        )
        .bind(scope)
        .bind(idem_key)
        .bind(request_id)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Frees every key still claimed by a request in flight (SQLite at
/// startup: no other process can hold one); returns how many.
pub async fn release_all_in_flight(db: &Db) -> Result<u64, sqlx::Error> {
    Ok(with_pool!(db, pool => {
        sqlx::query("DELETE FROM idempotent_requests WHERE state = 'in_flight'")
            .execute(pool)
            .await?
            .rows_affected()
    }))
}

/// Deletes claims and answers that expired before `now`.
pub async fn prune(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    Ok(with_pool!(db, pool => {
        sqlx::query("DELETE FROM idempotent_requests WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}

//! The mail outbox (`mail_outbox`): mail queued by requests and the alert
//! scans, claimed and sent by `mail::sender`, on any replica.

use super::Db;
use crate::with_pool;

/// A mail to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewMail<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// A mail claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// A row as stored, for tests and operators.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxState {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
}

/// Queues mail `$1` to `$2` with subject `$3` and body `$4`, due at `$5`.
pub(super) const INSERT: &str =
    "INSERT INTO mail_outbox (id, recipient, subject, body, next_attempt_at, created_at) \
     VALUES ($1, $2, $3, $4, $5, $5)";

/// Queues the [`NewMail`] `$mail`, due at `$now`, on `$conn` (a pool, or
/// an open transaction's connection, of either backend), so an alert and
/// its mail can commit together.
macro_rules! queue_mail {
    ($conn:expr, $mail:expr, $now:expr) => {{
        let mail: $crate::db::outbox::NewMail = $mail;
        sqlx::query($crate::db::outbox::INSERT)
            .bind($crate::db::outbox::mail_id())
            .bind(mail.to)
            .bind(mail.subject)
            .bind(mail.body)
            .bind($now)
            .execute($conn)
            .await
            .map(drop)
    }};
}
pub(super) use queue_mail;

/// A new mail id; time-ordered.
pub(super) fn mail_id() -> String {
    format!("mail_{}", uuid::Uuid::now_v7().simple())
}

/// Queues a mail, due at once.
pub async fn insert(db: &Db, mail: NewMail<'_>, now: i64) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => queue_mail!(pool, mail, now))
}

/// Claims up to `limit` due mails for `lease_ms`, counting an attempt on
/// each. A row another sender holds (an unexpired lease) is skipped, and
/// the conditions are checked again on the row itself, so two replicas
/// never claim the same mail at once.
pub async fn claim_due(
    db: &Db,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    const CLAIM: &str = "UPDATE mail_outbox SET claimed_until = $1 + $2, attempts = attempts + 1 \
        WHERE id IN (SELECT id FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL \
            AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
            ORDER BY next_attempt_at LIMIT $3) \
        AND sent_at IS NULL AND failed_at IS NULL \
        AND (claimed_until IS NULL OR claimed_until <= $1) \
        RETURNING id, recipient, subject, body, attempts";
    with_pool!(db, pool => {
        sqlx::query_as::<_, OutboxRow>(CLAIM)
            .bind(now)
            .bind(lease_ms)
            .bind(limit)
            .fetch_all(pool)
            .await
    })
}

/// Marks a claimed mail sent.
pub async fn mark_sent(db: &Db, id: &str, now: i64) -> Result<(), sqlx::Error> {
    const SENT: &str = "UPDATE mail_outbox SET sent_at = $2, claimed_until = NULL, \
        last_error = NULL WHERE id = $1";
    with_pool!(db, pool => sqlx::query(SENT).bind(id).bind(now).execute(pool).await.map(drop))
}

/// Releases a claimed mail after a failed attempt, to try again at
/// `retry_at`; with `retry_at` `None`, gives up on it (kept, with its error).
pub async fn mark_failed(
    db: &Db,
    id: &str,
    error: &str,
    retry_at: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    const RETRY: &str = "UPDATE mail_outbox SET claimed_until = NULL, last_error = $2, \
        next_attempt_at = $3 WHERE id = $1";
    const GIVE_UP: &str = "UPDATE mail_outbox SET claimed_until = NULL, last_error = $2, \
        failed_at = $3 WHERE id = $1";
    let (sql, at) = match retry_at {
        Some(at) => (RETRY, at),
        None => (GIVE_UP, now),
    };
    with_pool!(db, pool => {
        sqlx::query(sql).bind(id).bind(error).bind(at).execute(pool).await.map(drop)
    })
}

/// Every mail queued, oldest first (tests and diagnostics).
pub async fn all(db: &Db) -> Result<Vec<OutboxState>, sqlx::Error> {
    const ALL: &str = "SELECT id, recipient, subject, attempts, last_error, sent_at, failed_at \
        FROM mail_outbox ORDER BY created_at, id";
    with_pool!(db, pool => sqlx::query_as::<_, OutboxState>(ALL).fetch_all(pool).await)
}

/// Deletes mail sent, or given up on, before `before`. Returns how many.
pub async fn prune(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    const SQL: &str = "DELETE FROM mail_outbox WHERE sent_at < $1 OR failed_at < $1";
    with_pool!(db, pool => Ok(sqlx::query(SQL).bind(before).execute(pool).await?.rows_affected()))
}

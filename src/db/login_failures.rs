//! Failed sign-in attempts, kept in the database so throttling holds across replicas.

use super::Db;
use crate::with_pool;

/// Records one failure for each subject (e.g. `email:…` and `ip:…`).
pub async fn record(db: &Db, subjects: &[&str], at_ms: i64) -> Result<(), sqlx::Error> {
    for subject in subjects {
        with_pool!(db, pool => {
            sqlx::query("INSERT INTO login_failures (subject, failed_at) VALUES ($1, $2)")
                .bind(*subject)
                .bind(at_ms)
                .execute(pool)
                .await?;
        });
    }
    Ok(())
}

/// Counts a subject's failures since `since_ms`, and the oldest of them.
pub async fn recent(
    db: &Db,
    subject: &str,
    since_ms: i64,
) -> Result<(i64, Option<i64>), sqlx::Error> {
    let sql = "SELECT COUNT(*), MIN(failed_at) FROM login_failures \
               WHERE subject = $1 AND failed_at >= $2";
    with_pool!(db, pool => {
        sqlx::query_as::<_, (i64, Option<i64>)>(sql)
            .bind(subject)
            .bind(since_ms)
            .fetch_one(pool)
            .await
    })
}

/// Forgets a subject's failures (after a successful sign-in).
pub async fn clear(db: &Db, subject: &str) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("DELETE FROM login_failures WHERE subject = $1")
            .bind(subject)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Deletes failures older than `before_ms`; run periodically.
pub async fn prune(db: &Db, before_ms: i64) -> Result<u64, sqlx::Error> {
    let affected = with_pool!(db, pool => {
        sqlx::query("DELETE FROM login_failures WHERE failed_at < $1")
            .bind(before_ms)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(affected)
}

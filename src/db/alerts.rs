//! The alert scans' SQL: low balances and budgets nearly or fully spent.
//! Each alert is recorded and its mail queued in one transaction, by a
//! conditional write, so a replica that races another sends nothing twice.

use super::outbox::{queue_mail, NewMail};
use super::Db;
use crate::with_pool;

/// A user whose balance just fell below their threshold.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LowBalance {
    pub user_id: String,
    pub email: String,
    pub balance: i64,
    pub threshold: i64,
}

/// Disarms the alert of every user whose balance is below their threshold
/// and whose alert is armed, and queues the mail `compose` writes for each,
/// in one transaction. Returns how many were queued.
pub async fn disarm_low_balances<F>(db: &Db, now: i64, compose: F) -> Result<usize, sqlx::Error>
where
    F: Fn(&LowBalance) -> (String, String, String),
{
    const DISARM: &str = "UPDATE users SET low_balance_alerted_at = $1 \
        WHERE low_balance_threshold IS NOT NULL AND low_balance_alerted_at IS NULL \
        AND balance < low_balance_threshold AND deleted_at IS NULL AND email IS NOT NULL \
        RETURNING id AS user_id, email, balance, low_balance_threshold AS threshold";
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let fallen: Vec<LowBalance> = sqlx::query_as(DISARM).bind(now).fetch_all(&mut *tx).await?;
        for user in &fallen {
            let (to, subject, body) = compose(user);
            let mail = NewMail { to: &to, subject: &subject, body: &body };
            queue_mail!(&mut *tx, mail, now)?;
        }
        tx.commit().await?;
        Ok(fallen.len())
    })
}

/// Arms again the alert of every user whose balance is back at or above
/// their threshold (or who turned it off). Returns how many.
pub async fn rearm_low_balances(db: &Db) -> Result<u64, sqlx::Error> {
    const REARM: &str = "UPDATE users SET low_balance_alerted_at = NULL \
        WHERE low_balance_alerted_at IS NOT NULL \
        AND (low_balance_threshold IS NULL OR balance >= low_balance_threshold)";
    with_pool!(db, pool => Ok(sqlx::query(REARM).execute(pool).await?.rows_affected()))
}

/// A budget window spent to 80 % of its limit or more, whose alert for
/// the level it reached has not been sent in its period.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BudgetNearLimit {
    /// `user:<id>`, `key:<id>`, or `keycap:<id>` (the cap the key's owner set).
    pub scope: String,
    pub period_start: i64,
    pub spent: i64,
    pub max_budget: i64,
    pub budget_duration_sec: Option<i64>,
    /// A calendar period (`daily`, `weekly`, `monthly`); user budgets only.
    pub period: Option<String>,
    /// The key's name, for a key's budget.
    pub key_name: Option<String>,
    /// The owner's address.
    pub email: String,
}

/// Budget windows at 80 % of their limit or more, not yet alerted at the
/// level they reached (100 at or past the limit, else 80).
pub async fn budgets_near_limit(db: &Db) -> Result<Vec<BudgetNearLimit>, sqlx::Error> {
    const SQL: &str = "SELECT * FROM ( \
           SELECT w.scope, w.period_start, w.spent, b.max_budget, b.budget_duration_sec, b.period, \
             CAST(NULL AS TEXT) AS key_name, u.email \
           FROM budget_windows w JOIN users u ON w.scope = 'user:' || u.id \
           JOIN budgets b ON b.id = u.budget_id \
           WHERE u.deleted_at IS NULL AND u.email IS NOT NULL \
           UNION ALL \
           SELECT w.scope, w.period_start, w.spent, k.max_budget, k.budget_duration_sec, \
             CAST(NULL AS TEXT), k.name, u.email \
           FROM budget_windows w JOIN api_keys k ON w.scope = 'key:' || k.id \
           JOIN users u ON u.id = k.user_id \
           WHERE k.max_budget IS NOT NULL AND k.revoked_at IS NULL \
             AND u.deleted_at IS NULL AND u.email IS NOT NULL \
           UNION ALL \
           SELECT w.scope, w.period_start, w.spent, k.self_monthly_cap, CAST(NULL AS BIGINT), \
             'monthly', k.name, u.email \
           FROM budget_windows w JOIN api_keys k ON w.scope = 'keycap:' || k.id \
           JOIN users u ON u.id = k.user_id \
           WHERE k.self_monthly_cap IS NOT NULL AND k.revoked_at IS NULL \
             AND u.deleted_at IS NULL AND u.email IS NOT NULL \
         ) m WHERE m.max_budget > 0 AND m.spent * 5 >= m.max_budget * 4 \
         AND NOT EXISTS (SELECT 1 FROM budget_alerts a WHERE a.scope = m.scope \
           AND a.period_start = m.period_start \
           AND a.level = CASE WHEN m.spent >= m.max_budget THEN 100 ELSE 80 END)";
    with_pool!(db, pool => sqlx::query_as::<_, BudgetNearLimit>(SQL).fetch_all(pool).await)
}

/// Records the alert at `level` for a scope's period and queues its mail,
/// in one transaction; `false` (nothing queued) if it was already sent.
pub async fn record_budget_alert(
    db: &Db,
    scope: &str,
    period_start: i64,
    level: i64,
    mail: NewMail<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    const RECORD: &str = "INSERT INTO budget_alerts (scope, period_start, level, sent_at) \
        VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let recorded = sqlx::query(RECORD)
            .bind(scope)
            .bind(period_start)
            .bind(level)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if recorded {
            queue_mail!(&mut *tx, mail, now)?;
        }
        tx.commit().await?;
        Ok(recorded)
    })
}

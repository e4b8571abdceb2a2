//! The alert scans the sender runs every second: low balances (one mail
//! per fall below the threshold) and budgets at 80 % and 100 % (one mail
//! per level and period). The database decides who is due, atomically,
//! so replicas scanning at once send each alert once.

use super::templates::{self, BudgetFacts};
use super::MailQueue;
use crate::billing::budget::{window_at, Period};
use crate::db::alerts::{self, BudgetNearLimit};

/// Runs both scans at `now`; failures are logged and tried again next time.
pub async fn scan(queue: &MailQueue, now: i64) {
    if let Err(err) = low_balances(queue, now).await {
        tracing::warn!(%err, "the low-balance scan failed");
    }
    if let Err(err) = budgets(queue, now).await {
        tracing::warn!(%err, "the budget alert scan failed");
    }
}

/// Arms the alerts of balances back at their threshold, then disarms and
/// mails those below.
async fn low_balances(queue: &MailQueue, now: i64) -> Result<(), sqlx::Error> {
    alerts::rearm_low_balances(queue.db()).await?;
    let balance_page = queue.link("/dashboard/balance");
    let queued = alerts::disarm_low_balances(queue.db(), now, |user| {
        let mail = templates::low_balance(&user.email, user.balance, user.threshold, &balance_page);
        (mail.to, mail.subject, mail.text)
    })
    .await?;
    if queued > 0 {
        tracing::info!(queued, "low-balance alerts queued");
    }
    Ok(())
}

/// Mails each budget window that reached a level it was not alerted at.
async fn budgets(queue: &MailQueue, now: i64) -> Result<(), sqlx::Error> {
    for window in alerts::budgets_near_limit(queue.db()).await? {
        let Some(facts) = facts_at(&window, now) else {
            continue;
        };
        let mail = templates::budget_alert(&window.email, &facts);
        let level = facts.level;
        alerts::record_budget_alert(
            queue.db(),
            &window.scope,
            window.period_start,
            level,
            mail.as_new(),
            now,
        )
        .await?;
    }
    Ok(())
}

/// What to tell about a window at `now`; `None` once its period is over
/// (what it spent then no longer counts).
fn facts_at(window: &BudgetNearLimit, now: i64) -> Option<BudgetFacts> {
    let period = Period::from_parts(window.budget_duration_sec, window.period.as_deref());
    let (spent, start, resets_at) = window_at(period, window.period_start, window.spent, now);
    if start != window.period_start {
        return None;
    }
    Some(BudgetFacts {
        key_name: window.key_name.clone(),
        own_cap: window.scope.starts_with("keycap:"),
        level: if spent >= window.max_budget { 100 } else { 80 },
        spent,
        max: window.max_budget,
        resets_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(spent: i64, duration: Option<i64>) -> BudgetNearLimit {
        BudgetNearLimit {
            scope: "user:usr_1".into(),
            period_start: 1_000,
            spent,
            max_budget: 100,
            budget_duration_sec: duration,
            period: None,
            key_name: None,
            email: "ada@example.com".into(),
        }
    }

    #[test]
    fn the_level_is_100_at_the_limit_and_80_below() {
        assert_eq!(facts_at(&window(80, None), 5_000).unwrap().level, 80);
        assert_eq!(facts_at(&window(99, None), 5_000).unwrap().level, 80);
        assert_eq!(facts_at(&window(100, None), 5_000).unwrap().level, 100);
        assert_eq!(facts_at(&window(130, None), 5_000).unwrap().resets_at, None);
    }

    #[test]
    fn a_window_whose_period_is_over_is_not_alerted() {
        let hourly = window(90, Some(3600));
        assert_eq!(
            facts_at(&hourly, 1_000 + 3_599_999).unwrap().resets_at,
            Some(3_601_000)
        );
        assert!(facts_at(&hourly, 1_000 + 3_600_000).is_none());
    }
}

//! Spending limits: a key's own budget and its owner's, each over a period
//! that resets on schedule. They are held through the same reservation as
//! the balance (see `reservation`), so concurrent requests cannot overshoot.

use time::{Date, Duration, Month, OffsetDateTime, Time};

use crate::db::budgets::BudgetRow;

/// How often a budget resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// Never: the limit covers everything ever spent.
    Lifetime,
    /// Every so many seconds, counted from when spending first began.
    Every { seconds: i64 },
    /// At midnight UTC.
    Daily,
    /// On Mondays at midnight UTC.
    Weekly,
    /// On the first of the month at midnight UTC.
    Monthly,
}

impl Period {
    /// The period stored as a duration in seconds or a calendar name.
    pub fn from_parts(duration_sec: Option<i64>, calendar: Option<&str>) -> Self {
        match (calendar, duration_sec) {
            (Some("daily"), _) => Self::Daily,
            (Some("weekly"), _) => Self::Weekly,
            (Some("monthly"), _) => Self::Monthly,
            (_, Some(seconds)) if seconds > 0 => Self::Every { seconds },
            _ => Self::Lifetime,
        }
    }

    /// The start of the period holding `now`, for a window that last started
    /// at `previous` (pass `now` for a new window).
    pub fn current_start(self, previous: i64, now: i64) -> i64 {
        match self {
            Self::Lifetime => previous,
            Self::Every { seconds } => {
                let length = seconds.saturating_mul(1000).max(1);
                if now < previous.saturating_add(length) {
                    previous
                } else {
                    previous + (now - previous) / length * length
                }
            }
            Self::Daily => midnight(date_of(now)),
            Self::Weekly => {
                let date = date_of(now);
                let back = date.weekday().number_days_from_monday() as i64;
                midnight(date - Duration::days(back))
            }
            Self::Monthly => midnight(date_of(now).replace_day(1).expect("day 1 exists")),
        }
    }

    /// When a period that started at `start` ends; `None` if it never does.
    pub fn reset_at(self, start: i64) -> Option<i64> {
        match self {
            Self::Lifetime => None,
            Self::Every { seconds } => Some(start.saturating_add(seconds.saturating_mul(1000))),
            Self::Daily => Some(midnight(date_of(start) + Duration::days(1))),
            Self::Weekly => Some(midnight(date_of(start) + Duration::days(7))),
            Self::Monthly => {
                let date = date_of(start);
                let (year, month) = match date.month() {
                    Month::December => (date.year() + 1, Month::January),
                    month => (date.year(), month.next()),
                };
                Date::from_calendar_date(year, month, 1).ok().map(midnight)
            }
        }
    }
}

/// One limit a request must fit in: `max` nano-USD per period of `scope`
/// (`key:<id>` or `user:<id>`, the operator's; `keycap:<id>`, the monthly
/// cap a key's owner set on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimit {
    pub scope: String,
    pub max: i64,
    pub period: Period,
}

impl BudgetLimit {
    /// A fingerprint of the limit's terms (its `max` and period): a lease
    /// granted under other terms grows again before it is spent from.
    pub fn terms(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (self.max, self.period).hash(&mut hasher);
        hasher.finish()
    }

    /// What this limit is, for messages, with its `max` as `max_usd`.
    pub fn describe(&self, max_usd: &str) -> String {
        match self.scope.split(':').next() {
            Some("keycap") => format!("the key's monthly cap of ${max_usd} (set by its owner)"),
            Some("user") => format!("the user's budget of ${max_usd} per period"),
            _ => format!("the key's budget of ${max_usd} per period"),
        }
    }
}

/// A budget scope a request holds its estimate of, and where from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBudget {
    pub scope: String,
    /// The lease on the scope it was held from (`db::leases::lease_id`),
    /// or `None` for a hold of the request's own.
    pub lease: Option<std::sync::Arc<str>>,
}

/// What a budget window shows at `now`: spent in the current period (zero
/// once the period has reset, even before any request), and when it resets.
pub fn window_at(
    period: Period,
    stored_start: i64,
    stored_spent: i64,
    now: i64,
) -> (i64, i64, Option<i64>) {
    let start = period.current_start(stored_start, now);
    let spent = if start == stored_start {
        stored_spent
    } else {
        0
    };
    (spent, start, period.reset_at(start))
}

fn date_of(ms: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date()
}

fn midnight(date: Date) -> i64 {
    date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * 1000
}

/// Midnight UTC of `now_ms`'s day and of the first of its month, in epoch
/// milliseconds: where "today" and "this month" start in usage figures.
pub fn day_and_month_starts(now_ms: i64) -> (i64, i64) {
    (
        Period::Daily.current_start(now_ms, now_ms),
        Period::Monthly.current_start(now_ms, now_ms),
    )
}

impl BudgetRow {
    /// When the budget resets.
    pub fn period(&self) -> Period {
        Period::from_parts(self.budget_duration_sec, self.period.as_deref())
    }

    /// The limit this budget puts on `user_id`.
    pub fn limit_for(&self, user_id: &str) -> BudgetLimit {
        BudgetLimit {
            scope: format!("user:{user_id}"),
            max: self.max_budget,
            period: self.period(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_start_at_midnight_and_the_first() {
        // 2026-11-23 14:29:00 UTC
        let (day, month) = day_and_month_starts(1_795_444_140_000);
        assert_eq!(day, 1_795_392_000_000); // 2026-11-23 00:00
        assert_eq!(month, 1_793_491_200_000); // 2026-11-01 00:00
    }

    /// 2026-11-25 (a Wednesday) 13:45:10 UTC.
    const WED: i64 = 1_795_614_310_000;
    const DAY: i64 = 86_400_000;

    #[test]
    fn calendar_periods_start_at_utc_boundaries() {
        let midnight_wed = WED - (13 * 3600 + 45 * 60 + 10) * 1000;
        assert_eq!(Period::Daily.current_start(0, WED), midnight_wed);
        assert_eq!(Period::Weekly.current_start(0, WED), midnight_wed - 2 * DAY);
        assert_eq!(
            Period::Monthly.current_start(0, WED),
            midnight_wed - 24 * DAY,
            "1 November"
        );
        assert_eq!(
            Period::Daily.reset_at(midnight_wed),
            Some(midnight_wed + DAY)
        );
        assert_eq!(
            Period::Monthly.reset_at(midnight_wed),
            Some(midnight_wed + 6 * DAY),
            "1 December"
        );
    }

    #[test]
    fn december_rolls_into_january() {
        let dec_1 = 1_796_083_200_000; // 2026-12-01 00:00 UTC
        assert_eq!(Period::Monthly.reset_at(dec_1), Some(dec_1 + 31 * DAY));
    }

    #[test]
    fn fixed_periods_step_from_their_first_start() {
        let every_hour = Period::Every { seconds: 3600 };
        assert_eq!(every_hour.current_start(1_000, 1_000 + 3_599_999), 1_000);
        assert_eq!(
            every_hour.current_start(1_000, 1_000 + 3_600_000),
            3_601_000
        );
        assert_eq!(
            every_hour.current_start(1_000, 1_000 + 7_300_000),
            7_201_000
        );
        assert_eq!(every_hour.reset_at(1_000), Some(3_601_000));
        assert_eq!(Period::Lifetime.current_start(5, i64::MAX), 5);
        assert_eq!(Period::Lifetime.reset_at(5), None);
    }

    #[test]
    fn a_reset_shows_without_a_request() {
        let period = Period::Every { seconds: 60 };
        assert_eq!(window_at(period, 0, 500, 59_999), (500, 0, Some(60_000)));
        assert_eq!(
            window_at(period, 0, 500, 60_000),
            (0, 60_000, Some(120_000))
        );
    }

    #[test]
    fn messages_say_whose_limit_it_is() {
        let limit = |scope: &str| BudgetLimit {
            scope: scope.into(),
            max: 1,
            period: Period::Monthly,
        };
        let cap = limit("keycap:key_1").describe("5.00");
        assert_eq!(cap, "the key's monthly cap of $5.00 (set by its owner)");
        assert!(limit("user:u")
            .describe("5.00")
            .starts_with("the user's budget"));
        assert!(limit("key:k")
            .describe("5.00")
            .starts_with("the key's budget"));
    }

    #[test]
    fn stored_parts_round_trip() {
        assert_eq!(Period::from_parts(None, Some("weekly")), Period::Weekly);
        assert_eq!(
            Period::from_parts(Some(60), None),
            Period::Every { seconds: 60 }
        );
        assert_eq!(Period::from_parts(None, None), Period::Lifetime);
    }
}

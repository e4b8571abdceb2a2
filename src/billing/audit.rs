//! The audit of the books: every check that must hold (ledger = balance,
//! each usage record's cost = its debit, no hold past its time, a debt
//! record for every negative balance, reservations that add up, each
//! payment credited once less what was taken back), and the
//! reconciliation of usage by provider and day: requests, tokens by
//! bucket, the provider's cost, the users' price and the margin earned.
//! The same report feeds `llm-gateway audit` and the admin pages.

use serde::{Deserialize, Serialize};

/// A failed check: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `balance_vs_ledger`, `cost_vs_debit`, `stale_hold`,
    /// `reserved_vs_holds`, `debt_record` or `payment_vs_ledger`.
    pub check: String,
    /// The user, request or budget scope at fault.
    pub subject: String,
    pub detail: String,
}

/// One provider's usage on one UTC day; money in nano-USD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationRow {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub provider: String,
    pub requests: i64,
    /// Prompt tokens neither read from nor written to a cache.
    pub input_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub output_tokens: i64,
    /// What the providers charge the operator.
    pub provider_cost: i64,
    /// What the users paid.
    pub user_price: i64,
    /// `user_price - provider_cost`.
    pub margin: i64,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    pub users: i64,
    pub usage_records: i64,
    pub ledger_entries: i64,
    /// Every check that failed; empty when the books hold.
    pub findings: Vec<Finding>,
    pub reconciliation: Vec<ReconciliationRow>,
    /// The reconciliation summed over every row.
    pub totals: ReconciliationRow,
}

impl ReconciliationRow {
    /// The row's cells in the order of [`AuditReport::CSV_HEADER`], money
    /// as exact USD.
    pub fn cells(&self) -> [String; 11] {
        use super::money::format_usd;
        [
            self.day.clone(),
            self.provider.clone(),
            self.requests.to_string(),
            self.input_tokens.to_string(),
            self.cache_read_tokens.to_string(),
            self.cache_write_tokens.to_string(),
            self.cache_write_1h_tokens.to_string(),
            self.output_tokens.to_string(),
            format_usd(self.provider_cost),
            format_usd(self.user_price),
            format_usd(self.margin),
        ]
    }
}

/// The start of the period `days` UTC days long that ends today, at `now`
/// (epoch milliseconds); 0, all time, for `days` of 0 or less.
pub fn since(now: i64, days: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    if days > 0 {
        (now.div_euclid(DAY) - (days - 1)) * DAY
    } else {
        0
    }
}

impl AuditReport {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// The header of [`AuditReport::to_csv`].
    pub const CSV_HEADER: &'static str = "day,provider,requests,input_tokens,cache_read_tokens,\
        cache_write_tokens,cache_write_1h_tokens,output_tokens,provider_cost_usd,user_price_usd,margin_usd";

    /// The reconciliation as CSV, a line per provider and day, USD exact.
    pub fn to_csv(&self) -> String {
        let mut csv = format!("{}\n", Self::CSV_HEADER);
        for row in &self.reconciliation {
            csv.push_str(&row.cells().join(","));
            csv.push('\n');
        }
        csv
    }

    /// The report for people: the checks, then the reconciliation.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "Checked {} users, {} usage records and {} ledger entries.\n",
            self.users, self.usage_records, self.ledger_entries
        );
        if self.passed() {
            text.push_str(
                "All checks passed: ledger = balance for every user, every usage record's cost = its debit, \
                 no hold past its time, every negative balance has its debt record, every payment \
                 credited once less what was taken back.\n",
            );
        } else {
            text.push_str(&format!("{} problem(s) found:\n", self.findings.len()));
            for finding in &self.findings {
                text.push_str(&format!(
                    "  {} {}: {}\n",
                    finding.check, finding.subject, finding.detail
                ));
            }
        }
        text.push_str("\nReconciliation by provider and day (USD):\n");
        let header = [
            "day",
            "provider",
            "requests",
            "input",
            "cache read",
            "cache write",
            "write 1h",
            "output",
            "provider cost",
            "user price",
            "margin",
        ]
        .map(String::from);
        let rows = self
            .reconciliation
            .iter()
            .chain(std::iter::once(&self.totals));
        for cells in std::iter::once(header).chain(rows.map(ReconciliationRow::cells)) {
            let [day, provider, numbers @ ..] = cells;
            text.push_str(&format!("{day:<10} {provider:<12}"));
            for number in numbers {
                text.push_str(&format!(" {number:>13}"));
            }
            text.push('\n');
        }
        text
    }
}

#[cfg(feature = "ssr")]
pub use server::run;

#[cfg(feature = "ssr")]
mod server {
    use super::*;
    use crate::db::audit::{self, ProviderDay};
    use crate::db::Db;

    /// How long past its expiry a hold may wait for the sweep that releases
    /// it (every minute) before the audit calls it stale.
    const SWEEP_GRACE_MS: i64 = 2 * 60 * 1000;

    /// Audits the database at `now`, reconciling usage from `since` on.
    pub async fn run(db: &Db, now: i64, since: i64) -> Result<AuditReport, sqlx::Error> {
        let (users, usage_records, ledger_entries) = audit::census(db).await?;
        let mut findings = Vec::new();
        let mut found = |check: &str, subject: &str, detail: String| {
            findings.push(Finding {
                check: check.into(),
                subject: subject.into(),
                detail,
            })
        };
        for m in audit::balance_mismatches(db).await? {
            found(
                "balance_vs_ledger",
                &m.user_id,
                format!(
                    "balance {} but the ledger sums to {}",
                    m.balance, m.ledger_sum
                ),
            );
        }
        for m in audit::cost_mismatches(db).await? {
            found(
                "cost_vs_debit",
                &m.request_id,
                format!(
                    "user {}: cost {} but {} ledger entr(ies) took {}",
                    m.user_id, m.cost, m.entries, m.debited
                ),
            );
        }
        for hold in audit::stale_holds(db, now - SWEEP_GRACE_MS).await? {
            found(
                "stale_hold",
                &hold.request_id,
                format!(
                    "{} still holds {}, past its expiry at {}",
                    hold.holder, hold.amount, hold.expires_at
                ),
            );
        }
        for m in audit::reserved_mismatches(db).await? {
            found(
                "reserved_vs_holds",
                &m.user_id,
                format!(
                    "reserved {} but open reservations hold {}",
                    m.reserved, m.held
                ),
            );
        }
        for m in audit::debt_mismatches(db).await? {
            let recorded = m
                .recorded
                .map_or("no debt record".into(), |r| format!("a debt record of {r}"));
            found(
                "debt_record",
                &m.user_id,
                format!("balance {} with {recorded}", m.balance),
            );
        }
        for m in audit::payment_mismatches(db).await? {
            found(
                "payment_vs_ledger",
                &m.payment_id,
                format!(
                    "{} payment should post {} but its {} top-up(s) and other entries post {}",
                    m.status, m.expected, m.top_ups, m.posted
                ),
            );
        }
        let reconciliation: Vec<ReconciliationRow> =
            audit::by_provider_and_day(db, since, i64::MAX)
                .await?
                .into_iter()
                .map(row)
                .collect();
        let totals = total(&reconciliation);
        Ok(AuditReport {
            users,
            usage_records,
            ledger_entries,
            findings,
            reconciliation,
            totals,
        })
    }

    fn row(day: ProviderDay) -> ReconciliationRow {
        let cached = day.cache_read_tokens + day.cache_write_tokens + day.cache_write_1h_tokens;
        ReconciliationRow {
            day: date(day.day),
            provider: day.provider,
            requests: day.requests,
            input_tokens: (day.prompt_tokens - cached).max(0),
            cache_read_tokens: day.cache_read_tokens,
            cache_write_tokens: day.cache_write_tokens,
            cache_write_1h_tokens: day.cache_write_1h_tokens,
            output_tokens: day.completion_tokens,
            provider_cost: day.provider_cost,
            user_price: day.cost,
            margin: day.cost - day.provider_cost,
        }
    }

    fn total(rows: &[ReconciliationRow]) -> ReconciliationRow {
        let sum = |f: fn(&ReconciliationRow) -> i64| rows.iter().map(f).sum();
        ReconciliationRow {
            day: "total".into(),
            provider: String::new(),
            requests: sum(|r| r.requests),
            input_tokens: sum(|r| r.input_tokens),
            cache_read_tokens: sum(|r| r.cache_read_tokens),
            cache_write_tokens: sum(|r| r.cache_write_tokens),
            cache_write_1h_tokens: sum(|r| r.cache_write_1h_tokens),
            output_tokens: sum(|r| r.output_tokens),
            provider_cost: sum(|r| r.provider_cost),
            user_price: sum(|r| r.user_price),
            margin: sum(|r| r.margin),
        }
    }

    /// `YYYY-MM-DD` of an epoch-milliseconds day start.
    fn date(ms: i64) -> String {
        time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .map(|t| t.date().to_string())
            .unwrap_or_default()
    }
}

//! A batch of money writes, applied in one transaction (group commit):
//! reservations of balances and budgets, and usage records with their
//! settlement. Each op goes through one named step; the SQL of each step is
//! `db::batch_tx`'s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::budget::{BudgetLimit, HeldBudget};
use crate::db::batch_tx::{BalanceHold, BatchTx, DebtNote, UsageEntry};
use crate::db::usage::UsageRecord;
use crate::db::Db;

/// One write to the money tables, applied by [`apply_batch`].
// `Settle`, the largest, is also the op of every request: boxing its record
// would cost an allocation per request to save memory in a short queue.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Hold `amount` of the user's available balance for a request, on
    /// behalf of replica `replica_id` (released should it die).
    Reserve {
        request_id: String,
        user_id: String,
        amount: i64,
        expires_at: i64,
        replica_id: Arc<str>,
    },
    /// Hold `amount` of each budget the request must fit in; all or none.
    /// Every budget belongs to the one user whose request it is.
    ReserveBudget {
        request_id: String,
        user_id: String,
        limits: Vec<BudgetLimit>,
        amount: i64,
        now: i64,
        expires_at: i64,
        replica_id: Arc<str>,
    },
    /// Write a usage record and settle its billing: the whole cost is
    /// taken, below zero if need be. `in_memory` when the in-memory
    /// accounts (SQLite) or a lease (PostgreSQL) already held and charged
    /// it; otherwise the request's reservation row is released here.
    Settle {
        record: UsageRecord,
        in_memory: bool,
        /// The lease it was charged to (`db::leases::lease_id`), whose row
        /// gives up the cost (down to nothing) as the balance pays it.
        lease: Option<Arc<str>>,
        /// The budget scopes the request falls under, to release what it
        /// holds of each (if a sweep has not already) and charge its cost.
        budgets: Option<Arc<[HeldBudget]>>,
        /// The key's rate-limit window to count the completion tokens in.
        rate_window: Option<i64>,
    },
}

impl WriteOp {
    /// The user whose money or budgets the op touches.
    fn user_id(&self) -> &str {
        match self {
            WriteOp::Reserve { user_id, .. } | WriteOp::ReserveBudget { user_id, .. } => user_id,
            WriteOp::Settle { record, .. } => &record.user_id,
        }
    }

    /// What a reservation holds, taken at `now`; `None` for a settlement.
    fn hold(&self, now: i64) -> Option<BalanceHold<'_>> {
        match self {
            WriteOp::Reserve {
                request_id,
                user_id,
                amount,
                expires_at,
                replica_id,
            }
            | WriteOp::ReserveBudget {
                request_id,
                user_id,
                amount,
                expires_at,
                replica_id,
                ..
            } => Some(BalanceHold {
                request_id,
                user_id,
                amount: *amount,
                created_at: now,
                expires_at: *expires_at,
                replica_id,
            }),
            WriteOp::Settle { .. } => None,
        }
    }

    /// A settlement charged in memory, whose budgets (if any) were held
    /// from leases too: the common case on either backend, written in bulk.
    fn charged_in_memory(&self) -> Option<InMemory<'_>> {
        match self {
            WriteOp::Settle {
                record,
                in_memory: true,
                lease,
                budgets,
                rate_window,
            } if budgets
                .iter()
                .flat_map(|budgets| budgets.iter())
                .all(|held| held.lease.is_some()) =>
            {
                Some(InMemory {
                    record,
                    lease: lease.as_deref(),
                    budgets: budgets.as_deref().unwrap_or_default(),
                    rate_window: *rate_window,
                })
            }
            _ => None,
        }
    }
}

/// A settlement charged in memory: its record, the lease on the credit it
/// was charged to, the budgets' leases, and the token window it counts in.
struct InMemory<'a> {
    record: &'a UsageRecord,
    lease: Option<&'a str>,
    budgets: &'a [HeldBudget],
    rate_window: Option<i64>,
}

/// Applies `ops` in order in one transaction at `now`. A record already
/// written is skipped with everything that goes with it, so a request is
/// billed (and counted against its rate limit) exactly once. Consecutive
/// settlements charged in memory are written together ([`settle_in_bulk`]).
/// Returns, per op, whether it took effect (a reservation may be refused).
pub async fn apply_batch(db: &Db, ops: &[WriteOp], now: i64) -> Result<Vec<bool>, sqlx::Error> {
    let mut tx = BatchTx::begin(db).await?;
    tx.lock_users(ops.iter().map(WriteOp::user_id).collect())
        .await?;
    let mut results = Vec::with_capacity(ops.len());
    let same_kind = |a: &WriteOp, b: &WriteOp| {
        a.charged_in_memory().is_some() == b.charged_in_memory().is_some()
    };
    for run in ops.chunk_by(same_kind) {
        if run[0].charged_in_memory().is_some() {
            let group = run.iter().filter_map(WriteOp::charged_in_memory).collect();
            settle_in_bulk(&mut tx, group, now).await?;
            results.extend(std::iter::repeat_n(true, run.len()));
            continue;
        }
        for op in run {
            results.push(apply_one(&mut tx, op, now).await?);
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Applies one op through its step.
async fn apply_one(tx: &mut BatchTx, op: &WriteOp, now: i64) -> Result<bool, sqlx::Error> {
    match (op, op.hold(now)) {
        (WriteOp::ReserveBudget { limits, now, .. }, Some(hold)) => {
            hold_budgets(tx, &hold, limits, *now).await
        }
        (_, Some(hold)) => tx.hold_balance(&hold).await,
        (
            WriteOp::Settle {
                record,
                in_memory,
                lease,
                budgets,
                rate_window,
            },
            _,
        ) => {
            let scopes = budgets.as_deref().unwrap_or_default();
            let charged = match (in_memory, lease) {
                (true, lease) => Charged::InMemory(lease.as_deref()),
                (false, _) => Charged::FromReservation,
            };
            settle(tx, record, charged, scopes, *rate_window, now).await?;
            Ok(true)
        }
        (_, None) => unreachable!("every reservation holds something"),
    }
}

/// Grows lease `hold.request_id` on budget `limit` by `hold.amount`, in a
/// transaction of its own (not behind the writer's queue), if what the
/// period has left covers it; `false` (and nothing held) when it does not.
pub async fn grow_budget_lease(
    db: &Db,
    hold: &BalanceHold<'_>,
    limit: &BudgetLimit,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = BatchTx::begin(db).await?;
    // The user's row first, as every batch takes its locks.
    tx.lock_users(vec![hold.user_id]).await?;
    let held = hold_budgets(&mut tx, hold, std::slice::from_ref(limit), now).await?;
    tx.commit().await?;
    Ok(held)
}

/// Gives back up to `amount` of lease `lease` on budget `scope` of
/// `user_id`'s, in a transaction of its own; returns what it gave back.
pub async fn shrink_budget_lease(
    db: &Db,
    user_id: &str,
    lease: &str,
    scope: &str,
    amount: i64,
) -> Result<i64, sqlx::Error> {
    let mut tx = BatchTx::begin(db).await?;
    tx.lock_users(vec![user_id]).await?;
    let given = tx.take_budget_lease(lease, scope, amount).await?;
    tx.unhold_budget(scope, given, 0).await?;
    tx.commit().await?;
    Ok(given)
}

/// Holds `hold.amount` of every budget in `limits`, each in its window as
/// of `now`, or of none of them; `false` when one cannot cover it.
async fn hold_budgets(
    tx: &mut BatchTx,
    hold: &BalanceHold<'_>,
    limits: &[BudgetLimit],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut taken: Vec<&str> = Vec::with_capacity(limits.len());
    for limit in limits {
        let fresh = limit.period.current_start(now, now);
        let stored = tx.budget_window_start(&limit.scope, fresh).await?;
        let current = limit.period.current_start(stored, now);
        if current != stored {
            tx.restart_budget_window(&limit.scope, current, stored)
                .await?;
        }
        if !tx.hold_budget(&limit.scope, hold.amount, limit.max).await? {
            break;
        }
        taken.push(&limit.scope);
    }
    let all_held = taken.len() == limits.len();
    for scope in taken {
        if all_held {
            tx.note_budget_hold(hold, scope).await?;
        } else {
            tx.unhold_budget(scope, hold.amount, 0).await?;
        }
    }
    Ok(all_held)
}

/// How a settled request was held.
enum Charged<'a> {
    /// By a reservation row of its own, released at settlement.
    FromReservation,
    /// In memory, from this lease if any.
    InMemory(Option<&'a str>),
}

/// Writes one usage record and settles it: counts its completion tokens in
/// the key's rate window, releases its reservation (or takes its cost from
/// its lease), takes its whole cost with a ledger entry (noting a debt if
/// the balance goes below zero), charges each budget scope in full (even
/// when a sweep released its hold), and notes the key's use.
async fn settle(
    tx: &mut BatchTx,
    record: &UsageRecord,
    charged: Charged<'_>,
    scopes: &[HeldBudget],
    rate_window: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    if tx.insert_records(&[record]).await?.is_empty() {
        return Ok(()); // already written and settled
    }
    if let (Some(window), Some(key_id)) = (rate_window, &record.key_id) {
        tx.count_tokens(key_id, window, record.completion_tokens)
            .await?;
    }
    match charged {
        Charged::FromReservation => tx.release_reservation(&record.id, &record.user_id).await?,
        Charged::InMemory(Some(lease)) => {
            tx.take_lease(lease, &record.user_id, record.cost).await?;
        }
        Charged::InMemory(None) => {}
    }
    if record.cost > 0 {
        let after = tx.debit(&record.user_id, record.cost).await?;
        let debits = running_balances(after, &[record]);
        tx.insert_usage_entries(&debits.entries).await?;
        if let Some(debt) = debits.debt(now) {
            tx.note_debt(&debt).await?;
        }
    }
    for HeldBudget { scope, lease } in scopes {
        let held = match lease {
            Some(lease) => tx.take_budget_lease(lease, scope, record.cost).await?,
            None => tx.take_budget_hold(&record.id, scope).await?,
        };
        tx.unhold_budget(scope, held, record.cost).await?;
    }
    if let Some(key_id) = &record.key_id {
        tx.touch_key(key_id, record.created_at).await?;
    }
    Ok(())
}

/// Writes a run of settlements charged in memory, in a few statements
/// whatever its length: the records (skipping any already written), what
/// the leases gave up (on credit and on budgets, one statement per lease),
/// the completion tokens per key window, one debit per user, the ledger
/// entries, the debts, the keys' last use.
async fn settle_in_bulk(
    tx: &mut BatchTx,
    group: Vec<InMemory<'_>>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let records: Vec<&UsageRecord> = group.iter().map(|settled| settled.record).collect();
    let written: HashSet<String> = tx.insert_records(&records).await?.into_iter().collect();
    let group: Vec<InMemory<'_>> = group
        .into_iter()
        .filter(|settled| written.contains(&settled.record.id))
        .collect();
    for ((lease, user_id), cost) in cost_by_lease(&group) {
        tx.take_lease(lease, user_id, cost).await?;
    }
    for ((lease, scope), cost) in cost_by_budget_lease(&group) {
        let taken = tx.take_budget_lease(lease, scope, cost).await?;
        tx.unhold_budget(scope, taken, cost).await?;
    }
    for ((key_id, window), tokens) in tokens_by_window(&group) {
        tx.count_tokens(key_id, window, tokens).await?;
    }
    let group: Vec<&UsageRecord> = group.into_iter().map(|settled| settled.record).collect();
    let mut entries = Vec::with_capacity(group.len());
    for (user_id, records) in by_user(&group) {
        let charged: Vec<&UsageRecord> = records.into_iter().filter(|r| r.cost > 0).collect();
        let total: i64 = charged.iter().map(|r| r.cost).sum();
        if total == 0 {
            continue;
        }
        let after = tx.debit(user_id, total).await?;
        let debits = running_balances(after, &charged);
        if let Some(debt) = debits.debt(now) {
            tx.note_debt(&debt).await?;
        }
        entries.extend(debits.entries);
    }
    tx.insert_usage_entries(&entries).await?;
    for (key_id, at) in last_use_by_key(&group) {
        tx.touch_key(key_id, at).await?;
    }
    Ok(())
}

/// What the settlements charged to each lease on credit cost together.
fn cost_by_lease<'a>(group: &[InMemory<'a>]) -> BTreeMap<(&'a str, &'a str), i64> {
    let mut costs = BTreeMap::new();
    for settled in group {
        if let Some(lease) = settled.lease {
            let user_id = settled.record.user_id.as_str();
            *costs.entry((lease, user_id)).or_insert(0) += settled.record.cost.max(0);
        }
    }
    costs
}

/// What the settlements held of each lease on a budget cost together: the
/// budget counts each in full, and the lease gives up as much (down to
/// nothing).
fn cost_by_budget_lease<'a>(group: &[InMemory<'a>]) -> BTreeMap<(&'a str, &'a str), i64> {
    let mut costs = BTreeMap::new();
    for settled in group {
        for held in settled.budgets {
            if let Some(lease) = held.lease.as_deref() {
                let key = (lease, held.scope.as_str());
                *costs.entry(key).or_insert(0) += settled.record.cost;
            }
        }
    }
    costs
}

/// The completion tokens of the settlements, per key and rate window.
fn tokens_by_window<'a>(group: &[InMemory<'a>]) -> BTreeMap<(&'a str, i64), i64> {
    let mut tokens = BTreeMap::new();
    for settled in group {
        if let (Some(window), Some(key_id)) = (settled.rate_window, &settled.record.key_id) {
            *tokens.entry((key_id.as_str(), window)).or_insert(0) +=
                settled.record.completion_tokens;
        }
    }
    tokens
}

/// Applies a batch, again if the database rolled it back for a conflict
/// with another process (a deadlock or a serialization failure): nothing
/// of it was written, and the next try usually goes through.
pub async fn apply_retrying_conflicts(
    db: &Db,
    ops: &[WriteOp],
    now: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    const TRIES: u32 = 4;
    let mut attempt = 1;
    loop {
        match apply_batch(db, ops, now).await {
            Err(err) if attempt < TRIES && is_conflict(&err) => {
                tracing::warn!(%err, attempt, ops = ops.len(), "billing batch conflicted; trying again");
                tokio::time::sleep(Duration::from_millis(5 << (2 * attempt))).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Whether the database refused a transaction for a conflict with another
/// (PostgreSQL's `deadlock_detected` or `serialization_failure`).
fn is_conflict(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// A settlement of a plain, answered request, not charged in memory (tests).
#[cfg(test)]
pub(crate) fn settle_op(id: &str, user_id: &str) -> WriteOp {
    WriteOp::Settle {
        record: UsageRecord {
            id: id.into(),
            user_id: user_id.into(),
            status: 200,
            created_at: 1,
            ..UsageRecord::default()
        },
        in_memory: false,
        lease: None,
        budgets: None,
        rate_window: None,
    }
}

/// One user's charges, each with the balance after it.
struct Debits<'a> {
    entries: Vec<UsageEntry<'a>>,
    /// The balance after the last charge.
    after: i64,
    /// The entry of the charge that took the balance below zero, if one did.
    into_debt: Option<usize>,
}

impl<'a> Debits<'a> {
    /// The debt the charges leave, if the balance ends below zero: since
    /// the charge that took it there (or the last, for a debt older than
    /// these charges, whose record keeps its own start).
    fn debt(&self, now: i64) -> Option<DebtNote<'_>> {
        if self.after >= 0 {
            return None;
        }
        let last = self.entries.len().checked_sub(1)?;
        Some(DebtNote {
            charge: &self.entries[self.into_debt.unwrap_or(last)],
            owed: -self.after,
            now,
        })
    }
}

/// The entries of one user's `charges`, taken in order, given the balance
/// `after` them all: each entry's balance after it, and which charge (if
/// any) took the balance from zero or above to below zero.
fn running_balances<'a>(after: i64, charges: &[&'a UsageRecord]) -> Debits<'a> {
    let mut balance = after + charges.iter().map(|r| r.cost).sum::<i64>();
    let mut into_debt = None;
    let mut entries = Vec::with_capacity(charges.len());
    for &record in charges {
        if balance >= 0 && balance - record.cost < 0 {
            into_debt = Some(entries.len());
        }
        balance -= record.cost;
        entries.push(UsageEntry {
            user_id: &record.user_id,
            amount: -record.cost,
            balance_after: balance,
            request_id: &record.id,
            created_at: record.created_at,
        });
    }
    Debits {
        entries,
        after,
        into_debt,
    }
}

/// The records grouped by user, users in order of first appearance and
/// records in order within each.
fn by_user<'a>(records: &[&'a UsageRecord]) -> Vec<(&'a str, Vec<&'a UsageRecord>)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(&str, Vec<&UsageRecord>)> = Vec::new();
    for &record in records {
        let slot = *index.entry(record.user_id.as_str()).or_insert_with(|| {
            groups.push((record.user_id.as_str(), Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(record);
    }
    groups
}

/// Each key's latest use among `records`.
fn last_use_by_key<'a>(records: &[&'a UsageRecord]) -> Vec<(&'a str, i64)> {
    let mut latest: Vec<(&str, i64)> = Vec::new();
    for record in records {
        let Some(key_id) = record.key_id.as_deref() else {
            continue;
        };
        match latest.iter_mut().find(|(k, _)| *k == key_id) {
            Some((_, at)) => *at = (*at).max(record.created_at),
            None => latest.push((key_id, record.created_at)),
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, user_id: &str, key_id: Option<&str>, at: i64) -> UsageRecord {
        UsageRecord {
            id: id.into(),
            user_id: user_id.into(),
            key_id: key_id.map(Into::into),
            created_at: at,
            ..UsageRecord::default()
        }
    }

    #[test]
    fn records_group_by_user_and_key_in_order() {
        let records = [
            record("r1", "u1", Some("k1"), 30),
            record("r2", "u2", None, 10),
            record("r3", "u1", Some("k2"), 20),
            record("r4", "u1", Some("k1"), 20),
        ];
        let charged: Vec<&UsageRecord> = records.iter().collect();
        let groups = by_user(&charged);
        let shape: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|(user, rs)| (*user, rs.iter().map(|r| r.id.as_str()).collect()))
            .collect();
        assert_eq!(shape, [("u1", vec!["r1", "r3", "r4"]), ("u2", vec!["r2"])]);
        assert_eq!(last_use_by_key(&charged), [("k1", 30), ("k2", 20)]);
    }

    #[test]
    fn running_balances_name_the_charge_that_made_the_debt() {
        let mut records = [
            record("r1", "u1", None, 10),
            record("r2", "u1", None, 20),
            record("r3", "u1", None, 30),
        ];
        for (record, cost) in records.iter_mut().zip([40, 50, 30]) {
            record.cost = cost;
        }
        let charges: Vec<&UsageRecord> = records.iter().collect();
        // 100 before: 60, 10, then -20 after the third.
        let debits = running_balances(-20, &charges);
        let after: Vec<i64> = debits.entries.iter().map(|e| e.balance_after).collect();
        assert_eq!(after, [60, 10, -20]);
        assert!(debits.entries.iter().all(|e| e.amount < 0));
        let debt = debits.debt(99).unwrap();
        let charge = debt.charge;
        assert_eq!(
            (debt.owed, charge.request_id, charge.created_at),
            (20, "r3", 30)
        );
        // Already in debt before: the debt's own start stays (the note names the last).
        let deeper = running_balances(-130, &charges);
        assert_eq!(deeper.debt(99).unwrap().charge.request_id, "r3");
        assert!(deeper.into_debt.is_none());
        assert!(running_balances(0, &charges).debt(99).is_none());
    }

    #[test]
    fn bulk_settlements_add_up_per_lease_and_per_window() {
        let mut records = [
            record("r1", "u1", Some("k1"), 10),
            record("r2", "u1", Some("k1"), 20),
            record("r3", "u1", Some("k2"), 30),
        ];
        for (record, (cost, tokens)) in records.iter_mut().zip([(40, 3), (50, 4), (7, 5)]) {
            record.cost = cost;
            record.completion_tokens = tokens;
        }
        let budget = |lease: Option<&str>| HeldBudget {
            scope: "user:u1".into(),
            lease: lease.map(Into::into),
        };
        let leased = [budget(Some("lease:r:user:u1"))];
        let group: Vec<InMemory> = records
            .iter()
            .map(|record| InMemory {
                record,
                lease: Some("lease:r:u1"),
                budgets: if record.id == "r3" { &[] } else { &leased },
                rate_window: (record.id != "r2").then_some(60_000),
            })
            .collect();
        assert_eq!(
            cost_by_lease(&group).into_iter().collect::<Vec<_>>(),
            [(("lease:r:u1", "u1"), 97)]
        );
        assert_eq!(
            cost_by_budget_lease(&group).into_iter().collect::<Vec<_>>(),
            [(("lease:r:user:u1", "user:u1"), 90)]
        );
        assert_eq!(
            tokens_by_window(&group).into_iter().collect::<Vec<_>>(),
            [(("k1", 60_000), 3), (("k2", 60_000), 5)]
        );
        // A budget held by a hold of the request's own settles on its own.
        let own = Arc::from([budget(None)]);
        let op = WriteOp::Settle {
            record: records[0].clone(),
            in_memory: true,
            lease: None,
            budgets: Some(own),
            rate_window: None,
        };
        assert!(op.charged_in_memory().is_none());
    }
}

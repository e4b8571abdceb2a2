//! The queries of `llm-gateway audit`: the books checked against each
//! other, and the reconciliation of usage by provider and day.

use super::Db;
use crate::with_pool;

/// A user whose balance is not the sum of their ledger.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BalanceMismatch {
    pub user_id: String,
    pub balance: i64,
    pub ledger_sum: i64,
}

/// Users whose balance differs from the sum of their ledger entries.
pub async fn balance_mismatches(db: &Db) -> Result<Vec<BalanceMismatch>, sqlx::Error> {
    const SQL: &str = "SELECT u.id AS user_id, u.balance, \
        CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) AS ledger_sum \
        FROM users u LEFT JOIN ledger_entries l ON l.user_id = u.id \
        GROUP BY u.id, u.balance \
        HAVING u.balance <> CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) ORDER BY u.id";
    with_pool!(db, pool => sqlx::query_as(SQL).fetch_all(pool).await)
}

/// A usage record whose cost is not what its ledger entries took.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CostMismatch {
    pub request_id: String,
    pub user_id: String,
    pub cost: i64,
    pub debited: i64,
    pub entries: i64,
}

/// Usage records whose cost differs from their usage debit (a record with
/// a cost needs exactly one entry of that amount; a free one, none), and
/// usage debits without a record.
pub async fn cost_mismatches(db: &Db) -> Result<Vec<CostMismatch>, sqlx::Error> {
    const RECORDS: &str = "SELECT r.id AS request_id, r.user_id, r.cost, \
        CAST(COALESCE(-SUM(l.amount), 0) AS BIGINT) AS debited, COUNT(l.id) AS entries \
        FROM usage_records r LEFT JOIN ledger_entries l ON l.request_id = r.id AND l.kind = 'usage' \
        GROUP BY r.id, r.user_id, r.cost \
        HAVING r.cost <> CAST(COALESCE(-SUM(l.amount), 0) AS BIGINT) \
            OR COUNT(l.id) <> CASE WHEN r.cost = 0 THEN 0 ELSE 1 END \
        ORDER BY r.id";
    const ORPHANS: &str = "SELECT COALESCE(l.request_id, l.id) AS request_id, l.user_id, \
        CAST(0 AS BIGINT) AS cost, -l.amount AS debited, CAST(1 AS BIGINT) AS entries \
        FROM ledger_entries l LEFT JOIN usage_records r ON r.id = l.request_id \
        WHERE l.kind = 'usage' AND r.id IS NULL ORDER BY l.id";
    let mut found: Vec<CostMismatch> =
        with_pool!(db, pool => sqlx::query_as(RECORDS).fetch_all(pool).await)?;
    found.extend(
        with_pool!(db, pool => sqlx::query_as::<_, CostMismatch>(ORPHANS).fetch_all(pool).await)?,
    );
    Ok(found)
}

/// A payment whose ledger entries do not match it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PaymentMismatch {
    pub payment_id: String,
    pub status: String,
    /// What the payment should have added (its credit less what was taken back).
    pub expected: i64,
    /// What its ledger entries add up to, and how many top-ups credited it.
    pub posted: i64,
    pub top_ups: i64,
}

/// Payments whose entries disagree with them: a paid (or since refunded or
/// disputed) payment is credited once with its credit, less what was
/// taken back; any other payment has no entries.
pub async fn payment_mismatches(db: &Db) -> Result<Vec<PaymentMismatch>, sqlx::Error> {
    const SQL: &str = "SELECT p.id AS payment_id, p.status, \
        CASE WHEN p.paid_at IS NULL THEN 0 ELSE p.credit - p.taken_back END AS expected, \
        CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) AS posted, \
        CAST(COALESCE(SUM(CASE WHEN l.kind = 'topup' THEN 1 ELSE 0 END), 0) AS BIGINT) AS top_ups \
        FROM payments p LEFT JOIN ledger_entries l ON l.payment_id = p.id \
        GROUP BY p.id, p.status, p.paid_at, p.credit, p.taken_back \
        HAVING CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) <> \
            CASE WHEN p.paid_at IS NULL THEN 0 ELSE p.credit - p.taken_back END \
          OR CAST(COALESCE(SUM(CASE WHEN l.kind = 'topup' THEN 1 ELSE 0 END), 0) AS BIGINT) <> \
            CASE WHEN p.paid_at IS NULL THEN 0 ELSE 1 END \
        ORDER BY p.id";
    with_pool!(db, pool => sqlx::query_as(SQL).fetch_all(pool).await)
}

/// A hold still open past its time.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StaleHold {
    pub request_id: String,
    /// The user, or the budget scope, whose money it holds.
    pub holder: String,
    pub amount: i64,
    pub expires_at: i64,
}

/// Reservations and budget holds that should have been released by `now`.
pub async fn stale_holds(db: &Db, now: i64) -> Result<Vec<StaleHold>, sqlx::Error> {
    const SQL: &str = "SELECT request_id, user_id AS holder, amount, expires_at \
        FROM reservations WHERE expires_at < $1 \
        UNION ALL SELECT request_id, scope AS holder, amount, expires_at \
        FROM budget_holds WHERE expires_at < $1 ORDER BY request_id";
    with_pool!(db, pool => sqlx::query_as(SQL).bind(now).fetch_all(pool).await)
}

/// A user whose `reserved` is not the sum of their reservations.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReservedMismatch {
    pub user_id: String,
    pub reserved: i64,
    pub held: i64,
}

/// Users whose reserved total differs from their open reservations.
pub async fn reserved_mismatches(db: &Db) -> Result<Vec<ReservedMismatch>, sqlx::Error> {
    const SQL: &str = "SELECT u.id AS user_id, u.reserved, \
        CAST(COALESCE(SUM(r.amount), 0) AS BIGINT) AS held \
        FROM users u LEFT JOIN reservations r ON r.user_id = u.id \
        GROUP BY u.id, u.reserved \
        HAVING u.reserved <> CAST(COALESCE(SUM(r.amount), 0) AS BIGINT) ORDER BY u.id";
    with_pool!(db, pool => sqlx::query_as(SQL).fetch_all(pool).await)
}

/// A user whose debt record does not match their balance.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DebtMismatch {
    pub user_id: String,
    pub balance: i64,
    /// What the debt record says is owed; `None` if there is none.
    pub recorded: Option<i64>,
}

/// Negative balances without a debt record of that amount, and debt
/// records of users whose balance is not negative.
pub async fn debt_mismatches(db: &Db) -> Result<Vec<DebtMismatch>, sqlx::Error> {
    const SQL: &str = "SELECT u.id AS user_id, u.balance, d.amount AS recorded \
        FROM users u LEFT JOIN debts d ON d.user_id = u.id \
        WHERE (u.balance < 0 AND (d.amount IS NULL OR d.amount <> -u.balance)) \
           OR (u.balance >= 0 AND d.amount IS NOT NULL) ORDER BY u.id";
    with_pool!(db, pool => sqlx::query_as(SQL).fetch_all(pool).await)
}

/// Usage of one provider on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProviderDay {
    /// The day's start, epoch milliseconds.
    pub day: i64,
    pub provider: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub completion_tokens: i64,
    pub provider_cost: i64,
    pub cost: i64,
}

/// Usage by provider and UTC day, for days starting in `[from, to)`.
pub async fn by_provider_and_day(
    db: &Db,
    from: i64,
    to: i64,
) -> Result<Vec<ProviderDay>, sqlx::Error> {
    const SQL: &str = "SELECT (created_at / 86400000) * 86400000 AS day, \
        COALESCE(provider, '-') AS provider, COUNT(*) AS requests, \
        CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
        CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cache_read_tokens, \
        CAST(COALESCE(SUM(cache_write_tokens), 0) AS BIGINT) AS cache_write_tokens, \
        CAST(COALESCE(SUM(cache_write_1h_tokens), 0) AS BIGINT) AS cache_write_1h_tokens, \
        CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
        CAST(COALESCE(SUM(provider_cost), 0) AS BIGINT) AS provider_cost, \
        CAST(COALESCE(SUM(cost), 0) AS BIGINT) AS cost \
        FROM usage_records WHERE created_at >= $1 AND created_at < $2 \
        GROUP BY (created_at / 86400000) * 86400000, COALESCE(provider, '-') \
        ORDER BY day, provider";
    with_pool!(db, pool => sqlx::query_as(SQL).bind(from).bind(to).fetch_all(pool).await)
}

/// How many users, usage records and ledger entries the books hold.
pub async fn census(db: &Db) -> Result<(i64, i64, i64), sqlx::Error> {
    const SQL: &str = "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM usage_records), \
        (SELECT COUNT(*) FROM ledger_entries)";
    with_pool!(db, pool => sqlx::query_as(SQL).fetch_one(pool).await)
}

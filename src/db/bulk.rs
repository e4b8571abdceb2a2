//! Helpers for writing many rows in few statements: multi-row `INSERT`s
//! whose sizes are powers of two (so a handful of prepared statements serve
//! any batch).

use std::sync::OnceLock;

/// The most rows one statement writes.
pub const MAX_ROWS: usize = 64;
/// Statement sizes: 1, 2, 4, …, [`MAX_ROWS`].
const SIZES: usize = MAX_ROWS.trailing_zeros() as usize + 1;

/// The columns of a usage record, in the order [`usage_insert_sql`] binds them.
pub const USAGE_COLUMNS: &str = "id, user_id, key_id, endpoint, provider, model, \
    prompt_tokens, completion_tokens, cached_tokens, status, error_code, latency_ms, ttft_ms, \
    streamed, aborted, created_at, cost, client_request_id, cache_write_tokens, \
    cache_write_1h_tokens, provider_cost, tokens_source";
const USAGE_ARITY: usize = 22;
const LEDGER_ARITY: usize = 7;

/// Splits `items` into runs whose lengths are powers of two, at most [`MAX_ROWS`].
pub fn chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = 1 << rest.len().min(MAX_ROWS).ilog2();
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// How a backend's statements name their bind parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` (SQLite, which looks a named parameter up by a linear
    /// scan: a thousand `$n` cost a million steps per statement).
    Positional,
}

/// `VALUES ($1, …, $arity), (…)` (or with `?`) for `rows` rows.
fn values(rows: usize, arity: usize, style: Placeholders) -> String {
    let mut sql = String::from("VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..arity {
            if column > 0 {
                sql.push_str(", ");
            }
            match style {
                Placeholders::Numbered => {
                    sql.push('$');
                    sql.push_str(&(row * arity + column + 1).to_string());
                }
                Placeholders::Positional => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

/// Statements of every size in both placeholder styles, built on first use.
type Statements = OnceLock<[Vec<String>; 2]>;

/// The statement for `rows` (a power of two, at most [`MAX_ROWS`]) in
/// `style`, from `cache`.
fn cached(
    cache: &'static Statements,
    rows: usize,
    style: Placeholders,
    build: fn(usize, Placeholders) -> String,
) -> &'static str {
    debug_assert!(rows.is_power_of_two() && rows <= MAX_ROWS);
    let statements = cache.get_or_init(|| {
        [Placeholders::Numbered, Placeholders::Positional]
            .map(|style| (0..SIZES).map(|i| build(1 << i, style)).collect())
    });
    &statements[style as usize][rows.trailing_zeros() as usize]
}

/// Inserts `rows` usage records, skipping ids already written, and returns
/// the ids it wrote.
pub fn usage_insert_sql(rows: usize, style: Placeholders) -> &'static str {
    static CACHE: Statements = OnceLock::new();
    cached(&CACHE, rows, style, |n, style| {
        format!(
            "INSERT INTO usage_records ({USAGE_COLUMNS}) {} ON CONFLICT (id) DO NOTHING RETURNING id",
            values(n, USAGE_ARITY, style)
        )
    })
}

/// Inserts `rows` ledger entries.
pub fn ledger_insert_sql(rows: usize, style: Placeholders) -> &'static str {
    static CACHE: Statements = OnceLock::new();
    cached(&CACHE, rows, style, |n, style| {
        format!(
            "INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, request_id, created_at) {}",
            values(n, LEDGER_ARITY, style)
        )
    })
}

/// Locks `rows` users' rows in byte order of their ids, the order Rust
/// sorts them in (PostgreSQL). Every billing batch takes its users' locks
/// this way before anything else, so two replicas' batches cannot deadlock
/// with each other.
pub fn lock_users_sql(rows: usize) -> &'static str {
    static CACHE: Statements = OnceLock::new();
    cached(&CACHE, rows, Placeholders::Numbered, |n, _| {
        let list = values(1, n, Placeholders::Numbered);
        format!(
            "SELECT id FROM users WHERE id IN {} ORDER BY id COLLATE \"C\" FOR NO KEY UPDATE",
            list.trim_start_matches("VALUES ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_covering_everything() {
        for n in 0..300 {
            let items: Vec<usize> = (0..n).collect();
            let parts: Vec<&[usize]> = chunks(&items).collect();
            assert!(parts
                .iter()
                .all(|p| p.len().is_power_of_two() && p.len() <= MAX_ROWS));
            assert_eq!(parts.concat(), items, "n = {n}");
        }
        let items = [0; 13];
        let sizes: Vec<usize> = chunks(&items).map(<[_]>::len).collect();
        assert_eq!(sizes, [8, 4, 1]);
    }

    #[test]
    fn statements_have_one_placeholder_per_value() {
        use Placeholders::{Numbered, Positional};
        let sql = usage_insert_sql(4, Numbered);
        assert!(sql.contains("$88)") && !sql.contains("$89"), "{sql}");
        assert_eq!(sql.matches("), ($").count(), 3, "four rows");
        let sql = ledger_insert_sql(2, Numbered);
        assert!(sql.contains("($8, $9, $10, $11, $12, $13, $14)"), "{sql}");
        let sql = usage_insert_sql(4, Positional);
        assert_eq!(sql.matches('?').count(), 88);
        assert!(!sql.contains('$'), "{sql}");
        assert_eq!(
            ledger_insert_sql(64, Positional).matches('?').count(),
            64 * 7
        );
        assert_eq!(
            lock_users_sql(4),
            "SELECT id FROM users WHERE id IN ($1, $2, $3, $4) ORDER BY id COLLATE \"C\" FOR NO KEY UPDATE"
        );
    }
}

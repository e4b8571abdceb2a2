//! Generated usage records for the benches (`usage_queries`, `export`).

use llm_gateway::db::Db;

/// The bench's arguments: `[ROWS] [DATABASE_URL]`, by default 1,000,000
/// rows and a fresh SQLite file named `file` in `dir`.
pub fn rows_and_url(
    dir: &std::path::Path,
    file: &str,
) -> Result<(i64, String), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join(file).display()));
    Ok((rows, url))
}

/// Inserts `rows` records spread over the last 90 days, in SQL alone.
pub async fn generate(
    db: &Db,
    user_id: &str,
    key_id: Option<&str>,
    rows: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = "WITH RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
        INSERT INTO usage_records (id, user_id, key_id, endpoint, provider, model, prompt_tokens, \
        completion_tokens, cached_tokens, status, latency_ms, streamed, aborted, created_at, cost) \
        SELECT 'bench_' || CAST(i AS TEXT), $2, CASE WHEN i % 3 = 0 THEN NULL ELSE $3 END, \
        'chat.completions', 'openai', \
        CASE i % 4 WHEN 0 THEN 'openai:gpt-4o-mini' WHEN 1 THEN 'openai:gpt-4o' \
        WHEN 2 THEN 'gemini:gemini-2.0-flash' ELSE 'anthropic:claude-3-5-haiku' END, \
        10 + i % 500, 20 + i % 300, 0, 200, 100 + i % 900, i % 2, 0, \
        $4 - (i * 7919) % (90 * CAST(86400000 AS BIGINT)), 1000 + i % 100000 FROM n";
    llm_gateway::with_pool!(db, pool => {
        sqlx::query(sql).bind(rows).bind(user_id).bind(key_id).bind(now).execute(pool).await?;
    });
    Ok(())
}

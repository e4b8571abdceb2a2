//! Times the usage dashboard's queries on a database holding many generated
//! usage records (1,000,000 by default), all belonging to one user.
//!
//!   cargo run --release --features ssr --example usage_queries -- [ROWS] [DATABASE_URL]
//!
//! The database defaults to a fresh SQLite file in a temporary directory.

use std::time::{Duration, Instant};

use llm_gateway::db::{keys, now_ms, usage, users, Db};

const DAY_MS: i64 = 86_400_000;
/// How many times each query runs; the median is reported.
const RUNS: usize = 7;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: i64 = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("usage.db").display()));

    let db = Db::connect(&url).await?;
    db.migrate().await?;
    let user = users::find_or_create(&db, "bench-user").await?;
    let key = keys::insert(
        &db,
        keys::NewKey {
            user_id: &user.id,
            name: "bench",
            key_hash: &format!("bench-{}", now_ms()),
            key_prefix: "llm_sk_bench",
        },
    )
    .await?;

    let started = Instant::now();
    let now = now_ms();
    generate(&db, &user.id, &key.id, rows, now).await?;
    println!(
        "generated {rows} usage records in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        db.backend()
    );

    let day = now / DAY_MS * DAY_MS;
    let month = day - 30 * DAY_MS;
    let page = |filter: usage::Filter, offset| {
        let db = db.clone();
        let user = user.id.clone();
        async move {
            usage::list_for_user(&db, &user, &filter, 50, offset)
                .await
                .map(|r| r.len())
        }
    };
    let by_model = usage::Filter {
        model: Some("anthropic:claude-3-5-haiku".into()),
        ..Default::default()
    };
    let by_range_and_key = usage::Filter {
        from_ms: Some(day - 40 * DAY_MS),
        to_ms: Some(day - 39 * DAY_MS),
        key_id: Some(key.id.clone()),
        ..Default::default()
    };

    println!("\n| query ({rows} rows, one user) | median | slowest |\n|---|---|---|");
    time("usage page 1, no filter", || {
        page(usage::Filter::default(), 0)
    })
    .await?;
    time("usage page 200, no filter", || {
        page(usage::Filter::default(), 199 * 50)
    })
    .await?;
    time("usage page 1, one model", || page(by_model.clone(), 0)).await?;
    time("usage page 1, one day and key", || {
        page(by_range_and_key.clone(), 0)
    })
    .await?;
    time("overview totals, this month", || async {
        usage::user_totals(&db, &user.id, month)
            .await
            .map(|t| t.requests as usize)
    })
    .await?;
    time("daily spend by model, 30 days", || async {
        usage::daily_spend(&db, &user.id, month)
            .await
            .map(|d| d.len())
    })
    .await?;
    time("key spend, this month", || async {
        usage::key_spend(&db, &key.id, month)
            .await
            .map(|(n, _)| n as usize)
    })
    .await?;
    time("models used (filter list)", || async {
        usage::models_for_user(&db, &user.id).await.map(|m| m.len())
    })
    .await?;
    db.close().await;
    Ok(())
}

/// Inserts `rows` records spread over the last 90 days, in SQL alone.
async fn generate(
    db: &Db,
    user_id: &str,
    key_id: &str,
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

/// Runs `query` a few times and prints its median and slowest time.
async fn time<F, Fut>(label: &str, query: F) -> Result<(), sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize, sqlx::Error>>,
{
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut found = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        found = query().await?;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "| {label} ({found} rows) | {:.2} ms | {:.2} ms |",
        times[RUNS / 2].as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3
    );
    Ok(())
}

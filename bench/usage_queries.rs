//! Times the usage dashboard's queries on a database holding many generated
//! usage records (1,000,000 by default), all belonging to one user.
//!
//!   cargo run --release --features ssr --example usage_queries -- [ROWS] [DATABASE_URL]
//!
//! The database defaults to a fresh SQLite file in a temporary directory.

use std::time::{Duration, Instant};

use llm_gateway::clock::Clock;
use llm_gateway::db::{keys, usage, users, Db};

#[path = "seed.rs"]
mod seed;
use seed::generate;

const DAY_MS: i64 = 86_400_000;
/// How many times each query runs; the median is reported.
const RUNS: usize = 7;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (rows, url) = seed::rows_and_url(dir.path(), "usage.db")?;

    let db = Db::connect(&url).await?;
    db.migrate().await?;
    let user = users::find_or_create(&db, "bench-user", 0).await?;
    let now = Clock::default().now_ms();
    let settings = keys::KeySettings {
        name: "bench".into(),
        ..Default::default()
    };
    let key_hash = format!("bench-{now}");
    let key = keys::insert(&db, &user.id, &key_hash, "llm_sk_bench", now, &settings).await?;

    let started = Instant::now();
    generate(&db, &user.id, Some(&key.id), rows, now).await?;
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

//! Times the usage CSV export end to end, through a gateway serving it in
//! this process, for one user with many usage records (1,000,000 by
//! default), and reports the process's peak memory while it ran.
//!
//!   cargo run --release --features ssr --example export -- [ROWS] [DATABASE_URL]
//!
//! The database defaults to a fresh SQLite file in a temporary directory; a
//! PostgreSQL URL must name an empty database. The peak is reset (Linux's
//! `clear_refs`) after the records are generated, so it covers the export
//! alone: the server writing the CSV and this client reading it.

use futures::StreamExt;
use std::time::Instant;

use llm_gateway::clock::Clock;
use llm_gateway::config::Config;
use llm_gateway::db::Db;
use serde_json::Value;

#[path = "seed.rs"]
mod seed;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (rows, url) = seed::rows_and_url(dir.path(), "export.db")?;
    let config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        database_url: url.clone(),
        ..Config::default()
    };
    let site = llm_gateway::server::Site::at("target/site".as_ref(), &config)?;
    let server = llm_gateway::server::spawn(config, site).await?;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder().cookie_store(true).build()?;
    let user: Value = client
        .post(format!("{base}/rpc/sign_up"))
        .header("accept", "application/json")
        .form(&[
            ("email", "export@example.com"),
            ("password", "correct horse battery"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let user_id = user["id"].as_str().ok_or("sign-up failed")?;

    let db = Db::connect(&url).await?;
    let started = Instant::now();
    seed::generate(&db, user_id, None, rows, Clock::default().now_ms()).await?;
    db.close().await;
    println!(
        "generated {rows} usage records in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        db.backend()
    );

    let before = memory("VmRSS");
    std::fs::write("/proc/self/clear_refs", "5")?;
    let started = Instant::now();
    let response = client
        .get(format!("{base}/export/usage.csv"))
        .send()
        .await?;
    let first_byte = started.elapsed();
    let (mut lines, mut bytes) = (0usize, 0usize);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let elapsed = started.elapsed();
    let peak = memory("VmHWM");
    println!(
        "\n| backend | rows | CSV | first byte | total | rows/s | RSS before | peak RSS during |\n|---|---|---|---|---|---|---|---|"
    );
    println!(
        "| {} | {} | {:.0} MB | {:.0} ms | {:.1} s | {:.0} | {} MiB | {} MiB |",
        db.backend(),
        lines - 1,
        bytes as f64 / 1e6,
        first_byte.as_secs_f64() * 1e3,
        elapsed.as_secs_f64(),
        (lines - 1) as f64 / elapsed.as_secs_f64(),
        before / 1024,
        peak / 1024,
    );
    server.stop().await;
    Ok(())
}

/// A line of `/proc/self/status`, in KiB.
fn memory(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

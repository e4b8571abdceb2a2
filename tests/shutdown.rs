//! SIGTERM: the gateway stops accepting, lets open streams finish within the
//! grace period (or cuts them when it is over), bills them, and exits 0.
#![cfg(feature = "ssr")]

mod common;

use common::start_mock;
use llm_gateway::db::{ledger, usage, Db};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Gateway {
    child: Child,
    base: String,
    db_url: String,
    _dir: tempfile::TempDir,
}

async fn start(grace_secs: u64) -> Gateway {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/gateway.db", dir.path().display());
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "host: 127.0.0.1\nport: 0\ndatabase_url: {db_url}\nmaster_key: shutdown-master-key\n\
             shutdown_grace_secs: {grace_secs}\n\
             providers:\n  openai: {{api_key: x, api_base: '{mock}/v1'}}\n\
             pricing:\n  'openai:gpt-4o-mini': {{input_price_per_million: 0.15, output_price_per_million: 0.6}}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("GATEWAY_PORT")
        .env_remove("GATEWAY_DATABASE_URL")
        .env_remove("GATEWAY_CONFIG")
        .env_remove("GATEWAY_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .find(|l| l.starts_with("llm-gateway listening on "))
        .unwrap();
    let base = line
        .trim_start_matches("llm-gateway listening on ")
        .to_string();
    Gateway {
        child,
        base,
        db_url,
        _dir: dir,
    }
}

impl Gateway {
    /// A funded user's key, made through the admin API.
    async fn key(&self) -> String {
        let client = reqwest::Client::new();
        let admin = |path: &str| {
            client
                .post(format!("{}{path}", self.base))
                .bearer_auth("shutdown-master-key")
        };
        admin("/v1/users")
            .json(&json!({"user_id": "streamer"}))
            .send()
            .await
            .unwrap();
        admin("/v1/users/streamer/credits")
            .json(&json!({"amount": "5"}))
            .send()
            .await
            .unwrap();
        let created: Value = admin("/v1/keys")
            .json(&json!({"user_id": "streamer"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["key"].as_str().unwrap().to_string()
    }

    async fn open_stream(&self, key: &str, chunks: u32, delay_ms: u32) -> reqwest::Response {
        let content = format!("[mock chunks={chunks} delay_ms={delay_ms}]");
        let mut response = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(key)
            .json(&json!({"model": "gpt-4o-mini", "stream": true,
                          "messages": [{"role": "user", "content": content}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.chunk().await.unwrap().expect("a first chunk");
        response
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its status and how long it took.
    fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "the gateway did not exit in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The one usage record, and the user's ledger agreeing with the balance.
    async fn billed_record(&self) -> usage::UsageRecord {
        let db = Db::connect(&self.db_url).await.unwrap();
        let records = usage::all(&db).await.unwrap();
        let (balance, reserved) = ledger::balance(&db, "streamer").await.unwrap().unwrap();
        assert_eq!(reserved, 0);
        assert_eq!(balance, ledger::ledger_sum(&db, "streamer").await.unwrap());
        assert_eq!(
            balance,
            5_000_000_000 - records.iter().map(|r| r.cost).sum::<i64>()
        );
        db.close().await;
        assert_eq!(records.len(), 1, "{records:?}");
        records.into_iter().next().unwrap()
    }
}

/// Reads the rest of a stream's body as text.
async fn rest(mut response: reqwest::Response) -> String {
    let mut text = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_open_stream_and_bills_it() {
    let mut gateway = start(10).await;
    let key = gateway.key().await;
    let stream = gateway.open_stream(&key, 15, 100).await;
    gateway.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections once shutting down.
    let refused = reqwest::Client::new()
        .get(format!("{}/health", gateway.base))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a new connection was accepted: {refused:?}"
    );
    let text = rest(stream).await;
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let (status, _) = gateway.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    let record = gateway.billed_record().await;
    assert_eq!((record.status, record.aborted), (200, 0));
    assert!(
        record.completion_tokens > 0 && record.cost > 0,
        "{record:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_outliving_the_grace_period_is_cut_and_billed() {
    let mut gateway = start(1).await;
    let key = gateway.key().await;
    let stream = gateway.open_stream(&key, 100, 100).await;
    gateway.terminate();
    let text = rest(stream).await;
    let last: Value =
        serde_json::from_str(text.trim_end().rsplit("data: ").next().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "service_unavailable", "{text}");
    let (status, took) = gateway.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let record = gateway.billed_record().await;
    assert_eq!(record.aborted, 1);
    assert_eq!(record.error_code.as_deref(), Some("shutdown"));
    assert!(
        record.completion_tokens > 0 && record.cost > 0,
        "{record:?}"
    );
}

//! The first five minutes. The binary, started from an empty folder with
//! only `--config config.example.yml` (no Cargo.toml or Leptos.toml near
//! it), serves a gateway that works without editing anything: the demo
//! provider served in-process, two priced demo models, sign-up credit. The
//! first account becomes the admin and both the page and the log say so;
//! providers whose key is unset are switched off with a log line each.
#![cfg(feature = "ssr")]

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_llm-gateway");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yml");
const MASTER_KEY: &str = "first-run-master-key-0123456789";
const PROVIDER_KEYS: [&str; 3] = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"];

/// `llm-gateway` run in `dir` on the example config, its environment
/// cleared of the gateway's and the providers' variables but for `env`.
fn gateway(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEWAY_")
            || key.starts_with("LEPTOS_")
            || PROVIDER_KEYS.contains(&key.as_str())
        {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .args(args)
        .args(["--config", EXAMPLE])
        .env("GATEWAY_MASTER_KEY", MASTER_KEY)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    cmd
}

/// A running `serve`, with its log collected as it comes.
struct Served {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Served {
        let mut env = env.to_vec();
        env.push(("GATEWAY_PORT", "0"));
        let mut child = gateway(dir, &["serve"], &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .find(|l| l.starts_with("llm-gateway listening on "))
            .unwrap_or_else(|| panic!("no address; log:\n{}", log.lock().unwrap()));
        let base = line
            .trim_start_matches("llm-gateway listening on ")
            .to_string();
        Served { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The log so far, once it holds `needle` (or after five seconds).
    fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log.lock().unwrap().clone();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit (writes flushed).
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        assert!(self.child.wait().unwrap().success());
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn sign_up(gateway: &Served, client: &reqwest::Client, email: &str) -> Value {
    let (status, user) = json_of(
        client
            .post(gateway.url("/api/auth/signup"))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    user
}

/// Content deltas of a streamed chat completion, joined.
fn streamed_text(body: &str) -> String {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[tokio::test]
async fn the_example_config_serves_a_working_gateway_from_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Served::start(dir.path(), &[]);

    // Up and ready, for an orchestrator.
    let http = client();
    let (status, live) = json_of(http.get(gateway.url("/health/live")).send().await.unwrap()).await;
    assert_eq!(
        (status, live["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, ready) =
        json_of(http.get(gateway.url("/health/ready")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "ready");

    // Unset keys switch their providers off, one line each; the demo is on.
    let log = gateway.log_with("becomes the admin");
    for provider in ["openai", "anthropic", "gemini"] {
        let line = log
            .lines()
            .find(|l| l.contains("provider off") && l.contains(&format!("provider={provider}")));
        assert!(line.is_some(), "no line for {provider} in:\n{log}");
    }
    assert!(log.contains("the demo provider"), "{log}");
    assert!(
        log.contains(&format!(
            "the first to sign up at {}/signup becomes the admin",
            gateway.base
        )),
        "{log}"
    );

    // The sign-up page says the first account becomes the admin.
    let page = http.get(gateway.url("/signup")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("this first account becomes the gateway"),
        "{page}"
    );
    assert!(page.contains("New accounts start with"), "{page}");

    // The first account is the admin, with the sign-up credit; the second is not.
    let ada = client();
    let admin = sign_up(&gateway, &ada, "ada@example.com").await;
    assert_eq!(admin["is_admin"], true, "{admin}");
    assert!(gateway
        .log_with("the first account, so the admin")
        .contains("the first account, so the admin"));
    let bob = client();
    assert_eq!(
        sign_up(&gateway, &bob, "bob@example.com").await["is_admin"],
        false
    );
    let page = http.get(gateway.url("/signup")).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(!page.contains("this first account becomes"), "{page}");
    let (_, balance) = json_of(ada.get(gateway.url("/api/balance")).send().await.unwrap()).await;
    assert_eq!(balance["balance"], 5_000_000_000i64, "{balance}");

    // A key, the two demo models, and a streamed reply from the demo.
    let (status, created) = json_of(
        ada.post(gateway.url("/api/keys"))
            .json(&json!({"name": "first"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    let (_, models) = json_of(
        http.get(gateway.url("/v1/models"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"demo:demo-fast") && ids.contains(&"demo:demo-smart"),
        "{models}"
    );
    assert!(
        !ids.iter().any(|id| id.contains("gpt-")),
        "openai is off: {models}"
    );
    let reply = http
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({
            "model": "demo-fast",
            "stream": true,
            "messages": [{"role": "user", "content": "Say hello"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let text = streamed_text(&reply.text().await.unwrap());
    assert!(text.contains("llm-gateway mock provider."), "{text}");

    // Its cost is on the account, and taken from the credit.
    let deadline = Instant::now() + Duration::from_secs(10);
    let usage = loop {
        let (_, usage) = json_of(ada.get(gateway.url("/api/usage")).send().await.unwrap()).await;
        if usage["rows"]["items"]
            .as_array()
            .is_some_and(|rows| !rows.is_empty())
        {
            break usage;
        }
        assert!(Instant::now() < deadline, "no usage recorded: {usage}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let row = &usage["rows"]["items"][0];
    assert_eq!(row["model"], "demo-fast", "{row}");
    let cost = row["cost"].as_i64().unwrap();
    assert!(cost > 0, "{row}");
    let (_, balance) = json_of(ada.get(gateway.url("/api/balance")).send().await.unwrap()).await;
    assert_eq!(balance["balance"], 5_000_000_000i64 - cost, "{balance}");
    gateway.stop();

    // The books kept agree, by the audit.
    let audit = gateway_in(dir.path(), &["audit"]).output().unwrap();
    assert!(
        audit.status.success(),
        "{}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
}

fn gateway_in(dir: &Path, args: &[&str]) -> Command {
    gateway(dir, args, &[])
}

#[tokio::test]
async fn a_provider_key_in_the_environment_switches_its_provider_on() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = Served::start(dir.path(), &[("OPENAI_API_KEY", "sk-test-0123")]);
    let ready = client()
        .get(gateway.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let log = gateway.log_with("provider=gemini");
    let off = |name: &str| {
        log.lines()
            .any(|l| l.contains("provider off") && l.contains(&format!("provider={name}")))
    };
    assert!(!off("openai"), "{log}");
    assert!(off("anthropic") && off("gemini"), "{log}");
    gateway.stop();
}

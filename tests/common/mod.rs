//! Test harness: a real gateway on an ephemeral port, over a real SQLite file
//! or a fresh PostgreSQL database that is dropped afterwards.
#![allow(dead_code)]

pub mod mail;

pub mod stripe;

use llm_gateway::config::Config;
use llm_gateway::server::{spawn, RunningServer};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;

/// The database a test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres { admin_url: String },
}

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl Backend {
    /// PostgreSQL, when reachable. CI (or LLM_GATEWAY_REQUIRE_POSTGRES=1) makes
    /// an unreachable server a failure instead of a skip.
    pub async fn postgres() -> Option<Self> {
        let admin_url =
            std::env::var("LLM_GATEWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.into());
        let required = std::env::var("CI").is_ok_and(|v| v == "true")
            || std::env::var("LLM_GATEWAY_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        match sqlx::PgPool::connect(&admin_url).await {
            Ok(pool) => {
                pool.close().await;
                Some(Self::Postgres { admin_url })
            }
            Err(err) if required => panic!("PostgreSQL at {admin_url} is required: {err}"),
            Err(err) => {
                eprintln!("skipping the PostgreSQL run: {admin_url} unreachable: {err}");
                None
            }
        }
    }
}

/// Runs an async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(backend) = $crate::common::Backend::postgres().await {
                        super::$name(backend).await;
                    }
                }
            }
        )*
    };
}

/// A fresh database for one test, removed when dropped.
pub struct TestDatabase {
    pub url: String,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn create(backend: &Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}/nested/gateway.db", dir.path().display()),
                _dir: dir,
                pg: None,
            },
            Backend::Postgres { admin_url } => {
                let name = format!("llm_gateway_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(admin_url).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                let base = admin_url.rsplit_once('/').unwrap().0;
                Self {
                    url: format!("{base}/{name}"),
                    _dir: dir,
                    pg: Some((admin_url.clone(), name)),
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg.take() {
            // Drop runs outside async code: use a private runtime on a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&admin)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running gateway and its database.
pub struct TestApp {
    pub base: String,
    pub db: TestDatabase,
    pub config: Config,
    server: Option<RunningServer>,
}

/// The site for an in-process server: the config's `site_root`, else the
/// last build's (no built assets needed).
pub fn site(config: &Config) -> llm_gateway::server::Site {
    let root = config
        .site_root
        .clone()
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/target/site").into());
    llm_gateway::server::Site::at(std::path::Path::new(&root), config).unwrap()
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a gateway after `customize` has adjusted the config.
    pub async fn start_with(backend: Backend, customize: impl FnOnce(&mut Config)) -> Self {
        let db = TestDatabase::create(&backend).await;
        let mut config = Config {
            host: "127.0.0.1".into(),
            port: 0,
            database_url: db.url.clone(),
            master_key: Some("test-master-key-0123456789".into()),
            // Tests name their admins; `tests/first_run.rs` covers the first account.
            first_account_admin: false,
            ..Config::default()
        };
        customize(&mut config);
        let server = spawn(config.clone(), site(&config))
            .await
            .expect("server starts");
        Self {
            base: format!("http://{}", server.addr),
            db,
            config,
            server: Some(server),
        }
    }

    /// The server's clock, to move time forward.
    pub fn clock(&self) -> &llm_gateway::clock::Clock {
        &self.server.as_ref().expect("running").clock
    }

    /// A request to an admin route with the master key.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, self.url(path))
            .bearer_auth(self.config.master_key.as_deref().expect("a master key"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A browser-like client: keeps cookies, follows no redirects.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Calls a server function the way the WASM client does.
    pub async fn rpc(
        &self,
        client: &reqwest::Client,
        name: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        self.rpc_with(client, name, form, HeaderMap::new()).await
    }

    pub async fn rpc_with(
        &self,
        client: &reqwest::Client,
        name: &str,
        form: &[(&str, &str)],
        mut headers: HeaderMap,
    ) -> (StatusCode, Value) {
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let body = serde_urlencoded(form);
        let response = client
            .post(self.url(&format!("/rpc/{name}")))
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// Signs up a new user on `client` and returns their email.
    pub async fn sign_up(&self, client: &reqwest::Client, email: &str) -> Value {
        let (status, body) = self
            .rpc(
                client,
                "sign_up",
                &[("email", email), ("password", "correct horse battery")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "sign up failed: {body}");
        body
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Stops the gateway, keeping its database to look at.
    pub async fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Stops the gateway and starts it again on the same database, after
    /// `customize` has adjusted the config.
    pub async fn restart(&mut self, customize: impl FnOnce(&mut Config)) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        customize(&mut self.config);
        let server = spawn(self.config.clone(), site(&self.config))
            .await
            .expect("server restarts");
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    /// Another gateway on the same database (a replica); its base URL and
    /// the server, to stop.
    pub async fn replica(&self) -> (String, RunningServer) {
        let server = spawn(self.config.clone(), site(&self.config))
            .await
            .expect("the replica starts");
        (format!("http://{}", server.addr), server)
    }

    /// A connection to the gateway's database.
    pub async fn database(&self) -> llm_gateway::db::Db {
        llm_gateway::db::Db::connect(&self.db.url).await.unwrap()
    }

    /// Checks the books (`llm-gateway audit`'s checks) and fails on any
    /// mismatch; returns the report.
    pub async fn audit(&self) -> llm_gateway::billing::audit::AuditReport {
        let db = self.database().await;
        let report = llm_gateway::billing::audit::run(&db, self.clock().now_ms(), 0)
            .await
            .unwrap();
        db.close().await;
        assert!(report.passed(), "the audit failed: {:#?}", report.findings);
        report
    }
}

/// Sends a request; its status and its JSON body (`null` if it has none).
pub async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// How many requests the mock provider at `mock` has received.
pub async fn mock_calls(mock: &str) -> u64 {
    let calls: Value = reqwest::get(format!("{mock}/mock/calls"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    calls["calls"].as_u64().unwrap()
}

fn serde_urlencoded(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts the mock provider in-process on an ephemeral port; returns its base URL.
pub async fn start_mock() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = llm_gateway::mock::router(llm_gateway::mock::MockOptions::default());
    tokio::spawn(async move {
        axum::serve(llm_gateway::server::without_nagle(listener), router)
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

/// Points the three provider kinds at the mock, with a small pricing catalog.
pub fn use_mock(config: &mut Config, mock: &str) {
    use llm_gateway::config::{PriceConfig, ProviderConfig, ProviderKind};
    let provider = |kind: Option<ProviderKind>, base: String| ProviderConfig {
        kind,
        api_key: Some("sk-upstream-secret".into()),
        api_base: Some(base),
    };
    config
        .providers
        .insert("openai".into(), provider(None, format!("{mock}/v1")));
    config
        .providers
        .insert("anthropic".into(), provider(None, mock.to_string()));
    config
        .providers
        .insert("gemini".into(), provider(None, mock.to_string()));
    config.providers.insert(
        "groq".into(),
        provider(Some(ProviderKind::Openai), format!("{mock}/v1")),
    );
    let price = PriceConfig {
        input_price_per_million: 0.15,
        output_price_per_million: 0.6,
        cache_read_price_per_million: None,
        cache_write_price_per_million: None,
        cache_write_1h_price_per_million: None,
        margin_percent: None,
    };
    for model in [
        "openai:gpt-4o-mini",
        "anthropic:claude-3-5-haiku",
        "gemini:gemini-2.0-flash",
        "openai:text-embedding-3-small",
        "openai:gpt-status-503",
        "groq:llama-3.1-8b",
    ] {
        config.pricing.insert(model.into(), price.clone());
    }
    config.signup_credit = 10.0;
    config.upstream.max_retries = 1;
    config.upstream.retry_backoff_ms = 10;
}

impl TestApp {
    /// Posts a chat completion with an API key.
    pub async fn chat(&self, key: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Signs up a user and creates an API key for them; returns the key.
    pub async fn user_key(&self, email: &str) -> String {
        let client = self.client();
        self.sign_up(&client, email).await;
        let (status, created) = self.rpc(&client, "create_key", &[("name", "test")]).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        created["secret"].as_str().unwrap().to_string()
    }

    /// Waits for `count` usage records and returns them all.
    pub async fn usage_records(&self, count: usize) -> Vec<llm_gateway::db::usage::UsageRecord> {
        let db = llm_gateway::db::Db::connect(&self.db.url).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let records = llm_gateway::db::usage::all(&db).await.unwrap();
            if records.len() >= count || std::time::Instant::now() > deadline {
                db.close().await;
                return records;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

//! Two gateway processes on one PostgreSQL database share rate limits and
//! budgets: neither lets a key past its limit by counting alone.
#![cfg(feature = "ssr")]

mod common;

use common::{start_mock, Backend, TestDatabase};
use futures::future::join_all;
use llm_gateway::db::{budgets, ledger, Db};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MASTER: &str = "replica-master-key-0123456789";
/// Three prompt tokens and six completion tokens at 180 / 720 nano-USD.
const COST: i64 = 3 * 180 + 6 * 720;

/// A gateway process; killed when dropped.
struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_replica(config: &std::path::Path) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("GATEWAY_PORT")
        .env_remove("GATEWAY_DATABASE_URL")
        .env_remove("GATEWAY_CONFIG")
        .env_remove("GATEWAY_MASTER_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("llm-gateway listening on "))
        .expect("the replica starts");
    // Its warnings and errors, in the test's output.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("replica: {line}");
            }
        }
    });
    let base = line
        .trim_start_matches("llm-gateway listening on ")
        .to_string();
    Replica { child, base }
}

fn small_chat() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 6,
           "messages": [{"role": "user", "content": "one two three"}]})
}

/// Creates a user with $5 and a key with `settings` through replica `base`.
async fn funded_key(base: &str, user_id: &str, settings: Value) -> (String, String) {
    funded_key_with(base, user_id, "5", settings).await
}

/// Creates a user with `credit` USD and a key with `settings` through
/// replica `base`.
async fn funded_key_with(
    base: &str,
    user_id: &str,
    credit: &str,
    settings: Value,
) -> (String, String) {
    let client = reqwest::Client::new();
    let post = |path: String, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(MASTER)
            .json(&body)
            .send()
    };
    post("/v1/users".into(), json!({"user_id": user_id}))
        .await
        .unwrap();
    post(
        format!("/v1/users/{user_id}/credits"),
        json!({"amount": credit}),
    )
    .await
    .unwrap();
    let mut body = settings;
    body["user_id"] = json!(user_id);
    let created: Value = post("/v1/keys".into(), body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        created["key"].as_str().unwrap().into(),
        created["id"].as_str().unwrap().into(),
    )
}

/// How many of `statuses` are `status`.
fn counted(statuses: &[StatusCode], status: StatusCode) -> i64 {
    statuses.iter().filter(|s| **s == status).count() as i64
}

/// Sends `count` chats at once, alternating between the replicas.
async fn burst(bases: &[String], key: &str, count: usize) -> Vec<StatusCode> {
    burst_over(bases, key, "gpt-4o-mini", count).await
}

/// Waits until `records` of the user's calls are written (a call's record,
/// debit and budget spend land in one transaction) and none holds anything
/// (the replicas' leases hold only unused credit); returns what the budget
/// window spent.
async fn settled_spend(db: &Db, user_id: &str, scope: &str, records: i64) -> i64 {
    recorded(db, user_id, records).await;
    for _ in 0..400 {
        let (balance, reserved) = ledger::balance(db, user_id).await.unwrap().unwrap();
        let Db::Postgres(pool) = db else {
            unreachable!()
        };
        let holds: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM budget_holds WHERE request_id NOT LIKE 'lease:%'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        let leased = llm_gateway::db::leases::total(db, user_id).await.unwrap();
        if reserved == leased && holds == 0 {
            assert_eq!(balance, ledger::ledger_sum(db, user_id).await.unwrap());
            return budgets::window(db, scope).await.unwrap().unwrap().1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("holds were never settled");
}

/// Waits until the user has `count` usage records: every metered call,
/// served or refused, leaves one.
async fn recorded(db: &Db, user_id: &str, count: i64) {
    let Db::Postgres(pool) = db else {
        unreachable!()
    };
    let mut written = 0;
    for _ in 0..400 {
        written = sqlx::query_scalar("SELECT COUNT(*) FROM usage_records WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await
            .unwrap();
        if written >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{user_id} has {written} usage records, not {count}");
}

/// Replicas on a database of their own, in front of a mock.
struct Cluster {
    // Dropped in this order: the replicas before their config and database.
    _running: Vec<Replica>,
    bases: Vec<String>,
    _dir: tempfile::TempDir,
    database: TestDatabase,
}

/// Starts `count` replicas, one at a time (the first migrates the
/// database), with `extra` YAML appended to their config.
async fn cluster(backend: &Backend, count: usize, extra: &str) -> Cluster {
    let database = TestDatabase::create(backend).await;
    let mock = start_mock().await;
    let (dir, config) = replica_config_with(&database, &mock, extra);
    let running: Vec<Replica> = (0..count).map(|_| spawn_replica(&config)).collect();
    let bases = running.iter().map(|r| r.base.clone()).collect();
    Cluster {
        _running: running,
        bases,
        _dir: dir,
        database,
    }
}

/// A config file for replicas on `database`, in front of `mock`.
fn replica_config(database: &TestDatabase, mock: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    replica_config_with(database, mock, "")
}

/// The same, with `extra` YAML appended.
fn replica_config_with(
    database: &TestDatabase,
    mock: &str,
    extra: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "host: 127.0.0.1\nport: 0\ndatabase_url: {}\nmaster_key: {MASTER}\n\
             providers:\n  openai: {{api_key: x, api_base: '{mock}/v1'}}\n\
             pricing:\n  'openai:gpt-4o-mini': {{input_price_per_million: 0.15, output_price_per_million: 0.6}}\n\
             \x20 'openai:gpt-4o': {{input_price_per_million: 1000, output_price_per_million: 1000}}\n{extra}",
            database.url
        ),
    )
    .unwrap();
    (dir, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_rate_limits_and_budgets() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let cluster = cluster(&backend, 2, "").await;
    let bases = &cluster.bases;

    let (key, _) = funded_key(&bases[0], "shared-rpm", json!({"rpm_limit": 10})).await;
    let minute = || llm_gateway::clock::Clock::default().now_ms() / 60_000;
    let started = minute();
    let statuses = burst(bases, &key, 30).await;
    let one_window = started == minute();
    let ok = counted(&statuses, StatusCode::OK);
    let limited = counted(&statuses, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(ok + limited, 30, "{statuses:?}");
    if one_window {
        assert_eq!(ok, 10, "exactly the limit passes");
    } else {
        assert!(ok <= 20, "{ok} passed across two windows");
    }

    let max = 10 * COST;
    let (key, key_id) = funded_key(
        &bases[1],
        "shared-budget",
        json!({"max_budget": llm_gateway::billing::money::format_usd(max)}),
    )
    .await;
    let statuses = burst(bases, &key, 60).await;
    let ok = counted(&statuses, StatusCode::OK);
    let refused = counted(&statuses, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(ok + refused, 60, "{statuses:?}");
    // Each request holds its estimate: at least max / estimate fit at once,
    // never more than the budget pays for.
    let prompt =
        llm_gateway::billing::estimate::prompt_tokens(small_chat().as_object().unwrap(), &[]);
    let estimate = prompt * 180 + 6 * 720;
    assert!((max / estimate..=10).contains(&ok), "{ok} passed");
    let db = Db::connect(&cluster.database.url).await.unwrap();
    let spent = settled_spend(&db, "shared-budget", &format!("key:{key_id}"), 60).await;
    assert_eq!(
        spent,
        ok * COST,
        "the budget counts what both replicas charged"
    );
    assert!(spent <= max);
    db.close().await;
}

/// How many reservations a user's requests hold, and what users.reserved says.
async fn holds(db: &Db, user_id: &str) -> (i64, i64) {
    let Db::Postgres(pool) = db else {
        unreachable!()
    };
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reservations WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(pool)
        .await
        .unwrap();
    let (_, reserved) = ledger::balance(db, user_id).await.unwrap().unwrap();
    (rows, reserved)
}

/// How many holds a budget scope has (leases among them), and what its
/// window says they hold.
async fn budget_holds(db: &Db, scope: &str) -> (i64, i64) {
    let Db::Postgres(pool) = db else {
        unreachable!()
    };
    sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM budget_holds WHERE scope = $1), \
         (SELECT reserved FROM budget_windows WHERE scope = $1)",
    )
    .bind(scope)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `kill -9` one of two replicas during 50 concurrent streams: the other
/// releases every hold of the dead one (its leases on the credit and on
/// the key's budget among them) within 60 seconds, the books still
/// balance, and it goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_frees_its_holds_within_a_minute() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let database = TestDatabase::create(&backend).await;
    let mock = start_mock().await;
    let (_dir, config) = replica_config(&database, &mock);
    let mut doomed = spawn_replica(&config);
    let survivor = spawn_replica(&config);
    let (key, key_id) = funded_key(&survivor.base, "streamer", json!({"max_budget": "100"})).await;
    let scope = format!("key:{key_id}");
    // Streams of a minute each, all held by the doomed replica.
    let body = json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 10,
        "messages": [{"role": "user", "content": "long [mock chunks=600 delay_ms=100]"}]});
    let client = reqwest::Client::new();
    let streams: Vec<_> = (0..50)
        .map(|_| {
            let request = client
                .post(format!("{}/v1/chat/completions", doomed.base))
                .bearer_auth(&key)
                .json(&body)
                .send();
            tokio::spawn(async move {
                if let Ok(response) = request.await {
                    let _ = response.bytes().await;
                }
            })
        })
        .collect();
    let db = Db::connect(&database.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Every stream reached the mock, so holds its credit (from a lease).
    while common::mock_calls(&mock).await < 50
        || holds(&db, "streamer").await.1 == 0
        || budget_holds(&db, &scope).await.0 == 0
    {
        assert!(
            Instant::now() < deadline,
            "the 50 streams never all started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    doomed.child.kill().unwrap(); // SIGKILL: no shutdown, no settlement.
    doomed.child.wait().unwrap();
    let killed = Instant::now();
    while holds(&db, "streamer").await != (0, 0) || budget_holds(&db, &scope).await != (0, 0) {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "holds still open after a minute: {:?}, {:?}",
            holds(&db, "streamer").await,
            budget_holds(&db, &scope).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "the dead replica's holds were freed {:?} after the kill",
        killed.elapsed()
    );
    for stream in streams {
        stream.await.unwrap();
    }
    let report =
        llm_gateway::billing::audit::run(&db, llm_gateway::clock::Clock::default().now_ms(), 0)
            .await
            .unwrap();
    assert!(report.passed(), "{:#?}", report.findings);
    let (balance, _) = ledger::balance(&db, "streamer").await.unwrap().unwrap();
    assert_eq!(balance, ledger::ledger_sum(&db, "streamer").await.unwrap());
    let served = client
        .post(format!("{}/v1/chat/completions", survivor.base))
        .bearer_auth(&key)
        .json(&small_chat())
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK, "the survivor serves on");
    db.close().await;
}

/// A key revoked, a user blocked or a price changed on one replica is seen
/// by another at once (by notification), not when its caches expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_replica_at_once() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let database = TestDatabase::create(&backend).await;
    let mock = start_mock().await;
    let (_dir, config) = replica_config(&database, &mock);
    let a = spawn_replica(&config);
    let b = spawn_replica(&config);
    let client = reqwest::Client::new();
    let chat = |base: &str, key: &str| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&small_chat())
            .send()
    };
    let admin = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{}{path}", a.base))
            .bearer_auth(MASTER)
    };
    // Far less than the key cache's own expiry (5 s).
    let moment = || tokio::time::sleep(Duration::from_millis(150));

    let (key, key_id) = funded_key(&a.base, "changing", json!({})).await;
    let spare: Value = admin(reqwest::Method::POST, "/v1/keys")
        .json(&json!({"user_id": "changing"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let spare = spare["key"].as_str().unwrap().to_string();
    for key in [&key, &spare] {
        assert_eq!(
            chat(&b.base, key).await.unwrap().status(),
            StatusCode::OK,
            "B caches the key"
        );
    }

    let revoked = admin(reqwest::Method::DELETE, &format!("/v1/keys/{key_id}"))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    moment().await;
    assert_eq!(
        chat(&b.base, &key).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // A price change on A: B bills at the new price from its next call.
    let set = admin(reqwest::Method::POST, "/v1/pricing")
        .json(
            &json!({"model_key": "openai:gpt-4o-mini", "input_price_per_million": "1.5",
                      "output_price_per_million": "6"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::CREATED);
    moment().await;
    let answer: Value = chat(&b.base, &spare).await.unwrap().json().await.unwrap();
    let ten_times = 10.0 * COST as f64 / 1e9;
    let cost = answer["usage"]["cost"].as_f64().unwrap();
    assert!((cost - ten_times).abs() < 1e-12, "{cost} at the new price");

    let blocked = admin(reqwest::Method::PATCH, "/v1/users/changing")
        .json(&json!({"blocked": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::OK);
    moment().await;
    assert_eq!(
        chat(&b.base, &spare).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    drop((a, b));
}

/// Two writers (as two replicas run) apply batches that touch the same two
/// users' balances and budgets in opposite orders. Each batch locks its
/// users first, in one order, so none of them deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_billing_batches_do_not_deadlock() {
    use llm_gateway::billing::batch::{apply_batch, WriteOp};
    use llm_gateway::billing::budget::{BudgetLimit, Period};
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let database = TestDatabase::create(&backend).await;
    let db = Db::connect(&database.url).await.unwrap();
    db.migrate().await.unwrap();
    for user in ["u1", "u2"] {
        llm_gateway::db::users::find_or_create(&db, user, 0)
            .await
            .unwrap();
        ledger::credit(&db, user, ledger::EntryKind::Adjustment, 1 << 40, None, 0)
            .await
            .unwrap();
    }
    let reserve = |id: String, user: &str| WriteOp::Reserve {
        request_id: id,
        user_id: user.into(),
        amount: 1,
        expires_at: i64::MAX,
        replica_id: "rep_test".into(),
    };
    let reserve_budget = |id: String, user: &str| WriteOp::ReserveBudget {
        request_id: id,
        user_id: user.into(),
        limits: vec![BudgetLimit {
            scope: format!("user:{user}"),
            max: 1 << 40,
            period: Period::Lifetime,
        }],
        amount: 1,
        now: llm_gateway::clock::Clock::default().now_ms(),
        expires_at: i64::MAX,
        replica_id: "rep_test".into(),
    };
    // Without the up-front locks, writer A holds u1's budget and waits for
    // u2's balance while writer B holds u2's balance and waits for u1's budget.
    let writer = |budget_first: bool| {
        let db = db.clone();
        tokio::spawn(async move {
            for round in 0..150 {
                let budget = reserve_budget(format!("{budget_first}-b-{round}"), "u1");
                let balance = reserve(format!("{budget_first}-r-{round}"), "u2");
                let ops = if budget_first {
                    [budget, balance]
                } else {
                    [balance, budget]
                };
                assert_eq!(
                    apply_batch(&db, &ops, llm_gateway::clock::Clock::default().now_ms()).await?,
                    [true, true]
                );
            }
            Ok::<_, sqlx::Error>(())
        })
    };
    let (a, b) = tokio::join!(writer(true), writer(false));
    a.unwrap().expect("writer A never deadlocks");
    b.unwrap().expect("writer B never deadlocks");
    let (_, reserved) = ledger::balance(&db, "u2").await.unwrap().unwrap();
    assert_eq!(reserved, 300, "every reservation held once");
    let held: i64 =
        sqlx::query_scalar("SELECT reserved FROM budget_windows WHERE scope = 'user:u1'")
            .fetch_one(match &db {
                Db::Postgres(pool) => pool,
                Db::Sqlite(_) => unreachable!(),
            })
            .await
            .unwrap();
    assert_eq!(held, 300, "every budget hold taken once");
    db.close().await;
}

/// Sends `count` chats of `model` at once, spread over `bases` in turn.
async fn burst_over(bases: &[String], key: &str, model: &str, count: usize) -> Vec<StatusCode> {
    let client = reqwest::Client::new();
    let mut body = small_chat();
    body["model"] = json!(model);
    let requests = (0..count).map(|i| {
        client
            .post(format!("{}/v1/chat/completions", bases[i % bases.len()]))
            .bearer_auth(key)
            .json(&body)
            .send()
    });
    join_all(requests)
        .await
        .into_iter()
        .map(|r| r.unwrap().status())
        .collect()
}

/// What one small chat costs at gpt-4o's test price ($1,000 per million
/// tokens either way, with the 20 % margin), as the mock counts it.
const PRICEY_COST: i64 = 9 * 1_200_000;

/// What one small chat holds while in flight at that price: its estimate.
fn pricey_estimate() -> i64 {
    let prompt =
        llm_gateway::billing::estimate::prompt_tokens(small_chat().as_object().unwrap(), &[]);
    (prompt + 6) * 1_200_000
}

/// How many calls `credit` pays for, one after another.
fn calls_paid(mut credit: i64) -> usize {
    let mut calls = 0;
    while credit >= pricey_estimate() {
        credit -= PRICEY_COST;
        calls += 1;
    }
    calls
}

/// Waits until `records` of the user's calls are written and none holds
/// anything (leases aside), then checks the books: the ledger equals the
/// balance; returns the balance.
async fn settled_balance(db: &Db, user_id: &str, records: i64) -> i64 {
    recorded(db, user_id, records).await;
    for _ in 0..400 {
        let (balance, reserved) = ledger::balance(db, user_id).await.unwrap().unwrap();
        let leased = llm_gateway::db::leases::total(db, user_id).await.unwrap();
        if reserved == leased {
            assert_eq!(balance, ledger::ledger_sum(db, user_id).await.unwrap());
            return balance;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("calls still hold credit");
}

/// 200 concurrent calls against $1 over two and over three replicas, each
/// spending from a lease of its own: never an overshoot, the ledger equals
/// the balance, and at least as many calls are served as fit in the balance
/// holding all their estimates at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_never_overshoot_the_balance() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    for replicas in [2, 3] {
        let cluster = cluster(&backend, replicas, "").await;
        let user = format!("leased-{replicas}");
        let (key, _) = funded_key_with(&cluster.bases[0], &user, "1", json!({})).await;

        let statuses = burst_over(&cluster.bases, &key, "gpt-4o", 200).await;
        let ok = counted(&statuses, StatusCode::OK);
        let refused = counted(&statuses, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(ok + refused, 200, "{statuses:?}");

        let db = Db::connect(&cluster.database.url).await.unwrap();
        let balance = settled_balance(&db, &user, 200).await;
        let credit = 1_000_000_000;
        assert_eq!(balance, credit - ok * PRICEY_COST, "{ok} calls served");
        assert!(balance >= 0, "{replicas} replicas overshot: {balance}");
        // Calls in flight together hold their estimates: at least that many
        // fit, whatever the timing.
        assert!(
            ok >= credit / pricey_estimate(),
            "{replicas} replicas: only {ok} served, {balance} left"
        );
        db.close().await;
    }
}

/// $0.20 is spent to the last call across two replicas taking turns, then
/// refused, exactly: with the smallest lease larger than the balance (each
/// call reserved on its own), and with leases (which the replica refused
/// one recalls from the other as the balance runs out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_balance_is_spent_exactly_across_two_replicas() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    for leases in ["credit_leases: {min_usd: 1}\n", ""] {
        let cluster = cluster(&backend, 2, leases).await;
        let bases = &cluster.bases;
        let (key, _) = funded_key_with(&bases[0], "small", "0.2", json!({})).await;
        let client = reqwest::Client::new();
        let mut body = small_chat();
        body["model"] = json!("gpt-4o");
        let paid = calls_paid(200_000_000);
        let mut statuses = Vec::new();
        for turn in 0..paid + 3 {
            let response = client
                .post(format!("{}/v1/chat/completions", bases[turn % 2]))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap();
            statuses.push(response.status());
        }
        assert!(paid >= 6, "the test needs several calls: {paid}");
        assert!(
            statuses[..paid].iter().all(|s| *s == StatusCode::OK),
            "{leases:?}: {statuses:?}"
        );
        assert!(
            statuses[paid..]
                .iter()
                .all(|s| *s == StatusCode::PAYMENT_REQUIRED),
            "{leases:?}: {statuses:?}"
        );
        let db = Db::connect(&cluster.database.url).await.unwrap();
        assert_eq!(
            settled_balance(&db, "small", statuses.len() as i64).await,
            200_000_000 - paid as i64 * PRICEY_COST
        );
        db.close().await;
    }
}

/// 200 concurrent calls against a key's $1 budget (its owner has $10) over
/// two and over three replicas, each holding the budget from a lease of
/// its own: the budget never overshoots, it counts what was charged, the
/// ledger equals the balance, and at least as many calls are served as fit
/// in the budget holding all their estimates at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_leases_never_overshoot_a_budget() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    for replicas in [2, 3] {
        let cluster = cluster(&backend, replicas, "").await;
        let bases = &cluster.bases;
        let user = format!("budgeted-{replicas}");
        let (key, key_id) =
            funded_key_with(&bases[0], &user, "10", json!({"max_budget": "1"})).await;
        let db = Db::connect(&cluster.database.url).await.unwrap();

        // A few cheap calls on each replica: each takes a lease on the budget.
        burst_over(bases, &key, "gpt-4o-mini", 2 * replicas).await;
        let Db::Postgres(pool) = &db else {
            unreachable!()
        };
        let leases: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM budget_holds WHERE request_id LIKE 'lease:%'")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(leases, replicas as i64, "one lease on the budget each");

        let statuses = burst_over(bases, &key, "gpt-4o", 200).await;
        let ok = counted(&statuses, StatusCode::OK);
        let refused = counted(&statuses, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(ok + refused, 200, "{statuses:?}");

        let scope = format!("key:{key_id}");
        let records = 2 * replicas as i64 + 200;
        let spent = settled_spend(&db, &user, &scope, records).await;
        let cheap = 10_000_000_000 - settled_balance(&db, &user, records).await - ok * PRICEY_COST;
        assert!(cheap > 0 && cheap < 1_000_000, "the cheap calls: {cheap}");
        assert_eq!(spent, cheap + ok * PRICEY_COST, "the budget counts it all");
        assert!(
            spent <= 1_000_000_000,
            "{replicas} replicas overshot: {spent}"
        );
        assert!(
            ok >= (1_000_000_000 - cheap) / pricey_estimate(),
            "{replicas} replicas: only {ok} served, {spent} spent"
        );
        db.close().await;
    }
}

/// A key limited to 200 requests a minute, called 400 times at once over
/// two replicas, each counting from slices of the shared window: never
/// more than the limit passes, and no fewer than the limit less one
/// replica's largest slice (`auth::rate_buckets`: (N − 1) × rpm / 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_across_two_replicas_stay_within_the_documented_error() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let cluster = cluster(&backend, 2, "").await;
    let bases = &cluster.bases;
    let db = Db::connect(&cluster.database.url).await.unwrap();
    let minute = || llm_gateway::clock::Clock::default().now_ms() / 60_000;
    let rpm = 200;
    let most_unused = rpm / llm_gateway::auth::rate_buckets::SLICE_SHARE;
    for attempt in 0..3 {
        let (key, key_id) = funded_key(
            &bases[0],
            &format!("limited-{attempt}"),
            json!({"rpm_limit": rpm}),
        )
        .await;
        let started = minute();
        let statuses = burst(bases, &key, 400).await;
        if started != minute() {
            continue; // the window turned during the burst: again
        }
        let ok = counted(&statuses, StatusCode::OK);
        let limited = counted(&statuses, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ok + limited, 400, "{statuses:?}");
        assert!(ok <= rpm, "{ok} passed a limit of {rpm}");
        assert!(ok >= rpm - most_unused, "only {ok} of {rpm} passed");
        let window = llm_gateway::db::rate_limits::window_start(started * 60_000);
        let (counted, _) = llm_gateway::db::rate_limits::counts(&db, &key_id, window)
            .await
            .unwrap();
        assert!(
            (ok..=rpm).contains(&counted),
            "the shared window counted {counted}"
        );
        db.close().await;
        return;
    }
    panic!("every burst straddled a minute");
}

/// A replica gives back the leases no call has used for `idle_seconds`,
/// on credit and on budgets, and takes new ones when calls come again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_leases_go_back() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let cluster = cluster(&backend, 1, "credit_leases: {idle_seconds: 1}\n").await;
    let bases = &cluster.bases;
    let (key, key_id) = funded_key_with(&bases[0], "idler", "10", json!({"max_budget": "1"})).await;
    let db = Db::connect(&cluster.database.url).await.unwrap();
    let scope = format!("key:{key_id}");
    let leased = || async {
        let credit = llm_gateway::db::leases::total(&db, "idler").await.unwrap();
        let Db::Postgres(pool) = &db else {
            unreachable!()
        };
        let (budget, reserved): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE((SELECT SUM(amount) FROM budget_holds \
             WHERE scope = $1 AND request_id LIKE 'lease:%'), 0) AS BIGINT), \
             (SELECT reserved FROM budget_windows WHERE scope = $1)",
        )
        .bind(&scope)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(budget, reserved, "the window holds just the lease");
        (credit, budget)
    };
    for _ in 0..2 {
        let statuses = burst_over(bases, &key, "gpt-4o-mini", 3).await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
        let (credit, budget) = leased().await;
        assert!(credit > 0 && budget > 0, "leases taken: {credit}, {budget}");
        let mut waited = 0;
        while leased().await != (0, 0) {
            assert!(waited < 100, "the idle leases stayed: {:?}", leased().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        let (balance, reserved) = ledger::balance(&db, "idler").await.unwrap().unwrap();
        assert_eq!(reserved, 0);
        assert_eq!(balance, ledger::ledger_sum(&db, "idler").await.unwrap());
    }
    db.close().await;
}

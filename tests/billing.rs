//! Prepaid billing: prices with margin, reservations, an exact ledger, and
//! charges taken in full (a debt when they pass the balance), on SQLite
//! and PostgreSQL.
#![cfg(feature = "ssr")]

mod common;

use common::{start_mock, use_mock, Backend, TestApp};
use llm_gateway::db::{ledger, Db};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    non_streaming_cost_is_reported_and_debited_once,
    streams_are_billed_with_cost_in_the_usage_chunk,
    insufficient_credit_forwards_nothing_and_costs_nothing,
    free_and_unpriced_models,
    concurrent_requests_never_overdraw,
    key_holders_see_their_usage_and_generations,
    client_request_ids_are_echoed_and_find_the_request,
    settlements_written_in_bulk_charge_in_full_and_apply_once,
    migrating_a_database_with_money_keeps_it_and_allows_debts,
    the_dashboard_shows_balance_usage_and_exports,
);

/// 0.15 / 0.60 per 1M at 20% margin: 180 and 720 nano-USD per token.
const INPUT_NANOS: i64 = 180;
const OUTPUT_NANOS: i64 = 720;

async fn billing_app(backend: Backend, signup_credit: f64) -> TestApp {
    let mock = start_mock().await;
    TestApp::start_with(backend, |c| {
        use_mock(c, &mock);
        c.signup_credit = signup_credit;
    })
    .await
}

async fn chat(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.chat(key, &body).await
}

/// The user's id, balance, reserved amount and ledger sum.
async fn account(app: &TestApp, email: &str) -> (i64, i64, i64) {
    let db = Db::connect(&app.db.url).await.unwrap();
    let user = llm_gateway::db::users::find_by_email(&db, email)
        .await
        .unwrap()
        .unwrap();
    let (balance, reserved) = ledger::balance(&db, &user.id).await.unwrap().unwrap();
    // A replica's lease (PostgreSQL) holds unused credit, not a call's.
    let leased = llm_gateway::db::leases::total(&db, &user.id).await.unwrap();
    let sum = ledger::ledger_sum(&db, &user.id).await.unwrap();
    db.close().await;
    (balance, reserved - leased, sum)
}

/// Waits until no call holds anything (PostgreSQL) and checks that the
/// ledger and the balance agree. On SQLite, wait for the usage records first.
async fn settled(app: &TestApp, email: &str) -> (i64, i64) {
    for _ in 0..200 {
        let (balance, reserved, sum) = account(app, email).await;
        if reserved == 0 {
            assert_eq!(balance, sum, "the ledger and the balance always agree");
            return (balance, sum);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("reservations were never settled");
}

async fn non_streaming_cost_is_reported_and_debited_once(backend: Backend) {
    let app = billing_app(backend, 10.0).await;
    let key = app.user_key("pay@example.com").await;
    let (start, _) = settled(&app, "pay@example.com").await;
    assert_eq!(start, 10_000_000_000);

    let response = chat(
        &app,
        &key,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let expected = 3 * INPUT_NANOS + 6 * OUTPUT_NANOS;
    let reported = body["usage"]["cost"].as_f64().unwrap();
    assert!(
        (reported - expected as f64 / 1e9).abs() < 1e-12,
        "{reported}"
    );

    app.usage_records(1).await;
    let (balance, _) = settled(&app, "pay@example.com").await;
    assert_eq!(balance, start - expected);
    let records = app.usage_records(1).await;
    assert_eq!(records[0].cost, expected);
    app.stop().await;
}

async fn streams_are_billed_with_cost_in_the_usage_chunk(backend: Backend) {
    let app = billing_app(backend, 10.0).await;
    let key = app.user_key("stream@example.com").await;
    let body = json!({"model": "anthropic:claude-3-5-haiku", "stream": true,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "a b"}]});
    let text = chat(&app, &key, body).await.text().await.unwrap();
    let usage_chunk: Value = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|c| c["usage"].is_object())
        .expect("a usage chunk");
    let expected = 2 * INPUT_NANOS + 6 * OUTPUT_NANOS;
    assert!((usage_chunk["usage"]["cost"].as_f64().unwrap() - expected as f64 / 1e9).abs() < 1e-12);

    // A stream the client abandons is billed for what was generated.
    let body = json!({"model": "gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "[mock chunks=40 delay_ms=50]"}]});
    let mut response = chat(&app, &key, body).await;
    response.chunk().await.unwrap();
    response.chunk().await.unwrap();
    drop(response);
    let records = app.usage_records(2).await;
    let aborted = records
        .iter()
        .find(|r| r.aborted == 1)
        .expect("the aborted stream's record");
    assert!(aborted.cost > 0, "{aborted:?}");
    let (balance, _) = settled(&app, "stream@example.com").await;
    assert_eq!(balance, 10_000_000_000 - expected - aborted.cost);
    app.stop().await;
}

async fn insufficient_credit_forwards_nothing_and_costs_nothing(backend: Backend) {
    let app = billing_app(backend, 0.000_001).await; // 1000 nano-USD
    let key = app.user_key("poor@example.com").await;
    let response = chat(
        &app,
        &key,
        json!({"model": "gpt-4o-mini", "max_tokens": 100,
                                           "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "insufficient_credits");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("available balance is $0.000001"),
        "{message}"
    );
    let records = app.usage_records(1).await;
    assert_eq!((records[0].status, records[0].cost), (402, 0));
    assert_eq!(records[0].prompt_tokens, 0, "nothing was forwarded");
    let (balance, sum) = settled(&app, "poor@example.com").await;
    assert_eq!((balance, sum), (1000, 1000));
    app.stop().await;
}

async fn free_and_unpriced_models(backend: Backend) {
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| {
        use_mock(c, &mock);
        c.signup_credit = 0.0;
        c.pricing.insert(
            "openai:free-model".into(),
            llm_gateway::config::PriceConfig {
                input_price_per_million: 0.0,
                output_price_per_million: 0.0,
                cache_read_price_per_million: None,
                cache_write_price_per_million: None,
                cache_write_1h_price_per_million: None,
                margin_percent: None,
            },
        );
    })
    .await;
    let key = app.user_key("free@example.com").await;
    let ok = chat(
        &app,
        &key,
        json!({"model": "openai:free-model", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK, "a zero price needs no balance");
    let unpriced = chat(
        &app,
        &key,
        json!({"model": "openai:unpriced-model", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(unpriced.status(), StatusCode::FORBIDDEN);
    let error: Value = unpriced.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no price"));
    app.stop().await;
}

async fn concurrent_requests_never_overdraw(backend: Backend) {
    // Each request reserves its prompt estimate and 10 output tokens, and
    // costs 1 × 180 + 6 × 720 (the mock's count).
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 10,
                      "messages": [{"role": "user", "content": "hello"}]});
    let prompt = llm_gateway::billing::estimate::prompt_tokens(body.as_object().unwrap(), &[]);
    let estimate = prompt * INPUT_NANOS + 10 * OUTPUT_NANOS;
    let cost = INPUT_NANOS + 6 * OUTPUT_NANOS;
    let credit = 50 * estimate;
    let app = billing_app(backend, credit as f64 / 1e9).await;
    let key = app.user_key("crowd@example.com").await;
    let client = reqwest::Client::new();
    let requests = (0..200).map(|_| {
        let client = client.clone();
        let url = app.url("/v1/chat/completions");
        let key = key.clone();
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "gpt-4o-mini", "max_tokens": 10,
                              "messages": [{"role": "user", "content": "hello"}]}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count() as i64;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::PAYMENT_REQUIRED)
        .count() as i64;
    assert_eq!(ok + refused, 200, "{statuses:?}");
    assert!(ok >= 50, "at least the first 50 fit: {ok}");
    assert!(refused > 0, "some must be refused");

    // Each record is written with its settlement: once all are there, so is the money.
    let records = app.usage_records(200).await;
    let (balance, sum) = settled(&app, "crowd@example.com").await;
    assert!(balance >= 0);
    assert_eq!(balance, credit - ok * cost, "every 200 billed exactly once");
    assert_eq!(sum, balance);
    assert_eq!(records.len(), 200);
    assert!(records
        .iter()
        .filter(|r| r.status == 402)
        .all(|r| r.cost == 0));
    app.stop().await;
}

async fn key_holders_see_their_usage_and_generations(backend: Backend) {
    let app = billing_app(backend, 10.0).await;
    let key = app.user_key("self@example.com").await;
    let other = app.user_key("other@example.com").await;
    let response = chat(
        &app,
        &key,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two"}]}),
    )
    .await;
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let cost = 2 * INPUT_NANOS + 6 * OUTPUT_NANOS;
    app.usage_records(1).await;
    settled(&app, "self@example.com").await;

    let client = reqwest::Client::new();
    let info: Value = client
        .get(app.url("/v1/key"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let usd = |nanos: i64| nanos as f64 / 1e9;
    assert!(
        (info["data"]["usage"]["all_time"].as_f64().unwrap() - usd(cost)).abs() < 1e-12,
        "{info}"
    );
    assert!((info["data"]["usage"]["today"].as_f64().unwrap() - usd(cost)).abs() < 1e-12);
    assert_eq!(info["data"]["requests"]["all_time"], 1);
    assert!((info["data"]["balance"].as_f64().unwrap() - usd(10_000_000_000 - cost)).abs() < 1e-9);

    let url = app.url(&format!("/v1/generation?id={id}"));
    let generation: Value = client
        .get(&url)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(generation["data"]["prompt_tokens"], 2);
    assert_eq!(generation["data"]["completion_tokens"], 6);
    assert_eq!(generation["data"]["status"], 200);
    assert!(generation["data"]["latency_ms"].is_number());
    let theirs = client.get(&url).bearer_auth(&other).send().await.unwrap();
    assert_eq!(
        theirs.status(),
        StatusCode::NOT_FOUND,
        "only the owner sees a generation"
    );
    let missing = client
        .get(app.url("/v1/generation"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

/// A client's `x-request-id` comes back as sent, is kept on the record and
/// finds it; the gateway's own id still keys the record and the ledger.
async fn client_request_ids_are_echoed_and_find_the_request(backend: Backend) {
    let app = billing_app(backend, 10.0).await;
    let key = app.user_key("trace@example.com").await;
    let other = app.user_key("other@example.com").await;
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let client = reqwest::Client::new();
    let send = |key: &str, request_id: &str| {
        client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-request-id", request_id)
            .json(&body)
            .send()
    };
    // The same client id twice: both requests are billed, and the id finds the latest.
    let mut generation_ids = Vec::new();
    for _ in 0..2 {
        let response = send(&key, "trace-7f3a").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-request-id"], "trace-7f3a");
        let own = response.headers()["x-generation-id"].to_str().unwrap();
        assert!(own.starts_with("req_"), "{own}");
        generation_ids.push(own.to_string());
    }
    assert_ne!(generation_ids[0], generation_ids[1]);
    // An id with a space is ignored: the gateway's own is sent back.
    let ignored = send(&key, "not usable").await.unwrap();
    assert_eq!(
        ignored.headers()["x-request-id"],
        ignored.headers()["x-generation-id"]
    );
    let records = app.usage_records(3).await;
    let traced: Vec<_> = records
        .iter()
        .filter(|r| r.client_request_id.as_deref() == Some("trace-7f3a"))
        .collect();
    assert_eq!(traced.len(), 2, "{records:?}");
    assert!(records.iter().all(|r| r.cost > 0));
    settled(&app, "trace@example.com").await;

    let generation = |key: &str, id: &str| {
        client
            .get(app.url(&format!("/v1/generation?id={id}")))
            .bearer_auth(key)
            .send()
    };
    let found: Value = generation(&key, "trace-7f3a")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["data"]["id"], generation_ids[1].as_str(), "{found}");
    let by_own: Value = generation(&key, &generation_ids[0])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_own["data"]["id"], generation_ids[0].as_str());
    let theirs = generation(&other, "trace-7f3a").await.unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

/// Settlements written in bulk take each request's whole cost, even past
/// the balance (the database then holds a debt, with its record); a batch
/// applied twice bills, and counts against rate limits, once.
async fn settlements_written_in_bulk_charge_in_full_and_apply_once(backend: Backend) {
    use llm_gateway::billing::batch::{apply_batch, WriteOp};
    use llm_gateway::db::usage::UsageRecord;
    let database = common::TestDatabase::create(&backend).await;
    let db = Db::connect(&database.url).await.unwrap();
    db.migrate().await.unwrap();
    for user in ["rich", "poor"] {
        llm_gateway::db::users::find_or_create(&db, user, 0)
            .await
            .unwrap();
    }
    ledger::credit(&db, "rich", ledger::EntryKind::Adjustment, 1_000, None, 0)
        .await
        .unwrap();
    ledger::credit(&db, "poor", ledger::EntryKind::Adjustment, 100, None, 0)
        .await
        .unwrap();
    let settle = |id: &str, user: &str, cost: i64| WriteOp::Settle {
        record: UsageRecord {
            id: id.into(),
            user_id: user.into(),
            endpoint: "chat.completions".into(),
            status: 200,
            cost,
            created_at: 1_000,
            tokens_source: "upstream".into(),
            ..UsageRecord::default()
        },
        in_memory: true,
        lease: None,
        budgets: None,
        rate_window: None,
    };
    // "poor" has 100 and is charged 120: the second charge takes it to -20.
    let ops = [
        settle("r1", "rich", 40),
        settle("p1", "poor", 70),
        settle("p2", "poor", 50),
        settle("p3", "poor", 0),
        settle("r2", "rich", 60),
    ];
    let results = apply_batch(&db, &ops, llm_gateway::clock::Clock::default().now_ms())
        .await
        .unwrap();
    assert_eq!(results, [true; 5]);
    apply_batch(&db, &ops, llm_gateway::clock::Clock::default().now_ms())
        .await
        .unwrap();

    let balance = |user: &'static str| {
        let db = db.clone();
        async move { ledger::balance(&db, user).await.unwrap().unwrap().0 }
    };
    assert_eq!(balance("rich").await, 900);
    assert_eq!(balance("poor").await, -20, "charged in full, past zero");
    for user in ["rich", "poor"] {
        let sum = ledger::ledger_sum(&db, user).await.unwrap();
        assert_eq!(sum, balance(user).await, "the ledger and the balance agree");
    }
    let debt = ledger::debt(&db, "poor")
        .await
        .unwrap()
        .expect("a debt record");
    assert_eq!((debt.amount, debt.request_id.as_deref()), (20, Some("p2")));
    assert_eq!(ledger::debt(&db, "rich").await.unwrap(), None);
    let records = llm_gateway::db::usage::all(&db).await.unwrap();
    let cost = |id: &str| records.iter().find(|r| r.id == id).unwrap().cost;
    assert_eq!(records.len(), 5, "each record once");
    assert_eq!(
        [cost("r1"), cost("r2"), cost("p1"), cost("p2"), cost("p3")],
        [40, 60, 70, 50, 0],
        "every record keeps its whole cost"
    );
    let entries = ledger::entries(&db, "poor", 10, 0).await.unwrap();
    let mut usage: Vec<(i64, i64)> = entries
        .iter()
        .filter(|e| e.kind == "usage")
        .map(|e| (e.amount, e.balance_after))
        .collect();
    usage.sort();
    assert_eq!(
        usage,
        [(-70, 30), (-50, -20)],
        "one entry per charge, with the running balance"
    );
    // A top-up pays the debt off first; the record goes once it is paid.
    ledger::credit(&db, "poor", ledger::EntryKind::TopUp, 15, None, 0)
        .await
        .unwrap();
    assert_eq!(ledger::debt(&db, "poor").await.unwrap().unwrap().amount, 5);
    ledger::credit(&db, "poor", ledger::EntryKind::TopUp, 5, None, 0)
        .await
        .unwrap();
    assert_eq!(ledger::debt(&db, "poor").await.unwrap(), None);
    assert!(
        ledger::credit(&db, "poor", ledger::EntryKind::Adjustment, -1, None, 0)
            .await
            .is_err(),
        "an operator's removal never makes a debt"
    );

    // A settlement against the database (not in memory) that counts its
    // completion tokens in the key's rate window, applied twice: once.
    let key = llm_gateway::db::keys::insert(
        &db,
        "rich",
        "hash-of-limited",
        "llm_sk_lim",
        1_000,
        &llm_gateway::db::keys::KeySettings {
            name: "limited".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let window = llm_gateway::db::rate_limits::window_start(1_000);
    llm_gateway::db::rate_limits::claim(&db, &key.id, window, 1, 0, 100, 1_000_000)
        .await
        .unwrap();
    let limited = [WriteOp::Settle {
        record: UsageRecord {
            id: "r3".into(),
            user_id: "rich".into(),
            key_id: Some(key.id.clone()),
            endpoint: "chat.completions".into(),
            status: 200,
            completion_tokens: 7,
            created_at: 1_000,
            tokens_source: "upstream".into(),
            ..UsageRecord::default()
        },
        in_memory: false,
        lease: None,
        budgets: None,
        rate_window: Some(window),
    }];
    apply_batch(&db, &limited, llm_gateway::clock::Clock::default().now_ms())
        .await
        .unwrap();
    apply_batch(&db, &limited, llm_gateway::clock::Clock::default().now_ms())
        .await
        .unwrap();
    let counts = llm_gateway::db::rate_limits::counts(&db, &key.id, window).await;
    assert_eq!(counts.unwrap(), (1, 7), "the tokens are counted once");

    // A budget is charged in full even when its hold was released first
    // (a sweep gave the request's replica up for dead): nothing escapes it.
    let scope = "key:budgeted-key";
    let reserve = WriteOp::ReserveBudget {
        request_id: "r4".into(),
        user_id: "rich".into(),
        limits: vec![llm_gateway::billing::budget::BudgetLimit {
            scope: scope.into(),
            max: 1_000,
            period: llm_gateway::billing::budget::Period::Lifetime,
        }],
        amount: 100,
        now: 1_000,
        expires_at: 2_000,
        replica_id: "rep_gone".into(),
    };
    assert_eq!(
        apply_batch(
            &db,
            &[reserve],
            llm_gateway::clock::Clock::default().now_ms()
        )
        .await
        .unwrap(),
        [true]
    );
    ledger::release_matching(&db, "replica_id = 'rep_gone' AND $1 = $1", 0)
        .await
        .unwrap();
    let settle = WriteOp::Settle {
        record: UsageRecord {
            id: "r4".into(),
            user_id: "rich".into(),
            endpoint: "chat.completions".into(),
            status: 200,
            cost: 250,
            created_at: 1_000,
            tokens_source: "upstream".into(),
            ..UsageRecord::default()
        },
        in_memory: false,
        lease: None,
        budgets: Some(
            vec![llm_gateway::billing::budget::HeldBudget {
                scope: scope.to_string(),
                lease: None,
            }]
            .into(),
        ),
        rate_window: None,
    };
    apply_batch(
        &db,
        &[settle],
        llm_gateway::clock::Clock::default().now_ms(),
    )
    .await
    .unwrap();
    let window = llm_gateway::db::budgets::window(&db, scope).await.unwrap();
    assert_eq!(
        window.map(|(_, spent)| spent),
        Some(250),
        "the whole cost, once"
    );
    db.close().await;
}

/// Runs one statement on either backend.
async fn execute(db: &Db, sql: &str) -> Result<(), sqlx::Error> {
    match db {
        Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
    }
}

/// A database with users, keys, usage and a ledger, kept before debts
/// existed, migrates with every row intact; afterwards a balance and a
/// ledger entry may go below zero, and references are still enforced.
async fn migrating_a_database_with_money_keeps_it_and_allows_debts(backend: Backend) {
    let database = common::TestDatabase::create(&backend).await;
    let db = Db::connect(&database.url).await.unwrap();
    // The schema as the previous release left it.
    db.migrate_until(20261126000006).await.unwrap();
    let statements = [
        "INSERT INTO users (id, email, balance, created_at, updated_at) VALUES ('old', 'old@example.com', 700, 1, 1)",
        "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, created_at) VALUES ('k', 'old', 'k', 'h', 'p', 1)",
        "INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, created_at) VALUES ('l1', 'old', 'topup', 1000, 1000, 1)",
        "INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, request_id, created_at) VALUES ('l2', 'old', 'usage', -300, 700, 'r1', 2)",
        "INSERT INTO usage_records (id, user_id, key_id, endpoint, status, latency_ms, created_at, cost) VALUES ('r1', 'old', 'k', 'chat.completions', 200, 5, 2, 300)",
    ];
    let run = |sql: &'static str| execute(&db, sql);
    for sql in statements {
        run(sql).await.unwrap();
    }
    assert!(
        run("UPDATE users SET balance = -1 WHERE id = 'old'")
            .await
            .is_err(),
        "the old schema refuses a negative balance"
    );
    db.migrate().await.unwrap();
    // Read back as the upgraded gateway would, on connections opened after
    // the migration: a SQLite connection that read the old schema can
    // re-prepare a statement under the new one mid-step, which sqlx-sqlite
    // 0.8 answers with a panic (a row wider than its cached columns).
    db.close().await;
    let db = Db::connect(&database.url).await.unwrap();
    let run = |sql: &'static str| execute(&db, sql);
    assert_eq!(ledger::balance(&db, "old").await.unwrap(), Some((700, 0)));
    assert_eq!(ledger::ledger_sum(&db, "old").await.unwrap(), 700);
    let records = llm_gateway::db::usage::all(&db).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].tokens_source, "upstream");
    let user = llm_gateway::db::users::find_by_email(&db, "old@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.id, "old");
    // Debts are possible now; references still hold.
    run("UPDATE users SET balance = -5 WHERE id = 'old'")
        .await
        .unwrap();
    run("INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, created_at) VALUES ('l3', 'old', 'adjustment', -705, -5, 3)")
        .await
        .unwrap();
    assert!(
        run("INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, created_at) VALUES ('k2', 'nobody', 'k', 'h2', 'p', 1)")
            .await
            .is_err(),
        "a key of no user is refused"
    );
    assert!(
        run("INSERT INTO users (id, email, created_at, updated_at) VALUES ('dup', 'old@example.com', 1, 1)")
            .await
            .is_err(),
        "emails stay unique"
    );
    db.close().await;
}

/// After `kill -9` mid-stream, a restart releases the dead request's
/// reservation: no money stays stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_leaves_no_money_stuck() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mock = start_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/gateway.db", dir.path().display());
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "host: 127.0.0.1\nport: 0\ndatabase_url: {db_url}\nsignup_credit: 5\n\
             providers:\n  openai: {{api_key: x, api_base: '{mock}/v1'}}\n\
             pricing:\n  'openai:gpt-4o-mini': {{input_price_per_million: 0.15, output_price_per_million: 0.6}}\n"
        ),
    )
    .unwrap();
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("GATEWAY_PORT")
            .env_remove("GATEWAY_DATABASE_URL")
            .env_remove("GATEWAY_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .find(|l| l.starts_with("llm-gateway listening on "))
            .unwrap();
        (
            child,
            line.trim_start_matches("llm-gateway listening on ")
                .to_string(),
        )
    };

    let (mut child, base) = start();
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let rpc = |name: &str, form: &'static str| {
        http.post(format!("{base}/rpc/{name}"))
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    rpc(
        "sign_up",
        "email=crash%40example.com&password=correct+horse+battery",
    )
    .await
    .unwrap();
    let created: Value = rpc("create_key", "name=k")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["secret"].as_str().unwrap().to_string();
    let mut stream = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "[mock chunks=100 delay_ms=100]"}]}))
        .send()
        .await
        .unwrap();
    stream.chunk().await.unwrap();

    let db = Db::connect(&db_url).await.unwrap();
    let user = llm_gateway::db::users::find_by_email(&db, "crash@example.com")
        .await
        .unwrap()
        .unwrap();
    // On SQLite the process holds reservations in memory.
    let available = |base: String| {
        let key = key.clone();
        async move {
            let info: Value = reqwest::Client::new()
                .get(format!("{base}/v1/key"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let data = &info["data"];
            (
                data["balance"].as_f64().unwrap(),
                data["available"].as_f64().unwrap(),
            )
        }
    };
    let (balance, held_back) = available(base.clone()).await;
    assert!(held_back < balance, "the stream holds a reservation");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stream);

    let (mut child, base) = start();
    let (balance_after, available_after) = available(base).await;
    assert_eq!(
        available_after, balance_after,
        "nothing held after the restart"
    );
    let (balance, reserved) = ledger::balance(&db, &user.id).await.unwrap().unwrap();
    assert_eq!(reserved, 0, "no reservation row left behind");
    assert_eq!(balance, ledger::ledger_sum(&db, &user.id).await.unwrap());
    assert_eq!(balance, 5_000_000_000);
    db.close().await;
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn the_dashboard_shows_balance_usage_and_exports(backend: Backend) {
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| {
        use_mock(c, &mock);
        c.signup_credit = 0.0;
        c.payments.mode = llm_gateway::config::PaymentMode::Test;
    })
    .await;
    let browser = app.client();
    app.sign_up(&browser, "dash@example.com").await;
    for (amount, status) in [("0", 400), ("5000", 400), ("abc", 400), ("12.50", 200)] {
        let (got, body) = app
            .rpc(&browser, "start_top_up", &[("amount", amount)])
            .await;
        assert_eq!(got.as_u16(), status, "{amount}: {body}");
    }
    let (_, created) = app.rpc(&browser, "create_key", &[("name", "dash")]).await;
    let key = created["secret"].as_str().unwrap().to_string();
    let response = chat(
        &app,
        &key,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one"}]}),
    )
    .await;
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let cost = INPUT_NANOS + 6 * OUTPUT_NANOS;
    app.usage_records(1).await;
    settled(&app, "dash@example.com").await;

    let (_, figures) = app.rpc(&browser, "account_summary", &[]).await;
    assert_eq!(figures["balance"], 12_500_000_000 - cost);
    assert_eq!(figures["spend_today"], cost);
    assert_eq!(figures["requests_month"], 1);
    assert_eq!(figures["self_top_up"], true);

    let (_, ledger) = app.rpc(&browser, "ledger_page", &[("page", "0")]).await;
    let kinds: Vec<&str> = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["usage", "topup"]);

    let (_, series) = app.rpc(&browser, "daily_spend", &[]).await;
    assert_eq!(series["points"][0]["cost"], cost);
    assert_eq!(series["points"][0]["day"], series["today"]);

    let form = [
        ("from", ""),
        ("to", ""),
        ("key", ""),
        ("model", "gpt-4o-mini"),
        ("page", "0"),
    ];
    let (_, usage) = app.rpc(&browser, "usage_page", &form).await;
    assert_eq!(usage["rows"]["items"][0]["id"], id.as_str());
    let form = [
        ("from", ""),
        ("to", ""),
        ("key", ""),
        ("model", "other-model"),
        ("page", "0"),
    ];
    let (_, usage) = app.rpc(&browser, "usage_page", &form).await;
    assert_eq!(usage["rows"]["items"].as_array().unwrap().len(), 0);
    let form = [
        ("from", "not-a-date"),
        ("to", ""),
        ("key", ""),
        ("model", ""),
        ("page", "0"),
    ];
    let (status, _) = app.rpc(&browser, "usage_page", &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let csv = browser
        .get(app.url("/export/usage.csv?model=gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("time_utc,request_id,"), "{text}");
    assert!(text.contains(&id), "{text}");
    let anonymous = reqwest::get(app.url("/export/usage.csv")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    for (page, expected) in [
        ("/dashboard/usage", "gpt-4o-mini"),
        ("/dashboard/balance", "12.49"),
        ("/dashboard", "Daily spend by model"),
    ] {
        let html = browser
            .get(app.url(page))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains(expected), "{page} lacks {expected}");
    }
    app.stop().await;
}

#[tokio::test]
async fn top_ups_are_refused_outside_test_mode() {
    let app = billing_app(Backend::Sqlite, 0.0).await;
    let browser = app.client();
    app.sign_up(&browser, "nopay@example.com").await;
    let (status, _) = app.rpc(&browser, "start_top_up", &[("amount", "10")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

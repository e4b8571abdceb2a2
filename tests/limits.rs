//! Enforcement on every route that spends: budgets through the reservation
//! (under concurrency), and rate limits with OpenAI's headers. Across
//! replicas: `tests/replicas.rs`.
#![cfg(feature = "ssr")]

mod common;

use common::{send, start_mock, use_mock, Backend, TestApp};
use futures::future::join_all;
use llm_gateway::db::{budgets, ledger, Db};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    concurrent_requests_never_overshoot_a_budget,
    a_budget_lease_turns_with_its_period,
    a_lowered_budget_holds_from_the_next_call,
    rate_limits_answer_429_with_headers,
);

/// Three prompt tokens and six completion tokens at 180 / 720 nano-USD.
const COST: i64 = 3 * 180 + 6 * 720;

async fn app(backend: Backend) -> TestApp {
    let mock = start_mock().await;
    TestApp::start_with(backend, |c| use_mock(c, &mock)).await
}

fn small_chat() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 6,
           "messages": [{"role": "user", "content": "one two three"}]})
}

/// The prompt estimate of [`small_chat`]: what its reservation and its
/// rate-limit count start from.
fn small_chat_prompt() -> i64 {
    llm_gateway::billing::estimate::prompt_tokens(small_chat().as_object().unwrap(), &[])
}

/// Creates a funded user and a key with `settings`; returns the key.
async fn funded_key(app: &TestApp, user_id: &str, settings: Value) -> (String, String) {
    send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": user_id})),
    )
    .await;
    send(
        app.admin(Method::POST, &format!("/v1/users/{user_id}/credits"))
            .json(&json!({"amount": "5"})),
    )
    .await;
    let mut body = settings;
    body["user_id"] = json!(user_id);
    let (status, created) = send(app.admin(Method::POST, "/v1/keys").json(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["key"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    )
}

/// Waits until every budget hold and reservation is settled; returns what
/// the key's budget window spent, checking the ledger against the balance.
async fn settled_spend(db_url: &str, user_id: &str, scope: &str) -> (i64, i64) {
    let db = Db::connect(db_url).await.unwrap();
    for _ in 0..400 {
        let (balance, reserved) = ledger::balance(&db, user_id).await.unwrap().unwrap();
        let holds: i64 = match &db {
            Db::Sqlite(pool) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM budget_holds WHERE request_id NOT LIKE 'lease:%'",
            )
            .fetch_one(pool)
            .await
            .unwrap(),
            Db::Postgres(pool) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM budget_holds WHERE request_id NOT LIKE 'lease:%'",
            )
            .fetch_one(pool)
            .await
            .unwrap(),
        };
        let leased = llm_gateway::db::leases::total(&db, user_id).await.unwrap();
        if reserved == leased && holds == 0 {
            assert_eq!(balance, ledger::ledger_sum(&db, user_id).await.unwrap());
            let (_, spent) = budgets::window(&db, scope).await.unwrap().unwrap();
            db.close().await;
            return (spent, balance);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("holds were never settled");
}

async fn concurrent_requests_never_overshoot_a_budget(backend: Backend) {
    let app = app(backend).await;
    let max = 50 * COST;
    let (key, key_id) = funded_key(
        &app,
        "spender",
        json!({"max_budget": llm_gateway::billing::money::format_usd(max)}),
    )
    .await;
    let client = reqwest::Client::new();
    let requests = (0..200).map(|_| {
        client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&small_chat())
            .send()
    });
    let mut ok = 0;
    let mut over_budget = 0;
    for response in join_all(requests).await {
        let response = response.unwrap();
        match response.status() {
            StatusCode::OK => ok += 1,
            StatusCode::PAYMENT_REQUIRED => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                over_budget += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok + over_budget, 200);
    // Each request holds its estimate (its prompt counted locally and 6
    // output tokens), so at least max / estimate fit at once; never more
    // than the budget pays for.
    let estimate = small_chat_prompt() * 180 + 6 * 720;
    assert!(
        (max / estimate..=50).contains(&ok),
        "{ok} requests succeeded"
    );
    app.usage_records(200).await;
    let (spent, balance) = settled_spend(&app.db.url, "spender", &format!("key:{key_id}")).await;
    assert_eq!(spent, ok * COST, "the budget counts what was charged");
    assert!(spent <= max);
    assert_eq!(
        balance,
        5_000_000_000 - ok * COST,
        "only successes are billed"
    );
    let records = app.usage_records(200).await;
    assert!(records
        .iter()
        .filter(|r| r.status == 402)
        .all(|r| r.cost == 0));
    app.stop().await;
}

async fn rate_limits_answer_429_with_headers(backend: Backend) {
    let app = app(backend).await;
    let (key, _) = funded_key(&app, "limited", json!({"rpm_limit": 3})).await;
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    // Refused before being counted: the headers report the standing, and
    // nothing is counted.
    let unknown =
        json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]});
    for body in [unknown, json!({"messages": []})] {
        let response = app.chat(&key, &body).await;
        assert!(response.status().is_client_error());
        assert_eq!(
            header(&response, "x-ratelimit-limit-requests").as_deref(),
            Some("3")
        );
        assert_eq!(
            header(&response, "x-ratelimit-remaining-requests").as_deref(),
            Some("3")
        );
    }
    for remaining in ["2", "1", "0"] {
        let response = app.chat(&key, &small_chat()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "x-ratelimit-limit-requests").as_deref(),
            Some("3")
        );
        assert_eq!(
            header(&response, "x-ratelimit-remaining-requests").as_deref(),
            Some(remaining)
        );
        let reset = header(&response, "x-ratelimit-reset-requests").unwrap();
        let seconds: i64 = reset.trim_end_matches('s').parse().unwrap();
        assert!((1..=60).contains(&seconds), "{reset}");
    }
    let response = app.chat(&key, &small_chat()).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: i64 = header(&response, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(
        header(&response, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // Embeddings count too.
    let response = reqwest::Client::new()
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&key)
        .json(&json!({"model": "openai:text-embedding-3-small", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The next minute admits again.
    app.clock().advance(60_000);
    assert_eq!(app.chat(&key, &small_chat()).await.status(), StatusCode::OK);

    // Tokens per minute: the prompt counts at once, the completion when settled.
    let (key, _) = funded_key(&app, "wordy", json!({"tpm_limit": 20})).await;
    let response = app.chat(&key, &small_chat()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-ratelimit-limit-tokens").as_deref(),
        Some("20")
    );
    let prompt = small_chat_prompt();
    assert!(prompt > 7, "{prompt}");
    let remaining = |left: i64| Some(left.to_string());
    assert_eq!(
        header(&response, "x-ratelimit-remaining-tokens"),
        remaining(20 - prompt)
    );
    assert!(header(&response, "x-ratelimit-limit-requests").is_none());
    // Every metered call leaves a record (the 404, the 400, the 429s): the
    // ninth is wordy's, settled with its completion tokens.
    assert_eq!(app.usage_records(9).await.len(), 9);
    let response = app.chat(&key, &small_chat()).await;
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the prompt, its 6 completion tokens and the prompt again pass 20"
    );
    assert_eq!(
        header(&response, "x-ratelimit-remaining-tokens"),
        remaining(20 - prompt - 6)
    );
    app.stop().await;
}

/// A key's $1 budget per minute, held from a lease on it: once the period
/// ends, what is spent counts in the new period's window alone, though the
/// lease taken in the last period still had plenty left.
async fn a_budget_lease_turns_with_its_period(backend: Backend) {
    let app = app(backend).await;
    let (key, key_id) = funded_key(
        &app,
        "periodic",
        json!({"max_budget": "1", "budget_duration_sec": 60}),
    )
    .await;
    let scope = format!("key:{key_id}");
    for _ in 0..3 {
        assert_eq!(app.chat(&key, &small_chat()).await.status(), StatusCode::OK);
    }
    app.usage_records(3).await;
    let db = app.database().await;
    let (started, spent) = budgets::window(&db, &scope).await.unwrap().unwrap();
    assert_eq!(spent, 3 * COST);

    app.clock().advance(61_000);
    assert_eq!(app.chat(&key, &small_chat()).await.status(), StatusCode::OK);
    app.usage_records(4).await;
    let (restarted, spent) = budgets::window(&db, &scope).await.unwrap().unwrap();
    assert_eq!(restarted, started + 60_000, "the next minute's window");
    assert_eq!(spent, COST, "only what the new period spent");
    db.close().await;
    app.audit().await;
    app.stop().await;
}

/// A key's $1 budget, held from a lease on it, lowered by the operator to
/// less than what was spent plus one more call: the next call is refused,
/// though the lease granted under the old limit had plenty left.
async fn a_lowered_budget_holds_from_the_next_call(backend: Backend) {
    let app = app(backend).await;
    let (key, key_id) = funded_key(&app, "lowered", json!({"max_budget": "1"})).await;
    for _ in 0..2 {
        assert_eq!(app.chat(&key, &small_chat()).await.status(), StatusCode::OK);
    }
    app.usage_records(2).await;
    let estimate = small_chat_prompt() * 180 + 6 * 720;
    let lowered = llm_gateway::billing::money::format_usd(2 * COST + estimate / 2);
    let (status, body) = send(
        app.admin(Method::PATCH, &format!("/v1/keys/{key_id}"))
            .json(&json!({"max_budget": lowered})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = app.chat(&key, &small_chat()).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    app.audit().await;
    app.stop().await;
}

//! Money one can audit, on SQLite and PostgreSQL: no write-offs (a debt
//! instead), reservations that cover the whole request, bodies checked
//! before they cost anything, cache buckets priced apart, deleted prices
//! that stay deleted, idempotency keys, how each record's tokens were
//! known, the audit, and exports without a ceiling.
#![cfg(feature = "ssr")]

mod common;

use common::{mock_calls, start_mock, use_mock, Backend, TestApp};
use futures::StreamExt;
use llm_gateway::config::PriceConfig;
use llm_gateway::db::{ledger, Db};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both_backends!(
    a_hostile_customer_ends_in_debt_not_in_a_write_off,
    budgets_count_the_full_cost,
    reservations_cover_schemas_and_images,
    bodies_are_checked_before_they_cost_anything,
    cache_buckets_are_priced_per_provider,
    a_deleted_price_stays_deleted,
    idempotent_requests_are_answered_once,
    every_record_says_how_its_tokens_were_known,
    the_audit_passes_and_catches_every_mismatch,
    exports_have_no_ceiling,
);

/// 0.15 / 0.60 per 1M at 20% margin: 180 and 720 nano-USD per token.
const INPUT_NANOS: i64 = 180;
const OUTPUT_NANOS: i64 = 720;
const USD: i64 = 1_000_000_000;

/// A gateway in front of a fresh mock, with `signup_credit` USD for new
/// accounts; and the mock's URL.
async fn money_app(backend: Backend, signup_credit: f64) -> (TestApp, String) {
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| {
        use_mock(c, &mock);
        c.signup_credit = signup_credit;
    })
    .await;
    (app, mock)
}

/// Signs a user up (a session on `client`) and creates a key; returns the
/// key and the user's id.
async fn customer(app: &TestApp, client: &reqwest::Client, email: &str) -> (String, String) {
    let user = app.sign_up(client, email).await;
    let (status, created) = app.rpc(client, "create_key", &[("name", "k")]).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    (
        created["secret"].as_str().unwrap().to_string(),
        user["id"].as_str().unwrap().to_string(),
    )
}

fn chat_body(content: &str) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 5,
           "messages": [{"role": "user", "content": content}]})
}

/// The user's balance, once no reservation is left, checked against the
/// ledger's sum in the same snapshot (on SQLite reservations are held in
/// memory, so a record may still be on its way to the database: the two
/// must agree at every instant, not only once it is written).
async fn settled(app: &TestApp, user_id: &str) -> i64 {
    // What reservations hold less the replica's lease (PostgreSQL), which
    // holds unused credit rather than a call's.
    const BOOKS: &str = "SELECT balance, reserved - CAST(COALESCE((SELECT SUM(amount) \
        FROM reservations WHERE user_id = $1 AND request_id LIKE 'lease:%'), 0) AS BIGINT), \
        CAST(COALESCE((SELECT SUM(amount) FROM ledger_entries WHERE user_id = $1), 0) AS BIGINT) \
        FROM users WHERE id = $1";
    let db = app.database().await;
    for _ in 0..400 {
        let (balance, reserved, sum): (i64, i64, i64) = match &db {
            Db::Sqlite(pool) => sqlx::query_as(BOOKS).bind(user_id).fetch_one(pool).await,
            Db::Postgres(pool) => sqlx::query_as(BOOKS).bind(user_id).fetch_one(pool).await,
        }
        .unwrap();
        assert_eq!(sum, balance, "the ledger and the balance agree");
        if reserved == 0 {
            db.close().await;
            return balance;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("reservations were never settled");
}

/// Runs `sql` (a statement with no result) on the app's database.
async fn execute(db: &Db, sql: &str) {
    match db {
        Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
    }
    .unwrap();
}

async fn count(db: &Db, sql: &str) -> i64 {
    match db {
        Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
    .unwrap()
}

/// A user with $0.50 sends 50 concurrent calls whose upstream reports far
/// more prompt tokens than the estimate: every call is charged in full,
/// the balance goes below zero by exactly the excess, the debt shows to
/// the user and the operator, and the next paid call gets 402.
async fn a_hostile_customer_ends_in_debt_not_in_a_write_off(backend: Backend) {
    let (app, mock) = money_app(backend, 0.5).await;
    let client = app.client();
    let (key, user_id) = customer(&app, &client, "hostile@example.com").await;
    // Each call is held for 300 ms upstream, so all 50 reserve before any
    // settles; each reports 100,000 prompt tokens and 6 completion tokens.
    let body = chat_body("hi [mock prompt_tokens=100000 first_byte_ms=300]");
    let calls = (0..50).map(|_| app.chat(&key, &body));
    let statuses: Vec<StatusCode> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.status())
        .collect();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count() as i64;
    assert_eq!(ok, 50, "{statuses:?}");
    let records = app.usage_records(50).await;
    let cost = 100_000 * INPUT_NANOS + 6 * OUTPUT_NANOS;
    assert!(records.iter().all(|r| r.cost == cost && r.status == 200));
    let total: i64 = records.iter().map(|r| r.cost).sum();
    let balance = settled(&app, &user_id).await;
    assert_eq!(balance, USD / 2 - total, "nothing written off");
    let debt = total - USD / 2;
    assert!(debt > 0);

    // Each record's cost is its ledger debit.
    let db = app.database().await;
    let entries = ledger::entries(&db, &user_id, 100, 0).await.unwrap();
    for record in &records {
        let debit = entries
            .iter()
            .find(|e| e.request_id.as_deref() == Some(record.id.as_str()))
            .expect("a debit per record");
        assert_eq!(debit.amount, -record.cost);
    }
    let recorded = ledger::debt(&db, &user_id)
        .await
        .unwrap()
        .expect("a debt record");
    assert_eq!(recorded.amount, debt);
    db.close().await;

    // The next paid call is refused, and reaches no provider.
    let before = mock_calls(&mock).await;
    let refused = app.chat(&key, &chat_body("one more")).await;
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "insufficient_credits");
    assert_eq!(mock_calls(&mock).await, before);

    // The user sees the debt on the overview and the balance page's figures.
    let (status, figures) = app.rpc(&client, "account_summary", &[]).await;
    assert_eq!(status, StatusCode::OK, "{figures}");
    assert_eq!(figures["balance"], json!(balance));
    assert_eq!(figures["debt"], json!(debt));
    assert!(figures["in_debt_since"].is_i64());
    let page = client
        .get(app.url("/dashboard/balance"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("data-testid=\"debt\""),
        "the balance page says so"
    );

    // So does the operator.
    let shown: Value = app
        .admin(reqwest::Method::GET, &format!("/v1/users/{user_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["debt_nanos"], json!(debt));
    assert_eq!(shown["balance_nanos"], json!(balance));
    assert!(shown["in_debt_since"].is_string());
    let debts: Value = app
        .admin(reqwest::Method::GET, "/v1/debts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(debts[0]["user_id"], json!(user_id));
    assert_eq!(debts[0]["debt_nanos"], json!(debt));
    app.audit().await;

    // A grant that does not cover the debt leaves calls refused; one that
    // does lets them through again.
    let grant = |amount: i64| {
        app.admin(
            reqwest::Method::POST,
            &format!("/v1/users/{user_id}/credits"),
        )
        .json(&json!({"amount": llm_gateway::billing::money::format_usd(amount)}))
        .send()
    };
    assert_eq!(grant(debt).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        app.chat(&key, &chat_body("still nothing")).await.status(),
        StatusCode::PAYMENT_REQUIRED,
        "a balance of zero pays for nothing"
    );
    grant(USD / 100).await.unwrap();
    assert_eq!(
        app.chat(&key, &chat_body("paid again")).await.status(),
        StatusCode::OK
    );
    settled(&app, &user_id).await;
    let db = app.database().await;
    assert_eq!(ledger::debt(&db, &user_id).await.unwrap(), None);
    db.close().await;
    app.audit().await;
    app.stop().await;
}

/// A budget counts what a call cost in full, even past its limit.
async fn budgets_count_the_full_cost(backend: Backend) {
    let (app, _mock) = money_app(backend, 0.0).await;
    let post = |path: &str, body: Value| app.admin(reqwest::Method::POST, path).json(&body).send();
    post("/v1/users", json!({"user_id": "budgeted"}))
        .await
        .unwrap();
    post("/v1/users/budgeted/credits", json!({"amount": "5"}))
        .await
        .unwrap();
    let created: Value = post(
        "/v1/keys",
        json!({"user_id": "budgeted", "max_budget": "0.01"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = created["key"].as_str().unwrap();
    let key_id = created["id"].as_str().unwrap();
    let response = app
        .chat(key, &chat_body("big [mock prompt_tokens=100000]"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cost = 100_000 * INPUT_NANOS + 6 * OUTPUT_NANOS;
    assert!(cost > USD / 100, "one call passes the budget");
    app.usage_records(1).await;
    settled(&app, "budgeted").await;
    let db = app.database().await;
    let (_, spent) = llm_gateway::db::budgets::window(&db, &format!("key:{key_id}"))
        .await
        .unwrap()
        .unwrap();
    db.close().await;
    assert_eq!(spent, cost, "the budget counts the whole cost");
    let refused = app.chat(key, &chat_body("again")).await;
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "budget_exceeded");
    app.audit().await;
    app.stop().await;
}

/// The reservation counts tool schemas and images, not only message text:
/// a request whose schema or image the balance cannot cover is refused
/// before it reaches a provider.
async fn reservations_cover_schemas_and_images(backend: Backend) {
    // $0.001 covers 5,555 prompt tokens at 180 nano-USD each.
    let (app, mock) = money_app(backend, 0.001).await;
    let client = app.client();
    let (key, user_id) = customer(&app, &client, "schemas@example.com").await;
    let small = chat_body("hello");
    let mut with_tools = small.clone();
    with_tools["tools"] = json!([{"type": "function", "function": {
        "name": "lookup", "description": "x".repeat(40_000),
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]);
    let mut with_image = small.clone();
    with_image["messages"][0]["content"] = json!([
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo.png"}}
    ]);
    let mut with_schema = small.clone();
    with_schema["response_format"] = json!({"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object", "description": "y".repeat(40_000)}}});
    for (name, body) in [
        ("tools", &with_tools),
        ("an image", &with_image),
        ("a response schema", &with_schema),
    ] {
        let response = app.chat(&key, body).await;
        assert_eq!(
            response.status(),
            StatusCode::PAYMENT_REQUIRED,
            "{name} is counted"
        );
    }
    assert_eq!(mock_calls(&mock).await, 0, "nothing reached the provider");
    assert_eq!(app.chat(&key, &small).await.status(), StatusCode::OK);
    settled(&app, &user_id).await;
    app.stop().await;
}

/// Bodies that are not JSON, or not chat or embedding requests by OpenAI's
/// schema, are refused before any reservation or provider call.
async fn bodies_are_checked_before_they_cost_anything(backend: Backend) {
    let (app, mock) = money_app(backend, 5.0).await;
    let client = app.client();
    let (key, user_id) = customer(&app, &client, "malformed@example.com").await;
    let http = reqwest::Client::new();
    let url = app.url("/v1/chat/completions");
    let valid = chat_body("hi").to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data; boundary=x",
    ] {
        let response = http
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(valid.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unsupported_media_type");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let malformed = [
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
            "stream",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": ["hi"]}),
            "messages[0]",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"content": "hi"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": 1, "content": "hi"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": 0}),
            "n",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}),
            "max_tokens",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "10"}),
            "max_tokens",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "tools": "all"}),
            "tools",
        ),
        (
            json!({"model": "gpt-4o-mini", "messages": {"role": "user"}}),
            "messages",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "model",
        ),
    ];
    for (body, field) in &malformed {
        let response = app.chat(&key, body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], json!(field), "{body}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field),
            "{error}"
        );
    }
    let embedding = http
        .post(app.url("/v1/embeddings"))
        .bearer_auth(&key)
        .json(&json!({"model": "openai:text-embedding-3-small", "input": [1, "mixed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(embedding.status(), StatusCode::BAD_REQUEST);
    let error: Value = embedding.json().await.unwrap();
    assert_eq!(error["error"]["param"], "input");

    assert_eq!(mock_calls(&mock).await, 0, "no provider was called");
    let refused = 4 + malformed.len() + 1;
    let records = app.usage_records(refused).await;
    assert_eq!(records.len(), refused);
    assert!(records.iter().all(|r| r.cost == 0 && r.provider_cost == 0));
    let balance = settled(&app, &user_id).await;
    assert_eq!(balance, 5 * USD, "nothing was charged or held");
    // Unknown fields still pass through to the provider.
    let mut extended = chat_body("hi");
    extended["some_future_field"] = json!({"nested": [1, 2]});
    let response = app.chat(&key, &extended).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["mock_request"]["some_future_field"],
        json!({"nested": [1, 2]})
    );
    app.stop().await;
}

/// A price with every cache bucket, in USD per 1M tokens.
fn cache_price(
    input: f64,
    output: f64,
    read: f64,
    write: Option<f64>,
    write_1h: Option<f64>,
) -> PriceConfig {
    PriceConfig {
        input_price_per_million: input,
        output_price_per_million: output,
        cache_read_price_per_million: Some(read),
        cache_write_price_per_million: write,
        cache_write_1h_price_per_million: write_1h,
        margin_percent: None,
    }
}

/// Each provider's cache tokens, streamed and not, are priced at their own
/// rates, kept apart on the record, and shown in `/v1/generation` and the
/// CSV.
async fn cache_buckets_are_priced_per_provider(backend: Backend) {
    let mock = start_mock().await;
    let app = TestApp::start_with(backend, |c| {
        use_mock(c, &mock);
        c.signup_credit = 100.0;
        c.pricing.insert(
            "openai:gpt-cache".into(),
            cache_price(1.0, 2.0, 0.1, None, None),
        );
        c.pricing.insert(
            "anthropic:claude-cache".into(),
            cache_price(3.0, 15.0, 0.3, Some(3.75), Some(6.0)),
        );
        c.pricing.insert(
            "gemini:gemini-cache".into(),
            cache_price(1.0, 2.0, 0.25, None, None),
        );
    })
    .await;
    let client = app.client();
    let (key, _) = customer(&app, &client, "cache@example.com").await;
    let directive = "[mock prompt_tokens=1000000 completion_tokens=1000 cached=400000 \
                     cache_write=300000 cache_write_1h=200000]";
    // Provider cost in nano-USD: the uncached prompt, each cache bucket
    // and the output at their prices. OpenAI and Gemini report cache
    // reads only (their writes cost input); Anthropic reports all three.
    let usd = |amount: f64| (amount * USD as f64).round() as i64;
    let cases = [
        ("openai:gpt-cache", usd(0.6 + 0.04 + 0.002), (400_000, 0, 0)),
        (
            "anthropic:claude-cache",
            usd(0.3 + 0.12 + 1.125 + 1.2 + 0.015),
            (400_000, 300_000, 200_000),
        ),
        (
            "gemini:gemini-cache",
            usd(0.6 + 0.1 + 0.002),
            (400_000, 0, 0),
        ),
    ];
    let mut ids = Vec::new();
    for (model, provider_cost, (read, write, write_1h)) in cases {
        for stream in [false, true] {
            let body = json!({"model": model, "max_tokens": 1000, "stream": stream,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": format!("cached {directive}")}]});
            let response = app.chat(&key, &body).await;
            assert_eq!(response.status(), StatusCode::OK, "{model}");
            let id = response.headers()["x-generation-id"]
                .to_str()
                .unwrap()
                .to_string();
            let text = response.text().await.unwrap();
            let usage = if stream {
                let chunk = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .find(|c| !c["usage"].is_null())
                    .expect("a usage chunk");
                chunk["usage"].clone()
            } else {
                serde_json::from_str::<Value>(&text).unwrap()["usage"].clone()
            };
            let user_cost = provider_cost * 12 / 10;
            assert_eq!(
                usage["cost"],
                json!(user_cost as f64 / USD as f64),
                "{model} {stream}"
            );
            ids.push((id, model, provider_cost, user_cost, (read, write, write_1h)));
        }
    }
    let records = app.usage_records(6).await;
    for (id, model, provider_cost, user_cost, (read, write, write_1h)) in &ids {
        let record = records.iter().find(|r| &r.id == id).unwrap();
        assert_eq!(
            (
                record.cached_tokens,
                record.cache_write_tokens,
                record.cache_write_1h_tokens
            ),
            (*read, *write, *write_1h),
            "{model}"
        );
        assert_eq!(record.prompt_tokens, 1_000_000, "{model}");
        assert_eq!(record.provider_cost, *provider_cost, "{model}");
        assert_eq!(record.cost, *user_cost, "{model}");
        assert_eq!(record.tokens_source, "upstream");
    }
    // `/v1/generation` and the CSV keep the buckets apart.
    let (id, ..) = &ids[2];
    let generation: Value = reqwest::Client::new()
        .get(app.url(&format!("/v1/generation?id={id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(generation["data"]["cache_read_tokens"], 400_000);
    assert_eq!(generation["data"]["cache_write_tokens"], 300_000);
    assert_eq!(generation["data"]["cache_write_1h_tokens"], 200_000);
    let csv = client
        .get(app.url("/export/usage.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with(
        "time_utc,request_id,key,model,prompt_tokens,completion_tokens,cache_read_tokens,cache_write_tokens,cache_write_1h_tokens,tokens_source,"
    ));
    let line = csv.lines().find(|l| l.contains(id.as_str())).unwrap();
    assert!(
        line.contains(",1000000,1000,400000,300000,200000,upstream,"),
        "{line}"
    );
    let (status, page) = app
        .rpc(
            &client,
            "usage_page",
            &[
                ("from", ""),
                ("to", ""),
                ("key", ""),
                ("model", ""),
                ("page", "0"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let row = page["rows"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(id))
        .unwrap()
        .clone();
    assert_eq!(row["cache_write_1h_tokens"], 200_000);
    app.audit().await;
    app.stop().await;
}

/// A price deleted through the API or the CLI is not brought back by a
/// restart, from the config or from the built-in table; setting it again
/// is what brings it back.
async fn a_deleted_price_stays_deleted(backend: Backend) {
    let (mut app, _mock) = money_app(backend, 0.0).await;
    let price = |app: &TestApp, model: &str| {
        let request = app.admin(reqwest::Method::GET, &format!("/v1/pricing/{model}"));
        async move { request.send().await.unwrap().status() }
    };
    // One from the config, one from the built-in table.
    for model in ["openai:gpt-4o-mini", "openai:gpt-4o"] {
        assert_eq!(price(&app, model).await, StatusCode::OK, "{model}");
        let deleted = app
            .admin(reqwest::Method::DELETE, &format!("/v1/pricing/{model}"))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    }
    // And one through the CLI.
    let db = app.database().await;
    llm_gateway::cli::pricing(
        &db,
        app.clock().clone(),
        llm_gateway::cli::PricingCommand::Delete {
            model_key: "anthropic:claude-3-5-haiku".into(),
        },
    )
    .await
    .unwrap();
    db.close().await;
    app.restart(|_| {}).await;
    for model in [
        "openai:gpt-4o-mini",
        "openai:gpt-4o",
        "anthropic:claude-3-5-haiku",
    ] {
        assert_eq!(
            price(&app, model).await,
            StatusCode::NOT_FOUND,
            "{model} stays deleted"
        );
    }
    // Setting it again is explicit, and survives a restart.
    let set = app
        .admin(reqwest::Method::POST, "/v1/pricing")
        .json(
            &json!({"model_key": "openai:gpt-4o", "input_price_per_million": "2.5",
                      "output_price_per_million": "10"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::CREATED);
    app.restart(|_| {}).await;
    assert_eq!(price(&app, "openai:gpt-4o").await, StatusCode::OK);
    assert_eq!(
        price(&app, "openai:gpt-4o-mini").await,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

/// A request with an `Idempotency-Key`, repeated, is answered once: the
/// repeat gets the first answer (a stream replayed as one), is neither
/// billed nor sent upstream; 409 while the first is in flight, 422 for
/// another body; a failed first frees the key; a day later, or once the
/// user is deleted, it is gone.
async fn idempotent_requests_are_answered_once(backend: Backend) {
    let (app, mock) = money_app(backend.clone(), 5.0).await;
    let client = app.client();
    let (key, user_id) = customer(&app, &client, "retry@example.com").await;
    let send = |idem: &str, body: &Value| {
        reqwest::Client::new()
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("Idempotency-Key", idem)
            .json(body)
            .send()
    };
    let body = chat_body("once only");
    let first = send("order-1", &body).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_id = first.headers()["x-generation-id"].clone();
    let first_text = first.text().await.unwrap();
    let again = send("order-1", &body).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["x-generation-id"], first_id);
    assert_eq!(again.text().await.unwrap(), first_text, "the same answer");
    assert_eq!(mock_calls(&mock).await, 1, "sent upstream once");

    // The same key with another body.
    let other = send("order-1", &chat_body("something else")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = other.json().await.unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_reused");

    // A stream is replayed as a stream once the first has completed.
    let mut streamed = chat_body("a stream");
    streamed["stream"] = json!(true);
    let first = send("order-2", &streamed)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(first.ends_with("data: [DONE]\n\n"), "{first}");
    let replay = send("order-2", &streamed).await.unwrap();
    assert_eq!(replay.headers()["content-type"], "text/event-stream");
    assert_eq!(replay.text().await.unwrap(), first);
    assert_eq!(mock_calls(&mock).await, 2);

    // While the first is in flight: 409.
    let slow = chat_body("slow [mock first_byte_ms=800]");
    let in_flight = {
        let request = send("order-3", &slow);
        tokio::spawn(async move { request.await.unwrap().status() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = send("order-3", &slow).await.unwrap();
    assert_eq!(busy.status(), StatusCode::CONFLICT);
    let error: Value = busy.json().await.unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_in_use");
    assert_eq!(in_flight.await.unwrap(), StatusCode::OK);
    assert_eq!(
        send("order-3", &slow).await.unwrap().headers()["idempotent-replayed"],
        "true"
    );

    // A failure frees the key: the retry is sent anew.
    let failing =
        json!({"model": "openai:gpt-status-503", "messages": [{"role": "user", "content": "x"}]});
    let calls = mock_calls(&mock).await;
    assert_eq!(
        send("order-4", &failing).await.unwrap().status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        send("order-4", &failing).await.unwrap().status(),
        StatusCode::BAD_GATEWAY
    );
    assert!(
        mock_calls(&mock).await > calls + 1,
        "the retry reached the provider"
    );

    // Billed once per key: order-1, order-2 and order-3 answered, one record
    // each; the 422, the 409 and the two failures are recorded, unbilled;
    // the replays, not at all.
    let records = app.usage_records(7).await;
    let billed: Vec<_> = records.iter().filter(|r| r.status == 200).collect();
    assert_eq!(billed.len(), 3, "{records:#?}");
    assert!(records
        .iter()
        .filter(|r| r.status != 200)
        .all(|r| r.cost == 0));
    settled(&app, &user_id).await;

    // Across replicas (PostgreSQL): another gateway replays the answer.
    if matches!(backend, Backend::Postgres { .. }) {
        let (replica, server) = app.replica().await;
        let replayed = reqwest::Client::new()
            .post(format!("{replica}/v1/chat/completions"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "order-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(replayed.headers()["idempotent-replayed"], "true");
        assert_eq!(replayed.text().await.unwrap(), first_text);
        server.stop().await;
    }

    // A day later the key is free again.
    app.clock().advance(24 * 60 * 60 * 1000 + 1);
    let calls = mock_calls(&mock).await;
    let later = send("order-1", &body).await.unwrap();
    assert!(later.headers().get("idempotent-replayed").is_none());
    assert_eq!(mock_calls(&mock).await, calls + 1);

    // Stored answers go with their user.
    let db = app.database().await;
    let kept = format!("SELECT COUNT(*) FROM idempotent_requests WHERE user_id = '{user_id}'");
    assert!(count(&db, &kept).await > 0);
    let deleted = app
        .admin(reqwest::Method::DELETE, &format!("/v1/users/{user_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(count(&db, &kept).await, 0);
    // Expired answers are deleted by the maintenance sweep.
    execute(
        &db,
        "INSERT INTO idempotent_requests (scope, idem_key, user_id, endpoint, body_hash, \
        request_id, replica_id, state, created_at, expires_at) \
        VALUES ('master', 'old', 'u', 'chat.completions', 'h', 'r', 'rep', 'done', 0, 1)",
    )
    .await;
    llm_gateway::db::idempotency::prune(&db, llm_gateway::clock::Clock::default().now_ms())
        .await
        .unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM idempotent_requests WHERE idem_key = 'old'"
        )
        .await,
        0
    );
    db.close().await;
    app.stop().await;
}

/// Every usage record says how its tokens were known: reported upstream,
/// counted locally, cut by the client, by the provider, or by a shutdown.
async fn every_record_says_how_its_tokens_were_known(backend: Backend) {
    let mock = start_mock().await;
    let mut app = TestApp::start_with(backend, |c| {
        use_mock(c, &mock);
        c.signup_credit = 5.0;
        c.shutdown_grace_secs = 1;
        c.upstream.max_retries = 0;
    })
    .await;
    let client = app.client();
    let (key, _) = customer(&app, &client, "sources@example.com").await;
    let stream = |content: &str| {
        let mut body = chat_body(content);
        body["stream"] = json!(true);
        body["max_tokens"] = json!(500);
        body
    };
    let id_of = |response: &reqwest::Response| {
        response.headers()["x-generation-id"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let mut expected = Vec::new();

    let reported = app.chat(&key, &chat_body("plain")).await;
    expected.push((id_of(&reported), "upstream"));
    reported.text().await.unwrap();
    let unreported = app.chat(&key, &chat_body("quiet [mock no_usage]")).await;
    expected.push((id_of(&unreported), "local_count"));
    unreported.text().await.unwrap();
    let refused = app
        .chat(&key, &json!({"model": "gpt-4o-mini", "messages": []}))
        .await;
    expected.push((id_of(&refused), "local_count"));
    let cut = app
        .chat(&key, &stream("cut [mock disconnect_after=3]"))
        .await;
    expected.push((id_of(&cut), "upstream_cut"));
    cut.text().await.unwrap();
    // The client reads one chunk of a long stream and leaves.
    let left = app
        .chat(&key, &stream("long [mock chunks=200 delay_ms=20]"))
        .await;
    expected.push((id_of(&left), "client_aborted"));
    let mut chunks = left.bytes_stream();
    chunks.next().await.unwrap().unwrap();
    drop(chunks);
    // A stream still open when the gateway shuts down.
    let open = app
        .chat(&key, &stream("endless [mock chunks=500 delay_ms=20]"))
        .await;
    expected.push((id_of(&open), "shutdown"));
    let mut open = open.bytes_stream();
    open.next().await.unwrap().unwrap();
    let reader = tokio::spawn(async move { while open.next().await.is_some() {} });
    app.usage_records(5).await;
    app.stop_server().await;
    reader.await.unwrap();
    let database = app.database().await;
    let records = llm_gateway::db::usage::all(&database).await.unwrap();
    for (id, source) in &expected {
        let record = records
            .iter()
            .find(|r| &r.id == id)
            .unwrap_or_else(|| panic!("{id}"));
        assert_eq!(record.tokens_source, *source, "{id}");
    }
    database.close().await;
}

/// The audit passes on books kept by the gateway, gives the same figures
/// as text, JSON and CSV, and the command exits non-zero on each kind of
/// mismatch.
async fn the_audit_passes_and_catches_every_mismatch(backend: Backend) {
    let (app, _mock) = money_app(backend, 0.05).await;
    let client = app.client();
    let (key, user_id) = customer(&app, &client, "audited@example.com").await;
    for content in ["one", "two [mock prompt_tokens=500000]"] {
        assert_eq!(
            app.chat(&key, &chat_body(content)).await.status(),
            StatusCode::OK
        );
    }
    app.usage_records(2).await;
    settled(&app, &user_id).await;
    let report = app.audit().await;
    let cost = (1 + 500_000) * INPUT_NANOS + 2 * 6 * OUTPUT_NANOS;
    assert_eq!(report.totals.requests, 2);
    assert_eq!(report.totals.user_price, cost);
    assert_eq!(
        report.totals.user_price - report.totals.provider_cost,
        report.totals.margin
    );
    assert_eq!(
        report.totals.provider_cost * 12 / 10,
        report.totals.margin * 6
    );
    assert!(report.reconciliation.iter().all(|r| r.provider == "openai"));

    let audit = |format: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
            .arg("audit")
            .args(format)
            .args(["--database-url", &app.db.url])
            .env_remove("GATEWAY_CONFIG")
            .env_remove("GATEWAY_DATABASE_URL")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    let (passed, json_out) = audit(&["--json"]);
    assert!(passed, "{json_out}");
    let parsed: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(parsed["totals"]["user_price"], json!(cost));
    let (passed, csv) = audit(&["--csv"]);
    assert!(passed);
    let csv_total: i64 = csv
        .lines()
        .skip(1)
        .map(|l| {
            let price = l.split(',').nth(9).unwrap();
            llm_gateway::billing::money::parse_usd(price).unwrap()
        })
        .sum();
    assert_eq!(csv_total, cost, "the CSV gives the same figures");
    let (passed, text) = audit(&[]);
    assert!(passed && text.contains("All checks passed"), "{text}");

    // Each kind of mismatch fails the audit.
    let db = app.database().await;
    let tamper = [
        ("UPDATE users SET balance = balance + 1 WHERE email = 'audited@example.com'",
         "UPDATE users SET balance = balance - 1 WHERE email = 'audited@example.com'", "balance_vs_ledger"),
        ("UPDATE usage_records SET cost = cost + 1 WHERE status = 200",
         "UPDATE usage_records SET cost = cost - 1 WHERE status = 200", "cost_vs_debit"),
        ("INSERT INTO budget_holds (request_id, scope, amount, expires_at) VALUES ('gone', 'key:x', 5, 1)",
         "DELETE FROM budget_holds WHERE request_id = 'gone'", "stale_hold"),
        ("UPDATE debts SET amount = amount + 7", "UPDATE debts SET amount = amount - 7", "debt_record"),
    ];
    for (break_it, mend_it, check) in tamper {
        execute(&db, break_it).await;
        let (passed, text) = audit(&[]);
        assert!(!passed, "{check} must fail the audit");
        assert!(text.contains(check), "{text}");
        execute(&db, mend_it).await;
    }
    let (passed, _) = audit(&[]);
    assert!(passed, "mended");
    // The admin API gives the same report.
    let api: Value = app
        .admin(reqwest::Method::GET, "/v1/reconciliation")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["passed"], true);
    assert_eq!(api["totals"]["user_price"], json!(cost));
    db.close().await;
    app.stop().await;
}

/// The CSV export streams every matching row: past the 100,000 it used to
/// stop at.
async fn exports_have_no_ceiling(backend: Backend) {
    let (app, _mock) = money_app(backend, 0.0).await;
    let client = app.client();
    let (_, user_id) = customer(&app, &client, "exporter@example.com").await;
    let rows = 100_050;
    let db = app.database().await;
    let started = Instant::now();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('req_{i:08}', '{user_id}', 'chat.completions', 'openai', 'gpt-4o-mini', 10, 5, 200, 12, {}, 42, 'upstream')",
                    1_700_000_000_000i64 + *i as i64
                )
            })
            .collect();
        execute(
            &db,
            &format!(
                "INSERT INTO usage_records (id, user_id, endpoint, provider, model, prompt_tokens, \
                 completion_tokens, status, latency_ms, created_at, cost, tokens_source) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
    }
    eprintln!("seeded {rows} rows in {:?}", started.elapsed());
    db.close().await;
    let response = client
        .get(app.url("/export/usage.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut lines = 0usize;
    let mut last = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        last = chunk.to_vec();
    }
    assert_eq!(lines, rows + 1, "every row and the header");
    let tail = String::from_utf8_lossy(&last);
    assert!(tail.contains("req_00000000"), "oldest last: {tail}");
    app.stop().await;
}

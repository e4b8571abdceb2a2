//! The operator's REST API: master-key auth, users, credits, keys, budgets
//! and pricing, with any-llm-gateway's documented calls, on both databases.
#![cfg(feature = "ssr")]

mod common;

use common::{send, start_mock, use_mock, Backend, TestApp};
use llm_gateway::db::{ledger, Db};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    admin_routes_need_the_master_key,
    any_llm_gateway_calls_work_unchanged,
    users_are_created_paged_updated_and_soft_deleted,
    credits_are_ledger_adjustments_that_never_go_negative,
    keys_carry_models_expiry_and_activity,
    pricing_changes_apply_from_the_next_request,
    budgets_validate_and_attach_to_users,
);

async fn app(backend: Backend) -> TestApp {
    let mock = start_mock().await;
    TestApp::start_with(backend, |c| use_mock(c, &mock)).await
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "one two three"}]})
}

/// Asserts OpenAI's error shape and returns the error's code.
fn error_code(body: &Value) -> &str {
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    error["code"].as_str().unwrap_or_default()
}

async fn admin_routes_need_the_master_key(backend: Backend) {
    let app = app(backend).await;
    let user_key = app.user_key("plain@example.com").await;
    let routes = [
        (Method::POST, "/v1/users"),
        (Method::GET, "/v1/users"),
        (Method::GET, "/v1/users/someone"),
        (Method::PATCH, "/v1/users/someone"),
        (Method::DELETE, "/v1/users/someone"),
        (Method::GET, "/v1/users/someone/usage"),
        (Method::POST, "/v1/users/someone/credits"),
        (Method::POST, "/v1/keys"),
        (Method::GET, "/v1/keys"),
        (Method::GET, "/v1/keys/k"),
        (Method::PATCH, "/v1/keys/k"),
        (Method::DELETE, "/v1/keys/k"),
        (Method::POST, "/v1/budgets"),
        (Method::GET, "/v1/budgets"),
        (Method::GET, "/v1/budgets/b"),
        (Method::PATCH, "/v1/budgets/b"),
        (Method::DELETE, "/v1/budgets/b"),
        (Method::POST, "/v1/pricing"),
        (Method::DELETE, "/v1/pricing/openai:gpt-4o-mini"),
        (Method::GET, "/v1/pricing/history"),
        (Method::GET, "/api/v1/users"),
    ];
    let client = reqwest::Client::new();
    for (method, path) in routes {
        for credential in [None, Some(user_key.as_str()), Some("wrong-master-key")] {
            let mut request = client
                .request(method.clone(), app.url(path))
                .json(&json!({}));
            if let Some(credential) = credential {
                request = request.header("X-AnyLLM-Key", format!("Bearer {credential}"));
            }
            let (status, body) = send(request).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {credential:?}"
            );
            assert_eq!(error_code(&body), "invalid_api_key");
        }
    }
    // Anyone may read what users pay; the cost and margin need the master key.
    let (status, prices) = send(client.get(app.url("/v1/pricing"))).await;
    assert_eq!(status, StatusCode::OK);
    let mini = prices
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model_key"] == "openai:gpt-4o-mini")
        .unwrap();
    assert_eq!(mini["user_input_price_per_million"], 0.18);
    assert!(
        mini.get("input_price_per_million").is_none() && mini.get("margin_percent").is_none(),
        "{mini}"
    );
    let (_, mini) = send(app.admin(Method::GET, "/v1/pricing/openai:gpt-4o-mini")).await;
    assert_eq!(mini["input_price_per_million"], 0.15);
    assert_eq!(mini["effective_margin_percent"], 20.0);
    app.stop().await;
}

async fn any_llm_gateway_calls_work_unchanged(backend: Backend) {
    let app = app(backend).await;
    let master = app.config.master_key.clone().unwrap();
    let client = reqwest::Client::new();
    // curl -X POST $URL/v1/keys -H "Content-Type: application/json" \
    //   -H "X-AnyLLM-Key: Bearer $MASTER" -d '{"key_name":"demo"}'
    let response = client
        .post(app.url("/v1/keys"))
        .header("Content-Type", "application/json")
        .header("X-AnyLLM-Key", format!("Bearer {master}"))
        .body(r#"{"key_name":"demo"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("llm_sk_"), "{created}");
    assert_eq!(created["key_name"], "demo");
    assert!(created["id"].as_str().unwrap().starts_with("key_"));
    let user_id = created["user_id"].as_str().unwrap().to_string();

    // The listing never shows plaintext.
    let (_, keys) = send(app.admin(Method::GET, "/v1/keys")).await;
    let listed = keys.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("key").is_none());
    assert!(!listed[0].to_string().contains(&key));

    // The key's user has no credit yet: 402, not a failure of the key.
    let response = client
        .post(app.url("/v1/chat/completions"))
        .header("X-AnyLLM-Key", format!("Bearer {key}"))
        .json(&hello("openai:gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let (status, _) = send(
        app.admin(Method::POST, &format!("/v1/users/{user_id}/credits"))
            .json(&json!({"amount": "1.00"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let response = client
        .post(app.url("/v1/chat/completions"))
        .header("X-AnyLLM-Key", format!("Bearer {key}"))
        .json(&hello("openai:gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // curl -X POST $URL/v1/users -H "X-AnyLLM-Key: Bearer $MASTER" \
    //   -d '{"user_id": "user-123", "alias": "Alice"}', then a chat with "user".
    let (status, user) = send(
        client
            .post(app.url("/v1/users"))
            .header("X-AnyLLM-Key", format!("Bearer {master}"))
            .json(&json!({"user_id": "user-123", "alias": "Alice"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(user["alias"], "Alice");
    send(
        app.admin(Method::POST, "/v1/users/user-123/credits")
            .json(&json!({"amount": 2})),
    )
    .await;
    let mut body = hello("openai:gpt-4o-mini");
    body["user"] = json!("user-123");
    let response = client
        .post(app.url("/v1/chat/completions"))
        .header("X-AnyLLM-Key", format!("Bearer {master}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let records = app.usage_records(3).await;
    assert!(records
        .iter()
        .any(|r| r.user_id == "user-123" && r.status == 200));
    app.stop().await;
}

async fn users_are_created_paged_updated_and_soft_deleted(backend: Backend) {
    let app = app(backend).await;
    for i in 0..5 {
        let (status, _) = send(app.admin(Method::POST, "/v1/users").json(
            &json!({"user_id": format!("u{i}"), "email": format!("U{i}@Example.com"),
                              "metadata": {"team": i}}),
        ))
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": "u1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "conflict");
    let (status, _) = send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"email": "u2@example.com"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "emails are unique, case-insensitively"
    );
    let (status, body) = send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": "bad id"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "user_id");
    let (status, body) = send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"blocked": "yes"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "blocked");
    let (status, _) = send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": "u9", "budget_id": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Paging.
    let (_, page) = send(app.admin(Method::GET, "/v1/users?skip=1&limit=2")).await;
    let ids: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["u1", "u2"]);
    let (status, _) = send(app.admin(Method::GET, "/v1/users?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(app.admin(Method::GET, "/v1/users?skip=-1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, found) = send(app.admin(Method::GET, "/v1/users?search=u3@")).await;
    assert_eq!(found.as_array().unwrap().len(), 1);

    // Show, patch (absent fields stay, null clears), block.
    let (_, user) = send(app.admin(Method::GET, "/v1/users/u3")).await;
    assert_eq!(user["email"], "u3@example.com");
    assert_eq!(user["metadata"]["team"], 3);
    let (status, user) = send(
        app.admin(Method::PATCH, "/v1/users/u3")
            .json(&json!({"alias": "Three", "metadata": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["alias"], "Three");
    assert_eq!(user["email"], "u3@example.com");
    assert_eq!(user["metadata"], json!({}));
    let (status, _) = send(
        app.admin(Method::PATCH, "/v1/users/u3")
            .json(&json!({"email": "u4@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A key of u3 works until u3 is blocked, and again once unblocked.
    send(
        app.admin(Method::POST, "/v1/users/u3/credits")
            .json(&json!({"amount": "1"})),
    )
    .await;
    let (_, created) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": "u3"})),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(
        app.chat(&key, &hello("gpt-4o-mini")).await.status(),
        StatusCode::OK
    );
    let (_, user) = send(
        app.admin(Method::PATCH, "/v1/users/u3")
            .json(&json!({"blocked": true})),
    )
    .await;
    assert_eq!(user["blocked"], true);
    let response = app.chat(&key, &hello("gpt-4o-mini")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&response.json().await.unwrap()), "user_blocked");
    let mut as_master = hello("gpt-4o-mini");
    as_master["user"] = json!("u3");
    let response = reqwest::Client::new()
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(app.config.master_key.as_deref().unwrap())
        .json(&as_master)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "the master key cannot spend for a blocked user"
    );
    send(
        app.admin(Method::PATCH, "/v1/users/u3")
            .json(&json!({"blocked": false})),
    )
    .await;
    assert_eq!(
        app.chat(&key, &hello("gpt-4o-mini")).await.status(),
        StatusCode::OK
    );

    // Usage of the user, newest first: the calls refused for a blocked user
    // are refused before they are metered, so two records.
    assert_eq!(app.usage_records(2).await.len(), 2);
    let (status, usage) = send(app.admin(Method::GET, "/v1/users/u3/usage?limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    let data = usage["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["status"], 200);

    // Soft delete: gone from the API, keys revoked, record kept.
    let (status, _) = send(app.admin(Method::DELETE, "/v1/users/u3")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = send(app.admin(Method::GET, "/v1/users/u3")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    assert_eq!(
        app.chat(&key, &hello("gpt-4o-mini")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, listed) = send(app.admin(Method::GET, "/v1/keys?user_id=u3")).await;
    assert_eq!(listed[0]["is_active"], false);
    let (status, _) = send(app.admin(Method::DELETE, "/v1/users/u3")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": "u3"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a deleted id is not reused");
    app.stop().await;
}

async fn credits_are_ledger_adjustments_that_never_go_negative(backend: Backend) {
    let app = app(backend).await;
    send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": "payer"})),
    )
    .await;
    let credit = |amount: Value| {
        app.admin(Method::POST, "/v1/users/payer/credits")
            .json(&json!({"amount": amount, "note": "goodwill"}))
    };
    let (status, body) = send(credit(json!("12.50"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["balance_nanos"], 12_500_000_000i64);
    assert_eq!(body["balance"], 12.5);
    let (status, body) = send(credit(json!("-2.25"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["balance_nanos"], 10_250_000_000i64);
    let (status, body) = send(credit(json!("-10.250000001"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "amount");
    for bad in [
        json!("12,50"),
        json!("abc"),
        json!(null),
        json!("0"),
        json!("1.0000000001"),
    ] {
        let (status, body) = send(credit(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["param"], "amount", "{bad}");
    }
    let (status, _) = send(
        app.admin(Method::POST, "/v1/users/nobody/credits")
            .json(&json!({"amount": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The credit reaches a user with requests in flight at once, and the
    // ledger explains the balance.
    let (_, created) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": "payer"})),
    )
    .await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        app.chat(key, &hello("gpt-4o-mini")).await.status(),
        StatusCode::OK
    );
    app.usage_records(1).await;
    send(credit(json!("1"))).await;
    let db = Db::connect(&app.db.url).await.unwrap();
    for _ in 0..200 {
        let (balance, reserved) = ledger::balance(&db, "payer").await.unwrap().unwrap();
        let sum = ledger::ledger_sum(&db, "payer").await.unwrap();
        let leased = llm_gateway::db::leases::total(&db, "payer").await.unwrap();
        if reserved == leased && balance == sum && balance < 11_250_000_000 {
            let entries = ledger::entries(&db, "payer", 10, 0).await.unwrap();
            let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(kinds, ["adjustment", "usage", "adjustment", "adjustment"]);
            assert_eq!(entries[0].note.as_deref(), Some("goodwill"));
            db.close().await;
            app.stop().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the ledger never matched the balance");
}

async fn keys_carry_models_expiry_and_activity(backend: Backend) {
    let app = app(backend).await;
    send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": "dev"})),
    )
    .await;
    send(
        app.admin(Method::POST, "/v1/users/dev/credits")
            .json(&json!({"amount": "5"})),
    )
    .await;
    let in_an_hour = app.clock().now_ms() / 1000 + 3600;
    let (status, created) = send(app.admin(Method::POST, "/v1/keys").json(&json!({
        "key_name": "ci", "user_id": "dev", "allowed_models": ["openai:gpt-4o-mini", "gemini:*"],
        "expires_at": in_an_hour, "metadata": {"env": "ci"}, "max_budget": "2.5",
        "budget_duration": "30d", "rpm_limit": 100
    })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["budget_duration_sec"], 30 * 86_400);
    assert_eq!(created["max_budget"], 2.5);
    assert_eq!(created["metadata"]["env"], "ci");
    assert_eq!(created["is_active"], true);

    // Allowed models: the others are 403 model_not_allowed, and unlisted.
    assert_eq!(
        app.chat(&key, &hello("openai:gpt-4o-mini")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.chat(&key, &hello("gemini:gemini-2.0-flash"))
            .await
            .status(),
        StatusCode::OK
    );
    let response = app.chat(&key, &hello("anthropic:claude-3-5-haiku")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        error_code(&response.json().await.unwrap()),
        "model_not_allowed"
    );
    let models: Value = reqwest::Client::new()
        .get(app.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"openai:gpt-4o-mini") && ids.contains(&"gemini:gemini-2.0-flash"));
    assert!(
        ids.iter()
            .all(|id| id.starts_with("gemini:") || *id == "openai:gpt-4o-mini"),
        "{ids:?}"
    );

    // The key describes its own limits.
    let info: Value = reqwest::Client::new()
        .get(app.url("/v1/key"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["data"]["limit"], 2.5, "{info}");
    assert!(info["data"]["limit_remaining"].as_f64().unwrap() <= 2.5);
    assert!(info["data"]["limit_resets_at"].is_i64());
    assert_eq!(info["data"]["rate_limit"]["requests_per_minute"], 100);
    assert_eq!(info["data"]["allowed_models"][1], "gemini:*");

    // Validation.
    for (body, param) in [
        (json!({"user_id": "dev", "expires_at": 1}), "expires_at"),
        (
            json!({"user_id": "dev", "expires_at": "next week"}),
            "expires_at",
        ),
        (json!({"user_id": "dev", "rpm_limit": 0}), "rpm_limit"),
        (json!({"user_id": "dev", "max_budget": "-1"}), "max_budget"),
        (
            json!({"user_id": "dev", "budget_duration": "soon"}),
            "budget_duration",
        ),
        (json!({"user_id": "dev", "metadata": [1]}), "metadata"),
        (json!({"user_id": "dev", "key_name": ""}), "key_name"),
        (
            json!({"user_id": "dev", "allowed_models": "gpt-4o"}),
            "allowed_models",
        ),
    ] {
        let (status, error) = send(app.admin(Method::POST, "/v1/keys").json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    // A user_id with no user gets one, as any-llm-gateway does.
    let (status, created) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": "ghost"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["user_id"], "ghost");
    let (status, _) = send(app.admin(Method::GET, "/v1/users/ghost")).await;
    assert_eq!(status, StatusCode::OK);
    // A refused key with no user_id leaves no user made for it behind.
    let user_ids = || async {
        let (_, users) = send(app.admin(Method::GET, "/v1/users?limit=100")).await;
        let ids: Vec<Value> = users
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["user_id"].clone())
            .collect();
        ids
    };
    let users_before = user_ids().await;
    for body in [json!({"tpm_limit": -5}), json!({"allowed_models": [""]})] {
        let (status, _) = send(app.admin(Method::POST, "/v1/keys").json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(user_ids().await, users_before, "no orphan user");
    let (status, _) = send(app.admin(Method::GET, "/v1/keys/key_nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = send(
        app.admin(Method::POST, "/v1/keys")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_request");

    // Expiry: 403 once the clock passes it.
    app.clock().advance(3601 * 1000);
    let response = app.chat(&key, &hello("gpt-4o-mini")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&response.json().await.unwrap()), "key_expired");
    let (_, shown) = send(app.admin(Method::GET, &format!("/v1/keys/{id}"))).await;
    assert_eq!(shown["is_active"], false);

    // PATCH: a new expiry revives it; is_active false revokes it; null clears.
    let later = app.clock().now_ms() / 1000 + 3600;
    let (status, patched) = send(
        app.admin(Method::PATCH, &format!("/v1/keys/{id}"))
            .json(&json!({"expires_at": later, "allowed_models": null, "key_name": "ci-2"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["allowed_models"], Value::Null);
    assert_eq!(patched["key_name"], "ci-2");
    assert_eq!(patched["rpm_limit"], 100, "absent fields keep their value");
    assert_eq!(
        app.chat(&key, &hello("anthropic:claude-3-5-haiku"))
            .await
            .status(),
        StatusCode::OK
    );
    send(
        app.admin(Method::PATCH, &format!("/v1/keys/{id}"))
            .json(&json!({"is_active": false})),
    )
    .await;
    assert_eq!(
        app.chat(&key, &hello("gpt-4o-mini")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    send(
        app.admin(Method::PATCH, &format!("/v1/keys/{id}"))
            .json(&json!({"is_active": true})),
    )
    .await;
    assert_eq!(
        app.chat(&key, &hello("gpt-4o-mini")).await.status(),
        StatusCode::OK
    );

    // The key's budget spend shows once the writer settles the calls, and
    // DELETE revokes.
    let mut shown = Value::Null;
    for _ in 0..400 {
        shown = send(app.admin(Method::GET, &format!("/v1/keys/{id}")))
            .await
            .1;
        if shown["spend"].as_f64().unwrap() > 0.0 && shown["last_used_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(shown["spend"].as_f64().unwrap() > 0.0, "{shown}");
    assert!(shown["last_used_at"].is_string(), "{shown}");
    let (status, _) = send(app.admin(Method::DELETE, &format!("/v1/keys/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.chat(&key, &hello("gpt-4o-mini")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

async fn pricing_changes_apply_from_the_next_request(backend: Backend) {
    let app = app(backend).await;
    send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": "buyer"})),
    )
    .await;
    send(
        app.admin(Method::POST, "/v1/users/buyer/credits")
            .json(&json!({"amount": "5"})),
    )
    .await;
    let (_, created) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": "buyer"})),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_string();

    // An unpriced model cannot be called, until it has a price.
    let response = app.chat(&key, &hello("groq:mixtral-8x7b")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (status, price) = send(app.admin(Method::POST, "/v1/pricing").json(&json!({
        "model_key": "groq:mixtral-8x7b", "input_price_per_million": 1,
        "output_price_per_million": "2.5", "margin_percent": 10
    })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{price}");
    assert_eq!(price["user_input_price_per_million"], 1.1);
    assert_eq!(price["user_output_price_per_million"], 2.75);
    let response = app.chat(&key, &hello("groq:mixtral-8x7b")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    // 3 prompt tokens at 1100 nano-USD, 6 completion tokens at 2750.
    let expected = (3 * 1100 + 6 * 2750) as f64 / 1e9;
    assert!(
        (body["usage"]["cost"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{body}"
    );
    // A bare name resolves once priced.
    assert_eq!(
        app.chat(&key, &hello("mixtral-8x7b")).await.status(),
        StatusCode::OK
    );

    // A new price applies to the next request.
    send(app.admin(Method::POST, "/v1/pricing").json(&json!({
        "model_key": "groq:mixtral-8x7b", "input_price_per_million": 0,
        "output_price_per_million": 0
    })))
    .await;
    let body: Value = app
        .chat(&key, &hello("groq:mixtral-8x7b"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["usage"]["cost"], 0.0);

    // Validation and history.
    for (body, param) in [
        (
            json!({"model_key": "no-provider", "input_price_per_million": 1, "output_price_per_million": 1}),
            "model_key",
        ),
        (
            json!({"model_key": "a:b", "input_price_per_million": -1, "output_price_per_million": 1}),
            "input_price_per_million",
        ),
        (
            json!({"model_key": "a:b", "input_price_per_million": 1, "output_price_per_million": 1, "margin_percent": 1.234}),
            "margin_percent",
        ),
        (
            json!({"model_key": "a:b", "input_price_per_million": 1}),
            ".",
        ),
    ] {
        let (status, error) = send(app.admin(Method::POST, "/v1/pricing").json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        if param != "." {
            assert_eq!(error["error"]["param"], param, "{error}");
        }
    }
    let (status, _) = send(app.admin(Method::DELETE, "/v1/pricing/groq:mixtral-8x7b")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.chat(&key, &hello("groq:mixtral-8x7b")).await.status(),
        StatusCode::FORBIDDEN
    );
    let (status, _) = send(app.admin(Method::DELETE, "/v1/pricing/groq:mixtral-8x7b")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, history) = send(app.admin(
        Method::GET,
        "/v1/pricing/history?model_key=groq:mixtral-8x7b",
    ))
    .await;
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "set", "set"]);
    assert_eq!(history[2]["input_price_per_million"], 1.0);
    app.stop().await;
}

async fn budgets_validate_and_attach_to_users(backend: Backend) {
    let app = app(backend).await;
    let (status, budget) = send(app.admin(Method::POST, "/v1/budgets").json(&json!({
        "budget_id": "team", "max_budget": "0.00001", "budget_duration_sec": 3600
    })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{budget}");
    assert_eq!(budget["max_budget_nanos"], 10_000);
    let (status, _) = send(app.admin(Method::POST, "/v1/budgets").json(&json!({
        "budget_id": "team", "max_budget": 1
    })))
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    for body in [
        json!({"max_budget": 1, "budget_duration_sec": 60, "period": "daily"}),
        json!({"max_budget": 1, "period": "hourly"}),
        json!({"max_budget": -1}),
        json!({"max_budget": 1, "budget_duration_sec": 0}),
    ] {
        let (status, _) = send(app.admin(Method::POST, "/v1/budgets").json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    // A user on the budget can spend 10,000 nano-USD an hour: one request
    // of 3 + 6 tokens costs 4,860, and reserves more than the rest after it.
    send(
        app.admin(Method::POST, "/v1/users")
            .json(&json!({"user_id": "member", "budget_id": "team"})),
    )
    .await;
    send(
        app.admin(Method::POST, "/v1/users/member/credits")
            .json(&json!({"amount": "5"})),
    )
    .await;
    let (_, created) = send(
        app.admin(Method::POST, "/v1/keys")
            .json(&json!({"user_id": "member"})),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_string();
    let mut small = hello("gpt-4o-mini");
    small["max_tokens"] = json!(6);
    assert_eq!(app.chat(&key, &small).await.status(), StatusCode::OK);
    app.usage_records(1).await;
    let mut spent = 0.0;
    for _ in 0..100 {
        let (_, user) = send(app.admin(Method::GET, "/v1/users/member")).await;
        spent = user["spend"].as_f64().unwrap();
        if spent > 0.0 {
            assert!(user["next_budget_reset_at"].is_string(), "{user}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!((spent - 4.86e-6).abs() < 1e-15, "{spent}");
    let response = app.chat(&key, &small).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error_code(&error), "budget_exceeded");

    // The reset shows in the API without a request, then spending resumes.
    app.clock().advance(3600 * 1000);
    let (_, user) = send(app.admin(Method::GET, "/v1/users/member")).await;
    assert_eq!(user["spend"], 0.0);
    assert_eq!(app.chat(&key, &small).await.status(), StatusCode::OK);

    // Raising the budget applies from the next request; deleting detaches it.
    let (status, _) = send(
        app.admin(Method::PATCH, "/v1/budgets/team")
            .json(&json!({"max_budget": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.chat(&key, &small).await.status(), StatusCode::OK);
    let (_, listed) = send(app.admin(Method::GET, "/v1/budgets")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (status, _) = send(app.admin(Method::DELETE, "/v1/budgets/team")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, user) = send(app.admin(Method::GET, "/v1/users/member")).await;
    assert_eq!(user["budget_id"], Value::Null);
    let (status, _) = send(app.admin(Method::GET, "/v1/budgets/team")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

//! `/openapi.json` describes the real API: every documented operation is
//! called here, and every answer is checked against the schema the document
//! gives for its status, both ways (no missing required field, no field the
//! document does not know).
#![cfg(feature = "ssr")]

mod common;

use common::{start_mock, use_mock, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Checks `value` against `schema`, collecting what does not match.
fn check(spec: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &spec["components"]["schemas"][name];
        assert!(target.is_object(), "dangling reference {reference}");
        return check(spec, target, value, at, errors);
    }
    for combinator in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(combinator).and_then(Value::as_array) {
            let fits = options.iter().any(|option| {
                let mut inner = Vec::new();
                check(spec, option, value, at, &mut inner);
                inner.is_empty()
            });
            if !fits {
                errors.push(format!("{at}: {value} matches no {combinator} option"));
            }
            return;
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            check(spec, part, value, at, errors);
        }
        return;
    }
    if let Some(declared) = schema.get("type") {
        let types: Vec<&str> = match declared {
            Value::String(t) => vec![t.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let fits = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !fits {
            errors.push(format!("{at}: {actual} where the document says {types:?}"));
            return;
        }
    }
    if let (Some(properties), Some(object)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                errors.push(format!("{at}: required `{name}` is missing"));
            }
        }
        let open = schema
            .get("additionalProperties")
            .is_some_and(|extra| extra != &Value::Bool(false));
        for (name, field) in object {
            match properties.get(name) {
                Some(field_schema) => {
                    check(spec, field_schema, field, &format!("{at}.{name}"), errors)
                }
                None if open => {}
                None => errors.push(format!("{at}: `{name}` is not in the document")),
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(spec, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Calls the gateway and checks the answer against the document.
struct Checker {
    app: TestApp,
    spec: Value,
    called: BTreeSet<(String, String)>,
}

impl Checker {
    /// Sends `request` for the documented operation `method template`, expects
    /// `status`, and checks the body against the document. Returns the body.
    async fn call(
        &mut self,
        method: Method,
        template: &str,
        request: reqwest::RequestBuilder,
        status: StatusCode,
    ) -> Value {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{method} {template}");
        let text = response.text().await.unwrap();
        let operation = &self.spec["paths"][template][method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        let documented = &operation["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{method} {template}: {status} is not documented"
        );
        self.called
            .insert((method.as_str().to_lowercase(), template.to_string()));
        if status == StatusCode::NO_CONTENT {
            assert!(text.is_empty());
            return Value::Null;
        }
        let body: Value = serde_json::from_str(&text).unwrap();
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template}: {status} has no schema"
        );
        let mut errors = Vec::new();
        check(&self.spec, schema, &body, "body", &mut errors);
        assert!(
            errors.is_empty(),
            "{method} {template} {status}:\n{}",
            errors.join("\n")
        );
        body
    }

    fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.app.admin(method, path)
    }
}

/// Calls each of the MVP's `/api` routes, as a browser with cookies would.
async fn mvp_routes(c: &mut Checker) {
    let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
    let browser = c.app.client();
    let base = c.app.base.clone();
    let url = |path: &str| format!("{base}{path}");
    let account = json!({"email": "mvp@example.com", "password": "correct horse battery"});
    let signup = url("/api/auth/signup");
    let user = c
        .call(
            post.clone(),
            "/api/auth/signup",
            browser.post(&signup).json(&account),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(user["email"], "mvp@example.com");
    c.call(
        post.clone(),
        "/api/auth/signup",
        c.app.client().post(&signup).json(&account),
        StatusCode::CONFLICT,
    )
    .await;
    c.call(
        get.clone(),
        "/api/auth/me",
        browser.get(url("/api/auth/me")),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/api/auth/me",
        reqwest::Client::new().get(url("/api/auth/me")),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let created = c
        .call(
            post.clone(),
            "/api/keys",
            browser
                .post(url("/api/keys"))
                .json(&json!({"name": "docs"})),
            StatusCode::CREATED,
        )
        .await;
    c.call(
        post.clone(),
        "/api/keys",
        browser.post(url("/api/keys")).json(&json!({"name": ""})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    c.call(
        post.clone(),
        "/api/keys",
        browser
            .post(url("/api/keys"))
            .header("origin", "https://evil.example")
            .json(&json!({"name": "csrf"})),
        StatusCode::FORBIDDEN,
    )
    .await;
    c.call(
        get.clone(),
        "/api/keys",
        browser.get(url("/api/keys")),
        StatusCode::OK,
    )
    .await;
    let charged = c
        .call(
            post.clone(),
            "/api/balance/charge",
            browser
                .post(url("/api/balance/charge"))
                .json(&json!({"amount": 5})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(charged["balance"], 15_000_000_000i64);
    // Stripe's webhook is there only with Stripe payments.
    c.call(
        post.clone(),
        "/webhooks/stripe",
        reqwest::Client::new()
            .post(url("/webhooks/stripe"))
            .header("stripe-signature", "t=1,v1=00")
            .body("{}"),
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        get.clone(),
        "/api/balance",
        browser.get(url("/api/balance")),
        StatusCode::OK,
    )
    .await;

    // A request, so the usage answer has a row to check.
    let secret = created["secret"].as_str().unwrap();
    let chat =
        json!({"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(c.app.chat(secret, &chat).await.status(), StatusCode::OK);
    let mut rows = 0;
    for _ in 0..200 {
        let usage: Value = browser
            .get(url("/api/usage"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rows = usage["rows"]["items"].as_array().map_or(0, Vec::len);
        if rows > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(rows, 1);
    c.call(
        get.clone(),
        "/api/usage",
        browser.get(url("/api/usage?model=openai:gpt-4o-mini")),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/api/usage",
        browser.get(url("/api/usage?from=soon")),
        StatusCode::BAD_REQUEST,
    )
    .await;

    let key_path = url(&format!(
        "/api/keys/{}",
        created["key"]["id"].as_str().unwrap()
    ));
    let limits = c
        .call(
            Method::PATCH,
            "/api/keys/{id}",
            browser
                .patch(&key_path)
                .json(&json!({"monthly_cap": "20", "allowed_models": ["openai:*"]})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(limits["limits"]["monthly_cap"], 20_000_000_000i64);
    c.call(
        Method::PATCH,
        "/api/keys/{id}",
        browser
            .patch(&key_path)
            .json(&json!({"expires_at": "yesterday"})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    c.call(
        delete.clone(),
        "/api/keys/{id}",
        browser.delete(&key_path),
        StatusCode::NO_CONTENT,
    )
    .await;
    c.call(
        Method::PATCH,
        "/api/keys/{id}",
        browser.patch(&key_path).json(&json!({"monthly_cap": null})),
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        delete.clone(),
        "/api/keys/{id}",
        browser.delete(&key_path),
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        post.clone(),
        "/api/auth/signout",
        browser.post(url("/api/auth/signout")),
        StatusCode::NO_CONTENT,
    )
    .await;
    let signin = url("/api/auth/signin");
    c.call(
        post.clone(),
        "/api/auth/signin",
        browser.post(&signin).json(&account),
        StatusCode::OK,
    )
    .await;
    c.call(
        post,
        "/api/auth/signin",
        browser
            .post(&signin)
            .json(&json!({"email": "mvp@example.com", "password": "wrong password"})),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_matches_every_answer() {
    let mock = start_mock().await;
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        use_mock(c, &mock);
        c.payments.mode = llm_gateway::config::PaymentMode::Test;
    })
    .await;
    let spec: Value = reqwest::get(app.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(spec["info"]["title"], "llm-gateway");
    let docs = reqwest::get(app.url("/docs")).await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs
        .text()
        .await
        .unwrap()
        .contains("SwaggerUIBundle({ url: \"/openapi.json\""));
    let mut c = Checker {
        app,
        spec,
        called: BTreeSet::new(),
    };
    let (get, post, patch, delete) = (Method::GET, Method::POST, Method::PATCH, Method::DELETE);

    // Users, credit, budgets.
    let budget = json!({"budget_id": "b1", "max_budget": "25", "period": "monthly"});
    c.call(
        post.clone(),
        "/v1/budgets",
        c.admin(post.clone(), "/v1/budgets").json(&budget),
        StatusCode::CREATED,
    )
    .await;
    c.call(
        post.clone(),
        "/v1/budgets",
        c.admin(post.clone(), "/v1/budgets").json(&budget),
        StatusCode::CONFLICT,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/budgets",
        c.admin(get.clone(), "/v1/budgets"),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/budgets/{budget_id}",
        c.admin(get.clone(), "/v1/budgets/b1"),
        StatusCode::OK,
    )
    .await;
    c.call(
        patch.clone(),
        "/v1/budgets/{budget_id}",
        c.admin(patch.clone(), "/v1/budgets/b1")
            .json(&json!({"max_budget": 30})),
        StatusCode::OK,
    )
    .await;
    let user = json!({"user_id": "doc-user", "email": "doc@example.com", "budget_id": "b1", "metadata": {"team": "docs"}});
    c.call(
        post.clone(),
        "/v1/users",
        c.admin(post.clone(), "/v1/users").json(&user),
        StatusCode::CREATED,
    )
    .await;
    c.call(
        post.clone(),
        "/v1/users",
        c.admin(post.clone(), "/v1/users")
            .json(&json!({"user_id": "bad id"})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/users",
        c.admin(get.clone(), "/v1/users?limit=5"),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/users",
        reqwest::Client::new()
            .get(c.app.url("/v1/users"))
            .bearer_auth("wrong"),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/users/{user_id}",
        c.admin(get.clone(), "/v1/users/doc-user"),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/users/{user_id}",
        c.admin(get.clone(), "/v1/users/nobody"),
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        patch.clone(),
        "/v1/users/{user_id}",
        c.admin(patch.clone(), "/v1/users/doc-user")
            .json(&json!({"alias": "Doc"})),
        StatusCode::OK,
    )
    .await;
    let credited = c
        .call(
            post.clone(),
            "/v1/users/{user_id}/credits",
            c.admin(post.clone(), "/v1/users/doc-user/credits")
                .json(&json!({"amount": "3.50", "note": "docs"})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(credited["balance_nanos"], 3_500_000_000i64);

    // Keys, and the OpenAI-compatible API with one.
    let created = c.call(post.clone(), "/v1/keys", c.admin(post.clone(), "/v1/keys").json(&json!({
        "key_name": "docs", "user_id": "doc-user", "rpm_limit": 100, "max_budget": "2", "budget_duration": "1d",
        "allowed_models": ["openai:*"], "expires_at": "2099-01-01T00:00:00Z"})), StatusCode::CREATED).await;
    let key = created["key"].as_str().unwrap().to_string();
    let key_id = created["id"].as_str().unwrap().to_string();
    c.call(
        get.clone(),
        "/v1/keys",
        c.admin(get.clone(), "/v1/keys?user_id=doc-user"),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/keys/{key_id}",
        c.admin(get.clone(), &format!("/v1/keys/{key_id}")),
        StatusCode::OK,
    )
    .await;
    c.call(
        patch.clone(),
        "/v1/keys/{key_id}",
        c.admin(patch.clone(), &format!("/v1/keys/{key_id}"))
            .json(&json!({"tpm_limit": 100000})),
        StatusCode::OK,
    )
    .await;
    let client = reqwest::Client::new();
    let chat =
        json!({"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let completion = c
        .call(
            post.clone(),
            "/v1/chat/completions",
            client
                .post(c.app.url("/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&chat),
            StatusCode::OK,
        )
        .await;
    assert!(completion["usage"]["cost"].as_f64().unwrap() > 0.0);
    let denied = json!({"model": "anthropic:claude-3-5-haiku", "messages": [{"role": "user", "content": "hi"}]});
    c.call(
        post.clone(),
        "/v1/chat/completions",
        client
            .post(c.app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&denied),
        StatusCode::FORBIDDEN,
    )
    .await;
    // Anthropic's Messages API, with its error shape.
    let message = json!({"model": "openai:gpt-4o-mini", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}]});
    let answer = c
        .call(
            post.clone(),
            "/v1/messages",
            client
                .post(c.app.url("/v1/messages"))
                .header("x-api-key", &key)
                .json(&message),
            StatusCode::OK,
        )
        .await;
    assert_eq!(answer["type"], "message");
    let mut no_max = message.clone();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let refused = c
        .call(
            post.clone(),
            "/v1/messages",
            client
                .post(c.app.url("/v1/messages"))
                .header("x-api-key", &key)
                .json(&no_max),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(refused["error"]["type"], "invalid_request_error");
    c.call(
        post.clone(),
        "/v1/messages/count_tokens",
        client
            .post(c.app.url("/v1/messages/count_tokens"))
            .header("x-api-key", &key)
            .json(&no_max),
        StatusCode::OK,
    )
    .await;
    // OpenAI's Responses API: stored, read, deleted.
    let response = c
        .call(
            post.clone(),
            "/v1/responses",
            client
                .post(c.app.url("/v1/responses"))
                .bearer_auth(&key)
                .json(&json!({"model": "openai:gpt-4o-mini", "input": "hi"})),
            StatusCode::OK,
        )
        .await;
    c.call(
        post.clone(),
        "/v1/responses",
        client
            .post(c.app.url("/v1/responses"))
            .bearer_auth(&key)
            .json(&json!({"model": "openai:gpt-4o-mini"})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let stored = format!("/v1/responses/{}", response["id"].as_str().unwrap());
    c.call(
        get.clone(),
        "/v1/responses/{id}",
        client.get(c.app.url(&stored)).bearer_auth(&key),
        StatusCode::OK,
    )
    .await;
    c.call(
        delete.clone(),
        "/v1/responses/{id}",
        client.delete(c.app.url(&stored)).bearer_auth(&key),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/responses/{id}",
        client.get(c.app.url(&stored)).bearer_auth(&key),
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        post.clone(),
        "/v1/embeddings",
        client
            .post(c.app.url("/v1/embeddings"))
            .bearer_auth(&key)
            .json(&json!({"model": "openai:text-embedding-3-small", "input": "hi"})),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/models",
        client.get(c.app.url("/v1/models")).bearer_auth(&key),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/key",
        client.get(c.app.url("/v1/key")).bearer_auth(&key),
        StatusCode::OK,
    )
    .await;
    let records = c.app.usage_records(3).await;
    let request_id = &records.iter().find(|r| r.status == 200).unwrap().id;
    c.call(
        get.clone(),
        "/v1/generation",
        client
            .get(c.app.url(&format!("/v1/generation?id={request_id}")))
            .bearer_auth(&key),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/users/{user_id}/usage",
        c.admin(get.clone(), "/v1/users/doc-user/usage"),
        StatusCode::OK,
    )
    .await;

    // Pricing, public and for the operator.
    c.call(
        get.clone(),
        "/v1/pricing",
        client.get(c.app.url("/v1/pricing")),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/pricing",
        c.admin(get.clone(), "/v1/pricing"),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/pricing/{model_key}",
        c.admin(get.clone(), "/v1/pricing/openai:gpt-4o-mini"),
        StatusCode::OK,
    )
    .await;
    c.call(post.clone(), "/v1/pricing", c.admin(post.clone(), "/v1/pricing").json(&json!({
        "model_key": "openai:gpt-docs", "input_price_per_million": "1", "output_price_per_million": 2,
        "cached_input_price_per_million": "0.5", "margin_percent": 10})), StatusCode::CREATED).await;
    c.call(
        delete.clone(),
        "/v1/pricing/{model_key}",
        c.admin(delete.clone(), "/v1/pricing/openai:gpt-docs"),
        StatusCode::NO_CONTENT,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/pricing/history",
        c.admin(get.clone(), "/v1/pricing/history"),
        StatusCode::OK,
    )
    .await;

    // The books.
    c.call(
        get.clone(),
        "/v1/reconciliation",
        c.admin(get.clone(), "/v1/reconciliation?days=7"),
        StatusCode::OK,
    )
    .await;
    c.call(
        get.clone(),
        "/v1/debts",
        c.admin(get.clone(), "/v1/debts"),
        StatusCode::OK,
    )
    .await;

    // The reseller MVP's routes, with the session cookie.
    mvp_routes(&mut c).await;

    // Deletions.
    c.call(
        delete.clone(),
        "/v1/keys/{key_id}",
        c.admin(delete.clone(), &format!("/v1/keys/{key_id}")),
        StatusCode::NO_CONTENT,
    )
    .await;
    c.call(
        delete.clone(),
        "/v1/budgets/{budget_id}",
        c.admin(delete.clone(), "/v1/budgets/b1"),
        StatusCode::NO_CONTENT,
    )
    .await;
    c.call(
        delete.clone(),
        "/v1/users/{user_id}",
        c.admin(delete.clone(), "/v1/users/doc-user"),
        StatusCode::NO_CONTENT,
    )
    .await;

    // Every documented operation was called.
    let documented: BTreeSet<(String, String)> = c.spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&c.called).collect();
    assert!(missed.is_empty(), "documented but never called: {missed:?}");
    c.app.stop().await;
}

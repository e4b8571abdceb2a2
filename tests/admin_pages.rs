//! The admin pages and their server functions: admins only (by
//! `admin_emails` or the admin role); everyone else gets 403.
#![cfg(feature = "ssr")]

mod common;

use common::{start_mock, use_mock, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ADMIN_FUNCTIONS: [(&str, &[(&str, &str)]); 8] = [
    ("admin_overview", &[]),
    ("admin_users", &[("search", ""), ("page", "0")]),
    (
        "admin_credit",
        &[("user_id", "x"), ("amount", "1"), ("note", "")],
    ),
    ("admin_block", &[("user_id", "x"), ("blocked", "true")]),
    ("admin_prices", &[]),
    (
        "admin_set_price",
        &[
            ("model_key", "a:b"),
            ("input", "1"),
            ("output", "1"),
            ("margin_percent", ""),
        ],
    ),
    ("admin_providers", &[]),
    ("admin_reconciliation", &[("days", "0")]),
];

async fn page_status(app: &TestApp, client: &reqwest::Client, path: &str) -> (StatusCode, String) {
    let response = client.get(app.url(path)).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_reach_the_admin_pages() {
    let mock = start_mock().await;
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        use_mock(c, &mock);
        c.admin_emails = vec!["Boss@Example.com".into()];
    })
    .await;
    let user = app.client();
    app.sign_up(&user, "worker@example.com").await;
    let (_, created) = app.rpc(&user, "create_key", &[("name", "k")]).await;
    let key = created["secret"].as_str().unwrap().to_string();

    for (name, form) in ADMIN_FUNCTIONS {
        let (status, body) = app.rpc(&user, name, form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {body}");
    }
    for path in [
        "/dashboard/admin",
        "/dashboard/admin/users",
        "/dashboard/admin/pricing",
        "/dashboard/admin/providers",
        "/dashboard/admin/reconciliation",
    ] {
        let (status, html) = page_status(&app, &user, path).await;
        assert!(html.contains("admins only"), "{path}: {html}");
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (_, me) = app.rpc(&user, "me", &[]).await;
    assert_eq!(me["is_admin"], false);

    // The admin named in `admin_emails`.
    let boss = app.client();
    app.sign_up(&boss, "boss@example.com").await;
    let (_, me) = app.rpc(&boss, "me", &[]).await;
    assert_eq!(me["is_admin"], true);
    let (status, html) = page_status(&app, &boss, "/dashboard/admin/users").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("worker@example.com"));

    let (status, page) = app
        .rpc(&boss, "admin_users", &[("search", "worker"), ("page", "0")])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let worker_id = items[0]["id"].as_str().unwrap().to_string();
    assert_eq!(items[0]["keys"].as_array().unwrap().len(), 1);

    // Credit with a note, in the ledger; a debit past zero is refused.
    let (status, balance) = app
        .rpc(
            &boss,
            "admin_credit",
            &[
                ("user_id", &worker_id),
                ("amount", "2.50"),
                ("note", "pilot"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{balance}");
    assert_eq!(
        balance,
        json!(12_500_000_000i64),
        "10 sign-up credit + 2.50"
    );
    let (status, _) = app
        .rpc(
            &boss,
            "admin_credit",
            &[("user_id", &worker_id), ("amount", "-100"), ("note", "")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, ledger) = app.rpc(&user, "ledger_page", &[("page", "0")]).await;
    assert_eq!(ledger["items"][0]["note"], "pilot");

    // Blocking takes effect on the next request; unblocking restores it.
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(app.chat(&key, &body).await.status(), StatusCode::OK);
    let (status, _) = app
        .rpc(
            &boss,
            "admin_block",
            &[("user_id", &worker_id), ("blocked", "true")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.chat(&key, &body).await.status(), StatusCode::FORBIDDEN);
    app.rpc(
        &boss,
        "admin_block",
        &[("user_id", &worker_id), ("blocked", "false")],
    )
    .await;
    assert_eq!(app.chat(&key, &body).await.status(), StatusCode::OK);

    // A price change shows in the public catalog at once.
    let (status, body) = app
        .rpc(
            &boss,
            "admin_set_price",
            &[
                ("model_key", "openai:gpt-4o-mini"),
                ("input", "1"),
                ("output", "2"),
                ("margin_percent", "50"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pricing: Value = reqwest::get(app.url("/v1/pricing/openai:gpt-4o-mini"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pricing["user_input_price_per_million"], 1.5);
    let (status, catalog) = app.rpc(&boss, "admin_prices", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(catalog["default_margin_bp"], 2000);

    // Providers show their latest upstream error.
    let failing =
        json!({"model": "openai:gpt-status-503", "messages": [{"role": "user", "content": "hi"}]});
    app.rpc(
        &boss,
        "admin_set_price",
        &[
            ("model_key", "openai:gpt-status-503"),
            ("input", "1"),
            ("output", "1"),
            ("margin_percent", ""),
        ],
    )
    .await;
    assert_eq!(
        app.chat(&key, &failing).await.status(),
        StatusCode::BAD_GATEWAY
    );
    let (_, providers) = app.rpc(&boss, "admin_providers", &[]).await;
    let openai = providers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "openai")
        .unwrap();
    assert_eq!(openai["last_error"]["kind"], "503", "{openai}");

    // The overview counts every user's requests.
    app.usage_records(3).await;
    let (status, overview) = app.rpc(&boss, "admin_overview", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        overview["requests_month"].as_i64().unwrap() >= 3,
        "{overview}"
    );
    assert_eq!(overview["users"], 2);
    assert_eq!(overview["debtors"], 0);

    // The books: every check holds, and the reconciliation counts the calls.
    let (status, books) = app
        .rpc(&boss, "admin_reconciliation", &[("days", "0")])
        .await;
    assert_eq!(status, StatusCode::OK, "{books}");
    assert_eq!(books["findings"], json!([]));
    assert_eq!(
        books["totals"]["requests"].as_i64(),
        overview["requests_month"].as_i64()
    );
    let (status, html) = page_status(&app, &boss, "/dashboard/admin/reconciliation").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-testid=\"audit-passed\""), "{html}");

    // The admin role from the command line works the same way.
    let db = llm_gateway::db::Db::connect(&app.db.url).await.unwrap();
    llm_gateway::db::users::set_role(&db, &worker_id, "admin", app.clock().now_ms())
        .await
        .unwrap();
    db.close().await;
    let (status, _) = app.rpc(&user, "admin_overview", &[]).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

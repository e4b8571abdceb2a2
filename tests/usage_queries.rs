//! The usage dashboard's queries must stay fast at millions of rows: on
//! SQLite, each is answered from an index, never by scanning the table.
//! (bench/usage_queries.rs times them on 1,000,000 generated rows.)
#![cfg(feature = "ssr")]

use llm_gateway::db::usage::{
    export_sql, list_sql, Filter, DAILY_SPEND_SQL, KEY_SPEND_SQL, USER_TOTALS_SQL,
};
use llm_gateway::db::Db;

async fn plan(db: &Db, sql: &str) -> String {
    let Db::Sqlite(pool) = db else {
        unreachable!("a SQLite database")
    };
    let placeholders = sql.matches('$').count();
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
    for _ in 0..placeholders {
        query = query.bind(1_i64);
    }
    let rows = query.fetch_all(pool).await.expect("explain");
    rows.into_iter()
        .map(|(_, _, _, detail)| detail)
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_indexed(label: &str, plan: &str, index: &str) {
    assert!(
        !plan.lines().any(|l| l.starts_with("SCAN usage_records")),
        "{label} scans the whole table:\n{plan}"
    );
    assert!(
        plan.contains(index),
        "{label} does not use {index}:\n{plan}"
    );
}

#[tokio::test]
async fn usage_queries_are_answered_from_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!(
        "sqlite://{}",
        dir.path().join("plan.db").display()
    ))
    .await
    .unwrap();
    db.migrate().await.unwrap();

    let everything = Filter::default();
    let by_model = Filter {
        model: Some("openai:gpt-4o".into()),
        ..Filter::default()
    };
    let by_range = Filter {
        from_ms: Some(1),
        to_ms: Some(2),
        ..Filter::default()
    };
    let cases = [
        (
            "the usage page",
            list_sql(&everything),
            "INDEX usage_by_user_time",
        ),
        (
            "the model filter",
            list_sql(&by_model),
            "INDEX usage_by_user_model_time",
        ),
        (
            "the date filter",
            list_sql(&by_range),
            "INDEX usage_by_user_time",
        ),
        (
            "the overview totals",
            USER_TOTALS_SQL.to_string(),
            "COVERING INDEX usage_by_user_time",
        ),
        (
            "the daily chart",
            DAILY_SPEND_SQL.to_string(),
            "COVERING INDEX usage_by_user_time",
        ),
        (
            "a key's spend",
            KEY_SPEND_SQL.to_string(),
            "COVERING INDEX usage_by_key_time",
        ),
        (
            "the export's first page",
            export_sql(&everything, false),
            "INDEX usage_by_user_time (user_id=?)",
        ),
        // Each next page starts at its cursor in the index, not at the top.
        (
            "the export's next page",
            export_sql(&everything, true),
            "INDEX usage_by_user_time (user_id=? AND created_at<?)",
        ),
    ];
    for (label, sql, index) in cases {
        assert_indexed(label, &plan(&db, &sql).await, index);
    }
}

#[test]
fn only_the_filters_in_use_reach_the_sql() {
    let sql = list_sql(&Filter {
        key_id: Some("key_1".into()),
        model: Some("openai:gpt-4o".into()),
        ..Filter::default()
    });
    assert_eq!(
        sql,
        "SELECT * FROM usage_records WHERE user_id = $1 AND key_id = $2 AND model = $3 \
         ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
    );
}

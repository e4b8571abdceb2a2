//! `GET /export/usage.csv`: the signed-in user's filtered requests as CSV.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::billing::{usage_filter, usage_lines};
use crate::auth::session;
use crate::billing::money::format_usd;
use crate::db::users;
use crate::error::AppError;
use crate::server::AppState;

/// The usage page's filters, as query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UsageQuery {
    from: String,
    to: String,
    key: String,
    model: String,
}

/// The most rows one export returns.
const MAX_ROWS: i64 = 100_000;

/// Streams the filtered usage as a CSV download.
pub async fn usage_csv(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<UsageQuery>,
) -> Result<Response, AppError> {
    let unauthorized = || AppError::Unauthorized("Please sign in.".into());
    let user_id = session::user_id(&session).await?.ok_or_else(unauthorized)?;
    let user = users::find_by_id(&state.db, &user_id)
        .await?
        .filter(|u| u.is_active())
        .ok_or_else(unauthorized)?;
    let filter = usage_filter(&query.from, &query.to, &query.key, &query.model)?;
    let (rows, _) = usage_lines(&state.db, &user.id, &filter, MAX_ROWS, 0).await?;
    let mut csv = String::from(
        "time_utc,request_id,key,model,prompt_tokens,completion_tokens,cost_usd,latency_ms,status\n",
    );
    for row in rows {
        let fields = [
            crate::app::format::datetime(row.created_at),
            row.id,
            row.key_prefix.unwrap_or_default(),
            row.model.unwrap_or_default(),
            row.prompt_tokens.to_string(),
            row.completion_tokens.to_string(),
            format_usd(row.cost),
            row.latency_ms.to_string(),
            row.status.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"usage.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

/// Quotes a CSV field when needed, and defuses spreadsheet formulas.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) && value.parse::<f64>().is_err() {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(super::csv_field("plain"), "plain");
        assert_eq!(super::csv_field("a,b"), "\"a,b\"");
        assert_eq!(super::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::csv_field("=cmd()"), "'=cmd()");
        assert_eq!(super::csv_field("-1.5"), "-1.5");
    }
}

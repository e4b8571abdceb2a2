//! `GET /export/usage.csv`: the signed-in user's filtered requests as CSV.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tower_sessions::Session;

use super::billing::{usage_filter, UsageQuery};
use super::context::active_user;
use crate::billing::money::format_usd;
use crate::db::usage::{self, ExportRow};
use crate::error::AppError;
use crate::state::AppState;

/// The CSV's first line.
const HEADER: &str = "time_utc,request_id,key,model,prompt_tokens,completion_tokens,\
    cache_read_tokens,cache_write_tokens,cache_write_1h_tokens,tokens_source,cost_usd,latency_ms,status\n";
/// Rows read at a time: all the export holds in memory.
const PAGE_ROWS: i64 = 1000;

/// Streams the filtered usage as a CSV download: every matching request,
/// however many, in constant memory. Rows are read a page at a time as the
/// client takes them, each page by a short query of its own. The query's
/// `page` is not used: every row is in the file.
pub async fn usage_csv(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<UsageQuery>,
) -> Result<Response, AppError> {
    let user = active_user(&state, &session).await?;
    let filter = usage_filter(&query.from, &query.to, &query.key, &query.model)?;
    let pages = Pages {
        db: state.db.clone(),
        user_id: user.id,
        filter,
        after: None,
        done: false,
    };
    let lines = futures::stream::unfold(pages, |mut pages| async move {
        let page = pages.next().await?;
        Some((page, pages))
    });
    let body =
        futures::stream::once(async { Ok(Bytes::from_static(HEADER.as_bytes())) }).chain(lines);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"usage.csv\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The export's pages, newest first.
struct Pages {
    db: crate::db::Db,
    user_id: String,
    filter: usage::Filter,
    after: Option<usage::ExportCursor>,
    done: bool,
}

impl Pages {
    /// The next page as CSV lines; `None` after the last (or a failure,
    /// which ends the download with an error, never a silently short file).
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let page = usage::export_page(
            &self.db,
            &self.user_id,
            &self.filter,
            self.after.as_ref(),
            PAGE_ROWS,
        )
        .await;
        let rows = match page {
            Ok(rows) => rows,
            Err(err) => {
                tracing::error!(%err, "the usage export failed part-way");
                self.done = true;
                return Some(Err(std::io::Error::other("the usage export failed")));
            }
        };
        self.done = (rows.len() as i64) < PAGE_ROWS;
        let last = rows.last()?;
        self.after = Some((last.record.created_at, last.record.id.clone()));
        let mut csv = String::new();
        for row in rows {
            csv.push_str(&csv_line(row));
        }
        Some(Ok(Bytes::from(csv)))
    }
}

/// One request as a CSV line.
pub fn csv_line(row: ExportRow) -> String {
    let r = row.record;
    let fields = [
        crate::format::datetime(r.created_at),
        r.id,
        row.key_prefix.unwrap_or_default(),
        r.model.unwrap_or_default(),
        r.prompt_tokens.to_string(),
        r.completion_tokens.to_string(),
        r.cached_tokens.to_string(),
        r.cache_write_tokens.to_string(),
        r.cache_write_1h_tokens.to_string(),
        r.tokens_source,
        format_usd(r.cost),
        r.latency_ms.to_string(),
        r.status.to_string(),
    ];
    let mut line: String = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
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

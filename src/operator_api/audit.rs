//! The books, for operators: `GET /v1/reconciliation` (the audit's checks
//! and the reconciliation by provider and day, as JSON or CSV) and
//! `GET /v1/debts` (who owes what).

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{rfc3339, Operator, Paging, PagingQuery};
use crate::billing::audit;
use crate::billing::money::nanos_to_usd_f64;
use crate::db::ledger;
use crate::error::AppError;
use crate::error::ErrorBody;
use crate::state::AppState;

/// `?days=&format=` of the reconciliation.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationQuery {
    /// Reconcile the last this many UTC days, today included; 0 or absent: all time.
    days: Option<i64>,
    /// `json` (the default) or `csv` (the reconciliation alone).
    format: Option<String>,
}

/// Checks the books (ledger = balance, each usage record's cost = its
/// debit, no stale hold, every debt recorded) and reconciles usage by
/// provider and day: requests, tokens by bucket, the providers' cost, the
/// users' price and the margin, in nano-USD; `passed` tells whether every
/// check held.
#[utoipa::path(get, path = "/v1/reconciliation", operation_id = "get_reconciliation", tag = "billing",
    params(ReconciliationQuery),
    responses((status = 200, description = "The audit report, or CSV", body = serde_json::Value),
        (status = 401, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn reconciliation(
    _: Operator,
    State(state): State<AppState>,
    Query(query): Query<ReconciliationQuery>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let since = audit::since(now, query.days.unwrap_or(0));
    let report = audit::run(&state.db, now, since).await?;
    if query.format.as_deref() == Some("csv") {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report.to_csv(),
        )
            .into_response());
    }
    let passed = report.passed();
    let mut body = serde_json::to_value(&report).map_err(|_| AppError::Internal)?;
    body["passed"] = passed.into();
    Ok(Json(body).into_response())
}

/// A user who owes: their balance went below zero.
#[derive(Serialize, ToSchema)]
pub struct DebtOut {
    user_id: String,
    /// What the user owes, in USD.
    debt: f64,
    debt_nanos: i64,
    /// When the balance went below zero.
    since: String,
    /// The request that took it there.
    request_id: Option<String>,
}

/// Lists the users who owe, largest debt first.
#[utoipa::path(get, path = "/v1/debts", operation_id = "list_debts", tag = "billing", params(PagingQuery),
    responses((status = 200, body = Vec<DebtOut>), (status = 401, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn debts(
    _: Operator,
    State(state): State<AppState>,
    paging: Paging,
) -> Result<Json<Vec<DebtOut>>, AppError> {
    let debts = ledger::debts(&state.db, paging.limit, paging.skip).await?;
    Ok(Json(
        debts
            .into_iter()
            .map(|d| DebtOut {
                user_id: d.user_id,
                debt: nanos_to_usd_f64(d.amount),
                debt_nanos: d.amount,
                since: rfc3339(d.since),
                request_id: d.request_id,
            })
            .collect(),
    ))
}

//! `/v1/budgets`: spending limits that attach to users and reset on schedule.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{check_id, nullable, rfc3339, usd, usd_limit, JsonBody, Operator, Paging, PagingQuery};
use crate::db::budgets::{self, BudgetRow, BudgetSettings};
use crate::error::AppError;
use crate::error::ErrorBody;
use crate::state::AppState;

/// `POST /v1/budgets`: a duration or a calendar period, not both.
#[derive(Deserialize, ToSchema)]
pub struct CreateBudget {
    /// Generated (`bud_…`) when absent.
    budget_id: Option<String>,
    /// USD per period.
    #[schema(value_type = String, example = "100")]
    max_budget: Value,
    budget_duration_sec: Option<i64>,
    /// `daily`, `weekly` or `monthly` (UTC).
    period: Option<String>,
}

/// `PATCH /v1/budgets/{budget_id}`: setting a duration clears the period, and the reverse.
#[derive(Deserialize, ToSchema)]
pub struct UpdateBudget {
    #[schema(value_type = Option<String>)]
    max_budget: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    budget_duration_sec: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    period: Option<Option<String>>,
}

/// A budget.
#[derive(Serialize, ToSchema)]
pub struct BudgetOut {
    budget_id: String,
    /// USD per period.
    max_budget: f64,
    max_budget_nanos: i64,
    budget_duration_sec: Option<i64>,
    period: Option<String>,
    created_at: String,
    updated_at: String,
}

/// Creates a budget, with `budget_duration_sec` or a calendar `period`.
#[utoipa::path(post, path = "/v1/budgets", operation_id = "create_budget", tag = "budgets", request_body = CreateBudget,
    responses((status = 201, body = BudgetOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn create(
    _: Operator,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateBudget>,
) -> Result<Response, AppError> {
    let id = match body.budget_id {
        Some(id) => {
            check_id("budget_id", &id)?;
            id
        }
        None => format!("bud_{}", uuid::Uuid::new_v4().simple()),
    };
    let settings = checked(BudgetSettings {
        max_budget: usd_limit("max_budget", &body.max_budget)?,
        budget_duration_sec: body.budget_duration_sec,
        period: body.period,
    })?;
    let row = budgets::insert(&state.db, &id, &settings, state.clock.now_ms())
        .await?
        .ok_or_else(|| AppError::Conflict(format!("A budget with id `{id}` already exists.")))?;
    Ok((StatusCode::CREATED, Json(view(&row))).into_response())
}

/// Lists budgets, oldest first.
#[utoipa::path(get, path = "/v1/budgets", operation_id = "list_budgets", tag = "budgets", params(PagingQuery),
    responses((status = 200, body = Vec<BudgetOut>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn list(
    _: Operator,
    State(state): State<AppState>,
    paging: Paging,
) -> Result<Json<Vec<BudgetOut>>, AppError> {
    let rows = budgets::list(&state.db, paging.skip, paging.limit).await?;
    Ok(Json(rows.iter().map(view).collect()))
}

/// One budget.
#[utoipa::path(get, path = "/v1/budgets/{budget_id}", operation_id = "get_budget", tag = "budgets", params(("budget_id" = String, Path)),
    responses((status = 200, body = BudgetOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn show(
    _: Operator,
    State(state): State<AppState>,
    Path(budget_id): Path<String>,
) -> Result<Json<BudgetOut>, AppError> {
    Ok(Json(view(&find(&state, &budget_id).await?)))
}

/// Updates a budget, from the next request.
#[utoipa::path(patch, path = "/v1/budgets/{budget_id}", operation_id = "update_budget", tag = "budgets", params(("budget_id" = String, Path)),
    request_body = UpdateBudget,
    responses((status = 200, body = BudgetOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn update(
    _: Operator,
    State(state): State<AppState>,
    Path(budget_id): Path<String>,
    JsonBody(body): JsonBody<UpdateBudget>,
) -> Result<Json<BudgetOut>, AppError> {
    let row = find(&state, &budget_id).await?;
    let mut settings = BudgetSettings {
        max_budget: row.max_budget,
        budget_duration_sec: row.budget_duration_sec,
        period: row.period,
    };
    if let Some(max) = body.max_budget {
        settings.max_budget = usd_limit("max_budget", &max)?;
    }
    // A period and a duration exclude each other: setting one clears the other.
    if let Some(duration) = body.budget_duration_sec {
        settings.budget_duration_sec = duration;
        if duration.is_some() && body.period.is_none() {
            settings.period = None;
        }
    }
    if let Some(period) = body.period {
        settings.period = period;
        if settings.period.is_some() && body.budget_duration_sec.is_none() {
            settings.budget_duration_sec = None;
        }
    }
    let row = budgets::update(
        &state.db,
        &budget_id,
        &checked(settings)?,
        state.clock.now_ms(),
    )
    .await?
    .ok_or_else(|| no_budget(&budget_id))?;
    // Cached keys carry their owner's budget.
    state.keys.forget_all();
    Ok(Json(view(&row)))
}

/// Deletes a budget; its users are left without one.
#[utoipa::path(delete, path = "/v1/budgets/{budget_id}", operation_id = "delete_budget", tag = "budgets", params(("budget_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn delete(
    _: Operator,
    State(state): State<AppState>,
    Path(budget_id): Path<String>,
) -> Result<StatusCode, AppError> {
    if !budgets::delete(&state.db, &budget_id).await? {
        return Err(no_budget(&budget_id));
    }
    state.keys.forget_all();
    Ok(StatusCode::NO_CONTENT)
}

async fn find(state: &AppState, budget_id: &str) -> Result<BudgetRow, AppError> {
    budgets::find(&state.db, budget_id)
        .await?
        .ok_or_else(|| no_budget(budget_id))
}

fn no_budget(budget_id: &str) -> AppError {
    AppError::NotFound(format!("No budget with id `{budget_id}`."))
}

fn checked(settings: BudgetSettings) -> Result<BudgetSettings, AppError> {
    if settings.budget_duration_sec.is_some() && settings.period.is_some() {
        return Err(AppError::invalid(
            "period",
            "Give either `budget_duration_sec` or `period`, not both.",
        ));
    }
    if settings.budget_duration_sec.is_some_and(|d| d <= 0) {
        return Err(AppError::invalid(
            "budget_duration_sec",
            "`budget_duration_sec` must be positive.",
        ));
    }
    if let Some(period) = &settings.period {
        if !["daily", "weekly", "monthly"].contains(&period.as_str()) {
            return Err(AppError::invalid(
                "period",
                "`period` must be `daily`, `weekly` or `monthly`.",
            ));
        }
    }
    Ok(settings)
}

fn view(row: &BudgetRow) -> BudgetOut {
    BudgetOut {
        budget_id: row.id.clone(),
        max_budget: usd(row.max_budget),
        max_budget_nanos: row.max_budget,
        budget_duration_sec: row.budget_duration_sec,
        period: row.period.clone(),
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

//! `/v1/budgets`: spending limits that attach to users and reset on schedule.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{check_id, nullable, rfc3339, usd, usd_limit, JsonBody, Operator, Paging};
use crate::db::budgets::{self, BudgetRow, BudgetSettings};
use crate::error::AppError;
use crate::server::AppState;

#[derive(Deserialize)]
pub struct CreateBudget {
    budget_id: Option<String>,
    max_budget: Value,
    budget_duration_sec: Option<i64>,
    period: Option<String>,
}

#[derive(Deserialize)]
pub struct UpdateBudget {
    max_budget: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    budget_duration_sec: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    period: Option<Option<String>>,
}

/// `POST /v1/budgets` with `{max_budget, budget_duration_sec}` or `{max_budget, period}`.
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
    let row = budgets::insert(&state.db, &id, &settings)
        .await?
        .ok_or_else(|| AppError::Conflict(format!("A budget with id `{id}` already exists.")))?;
    Ok((StatusCode::CREATED, Json(view(&row))).into_response())
}

/// `GET /v1/budgets?skip=&limit=`
pub async fn list(
    _: Operator,
    State(state): State<AppState>,
    paging: Paging,
) -> Result<Json<Vec<Value>>, AppError> {
    let rows = budgets::list(&state.db, paging.skip, paging.limit).await?;
    Ok(Json(rows.iter().map(view).collect()))
}

/// `GET /v1/budgets/{budget_id}`
pub async fn show(
    _: Operator,
    State(state): State<AppState>,
    Path(budget_id): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(view(&find(&state, &budget_id).await?)))
}

/// `PATCH /v1/budgets/{budget_id}`: applies from the next request.
pub async fn update(
    _: Operator,
    State(state): State<AppState>,
    Path(budget_id): Path<String>,
    JsonBody(body): JsonBody<UpdateBudget>,
) -> Result<Json<Value>, AppError> {
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
    let row = budgets::update(&state.db, &budget_id, &checked(settings)?)
        .await?
        .ok_or_else(|| no_budget(&budget_id))?;
    // Cached keys carry their owner's budget.
    state.keys.forget_all();
    Ok(Json(view(&row)))
}

/// `DELETE /v1/budgets/{budget_id}`: its users are left without a budget.
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

fn view(row: &BudgetRow) -> Value {
    json!({
        "budget_id": row.id,
        "max_budget": usd(row.max_budget),
        "max_budget_nanos": row.max_budget,
        "budget_duration_sec": row.budget_duration_sec,
        "period": row.period,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    })
}

//! `/v1/users`: create, list, show, update, soft-delete; usage and credits.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    check_id, metadata_json, metadata_text, nullable, opt_rfc3339, rfc3339, usd, usd_field,
    JsonBody, Operator, Paging,
};
use crate::billing::budget::window_at;
use crate::billing::money::format_usd;
use crate::db::ledger::{self, CreditError, EntryKind};
use crate::db::users::{self, is_duplicate, AdminUserRow, Profile};
use crate::db::{budgets, usage};
use crate::error::AppError;
use crate::server::AppState;

#[derive(Deserialize)]
pub struct CreateUser {
    user_id: Option<String>,
    alias: Option<String>,
    email: Option<String>,
    budget_id: Option<String>,
    #[serde(default)]
    blocked: bool,
    metadata: Option<Value>,
}

#[derive(Deserialize)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "nullable")]
    alias: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    budget_id: Option<Option<String>>,
    blocked: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    metadata: Option<Option<Value>>,
}

#[derive(Deserialize)]
pub struct CreditRequest {
    amount: Value,
    note: Option<String>,
}

/// `POST /v1/users`
pub async fn create(
    _: Operator,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateUser>,
) -> Result<Response, AppError> {
    let id = match body.user_id {
        Some(id) => {
            check_id("user_id", &id)?;
            id
        }
        None => format!("usr_{}", uuid::Uuid::new_v4().simple()),
    };
    let now = state.clock.now_ms();
    let profile = Profile {
        email: body.email.as_deref().map(normal_email).transpose()?,
        alias: body.alias.map(|a| checked_alias(&a)).transpose()?,
        budget_id: body.budget_id,
        metadata: metadata_text(body.metadata.as_ref())?,
        blocked_at: body.blocked.then_some(now),
    };
    require_budget(&state, profile.budget_id.as_deref()).await?;
    let row = users::create_admin(&state.db, &id, &profile)
        .await?
        .ok_or_else(|| {
            AppError::Conflict(format!(
                "A user with id `{id}` or this email already exists."
            ))
        })?;
    tracing::info!(user_id = %row.id, "user created by the operator");
    Ok((StatusCode::CREATED, Json(view(&state, &row).await?)).into_response())
}

/// `GET /v1/users?skip=&limit=&search=`
pub async fn list(
    _: Operator,
    State(state): State<AppState>,
    paging: Paging,
    axum::extract::Query(search): axum::extract::Query<SearchQuery>,
) -> Result<Json<Vec<Value>>, AppError> {
    let rows = users::list_admin(
        &state.db,
        search.search.as_deref(),
        paging.skip,
        paging.limit,
    )
    .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        views.push(view(&state, row).await?);
    }
    Ok(Json(views))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    search: Option<String>,
}

/// `GET /v1/users/{user_id}`
pub async fn show(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let row = find(&state, &user_id).await?;
    Ok(Json(view(&state, &row).await?))
}

/// `PATCH /v1/users/{user_id}`: only the fields present change; `null` clears.
pub async fn update(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<UpdateUser>,
) -> Result<Json<Value>, AppError> {
    let current = find(&state, &user_id).await?;
    let mut profile = Profile {
        email: current.email,
        alias: current.alias,
        budget_id: current.budget_id,
        metadata: current.metadata,
        blocked_at: current.blocked_at,
    };
    if let Some(email) = body.email {
        profile.email = email.as_deref().map(normal_email).transpose()?;
    }
    if let Some(alias) = body.alias {
        profile.alias = alias.map(|a| checked_alias(&a)).transpose()?;
    }
    if let Some(budget_id) = body.budget_id {
        require_budget(&state, budget_id.as_deref()).await?;
        profile.budget_id = budget_id;
    }
    if let Some(metadata) = body.metadata {
        profile.metadata = metadata_text(metadata.as_ref())?;
    }
    if let Some(blocked) = body.blocked {
        profile.blocked_at = blocked_since(&state, blocked, profile.blocked_at);
    }
    let row = users::update_admin(&state.db, &user_id, &profile)
        .await
        .map_err(duplicate_email)?
        .ok_or_else(|| no_user(&user_id))?;
    // Blocking, or a new budget, applies from the next request.
    state.keys.forget_user(&user_id);
    tracing::info!(%user_id, blocked = row.blocked_at.is_some(), "user updated by the operator");
    Ok(Json(view(&state, &row).await?))
}

/// `DELETE /v1/users/{user_id}`: a soft delete that revokes the user's keys.
pub async fn delete(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, AppError> {
    if !users::soft_delete(&state.db, &user_id).await? {
        return Err(no_user(&user_id));
    }
    state.keys.forget_user(&user_id);
    tracing::info!(%user_id, "user deleted by the operator");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/users/{user_id}/usage?skip=&limit=`: the user's requests, newest first.
pub async fn usage(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    paging: Paging,
) -> Result<Json<Value>, AppError> {
    find(&state, &user_id).await?;
    let filter = usage::Filter::default();
    let rows =
        usage::list_for_user(&state.db, &user_id, &filter, paging.limit, paging.skip).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "key_id": r.key_id,
                "endpoint": r.endpoint,
                "provider": r.provider,
                "model": r.model,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "cached_tokens": r.cached_tokens,
                "cost": usd(r.cost),
                "cost_nanos": r.cost,
                "status": r.status,
                "error_code": r.error_code,
                "latency_ms": r.latency_ms,
                "streamed": r.streamed == 1,
                "aborted": r.aborted == 1,
                "created_at": rfc3339(r.created_at),
            })
        })
        .collect();
    Ok(Json(json!({ "user_id": user_id, "data": data })))
}

/// `POST /v1/users/{user_id}/credits` with `{"amount": "12.50", "note": "…"}`:
/// a ledger adjustment (negative to remove, never below zero).
pub async fn credit(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<CreditRequest>,
) -> Result<Json<Value>, AppError> {
    let amount = usd_field("amount", &body.amount)?;
    if amount == 0 {
        return Err(AppError::invalid("amount", "`amount` must not be zero."));
    }
    let note = body
        .note
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(AppError::invalid(
            "note",
            "`note` must be at most 500 characters.",
        ));
    }
    let balance = adjust_credit(&state, &user_id, amount, note.as_deref()).await?;
    Ok(Json(json!({
        "user_id": user_id,
        "amount": usd(amount),
        "balance": usd(balance),
        "balance_nanos": balance,
        "note": note,
    })))
}

/// Adds `amount` nano-USD (negative to remove) to a live user's balance as
/// an adjustment, never below zero; returns the new balance.
pub async fn adjust_credit(
    state: &AppState,
    user_id: &str,
    amount: i64,
    note: Option<&str>,
) -> Result<i64, AppError> {
    find(state, user_id).await?;
    let balance = ledger::credit(&state.db, user_id, EntryKind::Adjustment, amount, note)
        .await
        .map_err(|err| match err {
            CreditError::NoUser => no_user(user_id),
            CreditError::WouldGoNegative => AppError::invalid(
                "amount",
                format!(
                    "Removing ${} would take the balance below zero.",
                    format_usd(-amount)
                ),
            ),
            CreditError::Db(err) => err.into(),
        })?;
    state.recorder.credited(user_id, amount);
    tracing::info!(%user_id, amount, "credit adjusted by an operator");
    Ok(balance)
}

/// Blocks or unblocks a live user, from their next request.
pub async fn set_blocked(
    state: &AppState,
    user_id: &str,
    blocked: bool,
) -> Result<AdminUserRow, AppError> {
    let row = find(state, user_id).await?;
    let profile = Profile {
        blocked_at: blocked_since(state, blocked, row.blocked_at),
        email: row.email,
        alias: row.alias,
        budget_id: row.budget_id,
        metadata: row.metadata,
    };
    let row = users::update_admin(&state.db, user_id, &profile)
        .await?
        .ok_or_else(|| no_user(user_id))?;
    state.keys.forget_user(user_id);
    tracing::info!(%user_id, blocked, "user blocked or unblocked by an operator");
    Ok(row)
}

fn blocked_since(state: &AppState, blocked: bool, since: Option<i64>) -> Option<i64> {
    match (blocked, since) {
        (true, None) => Some(state.clock.now_ms()),
        (true, at) => at,
        (false, _) => None,
    }
}

async fn find(state: &AppState, user_id: &str) -> Result<AdminUserRow, AppError> {
    users::find_admin(&state.db, user_id)
        .await?
        .ok_or_else(|| no_user(user_id))
}

fn no_user(user_id: &str) -> AppError {
    AppError::NotFound(format!("No user with id `{user_id}`."))
}

async fn require_budget(state: &AppState, budget_id: Option<&str>) -> Result<(), AppError> {
    if let Some(id) = budget_id {
        if budgets::find(&state.db, id).await?.is_none() {
            return Err(AppError::NotFound(format!("No budget with id `{id}`.")));
        }
    }
    Ok(())
}

fn duplicate_email(err: sqlx::Error) -> AppError {
    if is_duplicate(&err) {
        AppError::Conflict("Another user has this email.".into())
    } else {
        err.into()
    }
}

pub fn normal_email(email: &str) -> Result<String, AppError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if valid {
        Ok(email)
    } else {
        Err(AppError::invalid(
            "email",
            "`email` must be a valid email address.",
        ))
    }
}

fn checked_alias(alias: &str) -> Result<String, AppError> {
    let alias = alias.trim();
    if alias.chars().count() > 128 {
        return Err(AppError::invalid(
            "alias",
            "`alias` must be at most 128 characters.",
        ));
    }
    Ok(alias.to_string())
}

/// A user as the API shows them, with their budget's spend this period.
async fn view(state: &AppState, row: &AdminUserRow) -> Result<Value, AppError> {
    let (mut spend, mut period_start, mut reset_at) = (0, None, None);
    if let Some(budget_id) = &row.budget_id {
        if let Some(budget) = budgets::find(&state.db, budget_id).await? {
            let now = state.clock.now_ms();
            let limit = budget.limit_for(&row.id);
            let (stored_start, stored_spent) = budgets::window(&state.db, &limit.scope)
                .await?
                .unwrap_or((limit.period.current_start(now, now), 0));
            let (spent, start, reset) = window_at(limit.period, stored_start, stored_spent, now);
            spend = spent;
            period_start = Some(start);
            reset_at = reset;
        }
    }
    Ok(json!({
        "user_id": row.id,
        "alias": row.alias,
        "email": row.email,
        "role": row.role,
        "balance": usd(row.balance),
        "balance_nanos": row.balance,
        "spend": usd(spend),
        "budget_id": row.budget_id,
        "budget_started_at": opt_rfc3339(period_start),
        "next_budget_reset_at": opt_rfc3339(reset_at),
        "blocked": row.blocked_at.is_some(),
        "metadata": metadata_json(row.metadata.as_deref()),
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }))
}

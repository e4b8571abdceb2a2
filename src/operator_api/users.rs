//! `/v1/users`: create, list, show, update, soft-delete; usage and credits.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{
    check_id, metadata_json, metadata_text, nullable, opt_rfc3339, rfc3339, usd, usd_field,
    JsonBody, Operator, Paging, PagingQuery,
};
use crate::billing::budget::window_at;
use crate::billing::money::format_usd;
use crate::db::ledger::{self, CreditError, EntryKind};
use crate::db::users::{self, is_duplicate, AdminUserRow, Profile};
use crate::db::{budgets, usage};
use crate::error::AppError;
use crate::error::ErrorBody;
use crate::state::AppState;

/// `POST /v1/users`
#[derive(Deserialize, ToSchema)]
pub struct CreateUser {
    /// Generated (`usr_…`) when absent.
    user_id: Option<String>,
    alias: Option<String>,
    email: Option<String>,
    budget_id: Option<String>,
    #[serde(default)]
    blocked: bool,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// `PATCH /v1/users/{user_id}`: absent fields stay as they are; `null` clears.
#[derive(Deserialize, ToSchema)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    alias: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    budget_id: Option<Option<String>>,
    blocked: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Option<Value>>,
}

/// `POST /v1/users/{user_id}/credits`
#[derive(Deserialize, ToSchema)]
pub struct CreditRequest {
    /// USD as a decimal string (`"12.50"`) or a number; negative removes credit.
    #[schema(value_type = String, example = "12.50")]
    amount: Value,
    note: Option<String>,
}

/// A user, as the admin API shows them.
#[derive(Serialize, ToSchema)]
pub struct UserOut {
    user_id: String,
    alias: Option<String>,
    email: Option<String>,
    /// `user` or `admin`.
    role: String,
    /// USD; below zero when the user owes (see `debt`).
    balance: f64,
    /// The balance in nano-USD, exactly.
    balance_nanos: i64,
    /// What the user owes, in USD: usage that cost more than their
    /// balance held. Every paid call is refused until credit covers it.
    debt: f64,
    debt_nanos: i64,
    /// When the balance went below zero, and the request that took it there.
    in_debt_since: Option<String>,
    debt_request_id: Option<String>,
    /// Spent in the current budget period, in USD.
    spend: f64,
    budget_id: Option<String>,
    budget_started_at: Option<String>,
    next_budget_reset_at: Option<String>,
    blocked: bool,
    #[schema(value_type = Object)]
    metadata: Value,
    created_at: String,
    updated_at: String,
}

/// One request in a user's usage.
#[derive(Serialize, ToSchema)]
pub struct UsageItem {
    id: String,
    key_id: Option<String>,
    endpoint: String,
    provider: Option<String>,
    model: Option<String>,
    prompt_tokens: i64,
    completion_tokens: i64,
    /// Prompt tokens read from the provider's cache.
    cached_tokens: i64,
    /// Prompt tokens written to the cache for 5 minutes, and for an hour.
    cache_write_tokens: i64,
    cache_write_1h_tokens: i64,
    /// How the tokens were known: `upstream`, `local_count`,
    /// `client_aborted`, `upstream_cut` or `shutdown`.
    tokens_source: String,
    /// What the user paid, in USD.
    cost: f64,
    cost_nanos: i64,
    /// What the provider charges for it, in nano-USD (`cost` less the margin).
    provider_cost_nanos: i64,
    status: i32,
    error_code: Option<String>,
    latency_ms: i64,
    streamed: bool,
    aborted: bool,
    created_at: String,
}

/// `GET /v1/users/{user_id}/usage`
#[derive(Serialize, ToSchema)]
pub struct UsageOut {
    user_id: String,
    data: Vec<UsageItem>,
}

/// The answer to a credit adjustment.
#[derive(Serialize, ToSchema)]
pub struct CreditOut {
    user_id: String,
    /// USD.
    amount: f64,
    /// The new balance, in USD.
    balance: f64,
    balance_nanos: i64,
    note: Option<String>,
}

/// Creates a user.
#[utoipa::path(post, path = "/v1/users", operation_id = "create_user", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, description = "No such budget", body = ErrorBody),
        (status = 409, description = "The id or email is taken", body = ErrorBody)),
    security(("master_key" = [])))]
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
    let row = users::create_admin(&state.db, &id, &profile, state.clock.now_ms())
        .await?
        .ok_or_else(|| {
            AppError::Conflict(format!(
                "A user with id `{id}` or this email already exists."
            ))
        })?;
    tracing::info!(user_id = %row.id, "user created by the operator");
    Ok((StatusCode::CREATED, Json(view(&state, &row).await?)).into_response())
}

/// Lists live users, oldest first.
#[utoipa::path(get, path = "/v1/users", operation_id = "list_users", tag = "users", params(PagingQuery, SearchQuery),
    responses((status = 200, body = Vec<UserOut>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn list(
    _: Operator,
    State(state): State<AppState>,
    paging: Paging,
    axum::extract::Query(search): axum::extract::Query<SearchQuery>,
) -> Result<Json<Vec<UserOut>>, AppError> {
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

/// `?search=`: matches id, email or alias.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    search: Option<String>,
}

/// One live user.
#[utoipa::path(get, path = "/v1/users/{user_id}", operation_id = "get_user", tag = "users", params(("user_id" = String, Path)),
    responses((status = 200, body = UserOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn show(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<UserOut>, AppError> {
    let row = find(&state, &user_id).await?;
    Ok(Json(view(&state, &row).await?))
}

/// Updates a user: only the fields present change; `null` clears.
#[utoipa::path(patch, path = "/v1/users/{user_id}", operation_id = "update_user", tag = "users", params(("user_id" = String, Path)),
    request_body = UpdateUser,
    responses((status = 200, body = UserOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn update(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<UpdateUser>,
) -> Result<Json<UserOut>, AppError> {
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
    let row = users::update_admin(&state.db, &user_id, &profile, state.clock.now_ms())
        .await
        .map_err(duplicate_email)?
        .ok_or_else(|| no_user(&user_id))?;
    // Blocking, or a new budget, applies from the next request.
    state.keys.forget_user(&user_id);
    tracing::info!(%user_id, blocked = row.blocked_at.is_some(), "user updated by the operator");
    Ok(Json(view(&state, &row).await?))
}

/// Soft-deletes a user and revokes their keys.
#[utoipa::path(delete, path = "/v1/users/{user_id}", operation_id = "delete_user", tag = "users", params(("user_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn delete(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, AppError> {
    if !users::soft_delete(&state.db, &user_id, state.clock.now_ms()).await? {
        return Err(no_user(&user_id));
    }
    state.keys.forget_user(&user_id);
    tracing::info!(%user_id, "user deleted by the operator");
    Ok(StatusCode::NO_CONTENT)
}

/// A user's requests, newest first.
#[utoipa::path(get, path = "/v1/users/{user_id}/usage", operation_id = "get_user_usage", tag = "users", params(("user_id" = String, Path), PagingQuery),
    responses((status = 200, body = UsageOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn usage(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    paging: Paging,
) -> Result<Json<UsageOut>, AppError> {
    find(&state, &user_id).await?;
    let filter = usage::Filter::default();
    let rows =
        usage::list_for_user(&state.db, &user_id, &filter, paging.limit, paging.skip).await?;
    let data = rows
        .into_iter()
        .map(|r| UsageItem {
            cost: usd(r.cost),
            cost_nanos: r.cost,
            created_at: rfc3339(r.created_at),
            streamed: r.streamed == 1,
            aborted: r.aborted == 1,
            id: r.id,
            key_id: r.key_id,
            endpoint: r.endpoint,
            provider: r.provider,
            model: r.model,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cached_tokens: r.cached_tokens,
            cache_write_tokens: r.cache_write_tokens,
            cache_write_1h_tokens: r.cache_write_1h_tokens,
            tokens_source: r.tokens_source,
            provider_cost_nanos: r.provider_cost,
            status: r.status,
            error_code: r.error_code,
            latency_ms: r.latency_ms,
        })
        .collect();
    Ok(Json(UsageOut { user_id, data }))
}

/// Adds credit, or removes it with a negative amount (never below zero):
/// a ledger adjustment. Answers the new balance.
#[utoipa::path(post, path = "/v1/users/{user_id}/credits", operation_id = "credit_user", tag = "users", params(("user_id" = String, Path)),
    request_body = CreditRequest,
    responses((status = 200, body = CreditOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn credit(
    _: Operator,
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<CreditRequest>,
) -> Result<Json<CreditOut>, AppError> {
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
    Ok(Json(CreditOut {
        user_id,
        amount: usd(amount),
        balance: usd(balance),
        balance_nanos: balance,
        note,
    }))
}

/// Adds `amount` nano-USD (negative to remove) to a live user's balance as
/// an adjustment; a removal may not take it below zero (only usage makes a
/// debt), an addition pays a debt off first. Returns the new balance.
pub async fn adjust_credit(
    state: &AppState,
    user_id: &str,
    amount: i64,
    note: Option<&str>,
) -> Result<i64, AppError> {
    find(state, user_id).await?;
    let balance = ledger::credit(
        &state.db,
        user_id,
        EntryKind::Adjustment,
        amount,
        note,
        state.clock.now_ms(),
    )
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
    let row = users::update_admin(&state.db, user_id, &profile, state.clock.now_ms())
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
async fn view(state: &AppState, row: &AdminUserRow) -> Result<UserOut, AppError> {
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
    let debt = ledger::debt(&state.db, &row.id).await?;
    Ok(UserOut {
        user_id: row.id.clone(),
        alias: row.alias.clone(),
        email: row.email.clone(),
        role: row.role.clone(),
        balance: usd(row.balance),
        balance_nanos: row.balance,
        debt: usd(row.balance.min(0).abs()),
        debt_nanos: row.balance.min(0).abs(),
        in_debt_since: debt.as_ref().map(|d| rfc3339(d.since)),
        debt_request_id: debt.and_then(|d| d.request_id),
        spend: usd(spend),
        budget_id: row.budget_id.clone(),
        budget_started_at: opt_rfc3339(period_start),
        next_budget_reset_at: opt_rfc3339(reset_at),
        blocked: row.blocked_at.is_some(),
        metadata: metadata_json(row.metadata.as_deref()),
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

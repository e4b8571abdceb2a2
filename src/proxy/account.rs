//! Self-service endpoints for key holders: `GET /v1/key` and `GET /v1/generation`.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Caller;
use crate::auth::policy::KeyPolicy;
use crate::billing::budget::{day_and_month_starts, window_at};
use crate::billing::money::nanos_to_usd_f64;
use crate::db::{budgets, usage};
use crate::error::AppError;
use crate::state::AppState;

/// The calling key's id, owner, display prefix and policy.
type KeyCaller = (String, String, String, std::sync::Arc<KeyPolicy>);

fn key_only(caller: Caller) -> Result<KeyCaller, AppError> {
    match caller {
        Caller::Key {
            key_id,
            user_id,
            prefix,
            policy,
        } => Ok((key_id, user_id, prefix, policy)),
        Caller::Master | Caller::Session { .. } => Err(AppError::invalid(
            "authorization",
            "This endpoint describes an API key; call it with one, not the master key.",
        )),
    }
}

/// `GET /v1/key`: the calling key's usage (today, this month, all time), the
/// user's balance, and the key's limit.
pub async fn key_info(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<Value>, AppError> {
    let (key_id, user_id, prefix, policy) = key_only(caller)?;
    let (day, month) = day_and_month_starts(state.clock.now_ms());
    let (requests_today, today) = usage::key_spend(&state.db, &key_id, day).await?;
    let (requests_month, this_month) = usage::key_spend(&state.db, &key_id, month).await?;
    let (requests_all, all_time) = usage::key_spend(&state.db, &key_id, 0).await?;
    let (balance, available) = state.recorder.balance(&user_id).await?;
    let key_budget = policy
        .budgets
        .iter()
        .find(|b| b.scope == format!("key:{key_id}"));
    let (limit, limit_remaining, limit_resets_at) = match key_budget {
        Some(budget) => {
            let now = state.clock.now_ms();
            let (start, spent) = budgets::window(&state.db, &budget.scope)
                .await?
                .unwrap_or((now, 0));
            let (spent, _, reset) = window_at(budget.period, start, spent, now);
            (
                Value::from(nanos_to_usd_f64(budget.max)),
                Value::from(nanos_to_usd_f64((budget.max - spent).max(0))),
                reset.map_or(Value::Null, Value::from),
            )
        }
        None => (Value::Null, Value::Null, Value::Null),
    };
    Ok(Json(json!({
        "data": {
            "id": key_id,
            "prefix": prefix,
            "usage": {
                "today": nanos_to_usd_f64(today),
                "month": nanos_to_usd_f64(this_month),
                "all_time": nanos_to_usd_f64(all_time),
            },
            "requests": { "today": requests_today, "month": requests_month, "all_time": requests_all },
            "balance": nanos_to_usd_f64(balance),
            "available": nanos_to_usd_f64(available),
            "debt": nanos_to_usd_f64(balance.min(0).abs()),
            "limit": limit,
            "limit_remaining": limit_remaining,
            "limit_resets_at": limit_resets_at,
            "rate_limit": { "requests_per_minute": policy.rpm_limit, "tokens_per_minute": policy.tpm_limit },
            "allowed_models": policy.allowed_models,
            "currency": "USD",
        }
    })))
}

/// Query of `GET /v1/generation`.
#[derive(Deserialize)]
pub struct GenerationQuery {
    id: Option<String>,
}

/// `GET /v1/generation?id=…`: one request's tokens, cost, latency and status,
/// only for the user who made it.
pub async fn generation(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<GenerationQuery>,
) -> Result<Json<Value>, AppError> {
    let (_, user_id, _, _) = key_only(caller)?;
    let id = query
        .id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| AppError::invalid("id", "Pass the request id as `?id=`."))?;
    let record = usage::find_for_user(&state.db, &id, &user_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("No request `{id}` for this account.")))?;
    Ok(Json(json!({
        "data": {
            "id": record.id,
            "provider": record.provider,
            "model": record.model,
            "endpoint": record.endpoint,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "cached_tokens": record.cached_tokens,
            "cache_read_tokens": record.cached_tokens,
            "cache_write_tokens": record.cache_write_tokens,
            "cache_write_1h_tokens": record.cache_write_1h_tokens,
            "tokens_source": record.tokens_source,
            "cost": nanos_to_usd_f64(record.cost),
            "latency_ms": record.latency_ms,
            "time_to_first_token_ms": record.ttft_ms,
            "status": record.status,
            "error_code": record.error_code,
            "streamed": record.streamed == 1,
            "aborted": record.aborted == 1,
            "created_at": record.created_at,
        }
    })))
}

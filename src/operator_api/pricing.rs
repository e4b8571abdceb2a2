//! `/v1/pricing`: the price catalog. Anyone may read what users pay; the
//! provider cost and the margin, and every change, need the master key.
//! Changes apply from the next request and are kept in a history.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{rfc3339, usd, usd_limit, JsonBody, Operator, Paging, PagingQuery};
use crate::billing::pricing::Price;
use crate::db::prices::{self, PriceRow};
use crate::error::AppError;
use crate::error::ErrorBody;
use crate::state::AppState;

/// The highest price accepted per million tokens, in USD (a typo guard).
const MAX_PRICE_USD: i64 = 100_000;

/// `POST /v1/pricing`: the provider's cost in USD per million tokens.
#[derive(Deserialize, ToSchema)]
pub struct SetPrice {
    /// `provider:model`.
    #[schema(example = "openai:gpt-4o-mini")]
    model_key: String,
    #[schema(value_type = String, example = "0.15")]
    input_price_per_million: Value,
    #[schema(value_type = String, example = "0.60")]
    output_price_per_million: Value,
    /// Prompt tokens read from the provider's cache; unset, the input price.
    #[schema(value_type = Option<String>, example = "0.075")]
    #[serde(alias = "cached_input_price_per_million")]
    cache_read_price_per_million: Option<Value>,
    /// Prompt tokens written to the cache for 5 minutes; unset, the input price.
    #[schema(value_type = Option<String>)]
    cache_write_price_per_million: Option<Value>,
    /// Prompt tokens written to the cache for an hour; unset, the 5-minute price.
    #[schema(value_type = Option<String>)]
    cache_write_1h_price_per_million: Option<Value>,
    /// This model's margin, overriding the global one.
    #[schema(value_type = Option<String>, example = "20")]
    margin_percent: Option<Value>,
}

/// `?model_key=`: one model's history.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryFilter {
    model_key: Option<String>,
}

/// A price: what users pay, and for the master key what the provider
/// costs and the margin. USD per million tokens.
#[derive(Serialize, ToSchema)]
pub struct PriceOut {
    model_key: String,
    user_input_price_per_million: Option<f64>,
    user_output_price_per_million: Option<f64>,
    /// What users pay for prompt tokens read from the cache.
    user_cache_read_price_per_million: Option<f64>,
    /// What users pay for prompt tokens written to the cache for 5 minutes,
    /// and for an hour.
    user_cache_write_price_per_million: Option<f64>,
    user_cache_write_1h_price_per_million: Option<f64>,
    /// The provider's cost (master key only).
    #[serde(skip_serializing_if = "Option::is_none")]
    input_price_per_million: Option<f64>,
    /// The provider's cost (master key only).
    #[serde(skip_serializing_if = "Option::is_none")]
    output_price_per_million: Option<f64>,
    /// The provider's cost of cache reads, when it has one (master key only).
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_price_per_million: Option<f64>,
    /// The provider's cost of cache writes, when it has one (master key only).
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_price_per_million: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_1h_price_per_million: Option<f64>,
    /// This model's own margin, when it has one (master key only).
    #[serde(skip_serializing_if = "Option::is_none")]
    margin_percent: Option<f64>,
    /// The margin applied (master key only).
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_margin_percent: Option<f64>,
}

/// A change to a price.
#[derive(Serialize, ToSchema)]
pub struct PriceChangeOut {
    model_key: String,
    /// `set` or `delete`.
    action: String,
    input_price_per_million: Option<f64>,
    output_price_per_million: Option<f64>,
    cache_read_price_per_million: Option<f64>,
    cache_write_price_per_million: Option<f64>,
    cache_write_1h_price_per_million: Option<f64>,
    margin_percent: Option<f64>,
    changed_at: String,
}

/// Every model's user price. With the master key, also the provider cost
/// and the margin (a reseller's own business).
#[utoipa::path(get, path = "/v1/pricing", operation_id = "list_prices", tag = "pricing",
    responses((status = 200, body = Vec<PriceOut>)),
    security((), ("master_key" = [])))]
pub async fn list(
    operator: Option<Operator>,
    State(state): State<AppState>,
) -> Result<Json<Vec<PriceOut>>, AppError> {
    let rows = prices::all(&state.db).await?;
    let full = operator.is_some();
    Ok(Json(
        rows.iter().map(|row| view(&state, row, full)).collect(),
    ))
}

/// One model's price, shown as [`list`] shows it.
#[utoipa::path(get, path = "/v1/pricing/{model_key}", operation_id = "get_price", tag = "pricing", params(("model_key" = String, Path)),
    responses((status = 200, body = PriceOut), (status = 404, body = ErrorBody)),
    security((), ("master_key" = [])))]
pub async fn show(
    operator: Option<Operator>,
    State(state): State<AppState>,
    Path(model_key): Path<String>,
) -> Result<Json<PriceOut>, AppError> {
    let rows = prices::all(&state.db).await?;
    rows.iter()
        .find(|row| row.model_key == model_key)
        .map(|row| Json(view(&state, row, operator.is_some())))
        .ok_or_else(|| no_price(&model_key))
}

/// Sets a model's price (creating or replacing it), from the next request.
#[utoipa::path(post, path = "/v1/pricing", operation_id = "set_price", tag = "pricing", request_body = SetPrice,
    responses((status = 201, body = PriceOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn set(
    _: Operator,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SetPrice>,
) -> Result<Response, AppError> {
    let model_key = checked_model_key(&body.model_key)?;
    let price = Price {
        input: price_field("input_price_per_million", &body.input_price_per_million)?,
        output: price_field("output_price_per_million", &body.output_price_per_million)?,
        cached_input: optional_price(
            "cache_read_price_per_million",
            &body.cache_read_price_per_million,
        )?,
        cache_write: optional_price(
            "cache_write_price_per_million",
            &body.cache_write_price_per_million,
        )?,
        cache_write_1h: optional_price(
            "cache_write_1h_price_per_million",
            &body.cache_write_1h_price_per_million,
        )?,
        margin_bp: body
            .margin_percent
            .as_ref()
            .filter(|v| !v.is_null())
            .map(margin_bp)
            .transpose()?,
    };
    set_price(&state, &model_key, &price).await?;
    let rows = prices::all(&state.db).await?;
    let row = rows
        .iter()
        .find(|row| row.model_key == model_key)
        .ok_or(AppError::Internal)?;
    Ok((StatusCode::CREATED, Json(view(&state, row, true))).into_response())
}

/// Removes a model's price: it can no longer be called.
#[utoipa::path(delete, path = "/v1/pricing/{model_key}", operation_id = "delete_price", tag = "pricing", params(("model_key" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn delete(
    _: Operator,
    State(state): State<AppState>,
    Path(model_key): Path<String>,
) -> Result<StatusCode, AppError> {
    remove_price(&state, &model_key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a model's price, from the next request on.
pub async fn set_price(state: &AppState, model_key: &str, price: &Price) -> Result<(), AppError> {
    prices::set(&state.db, &price.row(model_key), state.clock.now_ms()).await?;
    reload(state).await?;
    tracing::info!(%model_key, "price set by an operator");
    Ok(())
}

/// Removes a model's price: it can no longer be called.
pub async fn remove_price(state: &AppState, model_key: &str) -> Result<(), AppError> {
    if !prices::remove(&state.db, model_key, state.clock.now_ms()).await? {
        return Err(no_price(model_key));
    }
    reload(state).await?;
    tracing::info!(%model_key, "price removed by an operator");
    Ok(())
}

/// Every price change, newest first.
#[utoipa::path(get, path = "/v1/pricing/history", operation_id = "list_price_history", tag = "pricing", params(PagingQuery, HistoryFilter),
    responses((status = 200, body = Vec<PriceChangeOut>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn history(
    _: Operator,
    State(state): State<AppState>,
    paging: Paging,
    Query(filter): Query<HistoryFilter>,
) -> Result<Json<Vec<PriceChangeOut>>, AppError> {
    let rows = prices::history(
        &state.db,
        filter.model_key.as_deref(),
        paging.skip,
        paging.limit,
    )
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|c| PriceChangeOut {
                input_price_per_million: c.input_per_million.map(usd),
                output_price_per_million: c.output_per_million.map(usd),
                cache_read_price_per_million: c.cached_input_per_million.map(usd),
                cache_write_price_per_million: c.cache_write_per_million.map(usd),
                cache_write_1h_price_per_million: c.cache_write_1h_per_million.map(usd),
                margin_percent: c.margin_bp.map(|bp| bp as f64 / 100.0),
                changed_at: rfc3339(c.changed_at),
                model_key: c.model_key,
                action: c.action,
            })
            .collect(),
    ))
}

/// Applies a change to this process at once (other replicas hear of it
/// from the database, or reload within a minute).
async fn reload(state: &AppState) -> Result<(), AppError> {
    state.prices.reload(&state.db).await?;
    state.models.refresh_catalog(state.prices.keys());
    Ok(())
}

fn no_price(model_key: &str) -> AppError {
    AppError::NotFound(format!("No price for `{model_key}`."))
}

pub fn checked_model_key(key: &str) -> Result<String, AppError> {
    let key = key.trim();
    let valid = key
        .split_once(':')
        .is_some_and(|(p, m)| !p.is_empty() && !m.is_empty() && !p.contains('/'))
        && key.len() <= 200
        && !key.chars().any(char::is_whitespace);
    if valid {
        Ok(key.to_string())
    } else {
        Err(AppError::invalid(
            "model_key",
            "`model_key` must be `provider:model`, such as `openai:gpt-4o-mini`.",
        ))
    }
}

pub fn price_field(field: &str, value: &Value) -> Result<i64, AppError> {
    let nanos = usd_limit(field, value)?;
    if nanos > MAX_PRICE_USD * crate::billing::money::NANOS_PER_USD {
        return Err(AppError::invalid(
            field,
            format!("`{field}` must be at most {MAX_PRICE_USD} USD per million tokens."),
        ));
    }
    Ok(nanos)
}

/// An optional price field: absent or `null` is unset.
fn optional_price(field: &str, value: &Option<Value>) -> Result<Option<i64>, AppError> {
    value
        .as_ref()
        .filter(|v| !v.is_null())
        .map(|v| price_field(field, v))
        .transpose()
}

/// A margin in percent (up to two decimals) as basis points.
pub fn margin_bp(value: &Value) -> Result<i64, AppError> {
    // Percent with two decimals is basis points: parse it as an amount with
    // the decimal point moved, exactly.
    let nanos = usd_limit("margin_percent", value)?;
    let per_bp = crate::billing::money::NANOS_PER_USD / 100;
    if nanos % per_bp != 0 || nanos > 1000 * crate::billing::money::NANOS_PER_USD {
        return Err(AppError::invalid(
            "margin_percent",
            "`margin_percent` must be from 0 to 1000, with at most two decimals.",
        ));
    }
    Ok(nanos / per_bp)
}

/// A price as the API shows it: what users pay, and with `full` what the
/// provider costs and the margin.
fn view(state: &AppState, row: &PriceRow, full: bool) -> PriceOut {
    let user = state.prices.user_price(&row.model_key);
    let margin = row.margin_bp.unwrap_or(state.prices.default_margin_bp());
    let percent = |bp: i64| bp as f64 / 100.0;
    PriceOut {
        model_key: row.model_key.clone(),
        user_input_price_per_million: user.map(|p| usd(p.input)),
        user_output_price_per_million: user.map(|p| usd(p.output)),
        user_cache_read_price_per_million: user.map(|p| usd(p.cached_input)),
        user_cache_write_price_per_million: user.map(|p| usd(p.cache_write)),
        user_cache_write_1h_price_per_million: user.map(|p| usd(p.cache_write_1h)),
        input_price_per_million: full.then(|| usd(row.input_per_million)),
        output_price_per_million: full.then(|| usd(row.output_per_million)),
        cache_read_price_per_million: row.cached_input_per_million.filter(|_| full).map(usd),
        cache_write_price_per_million: row.cache_write_per_million.filter(|_| full).map(usd),
        cache_write_1h_price_per_million: row.cache_write_1h_per_million.filter(|_| full).map(usd),
        margin_percent: row.margin_bp.filter(|_| full).map(percent),
        effective_margin_percent: full.then(|| percent(margin)),
    }
}

//! `/v1/pricing`: the price catalog. Reading is public; changes need the
//! master key, apply from the next request, and are kept in a history.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{rfc3339, usd, usd_limit, JsonBody, Operator, Paging};
use crate::billing::pricing::Price;
use crate::db::prices::{self, PriceRow};
use crate::error::AppError;
use crate::server::AppState;

/// The highest price accepted per million tokens, in USD (a typo guard).
const MAX_PRICE_USD: i64 = 100_000;

#[derive(Deserialize)]
pub struct SetPrice {
    model_key: String,
    input_price_per_million: Value,
    output_price_per_million: Value,
    cached_input_price_per_million: Option<Value>,
    margin_percent: Option<Value>,
}

#[derive(Deserialize)]
pub struct HistoryFilter {
    model_key: Option<String>,
}

/// `GET /v1/pricing`: every price, with the margin and the user's price.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Value>>, AppError> {
    let rows = prices::all(&state.db).await?;
    Ok(Json(rows.iter().map(|row| view(&state, row)).collect()))
}

/// `GET /v1/pricing/{model_key}`
pub async fn show(
    State(state): State<AppState>,
    Path(model_key): Path<String>,
) -> Result<Json<Value>, AppError> {
    let rows = prices::all(&state.db).await?;
    rows.iter()
        .find(|row| row.model_key == model_key)
        .map(|row| Json(view(&state, row)))
        .ok_or_else(|| no_price(&model_key))
}

/// `POST /v1/pricing`: sets a model's price (creating or replacing it).
pub async fn set(
    _: Operator,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SetPrice>,
) -> Result<Response, AppError> {
    let model_key = checked_model_key(&body.model_key)?;
    let price = Price {
        input: price_field("input_price_per_million", &body.input_price_per_million)?,
        output: price_field("output_price_per_million", &body.output_price_per_million)?,
        cached_input: body
            .cached_input_price_per_million
            .as_ref()
            .filter(|v| !v.is_null())
            .map(|v| price_field("cached_input_price_per_million", v))
            .transpose()?,
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
    Ok((StatusCode::CREATED, Json(view(&state, row))).into_response())
}

/// `DELETE /v1/pricing/{model_key}`: the model can no longer be called.
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
    prices::set(&state.db, model_key, price).await?;
    reload(state).await?;
    tracing::info!(%model_key, "price set by an operator");
    Ok(())
}

/// Removes a model's price: it can no longer be called.
pub async fn remove_price(state: &AppState, model_key: &str) -> Result<(), AppError> {
    if !prices::remove(&state.db, model_key).await? {
        return Err(no_price(model_key));
    }
    reload(state).await?;
    tracing::info!(%model_key, "price removed by an operator");
    Ok(())
}

/// `GET /v1/pricing/history?model_key=&skip=&limit=`: changes, newest first.
pub async fn history(
    _: Operator,
    State(state): State<AppState>,
    paging: Paging,
    Query(filter): Query<HistoryFilter>,
) -> Result<Json<Vec<Value>>, AppError> {
    let rows = prices::history(
        &state.db,
        filter.model_key.as_deref(),
        paging.skip,
        paging.limit,
    )
    .await?;
    Ok(Json(
        rows.iter()
            .map(|c| {
                json!({
                    "model_key": c.model_key,
                    "action": c.action,
                    "input_price_per_million": c.input_per_million.map(usd),
                    "output_price_per_million": c.output_per_million.map(usd),
                    "cached_input_price_per_million": c.cached_input_per_million.map(usd),
                    "margin_percent": c.margin_bp.map(|bp| bp as f64 / 100.0),
                    "changed_at": rfc3339(c.changed_at),
                })
            })
            .collect(),
    ))
}

/// Applies a change to this process at once (other replicas reload within a minute).
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

fn view(state: &AppState, row: &PriceRow) -> Value {
    let user = state.prices.user_price(&row.model_key);
    json!({
        "model_key": row.model_key,
        "input_price_per_million": usd(row.input_per_million),
        "output_price_per_million": usd(row.output_per_million),
        "cached_input_price_per_million": row.cached_input_per_million.map(usd),
        "margin_percent": row.margin_bp.map(|bp| bp as f64 / 100.0),
        "effective_margin_percent": row.margin_bp.unwrap_or(state.prices.default_margin_bp()) as f64 / 100.0,
        "user_input_price_per_million": user.map(|p| usd(p.input)),
        "user_output_price_per_million": user.map(|p| usd(p.output)),
    })
}

//! `GET /v1/models`: the catalog models this gateway can route, in OpenAI's list shape.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::Caller;
use crate::billing::money::nanos_to_usd_f64;
use crate::error::AppError;
use crate::state::AppState;

/// Lists the `provider:model` ids this caller may call, with the user's price per
/// 1M tokens (margin included).
pub async fn list_models(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<Value>, AppError> {
    let allowed = |id: &String| match (&caller, id.split_once(':')) {
        (Caller::Key { policy, .. }, Some((provider, model))) => policy.allows(provider, model),
        _ => true,
    };
    let data: Vec<Value> = state
        .models
        .catalog_keys()
        .into_iter()
        .filter(allowed)
        .map(|id| {
            let price = state.prices.user_price(&id);
            let provider = id
                .split_once(':')
                .map(|(p, _)| p)
                .unwrap_or_default()
                .to_string();
            json!({
                "id": id,
                "object": "model",
                "created": 0,
                "owned_by": provider,
                "pricing": price.map(|p| json!({
                    "currency": "USD",
                    "input_per_million": nanos_to_usd_f64(p.input),
                    "output_per_million": nanos_to_usd_f64(p.output),
                    "cached_input_per_million": nanos_to_usd_f64(p.cached_input),
                    "cache_write_per_million": nanos_to_usd_f64(p.cache_write),
                    "cache_write_1h_per_million": nanos_to_usd_f64(p.cache_write_1h),
                })),
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

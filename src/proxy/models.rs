//! `GET /v1/models`: the catalog models this gateway can route, in OpenAI's list shape.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::Caller;
use crate::error::AppError;
use crate::server::AppState;

/// Lists `provider:model` ids with their price per 1M tokens.
pub async fn list_models(
    _caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<Value>, AppError> {
    let data: Vec<Value> = state
        .models
        .catalog_keys()
        .map(|id| {
            let price = state.config.pricing.get(&id);
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
                    "input_per_million": p.input_price_per_million,
                    "output_per_million": p.output_price_per_million,
                })),
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

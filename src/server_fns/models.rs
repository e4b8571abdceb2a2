//! The public model catalog: every routable model at the user's price.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A model users can call, with the price they pay per 1M tokens (margin
/// included), in nano-USD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// `provider:model`.
    pub id: String,
    pub input_per_million: i64,
    pub output_per_million: i64,
    pub cached_input_per_million: i64,
}

/// The models this gateway routes and prices, sorted by id. Public: the
/// `/models` page shows it to everyone.
#[server(prefix = "/rpc", endpoint = "model_catalog")]
pub async fn model_catalog() -> Result<Vec<ModelPrice>, AppError> {
    let state = super::context::state()?;
    let mut models: Vec<ModelPrice> = state
        .models
        .catalog_keys()
        .into_iter()
        .filter_map(|id| {
            let price = state.prices.user_price(&id)?;
            Some(ModelPrice {
                input_per_million: price.input,
                output_per_million: price.output,
                cached_input_per_million: price.cached_input,
                id,
            })
        })
        .collect();
    models.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(models)
}

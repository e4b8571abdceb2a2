//! The price catalog in memory, loaded from (and seeded into) the database.

use std::collections::HashMap;
use std::sync::RwLock;

use super::money::usd_to_nanos;
use super::pricing::{Price, UserPrice, BUILT_IN};
use crate::config::Config;
use crate::db::{prices, Db};

/// The price catalog in memory, loaded from the database.
pub struct PriceBook {
    prices: RwLock<HashMap<String, Price>>,
    default_margin_bp: i64,
}

impl PriceBook {
    /// Seeds the catalog (config first, then the built-in table; existing rows
    /// win) and loads it.
    pub async fn load(db: &Db, config: &Config) -> Result<Self, sqlx::Error> {
        for (key, price) in &config.pricing {
            let price = Price {
                input: usd_to_nanos(price.input_price_per_million),
                output: usd_to_nanos(price.output_price_per_million),
                cached_input: price.cached_input_price_per_million.map(usd_to_nanos),
                margin_bp: price.margin_percent.map(percent_to_bp),
            };
            prices::seed(db, key, &price, "config").await?;
        }
        for (key, input, output, cached) in BUILT_IN {
            let price = Price {
                input: usd_to_nanos(*input),
                output: usd_to_nanos(*output),
                cached_input: cached.map(usd_to_nanos),
                margin_bp: None,
            };
            prices::seed(db, key, &price, "built-in").await?;
        }
        let book = Self {
            prices: RwLock::new(HashMap::new()),
            default_margin_bp: percent_to_bp(config.margin_percent),
        };
        book.reload(db).await?;
        Ok(book)
    }

    /// Re-reads the catalog (after a change, or periodically for other replicas' changes).
    pub async fn reload(&self, db: &Db) -> Result<(), sqlx::Error> {
        let rows = prices::all(db).await?;
        let map = rows
            .iter()
            .map(|r| (r.model_key.clone(), r.price()))
            .collect();
        *self.prices.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    /// The user's price for `provider:model`, if it has one.
    pub fn user_price(&self, model_key: &str) -> Option<UserPrice> {
        let prices = self.prices.read().unwrap_or_else(|e| e.into_inner());
        prices
            .get(model_key)
            .map(|p| p.for_user(self.default_margin_bp))
    }

    /// The global margin, in basis points.
    pub fn default_margin_bp(&self) -> i64 {
        self.default_margin_bp
    }

    /// Every priced `provider:model`.
    pub fn keys(&self) -> Vec<String> {
        let prices = self.prices.read().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<String> = prices.keys().cloned().collect();
        keys.sort();
        keys
    }
}

/// A margin in percent as basis points (20.0 → 2000).
pub fn percent_to_bp(percent: f64) -> i64 {
    (percent * 100.0).round() as i64
}

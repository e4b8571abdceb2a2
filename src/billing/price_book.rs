//! The price catalog in memory, loaded from (and seeded into) the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use super::money::usd_to_nanos;
use super::pricing::{Price, Quote, UserPrice, BUILT_IN};
use crate::config::Config;
use crate::db::{prices, Db};

/// The price catalog in memory, loaded from the database.
pub struct PriceBook {
    prices: RwLock<Catalog>,
    /// Reloads started so far; each reload's number orders its snapshot.
    reloads: AtomicU64,
    default_margin_bp: i64,
}

/// One reload's view of the prices, and which reload read it.
#[derive(Default)]
struct Catalog {
    reload: u64,
    prices: HashMap<String, Price>,
}

impl PriceBook {
    /// Seeds the catalog (config first, then the built-in table; existing
    /// rows win, and models an operator deleted stay deleted) and loads it.
    pub async fn load(db: &Db, config: &Config, now: i64) -> Result<Self, sqlx::Error> {
        for (key, price) in &config.pricing {
            let price = Price {
                input: usd_to_nanos(price.input_price_per_million),
                output: usd_to_nanos(price.output_price_per_million),
                cached_input: price.cache_read_price_per_million.map(usd_to_nanos),
                cache_write: price.cache_write_price_per_million.map(usd_to_nanos),
                cache_write_1h: price.cache_write_1h_price_per_million.map(usd_to_nanos),
                margin_bp: price.margin_percent.map(percent_to_bp),
            };
            prices::seed(db, &price.row(key), "config", now).await?;
        }
        for built_in in BUILT_IN {
            let price = Price {
                input: usd_to_nanos(built_in.input),
                output: usd_to_nanos(built_in.output),
                cached_input: built_in.cache_read.map(usd_to_nanos),
                cache_write: built_in.cache_write.map(usd_to_nanos),
                cache_write_1h: built_in.cache_write_1h.map(usd_to_nanos),
                margin_bp: None,
            };
            prices::seed(db, &price.row(built_in.model_key), "built-in", now).await?;
        }
        let book = Self {
            prices: RwLock::default(),
            reloads: AtomicU64::new(0),
            default_margin_bp: percent_to_bp(config.margin_percent),
        };
        book.reload(db).await?;
        Ok(book)
    }

    /// Re-reads the catalog (after a change, or periodically for other replicas' changes).
    /// Of two reloads running at once, the one that started later read the
    /// newer prices, so an earlier one finishing last is not installed over it.
    pub async fn reload(&self, db: &Db) -> Result<(), sqlx::Error> {
        let reload = self.reloads.fetch_add(1, Ordering::SeqCst) + 1;
        let rows = prices::all(db).await?;
        let prices = rows
            .iter()
            .map(|r| (r.model_key.clone(), r.price()))
            .collect();
        self.install(reload, prices);
        Ok(())
    }

    /// Installs reload number `reload`'s prices unless a later one is in.
    fn install(&self, reload: u64, prices: HashMap<String, Price>) {
        let mut catalog = self.prices.write().unwrap_or_else(|e| e.into_inner());
        if reload > catalog.reload {
            *catalog = Catalog { reload, prices };
        }
    }

    /// The user's price for `provider:model`, if it has one.
    pub fn user_price(&self, model_key: &str) -> Option<UserPrice> {
        let catalog = self.prices.read().unwrap_or_else(|e| e.into_inner());
        catalog
            .prices
            .get(model_key)
            .map(|p| p.for_user(self.default_margin_bp))
    }

    /// The user's and the provider's prices for `provider:model`, if it has one.
    pub fn quote(&self, model_key: &str) -> Option<Quote> {
        let catalog = self.prices.read().unwrap_or_else(|e| e.into_inner());
        catalog
            .prices
            .get(model_key)
            .map(|p| p.quote(self.default_margin_bp))
    }

    /// The global margin, in basis points.
    pub fn default_margin_bp(&self) -> i64 {
        self.default_margin_bp
    }

    /// Every priced `provider:model`.
    pub fn keys(&self) -> Vec<String> {
        let catalog = self.prices.read().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<String> = catalog.prices.keys().cloned().collect();
        keys.sort();
        keys
    }
}

/// A margin in percent as basis points (20.0 → 2000).
pub fn percent_to_bp(percent: f64) -> i64 {
    (percent * 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> PriceBook {
        PriceBook {
            prices: RwLock::default(),
            reloads: AtomicU64::new(0),
            default_margin_bp: 2000,
        }
    }

    fn catalog(model_key: &str) -> HashMap<String, Price> {
        let price = Price {
            input: 1_000,
            output: 2_000,
            cached_input: None,
            cache_write: None,
            cache_write_1h: None,
            margin_bp: None,
        };
        HashMap::from([(model_key.to_string(), price)])
    }

    #[test]
    fn a_reload_that_finishes_last_but_started_first_is_dropped() {
        let book = book();
        let (first, second) = (1, 2);
        book.install(second, catalog("groq:new-model"));
        book.install(first, catalog("groq:old-model"));
        assert_eq!(book.keys(), ["groq:new-model"]);
        assert!(book.user_price("groq:new-model").is_some());
        book.install(3, catalog("groq:newer-model"));
        assert_eq!(book.keys(), ["groq:newer-model"]);
    }
}

//! Queries on `model_prices`, the price catalog.

use super::{now_ms, Db};
use crate::billing::pricing::Price;
use crate::with_pool;

/// A catalog row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PriceRow {
    pub model_key: String,
    pub input_per_million: i64,
    pub output_per_million: i64,
    pub cached_input_per_million: Option<i64>,
    pub margin_bp: Option<i64>,
}

impl PriceRow {
    pub fn price(&self) -> Price {
        Price {
            input: self.input_per_million,
            output: self.output_per_million,
            cached_input: self.cached_input_per_million,
            margin_bp: self.margin_bp,
        }
    }
}

/// Adds a price unless the model is already priced: the database wins after the first seed.
pub async fn seed(
    db: &Db,
    model_key: &str,
    price: &Price,
    source: &str,
) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO model_prices (model_key, input_per_million, output_per_million, \
               cached_input_per_million, margin_bp, source, updated_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (model_key) DO NOTHING";
    with_pool!(db, pool => {
        sqlx::query(sql)
            .bind(model_key)
            .bind(price.input)
            .bind(price.output)
            .bind(price.cached_input)
            .bind(price.margin_bp)
            .bind(source)
            .bind(now_ms())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The whole catalog.
pub async fn all(db: &Db) -> Result<Vec<PriceRow>, sqlx::Error> {
    let sql = "SELECT model_key, input_per_million, output_per_million, cached_input_per_million, \
               margin_bp FROM model_prices ORDER BY model_key";
    with_pool!(db, pool => sqlx::query_as::<_, PriceRow>(sql).fetch_all(pool).await)
}

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

/// A price change, as kept in `price_history`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PriceChange {
    pub model_key: String,
    pub action: String,
    pub input_per_million: Option<i64>,
    pub output_per_million: Option<i64>,
    pub cached_input_per_million: Option<i64>,
    pub margin_bp: Option<i64>,
    pub changed_at: i64,
}

const HISTORY: &str = "INSERT INTO price_history (id, model_key, action, input_per_million, \
     output_per_million, cached_input_per_million, margin_bp, changed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

fn history_id() -> String {
    format!("prc_{}", uuid::Uuid::new_v4().simple())
}

/// Sets a model's price (an operator's change) and records it in the history.
pub async fn set(db: &Db, model_key: &str, price: &Price) -> Result<(), sqlx::Error> {
    let upsert = "INSERT INTO model_prices (model_key, input_per_million, output_per_million, \
                  cached_input_per_million, margin_bp, source, updated_at) \
                  VALUES ($1, $2, $3, $4, $5, 'admin', $6) ON CONFLICT (model_key) DO UPDATE SET \
                  input_per_million = $2, output_per_million = $3, cached_input_per_million = $4, \
                  margin_bp = $5, source = 'admin', updated_at = $6";
    let now = now_ms();
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query(upsert)
            .bind(model_key)
            .bind(price.input)
            .bind(price.output)
            .bind(price.cached_input)
            .bind(price.margin_bp)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(HISTORY)
            .bind(history_id())
            .bind(model_key)
            .bind("set")
            .bind(price.input)
            .bind(price.output)
            .bind(price.cached_input)
            .bind(price.margin_bp)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    })
}

/// Removes a model's price, recording it; returns whether it had one.
pub async fn remove(db: &Db, model_key: &str) -> Result<bool, sqlx::Error> {
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let removed = sqlx::query("DELETE FROM model_prices WHERE model_key = $1")
            .bind(model_key)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if removed {
            sqlx::query(HISTORY)
                .bind(history_id())
                .bind(model_key)
                .bind("delete")
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(removed)
    })
}

/// The price history, newest first, optionally of one model.
pub async fn history(
    db: &Db,
    model_key: Option<&str>,
    skip: i64,
    limit: i64,
) -> Result<Vec<PriceChange>, sqlx::Error> {
    let sql = "SELECT model_key, action, input_per_million, output_per_million, \
               cached_input_per_million, margin_bp, changed_at FROM price_history \
               WHERE ($3 IS NULL OR model_key = $3) ORDER BY changed_at DESC, id DESC LIMIT $1 OFFSET $2";
    with_pool!(db, pool => {
        sqlx::query_as::<_, PriceChange>(sql)
            .bind(limit)
            .bind(skip)
            .bind(model_key)
            .fetch_all(pool)
            .await
    })
}

//! Queries on `model_prices`, the price catalog.

use super::Db;
use crate::with_pool;

/// A catalog row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PriceRow {
    pub model_key: String,
    pub input_per_million: i64,
    pub output_per_million: i64,
    pub cached_input_per_million: Option<i64>,
    pub cache_write_per_million: Option<i64>,
    pub cache_write_1h_per_million: Option<i64>,
    pub margin_bp: Option<i64>,
}

/// Adds a price unless the model is already priced (the database wins after
/// the first seed) or an operator deleted it (it stays deleted until one
/// sets it again).
pub async fn seed(db: &Db, price: &PriceRow, source: &str, now: i64) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO model_prices (model_key, input_per_million, output_per_million, \
               cached_input_per_million, cache_write_per_million, cache_write_1h_per_million, \
               margin_bp, source, updated_at) \
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
               WHERE NOT EXISTS (SELECT 1 FROM deleted_prices WHERE model_key = $1) \
               ON CONFLICT (model_key) DO NOTHING";
    with_pool!(db, pool => {
        sqlx::query(sql)
            .bind(&price.model_key)
            .bind(price.input_per_million)
            .bind(price.output_per_million)
            .bind(price.cached_input_per_million)
            .bind(price.cache_write_per_million)
            .bind(price.cache_write_1h_per_million)
            .bind(price.margin_bp)
            .bind(source)
            .bind(now)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The columns of a [`PriceRow`].
const COLUMNS: &str =
    "model_key, input_per_million, output_per_million, cached_input_per_million, \
    cache_write_per_million, cache_write_1h_per_million, margin_bp";

/// The whole catalog.
pub async fn all(db: &Db) -> Result<Vec<PriceRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM model_prices ORDER BY model_key");
    with_pool!(db, pool => sqlx::query_as::<_, PriceRow>(&sql).fetch_all(pool).await)
}

/// A price change, as kept in `price_history`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PriceChange {
    pub model_key: String,
    pub action: String,
    pub input_per_million: Option<i64>,
    pub output_per_million: Option<i64>,
    pub cached_input_per_million: Option<i64>,
    pub cache_write_per_million: Option<i64>,
    pub cache_write_1h_per_million: Option<i64>,
    pub margin_bp: Option<i64>,
    pub changed_at: i64,
}

const HISTORY: &str = "INSERT INTO price_history (id, model_key, action, input_per_million, \
     output_per_million, cached_input_per_million, cache_write_per_million, \
     cache_write_1h_per_million, margin_bp, changed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

fn history_id() -> String {
    format!("prc_{}", uuid::Uuid::new_v4().simple())
}

/// Sets a model's price (an operator's change: a model deleted before is
/// priced again) and records it in the history.
pub async fn set(db: &Db, price: &PriceRow, now: i64) -> Result<(), sqlx::Error> {
    let model_key = price.model_key.as_str();
    let upsert = "INSERT INTO model_prices (model_key, input_per_million, output_per_million, \
                  cached_input_per_million, cache_write_per_million, cache_write_1h_per_million, \
                  margin_bp, source, updated_at) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, 'admin', $8) ON CONFLICT (model_key) DO UPDATE SET \
                  input_per_million = $2, output_per_million = $3, cached_input_per_million = $4, \
                  cache_write_per_million = $5, cache_write_1h_per_million = $6, \
                  margin_bp = $7, source = 'admin', updated_at = $8";
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query(upsert)
            .bind(model_key)
            .bind(price.input_per_million)
            .bind(price.output_per_million)
            .bind(price.cached_input_per_million)
            .bind(price.cache_write_per_million)
            .bind(price.cache_write_1h_per_million)
            .bind(price.margin_bp)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM deleted_prices WHERE model_key = $1")
            .bind(model_key)
            .execute(&mut *tx)
            .await?;
        sqlx::query(HISTORY)
            .bind(history_id())
            .bind(model_key)
            .bind("set")
            .bind(price.input_per_million)
            .bind(price.output_per_million)
            .bind(price.cached_input_per_million)
            .bind(price.cache_write_per_million)
            .bind(price.cache_write_1h_per_million)
            .bind(price.margin_bp)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        super::notify(&mut tx, super::Change::Prices).await?;
        tx.commit().await
    })
}

/// Removes a model's price, recording it, so that neither the config nor
/// the built-in table seeds it again; returns whether it had one.
pub async fn remove(db: &Db, model_key: &str, now: i64) -> Result<bool, sqlx::Error> {
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let removed = sqlx::query("DELETE FROM model_prices WHERE model_key = $1")
            .bind(model_key)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if removed {
            sqlx::query(
                "INSERT INTO deleted_prices (model_key, deleted_at) VALUES ($1, $2) \
                 ON CONFLICT (model_key) DO UPDATE SET deleted_at = excluded.deleted_at",
            )
            .bind(model_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(HISTORY)
                .bind(history_id())
                .bind(model_key)
                .bind("delete")
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            super::notify(&mut tx, super::Change::Prices).await?;
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
               cached_input_per_million, cache_write_per_million, cache_write_1h_per_million, \
               margin_bp, changed_at FROM price_history \
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

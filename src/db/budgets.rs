//! Queries on `budgets` and on the spending windows they (and keys) open.

use super::Db;
use crate::with_pool;

/// A row of `budgets`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BudgetRow {
    pub id: String,
    pub max_budget: i64,
    pub budget_duration_sec: Option<i64>,
    pub period: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, max_budget, budget_duration_sec, period, created_at, updated_at";

/// A budget's settings.
#[derive(Debug, Clone, Default)]
pub struct BudgetSettings {
    pub max_budget: i64,
    pub budget_duration_sec: Option<i64>,
    pub period: Option<String>,
}

/// Creates a budget; `None` if the id is taken.
pub async fn insert(
    db: &Db,
    id: &str,
    settings: &BudgetSettings,
    now: i64,
) -> Result<Option<BudgetRow>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO budgets (id, max_budget, budget_duration_sec, period, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}"
    );
    with_pool!(db, pool => {
        sqlx::query_as::<_, BudgetRow>(&sql)
            .bind(id)
            .bind(settings.max_budget)
            .bind(settings.budget_duration_sec)
            .bind(&settings.period)
            .bind(now)
            .fetch_optional(pool)
            .await
    })
}

/// One budget.
pub async fn find(db: &Db, id: &str) -> Result<Option<BudgetRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM budgets WHERE id = $1");
    with_pool!(db, pool => sqlx::query_as::<_, BudgetRow>(&sql).bind(id).fetch_optional(pool).await)
}

/// A page of budgets, oldest first.
pub async fn list(db: &Db, skip: i64, limit: i64) -> Result<Vec<BudgetRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM budgets ORDER BY created_at, id LIMIT $1 OFFSET $2");
    with_pool!(db, pool => {
        sqlx::query_as::<_, BudgetRow>(&sql).bind(limit).bind(skip).fetch_all(pool).await
    })
}

/// Replaces a budget's settings; `None` if there is no such budget.
pub async fn update(
    db: &Db,
    id: &str,
    settings: &BudgetSettings,
    now: i64,
) -> Result<Option<BudgetRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE budgets SET max_budget = $2, budget_duration_sec = $3, period = $4, updated_at = $5 \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let row = with_pool!(db, pool => {
        sqlx::query_as::<_, BudgetRow>(&sql)
            .bind(id)
            .bind(settings.max_budget)
            .bind(settings.budget_duration_sec)
            .bind(&settings.period)
            .bind(now)
            .fetch_optional(pool)
            .await
    })?;
    if row.is_some() {
        super::announce(db, super::Change::AllKeys).await;
    }
    Ok(row)
}

/// Deletes a budget, detaching its users first. Returns whether it existed.
pub async fn delete(db: &Db, id: &str) -> Result<bool, sqlx::Error> {
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE users SET budget_id = NULL WHERE budget_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM budgets WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if deleted {
            super::notify(&mut tx, super::Change::AllKeys).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    })
}

/// The budget attached to a user, if any.
pub async fn for_user(db: &Db, user_id: &str) -> Result<Option<BudgetRow>, sqlx::Error> {
    let sql =
        "SELECT b.id, b.max_budget, b.budget_duration_sec, b.period, b.created_at, b.updated_at \
               FROM budgets b JOIN users u ON u.budget_id = b.id WHERE u.id = $1";
    with_pool!(db, pool => sqlx::query_as::<_, BudgetRow>(sql).bind(user_id).fetch_optional(pool).await)
}

/// A budget scope's stored window: when its period started, what it spent.
pub async fn window(db: &Db, scope: &str) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let sql = "SELECT period_start, spent FROM budget_windows WHERE scope = $1";
    with_pool!(db, pool => sqlx::query_as::<_, (i64, i64)>(sql).bind(scope).fetch_optional(pool).await)
}

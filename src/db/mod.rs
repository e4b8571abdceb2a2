//! The data layer: one [`Db`] handle over SQLite (the default) or PostgreSQL.
//!
//! Queries are written once in portable SQL with `$n` placeholders and run on
//! either pool through [`with_pool!`]; only queries that must differ do.

mod background;
pub mod budgets;
mod bulk;
pub mod keys;
pub mod ledger;
pub mod login_failures;
pub mod prices;
pub mod rate_limits;
pub mod usage;
pub mod users;

pub use background::BackgroundWriter;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
#[macro_export]
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// A connection pool to the gateway's database.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Failure to open or migrate the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create the database folder {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Connect(#[from] sqlx::Error),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Db {
    /// Opens a pool for `url`, creating a SQLite file and its folder if missing.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url).await
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(20)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Ok(Db::Postgres(pool))
        }
    }

    async fn connect_sqlite(url: &str) -> Result<Self, DbError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Room for every row a bulk insert returns, so the connection's
            // worker thread never blocks handing them over.
            .row_buffer_size(2 * bulk::MAX_ROWS);
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Db::Sqlite(pool))
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), DbError> {
        with_pool!(self, pool => MIGRATOR.run(pool).await?);
        Ok(())
    }

    /// Checks that the database answers, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> bool {
        let probe =
            async { with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok()) };
        tokio::time::timeout(timeout, probe).await.unwrap_or(false)
    }

    /// The backend's name, for health output and logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }
}

/// The current time in Unix epoch milliseconds, the unit of every time column.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

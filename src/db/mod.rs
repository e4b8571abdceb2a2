//! The data layer: one [`Db`] handle over SQLite (the default) or PostgreSQL.
//!
//! Queries are written once in portable SQL with `$n` placeholders and run on
//! either pool through [`with_pool!`]; only queries that must differ do.

pub mod alerts;
pub mod audit;
pub mod batch_tx;
pub mod budgets;
mod bulk;
pub mod changes;
pub mod email_tokens;
pub mod idempotency;
pub mod keys;
pub mod leases;
pub mod ledger;
pub mod login_failures;
pub mod outbox;
pub mod payments;
pub mod prices;
pub mod rate_limits;
pub mod replicas;
pub mod responses;
pub mod usage;
pub mod users;

pub use changes::{announce, notify, Change};

use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};
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

/// Migrations in portable SQL, shared by both backends.
static SHARED: Migrator = sqlx::migrate!("./migrations");
/// Migrations only SQLite needs in its own dialect (it cannot alter a
/// constraint, say), numbered among the shared ones.
static SQLITE_OWN: Migrator = sqlx::migrate!("./migrations/sqlite");
/// PostgreSQL's counterparts of [`SQLITE_OWN`], with the same numbers.
static POSTGRES_OWN: Migrator = sqlx::migrate!("./migrations/postgres");

/// The shared migrations and `own`, in version order.
fn migrations(own: &Migrator) -> Vec<Migration> {
    let mut all: Vec<Migration> = SHARED.iter().chain(own.iter()).cloned().collect();
    all.sort_by_key(|m| m.version);
    all
}

/// A resolved list of migrations, as [`Migrator::new`] takes them.
#[derive(Debug)]
struct Resolved(Vec<Migration>);

impl<'s> MigrationSource<'s> for Resolved {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}

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

    /// The pool the usage writer commits its batches through. On SQLite, a
    /// connection of its own (see [`writer_options`]): SQLite drops a
    /// connection's page cache whenever another one has written since, so
    /// batches taking turns over the shared pool's connections each read
    /// the indexes' right edges back from disk. On PostgreSQL, the shared
    /// pool.
    pub fn writer(&self) -> Db {
        match self {
            Db::Sqlite(pool) => Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_lazy_with(writer_options(pool)),
            ),
            Db::Postgres(_) => self.clone(),
        }
    }

    /// A pool of `connections` of its own to the same PostgreSQL database,
    /// for work that must not wait behind the shared pool; on SQLite, the
    /// shared pool.
    pub fn separate_pool(&self, connections: u32) -> Db {
        match self {
            Db::Postgres(pool) => Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with((*pool.connect_options()).clone()),
            ),
            Db::Sqlite(_) => self.clone(),
        }
    }

    /// Applies pending migrations: the shared ones and this backend's own.
    pub async fn migrate(&self) -> Result<(), DbError> {
        self.migrate_until(i64::MAX).await
    }

    /// Applies pending migrations numbered up to `version` (tests start
    /// from an older schema with it).
    pub async fn migrate_until(&self, version: i64) -> Result<(), DbError> {
        let own = match self {
            Db::Sqlite(_) => &SQLITE_OWN,
            Db::Postgres(_) => &POSTGRES_OWN,
        };
        let mut list = migrations(own);
        list.retain(|m| m.version <= version);
        let migrator = Migrator::new(Resolved(list)).await?;
        with_pool!(self, pool => migrator.run(pool).await?);
        Ok(())
    }

    /// How many of this build's migrations the database has not applied
    /// (an error when it has no migration table at all).
    pub async fn pending_migrations(&self) -> Result<usize, DbError> {
        let own = match self {
            Db::Sqlite(_) => &SQLITE_OWN,
            Db::Postgres(_) => &POSTGRES_OWN,
        };
        let applied: Vec<i64> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await
                .map_err(DbError::from)?
        });
        Ok(migrations(own)
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .count())
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

/// Options for a connection that commits the usage writer's batches, to
/// the file `pool` opens. A batch's multi-row inserts keep a statement
/// journal, which SQLite spills to a temporary file past 64 KiB (a file
/// created, written page by page and deleted on every batch); here it stays
/// in memory.
pub fn writer_options(pool: &SqlitePool) -> SqliteConnectOptions {
    (*pool.connect_options())
        .clone()
        .pragma("temp_store", "memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn temp_store(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("PRAGMA temp_store")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_writer_has_a_sqlite_connection_of_its_own_with_journals_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/writer.db", dir.path().display()))
            .await
            .unwrap();
        let writer = db.writer();
        let (Db::Sqlite(shared), Db::Sqlite(own)) = (&db, &writer) else {
            unreachable!("both are SQLite")
        };
        assert_eq!(own.options().get_max_connections(), 1);
        // 2 is MEMORY; the shared pool keeps SQLite's default, 0.
        assert_eq!(temp_store(own).await, 2);
        assert_eq!(temp_store(shared).await, 0);
        // The same file: what one writes, the other reads.
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(own)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (7)")
            .execute(own)
            .await
            .unwrap();
        let x: i64 = sqlx::query_scalar("SELECT x FROM t")
            .fetch_one(shared)
            .await
            .unwrap();
        assert_eq!(x, 7);
        writer.close().await;
        db.close().await;
    }
}

//! Dashboard sessions: tower-sessions with a store in the gateway's own database.

use async_trait::async_trait;
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use crate::db::Db;
use crate::error::AppError;

/// The name of the session cookie.
pub const COOKIE_NAME: &str = "llm_gateway_session";
const USER_ID_KEY: &str = "user_id";
/// The user's `session_epoch` when the session signed in; a session from an
/// older epoch is signed out (a password reset or change bumps it).
const EPOCH_KEY: &str = "session_epoch";
/// A session lasts this long after its last use.
const IDLE_DAYS: i64 = 7;

/// The session store of whichever database the gateway runs on.
#[derive(Debug, Clone)]
pub enum SessionBackend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl SessionBackend {
    /// Builds the store on the gateway's pool and creates its table.
    pub async fn new(db: &Db) -> Result<Self, sqlx::Error> {
        let store = match db {
            Db::Sqlite(pool) => Self::Sqlite(SqliteStore::new(pool.clone())),
            Db::Postgres(pool) => Self::Postgres(PostgresStore::new(pool.clone())),
        };
        match &store {
            Self::Sqlite(s) => s.migrate().await?,
            Self::Postgres(s) => s.migrate().await?,
        }
        Ok(store)
    }

    /// Deletes expired sessions.
    pub async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.delete_expired().await,
            Self::Postgres(s) => s.delete_expired().await,
        }
    }
}

#[async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.create(record).await,
            Self::Postgres(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.save(record).await,
            Self::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Self::Sqlite(s) => s.load(id).await,
            Self::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.delete(id).await,
            Self::Postgres(s) => s.delete(id).await,
        }
    }
}

/// The session layer: HttpOnly, SameSite=Lax, and Secure when served over https.
pub fn layer(store: SessionBackend, secure: bool) -> SessionManagerLayer<SessionBackend> {
    SessionManagerLayer::new(store)
        .with_name(COOKIE_NAME)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::days(IDLE_DAYS)))
}

fn store_error(err: impl std::fmt::Display) -> AppError {
    tracing::error!(%err, "session store error");
    AppError::Internal
}

/// Signs the user in: a new session id (against fixation), then the user
/// id and the user's current session epoch.
pub async fn sign_in(session: &Session, user_id: &str, epoch: i64) -> Result<(), AppError> {
    session.cycle_id().await.map_err(store_error)?;
    session
        .insert(USER_ID_KEY, user_id)
        .await
        .map_err(store_error)?;
    session.insert(EPOCH_KEY, epoch).await.map_err(store_error)
}

/// Signs out: the session is deleted on the server and the cookie expired.
pub async fn sign_out(session: &Session) -> Result<(), AppError> {
    session.flush().await.map_err(store_error)
}

/// Whether the session began in the user's current epoch (a session from
/// before sessions carried one counts as epoch 0).
pub async fn is_current(session: &Session, epoch: i64) -> Result<bool, AppError> {
    let stored: Option<i64> = session.get(EPOCH_KEY).await.map_err(store_error)?;
    Ok(stored.unwrap_or(0) == epoch)
}

/// The signed-in user's id, if any.
pub async fn user_id(session: &Session) -> Result<Option<String>, AppError> {
    session.get(USER_ID_KEY).await.map_err(store_error)
}

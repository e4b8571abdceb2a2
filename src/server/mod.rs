//! Wiring: builds the state, mounts every door's routes, and serves.

mod demo;
mod page_guard;
pub mod site;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use leptos::context::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;

use crate::app::{shell, App, PageChunks};
use crate::auth::key_cache::KeyCache;
use crate::auth::rate_buckets::RateBuckets;
use crate::auth::{origin, session::SessionBackend};
use crate::billing::leases::LeaseSizing;
use crate::billing::recorder::{LeaseKeeper, UsageRecorder};
use crate::billing::PriceBook;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{self, Db, DbError};
use crate::mail::sender::{self as mail_sender, SenderError, SenderHandle};
use crate::mail::MailQueue;
use crate::providers::router::ModelRouter;
use crate::providers::Providers;
use crate::server_fns::playground;
use crate::state::{AppState, SharedState};
pub use site::Site;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot set up the session store: {0}")]
    Sessions(sqlx::Error),
    #[error("cannot set up the upstream HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot set up mail: {0}")]
    Mail(#[from] SenderError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A server listening on a socket, running in the background.
pub struct RunningServer {
    demo: Option<tokio::task::JoinHandle<()>>,
    /// The address it actually listens on (useful with port 0).
    pub addr: SocketAddr,
    /// The server's clock (tests advance it).
    pub clock: Clock,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    usage_writer: tokio::task::JoinHandle<()>,
    mail_sender: Option<SenderHandle>,
    cut_off: watch::Sender<bool>,
    grace: Duration,
    db: Db,
    replica_id: Arc<str>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish within the grace
    /// period (`shutdown_grace_secs`), then cuts the streams still open, bills
    /// everything, writes the last usage records, stops the mail sender after
    /// the mail it is sending (the rest waits in the outbox), and returns.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(());
        if tokio::time::timeout(self.grace, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!(
                grace_secs = self.grace.as_secs(),
                "grace period over; cutting the open streams"
            );
            let _ = self.cut_off.send(true);
            let _ = (&mut self.task).await;
        }
        let _ = self.usage_writer.await;
        if let Some(sender) = self.mail_sender {
            sender.stop().await;
        }
        if let Some(demo) = self.demo {
            demo.abort();
        }
        // Everything is settled: give the leases back, then nothing of this
        // replica's is left to release.
        if let Err(err) = db::leases::return_all(&self.db, &self.replica_id).await {
            tracing::warn!(%err, "could not give this replica's leases back");
        }
        if let Err(err) = db::replicas::unregister(&self.db, &self.replica_id).await {
            tracing::warn!(%err, "could not unregister this replica");
        }
    }
}

/// A built application: its router and the task writing usage records.
pub struct App {
    pub router: Router,
    /// The in-process demo provider, if the config has one.
    pub demo: Option<tokio::task::JoinHandle<()>>,
    pub usage_writer: tokio::task::JoinHandle<()>,
    /// The mail sender (none with `email.mode: disabled`).
    pub mail_sender: Option<SenderHandle>,
    pub clock: Clock,
    /// Set to true to end the open streams (see [`AppState::cut_off`]).
    pub cut_off: watch::Sender<bool>,
    pub db: Db,
    /// This process's id among the replicas sharing the database.
    pub replica_id: Arc<str>,
}

/// How often a replica on PostgreSQL says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a replica may stay silent before the others release what it
/// held: its reservations and budget holds come back within this plus one
/// [`HEARTBEAT`].
pub const REPLICA_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens and migrates the database, then builds the state and router.
pub async fn build(mut config: Config, site: Site) -> Result<App, StartError> {
    let clock = Clock::default();
    for name in &config.switched_off {
        tracing::info!(provider = %name, "provider off: its api_key is empty");
    }
    let demo = demo::serve(&mut config).await?;
    let db = Db::connect(&config.database_url).await?;
    db.migrate().await?;
    let sessions = SessionBackend::new(&db)
        .await
        .map_err(StartError::Sessions)?;
    let prices = Arc::new(
        PriceBook::load(&db, &config, clock.now_ms())
            .await
            .map_err(DbError::from)?,
    );
    if matches!(db, Db::Sqlite(_)) {
        // One process owns a SQLite file: any open reservation, or key
        // claimed in flight, is from a previous run that died: release it.
        let released = db::ledger::release_all(&db).await.map_err(DbError::from)?;
        let claims = db::idempotency::release_all_in_flight(&db)
            .await
            .map_err(DbError::from)?;
        if released > 0 || claims > 0 {
            tracing::warn!(
                released,
                claims,
                "released reservations and idempotency claims left by an unclean shutdown"
            );
        }
    }
    let models = Arc::new(ModelRouter::new(
        Providers::from_config(&config, &clock)?,
        &config,
        prices.keys(),
    ));
    let replica_id: Arc<str> = format!("rep_{}", uuid::Uuid::new_v4().simple()).into();
    let keys = Arc::new(KeyCache::default());
    if let Db::Postgres(_) = db {
        // Its own connections: a busy pool must not silence the heartbeat.
        db::replicas::register(&db, &replica_id)
            .await
            .map_err(DbError::from)?;
    }
    spawn_maintenance(
        db.clone(),
        sessions.clone(),
        prices.clone(),
        models.clone(),
        clock.clone(),
    );
    let (recorder, usage_writer) = UsageRecorder::start(
        db.clone(),
        Arc::default(),
        replica_id.clone(),
        clock.clone(),
        LeaseSizing::from(&config.credit_leases),
    );
    if let Db::Postgres(_) = db {
        // Its own connections: a busy pool must not silence the heartbeat.
        spawn_liveness(
            db.separate_pool(2),
            replica_id.clone(),
            recorder.lease_keeper(),
        );
    }
    let rate_buckets = Arc::new(RateBuckets::default());
    spawn_local_sweeps(
        recorder.lease_keeper(),
        rate_buckets.clone(),
        clock.clone(),
        LeaseSizing::from(&config.credit_leases).idle,
    );
    listen_for_changes(
        &db,
        keys.clone(),
        prices.clone(),
        models.clone(),
        recorder.lease_keeper(),
    );
    let mail = MailQueue::new(db.clone(), &config);
    let mail_sender = mail_sender::start(&config.email, mail.clone(), clock.clone())?;
    let secure_cookies = config.serves_https();
    let stripe = crate::billing::stripe_api::StripeClient::from_config(&config.payments);
    let (cut_off, cut_off_signal) = watch::channel(false);
    let state = AppState::new(SharedState {
        leptos_options: site.options,
        db: db.clone(),
        config: Arc::new(config),
        models,
        prices,
        recorder,
        stripe,
        keys,
        rate_buckets,
        clock: clock.clone(),
        cut_off: cut_off_signal,
        mail,
    });
    Ok(App {
        demo,
        router: router(state, sessions, secure_cookies, site.hashed, site.chunks),
        usage_writer,
        mail_sender,
        clock,
        cut_off,
        db,
        replica_id,
    })
}

/// Beats this replica's heartbeat, and releases what replicas that
/// stopped beating held (PostgreSQL). A tick on which this replica could
/// not prove itself alive releases nothing.
fn spawn_liveness(db: Db, replica_id: Arc<str>, leases: LeaseKeeper) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            tick.tick().await;
            let alive = match db::replicas::heartbeat(&db, &replica_id).await {
                Ok(true) => true,
                Ok(false) => {
                    tracing::warn!("this replica was given up for dead; registering again");
                    // Its leases were released with its other holds.
                    leases.forget_all();
                    match db::replicas::register(&db, &replica_id).await {
                        Ok(()) => true,
                        Err(err) => {
                            tracing::warn!(%err, "registering this replica failed");
                            false
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "heartbeat failed");
                    false
                }
            };
            if !alive {
                continue;
            }
            let timeout_ms = REPLICA_TIMEOUT.as_millis() as i64;
            match db::replicas::release_dead(&db, timeout_ms).await {
                Ok(released) if released != Default::default() => tracing::warn!(
                    reservations = released.reservations,
                    idempotency_claims = released.idempotency_claims,
                    "released what a replica that stopped held"
                ),
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "releasing a dead replica's holds failed"),
            }
        }
    });
}

/// Gives back the leases no call has used for a while, so that credit and
/// budgets no replica uses are not held, and forgets the rate-limit slices
/// of past windows: the in-memory books keep only what is in use.
/// They look every few seconds, and at least twice per `idle` (how long a
/// lease stays unused before it goes back).
fn spawn_local_sweeps(
    leases: LeaseKeeper,
    rate_buckets: Arc<RateBuckets>,
    clock: Clock,
    idle: Duration,
) {
    let every = (idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let returned = leases.return_idle().await;
            if returned > 0 {
                tracing::debug!(returned, "gave back idle leases");
            }
            rate_buckets.forget_before(db::rate_limits::window_start(clock.now_ms()));
        }
    });
}

/// Drops cached keys and reloads prices as soon as any replica changes
/// them (PostgreSQL); the caches' own expiry stays as a fallback.
fn listen_for_changes(
    db: &Db,
    keys: Arc<KeyCache>,
    prices: Arc<PriceBook>,
    models: Arc<ModelRouter>,
    leases: LeaseKeeper,
) {
    use db::changes::Change;
    let reload_db = db.clone();
    db::changes::listen(
        db,
        Box::new(move |change| {
            let (keys, prices, models, db, leases) = (
                keys.clone(),
                prices.clone(),
                models.clone(),
                reload_db.clone(),
                leases.clone(),
            );
            Box::pin(async move {
                match &change {
                    Change::User(user_id) => keys.forget_user(user_id),
                    Change::AllKeys | Change::Everything => keys.forget_all(),
                    Change::LeaseRecall(user_id) => leases.give_back(user_id).await,
                    Change::BudgetLeaseRecall(scope) => leases.give_back_budget(scope).await,
                    Change::Prices => {}
                }
                if matches!(change, Change::Prices | Change::Everything) {
                    match prices.reload(&db).await {
                        Ok(()) => models.refresh_catalog(prices.keys()),
                        Err(err) => tracing::warn!(%err, "reloading prices failed"),
                    }
                }
            })
        }),
    );
}

fn router(
    state: AppState,
    sessions: SessionBackend,
    secure_cookies: bool,
    hashed_assets: bool,
    chunks: PageChunks,
) -> Router {
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    // Pages, and the site's files (precompressed .br/.gz served as such).
    let site = Router::new()
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(chunks.clone()),
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn_with_state(
            hashed_assets,
            site::cache_control,
        ));
    let app = Router::new()
        .route(
            "/export/usage.csv",
            get(crate::server_fns::export::usage_csv),
        )
        .route(playground::CHAT_PATH, post(playground::chat))
        // The reseller MVP's JSON routes share the dashboard's session.
        .merge(crate::server_fns::rest::routes())
        .merge(site)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            page_guard::guard,
        ))
        .layer(middleware::from_fn(origin::require_same_origin))
        .layer(crate::auth::session::layer(sessions, secure_cookies))
        .layer(TraceLayer::new_for_http())
        // The API and health check need no session; keep their path short.
        .merge(crate::proxy::routes())
        .merge(crate::operator_api::routes())
        .merge(crate::webhooks::routes())
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(crate::operator_api::metrics::metrics))
        .route(
            "/openapi.json",
            get(crate::operator_api::openapi::openapi_json),
        )
        .route("/docs", get(crate::operator_api::openapi::docs))
        .layer(middleware::from_fn(crate::proxy::ensure_request_id));
    app.with_state(state)
}

/// Binds `host:port` from the config and serves in the background.
pub async fn spawn(config: Config, site: Site) -> Result<RunningServer, StartError> {
    let bind_addr = format!("{}:{}", bracket_ipv6(&config.host), config.port);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let first_account_admin = config.first_account_admin;
    let public_url = config.public_url.clone();
    let App {
        demo,
        router: app,
        usage_writer,
        mail_sender,
        clock,
        cut_off,
        db,
        replica_id,
    } = build(config, site).await?;
    let listener = TcpListener::bind(&bind_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: bind_addr.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: bind_addr,
        source,
    })?;
    if first_account_admin && db::users::none_yet(&db).await.unwrap_or(false) {
        let site = public_url.unwrap_or_else(|| format!("http://{addr}"));
        tracing::info!(
            "no account yet: the first to sign up at {}/signup becomes the admin",
            site.trim_end_matches('/')
        );
    }
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            without_nagle(listener),
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .await
    });
    Ok(RunningServer {
        demo,
        addr,
        clock,
        shutdown,
        task,
        usage_writer,
        mail_sender,
        cut_off,
        grace,
        db,
        replica_id,
    })
}

/// Sets `TCP_NODELAY` on every accepted connection, so each streamed chunk
/// leaves at once instead of waiting for the client's (delayed) ACK of the
/// one before.
pub fn without_nagle(
    listener: TcpListener,
) -> axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set_nodelay(stream: &mut tokio::net::TcpStream) {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
    }
    listener.tap_io(set_nodelay as fn(&mut tokio::net::TcpStream))
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `GET /health`: 200 when the database answers, 503 when it does not.
async fn health(State(db): State<Db>) -> impl IntoResponse {
    let reachable = db.ping(Duration::from_secs(2)).await;
    let status = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if reachable { "ok" } else { "unavailable" },
        "version": env!("CARGO_PKG_VERSION"),
        "database": {
            "backend": db.backend(),
            "status": if reachable { "ok" } else { "unreachable" },
        },
    });
    (status, Json(body))
}

/// Liveness: the process answers. Orchestrators restart it when it does not.
async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the database answers and has every migration this build
/// knows; until then (503) an orchestrator sends this replica no traffic.
async fn ready(State(db): State<Db>) -> impl IntoResponse {
    let pending = tokio::time::timeout(Duration::from_secs(2), db.pending_migrations()).await;
    let (ready, detail) = match pending {
        Ok(Ok(0)) => (true, "ok".to_string()),
        Ok(Ok(n)) => (false, format!("{n} migrations not applied")),
        Ok(Err(err)) => (false, format!("database: {err}")),
        Err(_) => (false, "database: no answer within 2 s".to_string()),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": { "backend": db.backend(), "status": detail },
    });
    (status, Json(body))
}

/// Periodically deletes expired sessions, old sign-in failures and the
/// idempotent answers older than a day, releases reservations whose
/// requests died, and reloads prices changed elsewhere.
/// Keeps the mail tables small: mail sent (or given up on) more than 30
/// days ago, and links that expired more than a day ago, go.
async fn prune_mail(db: &Db, now: i64) {
    const DAY_MS: i64 = 86_400_000;
    if let Err(err) = db::outbox::prune(db, now - 30 * DAY_MS).await {
        tracing::warn!(%err, "pruning sent mail failed");
    }
    if let Err(err) = db::email_tokens::prune(db, now - DAY_MS).await {
        tracing::warn!(%err, "pruning expired email links failed");
    }
}

fn spawn_maintenance(
    db: Db,
    sessions: SessionBackend,
    prices: Arc<PriceBook>,
    models: Arc<ModelRouter>,
    clock: Clock,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let now = clock.now_ms();
            if let Err(err) = db::ledger::release_expired(&db, now).await {
                tracing::warn!(%err, "releasing expired reservations failed");
            }
            match prices.reload(&db).await {
                Ok(()) => models.refresh_catalog(prices.keys()),
                Err(err) => tracing::warn!(%err, "reloading prices failed"),
            }
            if let Err(err) = sessions.delete_expired().await {
                tracing::warn!(%err, "deleting expired sessions failed");
            }
            let stale_windows = now - 10 * db::rate_limits::WINDOW_MS;
            if let Err(err) = db::rate_limits::prune(&db, stale_windows).await {
                tracing::warn!(%err, "pruning rate-limit windows failed");
            }
            let cutoff = now - crate::auth::throttle::WINDOW_MS;
            if let Err(err) = db::login_failures::prune(&db, cutoff).await {
                tracing::warn!(%err, "pruning sign-in failures failed");
            }
            if let Err(err) = db::idempotency::prune(&db, now).await {
                tracing::warn!(%err, "deleting expired idempotent answers failed");
            }
            if let Err(err) = db::responses::prune(&db, now).await {
                tracing::warn!(%err, "deleting expired stored responses failed");
            }
            prune_mail(&db, now).await;
        }
    });
}

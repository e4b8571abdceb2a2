//! The state every handler and server function shares: one [`AppState`],
//! built by `server` and reached through axum's `State` or, in server
//! functions, through Leptos's context.

use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use std::sync::Arc;
use tokio::sync::watch;

use crate::auth::key_cache::KeyCache;
use crate::auth::rate_buckets::RateBuckets;
use crate::billing::recorder::UsageRecorder;
use crate::billing::PriceBook;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::mail::MailQueue;
use crate::providers::router::ModelRouter;

/// Everything a handler or server function needs: one [`Arc`], cloned
/// several times per request (by the router, the middleware and the
/// extractors), so each clone is a reference count.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

impl AppState {
    /// Wraps what the state shares.
    pub fn new(shared: SharedState) -> Self {
        Self(Arc::new(shared))
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl FromRef<AppState> for Db {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

/// What [`AppState`] shares.
pub struct SharedState {
    pub leptos_options: LeptosOptions,
    pub db: Db,
    pub config: Arc<Config>,
    pub models: Arc<ModelRouter>,
    pub prices: Arc<PriceBook>,
    pub recorder: UsageRecorder,
    /// Recent API key lookups (see `auth::key_cache`).
    pub keys: Arc<KeyCache>,
    /// This replica's slices of the keys' rate-limit windows.
    pub rate_buckets: Arc<RateBuckets>,
    /// The time budgets, rate limits and key expiry are judged by.
    pub clock: Clock,
    /// Stripe's API, when `payments: {mode: stripe}`.
    pub stripe: Option<crate::billing::stripe_api::StripeClient>,
    /// Turns true when a shutdown's grace period is over: open streams end.
    pub cut_off: watch::Receiver<bool>,
    /// Queues mail for the background sender (`mail::sender`).
    pub mail: MailQueue,
}

//! llm-gateway: a self-hosted, OpenAI-compatible LLM gateway with prepaid billing.
//!
//! The crate builds twice: with `ssr` it is the server (axum, sqlx, sessions),
//! with `hydrate` it is the WASM client that hydrates the dashboard.
//!
//! Modules are listed by layer, lowest first; a module imports only from its
//! own layer or those below (ARCHITECTURE.md, kept by `tests/layers.rs`).

// The ground: errors, configuration, time.
#[cfg(feature = "ssr")]
pub mod clock;
#[cfg(feature = "ssr")]
pub mod config;
pub mod error;

// SQL.
#[cfg(feature = "ssr")]
pub mod db;

// The domain: upstreams, identity, money, counters, mail.
#[cfg(feature = "ssr")]
pub mod auth;
pub mod billing;
#[cfg(feature = "ssr")]
pub mod dialects;
pub mod format;
#[cfg(feature = "ssr")]
pub mod mail;
#[cfg(feature = "ssr")]
pub mod metrics;
#[cfg(feature = "ssr")]
pub mod providers;

// What every handler shares.
#[cfg(feature = "ssr")]
pub mod state;

// The doors: callers' API, operators' API, the dashboard's server functions.
#[cfg(feature = "ssr")]
pub mod operator_api;
#[cfg(feature = "ssr")]
pub mod proxy;
pub mod server_fns;
#[cfg(feature = "ssr")]
pub mod webhooks;

// The pages.
pub mod app;

// Wiring and tools.
#[cfg(feature = "ssr")]
pub mod cli;
#[cfg(feature = "ssr")]
pub mod mock;
#[cfg(feature = "ssr")]
pub mod server;

/// Entry point of the WASM bundle: hydrates the server-rendered page, once
/// the chunks of any lazily loaded page on it have arrived.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // An Err only means the executor is already set up.
    let _ = any_spawner::Executor::init_wasm_bindgen();
    leptos::task::spawn_local(async {
        let body = leptos::prelude::document()
            .body()
            .expect("a page has a body");
        leptos::mount::hydrate_from_async(body, app::App)
            .await
            .forget();
        // Marks the page interactive once the work hydration queued has run:
        // the browser tests wait for `body[data-hydrated]`.
        leptos::prelude::set_timeout(
            || {
                if let Some(body) = leptos::prelude::document().body() {
                    let _ = body.set_attribute("data-hydrated", "");
                }
            },
            std::time::Duration::ZERO,
        );
    });
}

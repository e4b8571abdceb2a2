//! The dashboard: pages and components, rendered on the server and hydrated.

mod account;
mod admin;
mod alerts;
mod auth;
mod balance;
mod chart;
mod dashboard;
mod keys;
mod landing;
mod lazy;
mod models;
mod payments;
mod playground;
mod usage;

pub use auth::encode_component;
#[cfg(feature = "ssr")]
pub use lazy::PageChunks;
pub use lazy::CHUNK_LOADER;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{ParentRoute, Route, Router, Routes, A};
use leptos_router::{path, Lazy, SsrMode};

use lazy::*;

use crate::error::AppError;

/// The HTML document around the app, rendered by the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link
                    rel="stylesheet"
                    id="leptos"
                    href=format!("/{}/{}.css", options.site_pkg_dir, options.output_name)
                />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The root component and its routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title formatter=|page: String| {
            if page.is_empty() { "llm-gateway".to_string() } else { format!("{page} · llm-gateway") }
        } />
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/") view=landing::Landing />
                <Route path=path!("/login") view=auth::Login />
                <Route path=path!("/signup") view=auth::Signup />
                <Route path=path!("/forgot-password") view=account::ForgotPasswordPage />
                <Route path=path!("/reset-password") view=account::ResetPasswordPage />
                <Route path=path!("/verify-email") view=account::VerifyEmailPage />
                <Route path=path!("/models") view=models::ModelsPage />
                // Whole pages, sent once rendered: the dashboard works before (or
                // without) the WASM, and a lazily loaded page's chunks, known
                // only once it has rendered, are linked from the head.
                <ParentRoute
                    path=path!("/dashboard")
                    view=dashboard::DashboardLayout
                    ssr=SsrMode::Async
                >
                    <Route path=path!("") view=dashboard::Overview />
                    <Route path=path!("keys") view={Lazy::<KeysRoute>::new()} />
                    <Route path=path!("usage") view={Lazy::<UsageRoute>::new()} />
                    <Route path=path!("balance") view={Lazy::<BalanceRoute>::new()} />
                    <Route path=path!("balance/receipt/:id") view={Lazy::<ReceiptRoute>::new()} />
                    <Route path=path!("playground") view={Lazy::<PlaygroundRoute>::new()} />
                    <Route path=path!("account") view={Lazy::<AccountRoute>::new()} />
                    <ParentRoute path=path!("admin") view=admin::AdminLayout>
                        <Route path=path!("") view={Lazy::<AdminOverviewRoute>::new()} />
                        <Route path=path!("users") view={Lazy::<AdminUsersRoute>::new()} />
                        <Route path=path!("pricing") view={Lazy::<AdminPricingRoute>::new()} />
                        <Route path=path!("providers") view={Lazy::<AdminProvidersRoute>::new()} />
                        <Route
                            path=path!("reconciliation")
                            view={Lazy::<AdminReconciliationRoute>::new()}
                        />
                        <Route path=path!("payments") view={Lazy::<AdminPaymentsRoute>::new()} />
                    </ParentRoute>
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// A resource loading `fetcher(source())`, its value sent along with the page.
#[track_caller]
pub(crate) fn resource<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Resource<T, crate::server_fns::codec::ResourceJson>
where
    S: Send + Sync + Clone + PartialEq + 'static,
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found" />
        <main class="centered">
            <h1>"Page not found"</h1>
            <p>
                <A href="/">"Back to the start"</A>
            </p>
        </main>
    }
}

/// Shows a failed action's error inline, for screen readers too.
#[component]
fn ErrorMessage(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        error.get().map(|err| {
            view! {
                <p class="form-error" role="alert">
                    {err.to_string()}
                </p>
            }
        })
    }
}

/// The page number in the URL's `?page=` (0 when absent or not a number),
/// for the paged tables.
fn page_in_query() -> Signal<u32> {
    let query = leptos_router::hooks::use_query_map();
    Signal::derive(move || {
        query
            .read()
            .get("page")
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    })
}

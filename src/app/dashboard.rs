//! `/dashboard`: the signed-in shell with navigation, and its overview page.

use super::resource;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::{Outlet, Redirect, A};
use leptos_router::hooks::use_location;

use super::auth::encode_component;
use super::chart::SpendChart;
use crate::billing::money::format_usd;
use crate::format::{datetime, dollars};
use crate::server_fns::auth::{me, SignOut};
use crate::server_fns::billing::{account_summary, daily_spend, AccountFigures};
use crate::server_fns::UserView;

/// Says what the user owes, when their balance is below zero: usage cost
/// more than it held, and paid calls are refused until credit covers it.
#[component]
pub fn DebtNotice(debt: i64, since: Option<i64>) -> impl IntoView {
    (debt > 0).then(|| {
        let since = since.map(|at| format!(" since {}", datetime(at))).unwrap_or_default();
        view! {
            <p class="notice warning" role="alert" data-testid="debt">
                {format!("You owe ${}{since}: your last requests cost more than your balance held. ", format_usd(debt))}
                "Calls to paid models are refused until credit brings your balance above zero."
            </p>
        }
    })
}

/// Guards every `/dashboard` page: renders the shell for a signed-in user,
/// and otherwise redirects to `/login?next=<this page>` (a 302 on the server).
#[component]
pub fn DashboardLayout() -> impl IntoView {
    let user = Resource::new_blocking(|| (), |_| me());
    let location = use_location();
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(Some(user)) => view! { <Shell user /> }.into_any(),
                    Ok(None) => {
                        let here = location.pathname.get_untracked();
                        let path = format!("/login?next={}", encode_component(&here));
                        view! { <Redirect path /> }.into_any()
                    }
                    Err(err) => view! {
                        <main class="centered">
                            <p class="form-error" role="alert">{err.to_string()}</p>
                        </main>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Shell(user: UserView) -> impl IntoView {
    let sign_out = ServerAction::<SignOut>::new();
    provide_context(user.clone());
    view! {
        <header class="topbar">
            <A href="/dashboard" attr:class="brand">"llm-gateway"</A>
            <nav class="tabs" aria-label="Dashboard">
                <A href="/dashboard" exact=true>"Overview"</A>
                <A href="/dashboard/usage">"Usage"</A>
                <A href="/dashboard/keys">"API keys"</A>
                <A href="/dashboard/balance">"Balance"</A>
                <A href="/dashboard/playground">"Playground"</A>
                <A href="/dashboard/account">"Account"</A>
                <A href="/models">"Models"</A>
                {user.is_admin.then(|| view! { <A href="/dashboard/admin">"Admin"</A> })}
            </nav>
            <div class="account">
                <span class="muted" data-testid="user-email">{user.email}</span>
                <ActionForm action=sign_out>
                    <button type="submit" class="button">"Sign out"</button>
                </ActionForm>
            </div>
        </header>
        <main class="page">
            <Outlet />
        </main>
    }
}

/// The overview: balance, this month's figures, and 30 days of spend.
#[component]
pub fn Overview() -> impl IntoView {
    let user = expect_context::<UserView>();
    let figures = resource(|| (), |_| account_summary());
    let series = resource(|| (), |_| daily_spend());
    view! {
        <Title text="Overview" />
        <h1>"Overview"</h1>
        <p class="muted">"Signed in as " {user.email}</p>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match figures.await {
                    Ok(f) => view! { <Figures figures=f /> }.into_any(),
                    Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
        <section class="card">
            <h2>"Daily spend by model"</h2>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match series.await {
                        Ok(series) => view! { <SpendChart series /> }.into_any(),
                        Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
        <section class="card">
            <h2>"Get started"</h2>
            <ol>
                <li>
                    <A href="/dashboard/keys">"Create an API key"</A>
                    ", then copy it: it is shown only once."
                </li>
                <li>
                    "Point any OpenAI SDK at this gateway's "
                    <code>"/v1"</code>
                    " with your key."
                </li>
            </ol>
        </section>
    }
}

#[component]
fn Figures(figures: AccountFigures) -> impl IntoView {
    let usd = |nanos: i64| format!("${}", format_usd(nanos));
    view! {
        <DebtNotice debt=figures.debt since=figures.in_debt_since />
        <div class="figures">
            <div class="figure">
                <span class="label">"Balance"</span>
                <strong data-testid="balance">{dollars(figures.balance)}</strong>
            </div>
            <div class="figure">
                <span class="label">"Spend today"</span>
                <strong data-testid="spend-today">{usd(figures.spend_today)}</strong>
            </div>
            <div class="figure">
                <span class="label">"Spend this month"</span>
                <strong>{usd(figures.spend_month)}</strong>
            </div>
            <div class="figure">
                <span class="label">"Requests this month"</span>
                <strong>{figures.requests_month}</strong>
            </div>
            <div class="figure">
                <span class="label">"Tokens this month"</span>
                <strong>{figures.tokens_month}</strong>
            </div>
        </div>
    }
}

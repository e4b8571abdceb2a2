//! `/dashboard`: the signed-in shell with navigation, and its overview page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::{Outlet, Redirect, A};
use leptos_router::hooks::use_location;

use super::auth::encode_component;
use crate::api::auth::{me, SignOut};
use crate::api::UserView;

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
                <A href="/dashboard/keys">"API keys"</A>
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

/// The overview: where a new user starts.
#[component]
pub fn Overview() -> impl IntoView {
    let user = expect_context::<UserView>();
    view! {
        <Title text="Overview" />
        <h1>"Overview"</h1>
        <p class="muted">"Signed in as " {user.email}</p>
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

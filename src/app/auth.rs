//! `/signup` and `/login`. Both forms post to their server function and work
//! before the WASM loads; afterwards they submit in the background.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use super::ErrorMessage;
use crate::api::auth::{SignIn, SignUp};

/// The `next` query parameter, carried through sign-in.
fn next_param() -> Signal<String> {
    let query = use_query_map();
    Signal::derive(move || query.read().get("next").unwrap_or_default())
}

/// The sign-in page.
#[component]
pub fn Login() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    let error = Signal::derive(move || action.value().get().and_then(Result::err));
    let next = next_param();
    view! {
        <Title text="Sign in" />
        <main class="auth-card">
            <A href="/" attr:class="brand">"llm-gateway"</A>
            <h1>"Sign in"</h1>
            <ActionForm action attr:class="form">
                <input type="hidden" name="next" value=next />
                <label for="email">"Email"</label>
                <input id="email" type="email" name="email" autocomplete="email" required />
                <label for="password">"Password"</label>
                <input
                    id="password"
                    type="password"
                    name="password"
                    autocomplete="current-password"
                    required
                />
                <ErrorMessage error />
                <button type="submit" class="button primary" disabled=move || action.pending().get()>
                    "Sign in"
                </button>
            </ActionForm>
            <p class="muted">
                "No account yet? " <A href=move || with_next("/signup", &next.get())>"Sign up"</A>
            </p>
        </main>
    }
}

/// The sign-up page.
#[component]
pub fn Signup() -> impl IntoView {
    let action = ServerAction::<SignUp>::new();
    let error = Signal::derive(move || action.value().get().and_then(Result::err));
    let next = next_param();
    view! {
        <Title text="Sign up" />
        <main class="auth-card">
            <A href="/" attr:class="brand">"llm-gateway"</A>
            <h1>"Create your account"</h1>
            <ActionForm action attr:class="form">
                <input type="hidden" name="next" value=next />
                <label for="email">"Email"</label>
                <input id="email" type="email" name="email" autocomplete="email" required />
                <label for="password">"Password"</label>
                <input
                    id="password"
                    type="password"
                    name="password"
                    autocomplete="new-password"
                    aria-describedby="password-hint"
                    required
                />
                <p id="password-hint" class="hint">"At least 8 characters."</p>
                <ErrorMessage error />
                <button type="submit" class="button primary" disabled=move || action.pending().get()>
                    "Sign up"
                </button>
            </ActionForm>
            <p class="muted">
                "Already have an account? " <A href=move || with_next("/login", &next.get())>"Sign in"</A>
            </p>
        </main>
    }
}

fn with_next(path: &str, next: &str) -> String {
    if next.is_empty() {
        path.to_string()
    } else {
        format!("{path}?next={}", encode_component(next))
    }
}

/// Percent-encodes a query component.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_is_encoded() {
        assert_eq!(super::with_next("/login", ""), "/login");
        assert_eq!(
            super::with_next("/login", "/dashboard/keys?a=b"),
            "/login?next=/dashboard/keys%3Fa%3Db"
        );
    }
}

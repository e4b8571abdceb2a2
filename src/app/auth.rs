//! `/signup` and `/login`. Both forms post to their server function and work
//! before the WASM loads; afterwards they submit in the background.

use super::resource;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use super::ErrorMessage;
use crate::server_fns::auth::{signup_info, SignIn, SignUp};

/// The sign-in page.
#[component]
pub fn Login() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    let error = Signal::derive(move || action.value().get().and_then(Result::err));
    let next = next_param();
    view! {
        <AuthCard title="Sign in">
            <ActionForm action attr:class="form">
                <CredentialFields next new_password=false />
                <ErrorMessage error />
                <SubmitButton label="Sign in" pending=action.pending() />
            </ActionForm>
            <p class="muted">
                <A href="/forgot-password">"Forgot your password?"</A>
            </p>
            <p class="muted">
                "No account yet? " <A href=move || with_next("/signup", &next.get())>"Sign up"</A>
            </p>
        </AuthCard>
    }
}

/// The sign-up page.
#[component]
pub fn Signup() -> impl IntoView {
    let action = ServerAction::<SignUp>::new();
    let error = Signal::derive(move || action.value().get().and_then(Result::err));
    let next = next_param();
    let info = resource(|| (), |_| signup_info());
    view! {
        <AuthCard title="Create your account">
            <Suspense>
                {move || {
                    info.get().and_then(Result::ok).map(|info| view! { <SignupNotes info /> })
                }}
            </Suspense>
            <ActionForm action attr:class="form">
                <CredentialFields next new_password=true />
                <ErrorMessage error />
                <SubmitButton label="Sign up" pending=action.pending() />
            </ActionForm>
            <p class="muted">
                "Already have an account? "
                <A href=move || with_next("/login", &next.get())>"Sign in"</A>
            </p>
        </AuthCard>
    }
}

/// Before the form: that this account becomes the admin (the first on a new
/// gateway), and the credit it starts with.
#[component]
fn SignupNotes(info: crate::server_fns::auth::SignupFacts) -> impl IntoView {
    view! {
        {info
            .becomes_admin
            .then(|| {
                view! {
                    <p class="notice" role="status" data-testid="first-account">
                        "No one has signed up yet: this first account becomes the gateway's administrator."
                    </p>
                }
            })}
        {info
            .credit
            .map(|credit| {
                view! {
                    <p class="muted" data-testid="signup-credit">
                        "New accounts start with " {credit} " of credit."
                    </p>
                }
            })}
    }
}

/// A centred card with the brand and a title, around a form.
#[component]
pub(super) fn AuthCard(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <Title text=title />
        <main class="auth-card">
            <A href="/" attr:class="brand">"llm-gateway"</A>
            <h1>{title}</h1>
            {children()}
        </main>
    }
}

/// Email and password inputs, plus the hidden `next` to return to.
#[component]
fn CredentialFields(next: Signal<String>, new_password: bool) -> impl IntoView {
    view! {
        <input type="hidden" name="next" value=next />
        <label for="email">"Email"</label>
        <input id="email" type="email" name="email" autocomplete="email" required />
        <label for="password">"Password"</label>
        <input
            id="password"
            type="password"
            name="password"
            autocomplete=if new_password { "new-password" } else { "current-password" }
            aria-describedby=new_password.then_some("password-hint")
            required
        />
        {new_password.then(|| view! { <p id="password-hint" class="hint">"At least 8 characters."</p> })}
    }
}

#[component]
fn SubmitButton(label: &'static str, pending: Memo<bool>) -> impl IntoView {
    view! {
        <button type="submit" class="button primary" disabled=move || pending.get()>
            {label}
        </button>
    }
}

/// The `next` query parameter, carried through sign-in.
fn next_param() -> Signal<String> {
    let query = use_query_map();
    Signal::derive(move || query.read().get("next").unwrap_or_default())
}

fn with_next(path: &str, next: &str) -> String {
    if next.is_empty() {
        path.to_string()
    } else {
        format!("{path}?next={}", encode_component(next))
    }
}

/// Percent-encodes a query component (keeping `/` readable).
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

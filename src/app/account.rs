//! `/dashboard/account` (the address and whether it is verified, changing
//! the password or the address, deleting the account), and the pages the
//! mailed links open: `/forgot-password`, `/reset-password` and
//! `/verify-email`. Every form posts to its server function and works
//! before the WASM loads.

use super::resource;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use super::auth::AuthCard;
use super::ErrorMessage;
use crate::error::AppError;
use crate::server_fns::account::{
    account_overview, AccountView, ChangeEmail, ChangePassword, ConfirmEmail, DeleteAccount,
    ForgotPassword, ResendVerification, ResetPassword,
};

/// A server action's outcome: its message, or its error.
#[component]
fn Outcome(
    #[prop(into)] result: Signal<Option<Result<String, AppError>>>,
    #[prop(optional)] testid: &'static str,
) -> impl IntoView {
    let error = Signal::derive(move || result.get().and_then(Result::err));
    let message = move || result.get().and_then(Result::ok);
    view! {
        {move || message().map(|text| view! { <p class="notice" role="status" data-testid=testid>{text}</p> })}
        <ErrorMessage error />
    }
}

/// The account page.
#[component]
pub fn AccountPage() -> impl IntoView {
    let account = resource(|| (), |_| account_overview());
    view! {
        <Title text="Account" />
        <h1>"Account"</h1>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match account.await {
                    Ok(account) => view! { <AddressCard account /> }.into_any(),
                    Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
        <ChangePasswordCard />
        <ChangeEmailCard />
        <DeleteAccountCard />
    }
}

/// The address, whether it is verified, and a way to get a new link.
#[component]
fn AddressCard(account: AccountView) -> impl IntoView {
    let resend = ServerAction::<ResendVerification>::new();
    let status = if account.email_verified {
        "verified"
    } else {
        "not verified"
    };
    let needs_it = account.verification_required && !account.email_verified;
    view! {
        <section class="card">
            <h2>"Email address"</h2>
            <p>
                <strong data-testid="account-email">{account.email}</strong>
                " "
                <span class="badge" data-testid="email-status">{status}</span>
            </p>
            {needs_it.then(|| view! {
                <p class="notice warning">"Verify your address to create API keys and add credit."</p>
            })}
            {(!account.email_verified && account.mail_enabled).then(|| view! {
                <ActionForm action=resend attr:class="form inline">
                    <button type="submit" class="button" disabled=move || resend.pending().get()>
                        "Send the verification link again"
                    </button>
                </ActionForm>
                <Outcome result=resend.value() />
            })}
        </section>
    }
}

#[component]
fn ChangePasswordCard() -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    view! {
        <section class="card">
            <h2>"Change password"</h2>
            <ActionForm action=change attr:class="form">
                <label for="current-password">"Current password"</label>
                <input id="current-password" type="password" name="current_password" autocomplete="current-password" required />
                <label for="new-password">"New password"</label>
                <input id="new-password" type="password" name="new_password" autocomplete="new-password" minlength="8" required />
                <p class="hint">"At least 8 characters. Your other sessions are signed out."</p>
                <button type="submit" class="button primary" disabled=move || change.pending().get()>
                    "Change password"
                </button>
            </ActionForm>
            <Outcome result=change.value() testid="password-changed" />
        </section>
    }
}

#[component]
fn ChangeEmailCard() -> impl IntoView {
    let change = ServerAction::<ChangeEmail>::new();
    view! {
        <section class="card">
            <h2>"Change email address"</h2>
            <ActionForm action=change attr:class="form">
                <label for="new-email">"New address"</label>
                <input id="new-email" type="email" name="new_email" autocomplete="email" required />
                <label for="email-password">"Password"</label>
                <input id="email-password" type="password" name="password" autocomplete="current-password" required />
                <p class="hint">"We mail a link to the new address; the address changes when you open it."</p>
                <button type="submit" class="button primary" disabled=move || change.pending().get()>
                    "Send the link"
                </button>
            </ActionForm>
            <Outcome result=change.value() />
        </section>
    }
}

#[component]
fn DeleteAccountCard() -> impl IntoView {
    let delete = ServerAction::<DeleteAccount>::new();
    let error = Signal::derive(move || delete.value().get().and_then(Result::err));
    view! {
        <section class="card">
            <h2>"Delete account"</h2>
            <p class="muted">"Your keys stop working at once. This cannot be undone."</p>
            <ActionForm action=delete attr:class="form">
                <label for="delete-password">"Password"</label>
                <input id="delete-password" type="password" name="password" autocomplete="current-password" required />
                <button type="submit" class="button danger" disabled=move || delete.pending().get()>
                    "Delete my account"
                </button>
            </ActionForm>
            <ErrorMessage error />
        </section>
    }
}

/// The `token` query parameter of a mailed link.
fn token_param() -> Signal<String> {
    let query = use_query_map();
    Signal::derive(move || query.read().get("token").unwrap_or_default())
}

/// `/forgot-password`: asks for a reset link.
#[component]
pub fn ForgotPasswordPage() -> impl IntoView {
    let ask = ServerAction::<ForgotPassword>::new();
    view! {
        <AuthCard title="Reset your password">
            <ActionForm action=ask attr:class="form">
                <label for="email">"Email"</label>
                <input id="email" type="email" name="email" autocomplete="email" required />
                <button type="submit" class="button primary" disabled=move || ask.pending().get()>
                    "Send me a link"
                </button>
            </ActionForm>
            <Outcome result=ask.value() testid="reset-requested" />
            <p class="muted"><A href="/login">"Back to sign in"</A></p>
        </AuthCard>
    }
}

/// `/reset-password?token=…`: sets a new password.
#[component]
pub fn ResetPasswordPage() -> impl IntoView {
    let reset = ServerAction::<ResetPassword>::new();
    let token = token_param();
    let done = move || matches!(reset.value().get(), Some(Ok(_)));
    view! {
        <AuthCard title="Choose a new password">
            <ActionForm action=reset attr:class="form">
                <input type="hidden" name="token" value=token />
                <label for="password">"New password"</label>
                <input id="password" type="password" name="password" autocomplete="new-password" minlength="8" required />
                <p class="hint">"At least 8 characters. Every session of the account is signed out."</p>
                <button type="submit" class="button primary" disabled=move || reset.pending().get()>
                    "Set password"
                </button>
            </ActionForm>
            <Outcome result=reset.value() testid="password-reset" />
            {move || done().then(|| view! { <p><A href="/login">"Sign in"</A></p> })}
        </AuthCard>
    }
}

/// `/verify-email?token=…`: confirms an address (a button, so a mail
/// scanner that follows links does not use the link up).
#[component]
pub fn VerifyEmailPage() -> impl IntoView {
    let confirm = ServerAction::<ConfirmEmail>::new();
    let token = token_param();
    view! {
        <AuthCard title="Verify your email address">
            <ActionForm action=confirm attr:class="form">
                <input type="hidden" name="token" value=token />
                <button type="submit" class="button primary" disabled=move || confirm.pending().get()>
                    "Confirm my address"
                </button>
            </ActionForm>
            <Outcome result=confirm.value() testid="email-confirmed" />
            <p class="muted"><A href="/dashboard">"Go to the dashboard"</A></p>
        </AuthCard>
    }
}

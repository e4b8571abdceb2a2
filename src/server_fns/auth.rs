//! Sign up, sign in, sign out and "who am I".

use leptos::prelude::*;

use super::UserView;
use crate::error::AppError;

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The longest password accepted (hashing cost stays bounded).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Normalises an email for storage and lookup.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks that an (already normalised) email is plausible.
pub fn validate_email(email: &str) -> Result<(), AppError> {
    let invalid = || AppError::invalid("email", "Enter a valid email address.");
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let well_formed = !local.is_empty()
        && email.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Checks a new password's length.
pub fn validate_password(password: &str) -> Result<(), AppError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(AppError::invalid(
            "password",
            format!("Use a password of at least {MIN_PASSWORD_LEN} characters."),
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AppError::invalid(
            "password",
            format!("Use a password of at most {MAX_PASSWORD_LEN} bytes."),
        ));
    }
    Ok(())
}

#[cfg(feature = "ssr")]
impl From<crate::db::users::UserRow> for UserView {
    fn from(row: crate::db::users::UserRow) -> Self {
        Self {
            is_admin: row.role == "admin",
            email: row.email.unwrap_or_default(),
            id: row.id,
        }
    }
}

/// Creates an account and signs it in.
#[server(prefix = "/rpc", endpoint = "sign_up")]
pub async fn sign_up(
    email: String,
    password: String,
    next: Option<String>,
) -> Result<UserView, AppError> {
    use super::context::{finish, redirect_to_local, session, state};
    finish(
        async {
            let user = register(&state()?, &session().await?, &email, password).await?;
            redirect_to_local(next.as_deref(), "/dashboard");
            Ok(user)
        }
        .await,
    )
}

/// What the sign-up page tells before anyone signs up.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SignupFacts {
    /// This account will be the first, and so the admin.
    pub becomes_admin: bool,
    /// Credit a new account starts with, formatted (`None`: none).
    pub credit: Option<String>,
}

/// Whether the next account becomes the admin, and the credit it gets.
#[server(prefix = "/rpc", endpoint = "signup_info")]
pub async fn signup_info() -> Result<SignupFacts, AppError> {
    use super::context::{finish, state};
    finish(
        async {
            let state = state()?;
            let becomes_admin =
                state.config.first_account_admin && crate::db::users::none_yet(&state.db).await?;
            let credit = crate::billing::money::usd_to_nanos(state.config.signup_credit);
            Ok(SignupFacts {
                becomes_admin,
                credit: (credit > 0).then(|| crate::format::dollars(credit)),
            })
        }
        .await,
    )
}

/// Creates an account with `email` and `password`, grants the sign-up
/// credit, signs `session` in to it, and mails the link that verifies the
/// address: the sign-up form and
/// `POST /api/auth/signup` both call this.
#[cfg(feature = "ssr")]
pub async fn register(
    state: &crate::state::AppState,
    session: &tower_sessions::Session,
    email: &str,
    password: String,
) -> Result<UserView, AppError> {
    use crate::auth::{password as pw, session as sessions};
    use crate::db::users;

    let email = normalize_email(email);
    validate_email(&email)?;
    validate_password(&password)?;
    let hash = pw::hash(password).await?;
    let first_is_admin = state.config.first_account_admin;
    let user = users::create_with_password(
        &state.db,
        &email,
        &hash,
        first_is_admin,
        state.clock.now_ms(),
    )
    .await?
    .ok_or_else(|| AppError::Conflict("An account with this email already exists.".into()))?;
    grant_signup_credit(state, &user.id).await?;
    sessions::sign_in(session, &user.id, user.session_epoch).await?;
    if user.role == "admin" {
        tracing::info!(user_id = %user.id, %email, "signed up: the first account, so the admin");
    } else {
        tracing::info!(user_id = %user.id, "signed up");
    }
    let now = state.clock.now_ms();
    if let Err(err) = crate::mail::links::send_link(
        &state.mail,
        &user.id,
        crate::auth::email_token::Purpose::Verify,
        &email,
        now,
    )
    .await
    {
        // The account stands; the account page can send the link again.
        tracing::warn!(%err, user_id = %user.id, "queueing the verification mail failed");
    }
    Ok(user.into())
}

/// Credits a new account with the configured `signup_credit`, if any.
#[cfg(feature = "ssr")]
async fn grant_signup_credit(
    state: &crate::state::AppState,
    user_id: &str,
) -> Result<(), AppError> {
    use crate::billing::money::usd_to_nanos;
    use crate::db::ledger::{self, EntryKind};
    let amount = usd_to_nanos(state.config.signup_credit);
    if amount > 0 {
        ledger::credit(
            &state.db,
            user_id,
            EntryKind::SignupGrant,
            amount,
            Some("Sign-up credit"),
            state.clock.now_ms(),
        )
        .await
        .map_err(|err| {
            tracing::error!(%err, "granting the sign-up credit failed");
            AppError::Internal
        })?;
        state.recorder.credited(user_id, amount);
    }
    Ok(())
}

/// Signs in with email and password.
#[server(prefix = "/rpc", endpoint = "sign_in")]
pub async fn sign_in(
    email: String,
    password: String,
    next: Option<String>,
) -> Result<UserView, AppError> {
    use super::context::{client_ip, finish, redirect_to_local, session, state};
    finish(
        async {
            let state = state()?;
            let ip = client_ip(state.config.trust_forwarded_for).await;
            let user = authenticate(&state, &session().await?, &email, password, ip).await?;
            redirect_to_local(next.as_deref(), "/dashboard");
            Ok(user)
        }
        .await,
    )
}

/// Checks `email` and `password`, throttled per account and per `ip`
/// (`auth::throttle`), and signs `session` in: the sign-in form and
/// `POST /api/auth/signin` both call this.
#[cfg(feature = "ssr")]
pub async fn authenticate(
    state: &crate::state::AppState,
    session: &tower_sessions::Session,
    email: &str,
    password: String,
    ip: Option<std::net::IpAddr>,
) -> Result<UserView, AppError> {
    use crate::auth::{password as pw, session as sessions, throttle::Attempt};
    use crate::db::users;

    let email = normalize_email(email);
    let attempt = Attempt::new(&email, ip);
    attempt.check(&state.db, state.clock.now_ms()).await?;
    let user = users::find_by_email(&state.db, &email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let user = match user {
        Some(user) if pw::verify(password, stored).await => user,
        _ => {
            attempt
                .record_failure(&state.db, state.clock.now_ms())
                .await?;
            return Err(AppError::Unauthorized("Invalid email or password.".into()));
        }
    };
    if !user.is_active() {
        return Err(AppError::Forbidden("This account is disabled.".into()));
    }
    attempt.record_success(&state.db).await?;
    sessions::sign_in(session, &user.id, user.session_epoch).await?;
    tracing::info!(user_id = %user.id, "signed in");
    Ok(user.into())
}

/// Signs out: the session is destroyed on the server.
#[server(prefix = "/rpc", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    use super::context::{finish, session};
    finish(
        async {
            crate::auth::session::sign_out(&session().await?).await?;
            leptos_axum::redirect("/login");
            Ok(())
        }
        .await,
    )
}

/// The signed-in user, or `None`.
#[server(prefix = "/rpc", endpoint = "me")]
pub async fn me() -> Result<Option<UserView>, AppError> {
    use super::context::{finish, require_user};
    finish(match require_user().await {
        Ok((state, user)) => Ok(Some(view_of(&state, user))),
        Err(AppError::Unauthorized(_)) => Ok(None),
        Err(err) => Err(err),
    })
}

/// A signed-in user as the dashboard shows them, an admin by role or by
/// the config's `admin_emails`: what `me` and `GET /api/auth/me` answer.
#[cfg(feature = "ssr")]
pub fn view_of(state: &crate::state::AppState, user: crate::db::users::UserRow) -> UserView {
    let is_admin = state.config.is_admin(&user.role, user.email.as_deref());
    UserView {
        is_admin,
        ..user.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Ada@Example.COM "), "ada@example.com");
        assert!(validate_email("ada@example.com").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "a@b@c.com",
            "ada@.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_need_eight_characters() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"x".repeat(257)).is_err());
        assert_eq!(
            validate_password("short").unwrap_err().param(),
            Some("password")
        );
    }
}

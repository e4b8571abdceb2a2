//! The account: verifying the address, recovering a forgotten password,
//! changing the password or the address, deleting the account, and the
//! low-balance alert's threshold.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// What `/forgot-password` answers, whether or not the account exists.
pub const RESET_REQUESTED: &str =
    "If an account uses this address, we have sent it a link to reset the password. \
     The link is valid for 1 hour.";

/// The account page's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub email: String,
    pub email_verified: bool,
    /// Whether keys and payments need a verified address (`require_verified_email`).
    pub verification_required: bool,
    /// Whether the gateway sends mail at all.
    pub mail_enabled: bool,
}

/// The signed-in user's account.
#[server(prefix = "/rpc", endpoint = "account_overview")]
pub async fn account_overview() -> Result<AccountView, AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            Ok(AccountView {
                email: user.email.clone().unwrap_or_default(),
                email_verified: user.email_verified_at.is_some(),
                verification_required: state.config.require_verified_email,
                mail_enabled: state.mail.is_enabled(),
            })
        }
        .await,
    )
}

/// Mails the signed-in user a new verification link (throttled).
#[server(prefix = "/rpc", endpoint = "resend_verification")]
pub async fn resend_verification() -> Result<String, AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            server::resend_for(&state, &user).await?;
            Ok("We have sent a new link. It is valid for 24 hours.".to_string())
        }
        .await,
    )
}

/// Mails a password-reset link to `email`'s account, if there is one; the
/// answer is the same either way.
#[server(prefix = "/rpc", endpoint = "forgot_password")]
pub async fn forgot_password(email: String) -> Result<String, AppError> {
    use super::context::{client_ip, finish, state};
    finish(
        async {
            let state = state()?;
            let ip = client_ip(state.config.trust_forwarded_for).await;
            server::request_reset(&state, &email, ip).await?;
            Ok(RESET_REQUESTED.to_string())
        }
        .await,
    )
}

/// Sets a new password with a reset link's token, and signs out every
/// session of the account.
#[server(prefix = "/rpc", endpoint = "reset_password")]
pub async fn reset_password(token: String, password: String) -> Result<String, AppError> {
    use super::context::{finish, state};
    finish(
        async {
            server::reset_with_token(&state()?, &token, password).await?;
            Ok("Your password is set. Sign in with it.".to_string())
        }
        .await,
    )
}

/// Redeems a verification or email-change link.
#[server(prefix = "/rpc", endpoint = "confirm_email")]
pub async fn confirm_email(token: String) -> Result<String, AppError> {
    use super::context::{finish, state};
    finish(async { server::confirm_with_token(&state()?, &token).await }.await)
}

/// Changes the password (the current one is needed) and signs out every
/// other session.
#[server(prefix = "/rpc", endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<String, AppError> {
    use super::context::{client_ip, finish, require_user, session};
    finish(
        async {
            let (state, user) = require_user().await?;
            let ip = client_ip(state.config.trust_forwarded_for).await;
            let passwords = (current_password, new_password);
            server::change_password_for(&state, &session().await?, &user, passwords, ip).await?;
            Ok("Your password is changed; your other sessions are signed out.".to_string())
        }
        .await,
    )
}

/// Mails a link to `new_email` that moves the account there (the current
/// password is needed).
#[server(prefix = "/rpc", endpoint = "change_email")]
pub async fn change_email(new_email: String, password: String) -> Result<String, AppError> {
    use super::context::{client_ip, finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            let ip = client_ip(state.config.trust_forwarded_for).await;
            let to = server::change_email_for(&state, &user, &new_email, password, ip).await?;
            Ok(format!(
                "We have sent a link to {to}. Your address changes when you open it."
            ))
        }
        .await,
    )
}

/// Deletes the account (the password is needed) and signs out.
#[server(prefix = "/rpc", endpoint = "delete_account")]
pub async fn delete_account(password: String) -> Result<(), AppError> {
    use super::context::{client_ip, finish, require_user, session};
    finish(
        async {
            let (state, user) = require_user().await?;
            let ip = client_ip(state.config.trust_forwarded_for).await;
            server::delete_for(&state, &session().await?, &user, password, ip).await?;
            leptos_axum::redirect("/");
            Ok(())
        }
        .await,
    )
}

/// The low-balance alert's threshold, in nano-USD (`None`: off).
#[server(prefix = "/rpc", endpoint = "low_balance_alert")]
pub async fn low_balance_alert() -> Result<Option<i64>, AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            Ok(crate::db::users::low_balance_threshold(&state.db, &user.id).await?)
        }
        .await,
    )
}

/// Sets the low-balance alert's threshold from USD text; empty turns it off.
#[server(prefix = "/rpc", endpoint = "set_low_balance_alert")]
pub async fn set_low_balance_alert(threshold: String) -> Result<Option<i64>, AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            server::set_threshold_for(&state, &user.id, &threshold).await
        }
        .await,
    )
}

/// The largest low-balance threshold, in USD.
pub const MAX_THRESHOLD_USD: i64 = 1_000_000;

/// Parses a threshold in USD: empty is `None` (off); otherwise from 0 to
/// [`MAX_THRESHOLD_USD`].
pub fn parse_threshold(text: &str) -> Result<Option<i64>, AppError> {
    use crate::billing::money::{parse_usd, NANOS_PER_USD};
    if text.trim().is_empty() {
        return Ok(None);
    }
    match parse_usd(text) {
        Some(nanos) if (0..=MAX_THRESHOLD_USD * NANOS_PER_USD).contains(&nanos) => Ok(Some(nanos)),
        _ => Err(AppError::invalid(
            "threshold",
            format!("Enter an amount in USD from 0 to {MAX_THRESHOLD_USD}, or nothing to turn the alert off."),
        )),
    }
}

/// The shared functions behind the server functions.
#[cfg(feature = "ssr")]
pub mod server {
    use std::net::IpAddr;
    use tower_sessions::Session;

    use crate::auth::email_token::{self, Purpose};
    use crate::auth::throttle::{count_request, Attempt};
    use crate::auth::{password as pw, session as sessions};
    use crate::db::users::{self, UserRow};
    use crate::error::AppError;
    use crate::mail::links;
    use crate::server_fns::auth::{normalize_email, validate_email, validate_password};
    use crate::state::AppState;

    /// Requests allowed per address, and per IP address, over the
    /// throttle's window, for links sent on request.
    const LINKS_PER_ADDRESS: i64 = 3;
    const LINKS_PER_IP: i64 = 20;

    fn invalid_link() -> AppError {
        AppError::invalid(
            "token",
            "This link is invalid, used or expired. Ask for a new one.",
        )
    }

    /// Mails `user` a new verification link, at most three per window.
    pub async fn resend_for(state: &AppState, user: &UserRow) -> Result<(), AppError> {
        let email = user.email.as_deref().unwrap_or_default();
        if user.email_verified_at.is_some() {
            return Err(AppError::invalid(
                "email",
                "Your address is already verified.",
            ));
        }
        if !state.mail.is_enabled() {
            return Err(AppError::Forbidden("This gateway sends no mail.".into()));
        }
        let now = state.clock.now_ms();
        let subject = format!("verify:user:{}", user.id);
        count_request(&state.db, &[(&subject, LINKS_PER_ADDRESS)], now).await?;
        links::send_link(&state.mail, &user.id, Purpose::Verify, email, now).await
    }

    /// Mails a reset link to the live account at `email`, if any, counting
    /// the request against the address and the IP either way.
    pub async fn request_reset(
        state: &AppState,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), AppError> {
        let email = normalize_email(email);
        validate_email(&email)?;
        let now = state.clock.now_ms();
        let by_address = format!("reset:email:{email}");
        let by_ip = ip.map(|ip| format!("reset:ip:{ip}"));
        let mut limits = vec![(by_address.as_str(), LINKS_PER_ADDRESS)];
        if let Some(by_ip) = &by_ip {
            limits.push((by_ip.as_str(), LINKS_PER_IP));
        }
        count_request(&state.db, &limits, now).await?;
        match users::find_by_email(&state.db, &email).await? {
            Some(user) if user.is_active() => {
                links::send_link(&state.mail, &user.id, Purpose::Reset, &email, now).await?;
                tracing::info!(user_id = %user.id, "password reset link sent");
            }
            _ => tracing::info!("password reset asked for an unknown address"),
        }
        Ok(())
    }

    /// Sets a new password with a reset token (used up), bumping the
    /// session epoch so every session is signed out. The link also proves
    /// the address it was sent to.
    pub async fn reset_with_token(
        state: &AppState,
        token: &str,
        password: String,
    ) -> Result<(), AppError> {
        validate_password(&password)?;
        let hash = pw::hash(password).await?;
        let now = state.clock.now_ms();
        let redeemed = email_token::redeem(&state.db, token, &[Purpose::Reset], now)
            .await?
            .ok_or_else(invalid_link)?;
        users::set_password(&state.db, &redeemed.user_id, &hash, now)
            .await?
            .ok_or_else(invalid_link)?;
        if let Some(address) = &redeemed.new_email {
            users::mark_email_verified(&state.db, &redeemed.user_id, address, now).await?;
            Attempt::new(address, None)
                .record_success(&state.db)
                .await?;
        }
        tracing::info!(user_id = %redeemed.user_id, "password reset; every session signed out");
        Ok(())
    }

    /// Redeems a verification or email-change token; says what it did.
    pub async fn confirm_with_token(state: &AppState, token: &str) -> Result<String, AppError> {
        let now = state.clock.now_ms();
        let purposes = [Purpose::Verify, Purpose::ChangeEmail];
        let redeemed = email_token::redeem(&state.db, token, &purposes, now)
            .await?
            .ok_or_else(invalid_link)?;
        let address = redeemed.new_email.unwrap_or_default();
        if redeemed.purpose == Purpose::ChangeEmail.as_str() {
            if !users::change_email(&state.db, &redeemed.user_id, &address, now).await? {
                return Err(AppError::Conflict(
                    "Another account uses this address now.".into(),
                ));
            }
            tracing::info!(user_id = %redeemed.user_id, "email address changed");
            return Ok(format!(
                "Your address is now {address}, and it is verified."
            ));
        }
        if !users::mark_email_verified(&state.db, &redeemed.user_id, &address, now).await? {
            return Err(AppError::invalid(
                "token",
                "This link is for an address the account no longer uses.",
            ));
        }
        Ok(format!("Thank you: {address} is verified."))
    }

    /// Checks `user`'s password for an account change, throttled as
    /// sign-ins are.
    async fn check_password(
        state: &AppState,
        user: &UserRow,
        password: String,
        ip: Option<IpAddr>,
    ) -> Result<(), AppError> {
        let attempt = Attempt::new(user.email.as_deref().unwrap_or(&user.id), ip);
        let now = state.clock.now_ms();
        attempt.check(&state.db, now).await?;
        if pw::verify(password, user.password_hash.clone()).await {
            return Ok(());
        }
        attempt.record_failure(&state.db, now).await?;
        Err(AppError::invalid("password", "The password is not right."))
    }

    /// Changes `user`'s password (`passwords`: the current one, the new
    /// one) and signs out every session but `session`, which is stamped
    /// with the new epoch.
    pub async fn change_password_for(
        state: &AppState,
        session: &Session,
        user: &UserRow,
        (current, new): (String, String),
        ip: Option<IpAddr>,
    ) -> Result<(), AppError> {
        check_password(state, user, current, ip).await?;
        validate_password(&new)?;
        let hash = pw::hash(new).await?;
        let epoch = users::set_password(&state.db, &user.id, &hash, state.clock.now_ms())
            .await?
            .ok_or_else(|| AppError::Unauthorized("Please sign in.".into()))?;
        sessions::sign_in(session, &user.id, epoch).await?;
        tracing::info!(user_id = %user.id, "password changed; other sessions signed out");
        Ok(())
    }

    /// Mails `user` a link that moves the account to `new_email`; returns
    /// the normalised address.
    pub async fn change_email_for(
        state: &AppState,
        user: &UserRow,
        new_email: &str,
        password: String,
        ip: Option<IpAddr>,
    ) -> Result<String, AppError> {
        check_password(state, user, password, ip).await?;
        let email = normalize_email(new_email);
        validate_email(&email)?;
        if user.email.as_deref() == Some(email.as_str()) {
            return Err(AppError::invalid(
                "new_email",
                "This is already your address.",
            ));
        }
        if users::email_taken(&state.db, &email).await? {
            return Err(AppError::Conflict(
                "An account with this email already exists.".into(),
            ));
        }
        if !state.mail.is_enabled() {
            return Err(AppError::Forbidden(
                "This gateway sends no mail, so an address cannot be changed here.".into(),
            ));
        }
        let now = state.clock.now_ms();
        links::send_link(&state.mail, &user.id, Purpose::ChangeEmail, &email, now).await?;
        Ok(email)
    }

    /// Deletes `user`'s account (their keys are revoked) and signs out.
    pub async fn delete_for(
        state: &AppState,
        session: &Session,
        user: &UserRow,
        password: String,
        ip: Option<IpAddr>,
    ) -> Result<(), AppError> {
        check_password(state, user, password, ip).await?;
        users::soft_delete(&state.db, &user.id, state.clock.now_ms()).await?;
        state.keys.forget_user(&user.id);
        sessions::sign_out(session).await?;
        tracing::info!(user_id = %user.id, "account deleted by its user");
        Ok(())
    }

    /// Sets `user_id`'s low-balance threshold from USD text.
    pub async fn set_threshold_for(
        state: &AppState,
        user_id: &str,
        threshold: &str,
    ) -> Result<Option<i64>, AppError> {
        let threshold = super::parse_threshold(threshold)?;
        let now = state.clock.now_ms();
        users::set_low_balance_threshold(&state.db, user_id, threshold, now).await?;
        Ok(threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_usd_or_nothing() {
        assert_eq!(parse_threshold(""), Ok(None));
        assert_eq!(parse_threshold(" 2.5 "), Ok(Some(2_500_000_000)));
        assert_eq!(parse_threshold("0"), Ok(Some(0)));
        for bad in ["-1", "abc", "1000001", "0.0000000001"] {
            assert_eq!(
                parse_threshold(bad).unwrap_err().param(),
                Some("threshold"),
                "{bad}"
            );
        }
    }
}

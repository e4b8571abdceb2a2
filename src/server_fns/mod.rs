//! Server functions the dashboard calls, mounted under `/rpc/`, and the data
//! types they exchange with the client.

pub mod account;
pub mod admin;
pub mod auth;
pub mod billing;
pub mod codec;
#[cfg(feature = "ssr")]
pub mod export;
pub mod keys;
pub mod models;
pub mod playground;
#[cfg(feature = "ssr")]
pub mod rest;

use serde::{Deserialize, Serialize};

/// The signed-in user, as the dashboard sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub is_admin: bool,
}

/// An API key as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    /// Unix epoch milliseconds.
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub status: KeyStatus,
    /// The limits the key's owner set on it.
    pub limits: KeyLimits,
    /// What the key spent this calendar month (UTC), in nano-USD.
    pub month_spend: i64,
    /// The operator's limits on the key, which apply too (read-only).
    pub operator: OperatorLimits,
}

/// The limits a key's owner sets on it; they can only narrow the operator's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct KeyLimits {
    /// Nano-USD per calendar month (UTC); `null`: no cap.
    pub monthly_cap: Option<i64>,
    /// `provider:model`, model names or `provider:*`; `null`: every model
    /// the operator allows.
    pub allowed_models: Option<Vec<String>>,
    /// Unix epoch milliseconds; `null`: no expiry.
    pub expires_at: Option<i64>,
}

/// The limits an operator set on a key, shown to its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct OperatorLimits {
    pub allowed_models: Option<Vec<String>>,
    /// Nano-USD per budget period.
    pub max_budget: Option<i64>,
    /// The budget period in seconds; `null`: over the key's life.
    pub budget_duration_sec: Option<i64>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    /// Unix epoch milliseconds.
    pub expires_at: Option<i64>,
}

/// Whether a key can still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

impl KeyStatus {
    /// A label for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// A key just created: the only time its secret is ever returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreatedKey {
    pub key: KeyView,
    pub secret: String,
}

/// Server-side plumbing shared by the server functions.
#[cfg(feature = "ssr")]
pub mod context {
    use axum::extract::ConnectInfo;
    use axum::http::{header, request::Parts, HeaderMap};
    use leptos::prelude::*;
    use leptos_axum::ResponseOptions;
    use std::net::{IpAddr, SocketAddr};
    use tower_sessions::Session;

    use crate::auth::session;
    use crate::db::users::{self, UserRow};
    use crate::error::AppError;
    use crate::state::AppState;

    /// The gateway's state, provided to server functions as context.
    pub fn state() -> Result<AppState, AppError> {
        use_context::<AppState>().ok_or_else(|| {
            tracing::error!("AppState missing from server function context");
            AppError::Internal
        })
    }

    /// The request's session.
    pub async fn session() -> Result<Session, AppError> {
        leptos_axum::extract::<Session>().await.map_err(|err| {
            tracing::error!(%err, "session layer missing");
            AppError::Internal
        })
    }

    /// The signed-in, active user; `Unauthorized` otherwise.
    pub async fn require_user() -> Result<(AppState, UserRow), AppError> {
        let state = state()?;
        let user = active_user(&state, &session().await?).await?;
        Ok((state, user))
    }

    /// The active user `session` is signed in as; `Unauthorized` otherwise
    /// (a session of a user since disabled or deleted, or from before a
    /// password reset or change, is ended). The server
    /// functions and the REST routes (`super::rest`) both ask this.
    pub async fn active_user(state: &AppState, session: &Session) -> Result<UserRow, AppError> {
        let unauthorized = || AppError::Unauthorized("Please sign in.".into());
        let user_id = session::user_id(session).await?.ok_or_else(unauthorized)?;
        match users::find_by_id(&state.db, &user_id).await? {
            Some(user)
                if user.is_active() && session::is_current(session, user.session_epoch).await? =>
            {
                Ok(user)
            }
            _ => {
                session::sign_out(session).await?;
                Err(unauthorized())
            }
        }
    }

    /// The client's IP: the socket peer, or `X-Forwarded-For` when configured to trust it.
    pub async fn client_ip(trust_forwarded_for: bool) -> Option<IpAddr> {
        let peer = leptos_axum::extract::<ConnectInfo<SocketAddr>>()
            .await
            .ok()
            .map(|ConnectInfo(addr)| addr.ip());
        let headers = use_context::<Parts>().map(|parts| parts.headers);
        peer_ip(headers.as_ref(), peer, trust_forwarded_for)
    }

    /// The client's IP from a request's headers and its socket peer: the
    /// first `X-Forwarded-For` address when it is trusted and present, else the peer.
    pub fn peer_ip(
        headers: Option<&HeaderMap>,
        peer: Option<IpAddr>,
        trust_forwarded_for: bool,
    ) -> Option<IpAddr> {
        let forwarded = headers
            .filter(|_| trust_forwarded_for)
            .and_then(|headers| headers.get("x-forwarded-for"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|ip| ip.trim().parse().ok());
        forwarded.or(peer)
    }

    /// Sets the HTTP status of a failed call from its error, so API clients
    /// see a real status. Plain form posts keep the redirect leptos sets up.
    pub fn finish<T>(result: Result<T, AppError>) -> Result<T, AppError> {
        if let Err(err) = &result {
            let is_form_post = use_context::<Parts>()
                .and_then(|parts| parts.headers.get(header::ACCEPT).cloned())
                .is_some_and(|accept| accept.to_str().is_ok_and(|a| a.contains("text/html")));
            if let (false, Some(response)) = (is_form_post, use_context::<ResponseOptions>()) {
                if let Ok(status) = axum::http::StatusCode::from_u16(err.status()) {
                    response.set_status(status);
                }
            }
        }
        result
    }

    /// Redirects after success to `next` if it is a local path, else to `fallback`.
    pub fn redirect_to_local(next: Option<&str>, fallback: &str) {
        let target = next.filter(|n| is_local_path(n)).unwrap_or(fallback);
        leptos_axum::redirect(target);
    }

    /// Whether `path` stays on this site (no scheme, no `//host`, no backslash tricks).
    pub fn is_local_path(path: &str) -> bool {
        path.starts_with('/') && !path.starts_with("//") && !path.contains('\\')
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn only_local_paths_are_followed() {
            assert!(super::is_local_path("/dashboard/keys"));
            assert!(!super::is_local_path("//evil.example"));
            assert!(!super::is_local_path("https://evil.example"));
            assert!(!super::is_local_path("/\\evil.example"));
        }
    }
}

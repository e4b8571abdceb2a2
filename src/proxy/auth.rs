//! Who is calling: an API key from any of the accepted headers, or the master key.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::api_key::{self, constant_time_eq, presented_key};
use std::sync::Arc;

use crate::auth::policy::{KeyAuth, KeyPolicy};
use crate::db::{keys, users};
use crate::error::AppError;
use crate::state::AppState;

/// An authenticated caller of the proxy.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A user's API key.
    Key {
        key_id: String,
        user_id: String,
        /// The key's display prefix: the only part of it ever logged.
        prefix: String,
        /// What the key may do.
        policy: Arc<KeyPolicy>,
    },
    /// The operator's master key; requests must name a `user`.
    Master,
    /// A signed-in dashboard user, from the playground (never from an API route).
    Session { user_id: String },
}

/// The 403 for a blocked user.
pub fn blocked() -> AppError {
    AppError::denied("user_blocked", "This account is blocked.")
}

fn invalid_key() -> AppError {
    AppError::Unauthorized(
        "Invalid API key. Pass a key as `Authorization: Bearer llm_sk_…`.".into(),
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let presented = presented_key(&parts.headers).ok_or_else(|| {
            AppError::Unauthorized(
                "Missing API key. Pass it as `Authorization: Bearer llm_sk_…`.".into(),
            )
        })?;
        if let Some(master) = &state.config.master_key {
            if constant_time_eq(presented.as_bytes(), master.as_bytes()) {
                return Ok(Caller::Master);
            }
        }
        if !api_key::looks_like_key(presented) {
            return Err(invalid_key());
        }
        let hash = api_key::hash(presented);
        let key = match state.keys.get(&hash) {
            Some(key) => key,
            None => {
                let key: KeyAuth = keys::find_for_auth(&state.db, &hash)
                    .await?
                    .ok_or_else(invalid_key)?
                    .into();
                state.keys.insert(hash, key.clone());
                key
            }
        };
        let KeyAuth { standing, policy } = key;
        if standing.revoked_at.is_some() || standing.user_deleted_at.is_some() {
            return Err(invalid_key());
        }
        if standing
            .expires_at
            .is_some_and(|at| at <= state.clock.now_ms())
        {
            return Err(AppError::denied("key_expired", "This API key has expired."));
        }
        if standing.user_blocked_at.is_some() {
            return Err(blocked());
        }
        Ok(Caller::Key {
            key_id: standing.id,
            user_id: standing.user_id,
            prefix: standing.key_prefix,
            policy,
        })
    }
}

/// The user a request is billed to: the key's owner, or the body's `user`
/// for the master key (created on first use, as any-llm-gateway does).
pub async fn billed_user(
    caller: &Caller,
    body_user: Option<&str>,
    state: &AppState,
) -> Result<(String, Option<String>), AppError> {
    match caller {
        Caller::Key {
            key_id, user_id, ..
        } => Ok((user_id.clone(), Some(key_id.clone()))),
        Caller::Session { user_id } => Ok((user_id.clone(), None)),
        Caller::Master => {
            let user =
                body_user
                    .filter(|u| !u.trim().is_empty())
                    .ok_or_else(|| AppError::Validation {
                        field: Some("user".into()),
                        message: "When using master key, 'user' field is required".into(),
                    })?;
            let row = match users::find_or_create(&state.db, user, state.clock.now_ms()).await {
                Err(sqlx::Error::RowNotFound) => {
                    return Err(AppError::denied(
                        "user_deleted",
                        "This user has been deleted.",
                    ))
                }
                other => other?,
            };
            if !row.is_active() {
                return Err(blocked());
            }
            Ok((row.id, None))
        }
    }
}

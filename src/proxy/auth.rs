//! Who is calling: an API key from any of the accepted headers, or the master key.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::auth::api_key;
use std::sync::Arc;

use crate::db::keys::KeyPolicy;
use crate::db::{keys, users};
use crate::error::AppError;
use crate::server::AppState;

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

/// The key from `Authorization: Bearer`, `X-AnyLLM-Key: Bearer` or `x-api-key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
    };
    bearer("authorization")
        .or_else(|| bearer("x-anyllm-key"))
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        })
        .filter(|k| !k.is_empty())
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
                let key = keys::find_for_auth(&state.db, &hash)
                    .await?
                    .ok_or_else(invalid_key)?;
                state.keys.insert(hash, key.clone());
                key
            }
        };
        if key.revoked_at.is_some() || key.user_deleted_at.is_some() {
            return Err(invalid_key());
        }
        if key.expires_at.is_some_and(|at| at <= state.clock.now_ms()) {
            return Err(AppError::denied("key_expired", "This API key has expired."));
        }
        if key.user_blocked_at.is_some() {
            return Err(blocked());
        }
        Ok(Caller::Key {
            key_id: key.id,
            user_id: key.user_id,
            prefix: key.key_prefix,
            policy: key.policy,
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
            let row = match users::find_or_create(&state.db, user).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn keys_come_from_any_accepted_header() {
        for (name, value) in [
            ("authorization", "Bearer llm_sk_a"),
            ("x-anyllm-key", "Bearer llm_sk_a"),
            ("x-api-key", "llm_sk_a"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            assert_eq!(presented_key(&headers), Some("llm_sk_a"), "{name}");
        }
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"master-key", b"master-key"));
        assert!(!constant_time_eq(b"master-key", b"master-kez"));
        assert!(!constant_time_eq(b"master", b"master-key"));
    }
}

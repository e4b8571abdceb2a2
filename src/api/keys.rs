//! Create, list and revoke the signed-in user's API keys.

use leptos::prelude::*;

use super::{CreatedKey, KeyView};
use crate::error::AppError;

/// The longest key name accepted.
pub const MAX_KEY_NAME_LEN: usize = 64;

/// Checks and trims a key name.
pub fn validate_key_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid("name", "Give the key a name."));
    }
    if name.chars().count() > MAX_KEY_NAME_LEN {
        return Err(AppError::invalid(
            "name",
            format!("Use a name of at most {MAX_KEY_NAME_LEN} characters."),
        ));
    }
    Ok(name.to_string())
}

#[cfg(feature = "ssr")]
impl From<crate::db::keys::KeyRow> for KeyView {
    fn from(row: crate::db::keys::KeyRow) -> Self {
        use super::KeyStatus;
        let status = if row.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if row.expires_at.is_some_and(|at| at <= crate::db::now_ms()) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        };
        Self {
            id: row.id,
            name: row.name,
            prefix: row.key_prefix,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            status,
        }
    }
}

/// Creates a key; its secret is in the answer and nowhere else, ever.
#[server(prefix = "/rpc", endpoint = "create_key")]
pub async fn create_key(name: String) -> Result<CreatedKey, AppError> {
    use super::context::{finish, require_user};
    use crate::auth::api_key;
    use crate::db::keys::{self, NewKey};

    finish(
        async {
            let name = validate_key_name(&name)?;
            let (state, user) = require_user().await?;
            let generated = api_key::generate();
            let row = keys::insert(
                &state.db,
                NewKey {
                    user_id: &user.id,
                    name: &name,
                    key_hash: &generated.hash,
                    key_prefix: &generated.display_prefix,
                },
            )
            .await?;
            tracing::info!(user_id = %user.id, key = %row.key_prefix, "API key created");
            Ok(CreatedKey {
                key: row.into(),
                secret: generated.secret,
            })
        }
        .await,
    )
}

/// Lists the signed-in user's keys, newest first.
#[server(prefix = "/rpc", endpoint = "list_keys")]
pub async fn list_keys() -> Result<Vec<KeyView>, AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            let rows = crate::db::keys::list_for_user(&state.db, &user.id).await?;
            Ok(rows.into_iter().map(KeyView::from).collect())
        }
        .await,
    )
}

/// Revokes one of the signed-in user's keys, at once.
#[server(prefix = "/rpc", endpoint = "revoke_key")]
pub async fn revoke_key(id: String) -> Result<(), AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            if crate::db::keys::revoke_for_user(&state.db, &user.id, &id).await? {
                state.keys.forget_user(&user.id);
                tracing::info!(user_id = %user.id, key_id = %id, "API key revoked");
                Ok(())
            } else {
                // Someone else's key and an unknown one look the same.
                Err(AppError::NotFound("No active key with this id.".into()))
            }
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_trimmed_and_bounded() {
        assert_eq!(validate_key_name("  ci  ").unwrap(), "ci");
        assert!(validate_key_name("   ").is_err());
        assert!(validate_key_name(&"k".repeat(65)).is_err());
        assert!(validate_key_name(&"k".repeat(64)).is_ok());
    }
}

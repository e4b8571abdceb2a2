//! Create, list and revoke the signed-in user's API keys.

use leptos::prelude::*;

use super::{CreatedKey, KeyView};
use crate::error::AppError;

#[cfg(feature = "ssr")]
impl KeyView {
    /// A key as the dashboard shows it, at `now_ms`.
    pub fn at(row: crate::db::keys::KeyRow, now_ms: i64) -> Self {
        use super::KeyStatus;
        let status = if row.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if row.expires_at.is_some_and(|at| at <= now_ms) {
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
    use crate::auth::keys::{issue, validate_name};
    use crate::db::keys::KeySettings;

    finish(
        async {
            let name = validate_name(&name)?;
            let (state, user) = require_user().await?;
            let now = state.clock.now_ms();
            let settings = KeySettings {
                name,
                ..KeySettings::default()
            };
            let issued = issue(&state.db, now, &user.id, settings).await?;
            Ok(CreatedKey {
                key: KeyView::at(issued.row.into(), now),
                secret: issued.secret,
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
            let now = state.clock.now_ms();
            Ok(rows.into_iter().map(|row| KeyView::at(row, now)).collect())
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
            if crate::db::keys::revoke_for_user(&state.db, &user.id, &id, state.clock.now_ms())
                .await?
            {
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

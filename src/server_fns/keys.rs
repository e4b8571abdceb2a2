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
    finish(
        async {
            let (state, user) = require_user().await?;
            create_for(&state, &user.id, &name).await
        }
        .await,
    )
}

/// Issues a key named `name` to `user_id`: the keys page and
/// `POST /api/keys` both call this.
#[cfg(feature = "ssr")]
pub async fn create_for(
    state: &crate::state::AppState,
    user_id: &str,
    name: &str,
) -> Result<CreatedKey, AppError> {
    use crate::auth::keys::{issue, validate_name};
    use crate::db::keys::KeySettings;

    let settings = KeySettings {
        name: validate_name(name)?,
        ..KeySettings::default()
    };
    let now = state.clock.now_ms();
    let issued = issue(&state.db, now, user_id, settings).await?;
    Ok(CreatedKey {
        key: KeyView::at(issued.row.into(), now),
        secret: issued.secret,
    })
}

/// Lists the signed-in user's keys, newest first.
#[server(prefix = "/rpc", endpoint = "list_keys")]
pub async fn list_keys() -> Result<Vec<KeyView>, AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            list_for(&state, &user.id).await
        }
        .await,
    )
}

/// `user_id`'s keys, newest first: the keys page and `GET /api/keys` both
/// call this.
#[cfg(feature = "ssr")]
pub async fn list_for(
    state: &crate::state::AppState,
    user_id: &str,
) -> Result<Vec<KeyView>, AppError> {
    let rows = crate::db::keys::list_for_user(&state.db, user_id).await?;
    let now = state.clock.now_ms();
    Ok(rows.into_iter().map(|row| KeyView::at(row, now)).collect())
}

/// Revokes one of the signed-in user's keys, at once.
#[server(prefix = "/rpc", endpoint = "revoke_key")]
pub async fn revoke_key(id: String) -> Result<(), AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            revoke_for(&state, &user.id, &id).await
        }
        .await,
    )
}

/// Revokes `user_id`'s key `id`, at once; `NotFound` for a key that is not
/// theirs, or not active. The keys page and `DELETE /api/keys/{id}` both
/// call this.
#[cfg(feature = "ssr")]
pub async fn revoke_for(
    state: &crate::state::AppState,
    user_id: &str,
    id: &str,
) -> Result<(), AppError> {
    if crate::db::keys::revoke_for_user(&state.db, user_id, id, state.clock.now_ms()).await? {
        state.keys.forget_user(user_id);
        tracing::info!(%user_id, key_id = %id, "API key revoked");
        Ok(())
    } else {
        // Someone else's key and an unknown one look the same.
        Err(AppError::NotFound("No active key with this id.".into()))
    }
}

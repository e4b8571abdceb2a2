//! Create, list and revoke the signed-in user's API keys, and set the
//! limits they put on each (a monthly cap, allowed models, an expiry).

use leptos::prelude::*;

use super::{CreatedKey, KeyView};
use crate::error::AppError;

#[cfg(feature = "ssr")]
impl KeyView {
    /// A key as the dashboard shows it, at `now_ms` (its month's spend is
    /// left at zero; [`list_for`] fills it in).
    pub fn at(row: crate::db::keys::KeyRow, now_ms: i64) -> Self {
        use super::{KeyLimits, KeyStatus, OperatorLimits};
        use crate::db::keys::parse_models;
        let expires_at = match (row.expires_at, row.own.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let status = if row.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if expires_at.is_some_and(|at| at <= now_ms) {
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
            limits: KeyLimits {
                monthly_cap: row.own.monthly_cap,
                allowed_models: parse_models(row.own.allowed_models.as_deref()),
                expires_at: row.own.expires_at,
            },
            month_spend: 0,
            operator: OperatorLimits {
                allowed_models: parse_models(row.allowed_models.as_deref()),
                max_budget: row.max_budget,
                budget_duration_sec: row.budget_duration_sec,
                rpm_limit: row.rpm_limit,
                tpm_limit: row.tpm_limit,
                expires_at: row.expires_at,
            },
        }
    }
}

/// Creates a key, with the limits given (each optional: a monthly cap in
/// USD, allowed models separated by commas, an expiry date YYYY-MM-DD);
/// its secret is in the answer and nowhere else, ever.
#[server(prefix = "/rpc", endpoint = "create_key")]
pub async fn create_key(
    name: String,
    #[server(default)] monthly_cap: String,
    #[server(default)] allowed_models: String,
    #[server(default)] expires_at: String,
) -> Result<CreatedKey, AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            crate::auth::verified::ensure_verified(&state.config, &user)?;
            let limits = LimitsPatch::from_form(&monthly_cap, &allowed_models, &expires_at)?;
            create_for(&state, &user.id, &name, &limits).await
        }
        .await,
    )
}

/// Issues a key named `name` to `user_id`, with the limits in `limits`:
/// the keys page and `POST /api/keys` both call this. The limits are
/// checked before the key is issued, so a refused one leaves no key.
#[cfg(feature = "ssr")]
pub async fn create_for(
    state: &crate::state::AppState,
    user_id: &str,
    name: &str,
    limits: &LimitsPatch,
) -> Result<CreatedKey, AppError> {
    use crate::auth::keys::{issue, validate_name};
    use crate::db::keys::KeySettings;

    let settings = KeySettings {
        name: validate_name(name)?,
        ..KeySettings::default()
    };
    let now = state.clock.now_ms();
    let own = limits.applied_to(Default::default(), now, &state.models.catalog_keys())?;
    let issued = issue(&state.db, now, user_id, settings).await?;
    let mut row: crate::db::keys::KeyRow = issued.row.into();
    if own != row.own {
        row = store_limits(state, user_id, &row.id, &own).await?;
    }
    Ok(CreatedKey {
        key: KeyView::at(row, now),
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

/// `user_id`'s keys, newest first, each with what it spent this month:
/// the keys page and `GET /api/keys` both call this.
#[cfg(feature = "ssr")]
pub async fn list_for(
    state: &crate::state::AppState,
    user_id: &str,
) -> Result<Vec<KeyView>, AppError> {
    let rows = crate::db::keys::list_for_user(&state.db, user_id).await?;
    let now = state.clock.now_ms();
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let mut key = KeyView::at(row, now);
        key.month_spend = month_spend(state, &key.id).await?;
        keys.push(key);
    }
    Ok(keys)
}

/// What key `key_id` spent since the start of this calendar month (UTC).
#[cfg(feature = "ssr")]
async fn month_spend(state: &crate::state::AppState, key_id: &str) -> Result<i64, AppError> {
    let (_, month) = crate::billing::budget::day_and_month_starts(state.clock.now_ms());
    let (_, spent) = crate::db::usage::key_spend(&state.db, key_id, month).await?;
    Ok(spent)
}

/// Sets the limits on one of the signed-in user's keys: each field as on
/// the create form, an empty (or absent) one removing that limit.
#[server(prefix = "/rpc", endpoint = "update_key_limits")]
pub async fn update_key_limits(
    id: String,
    #[server(default)] monthly_cap: String,
    #[server(default)] allowed_models: String,
    #[server(default)] expires_at: String,
) -> Result<KeyView, AppError> {
    use super::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            let limits = LimitsPatch::from_form(&monthly_cap, &allowed_models, &expires_at)?;
            set_limits_for(&state, &user.id, &id, &limits).await
        }
        .await,
    )
}

/// Changes the limits `user_id` set on their key `id`; `NotFound` for a key
/// that is not theirs, or is revoked. The next request with the key, on any
/// replica, sees them. The keys page and `PATCH /api/keys/{id}` both call
/// this.
#[cfg(feature = "ssr")]
pub async fn set_limits_for(
    state: &crate::state::AppState,
    user_id: &str,
    id: &str,
    patch: &LimitsPatch,
) -> Result<KeyView, AppError> {
    let row = crate::db::keys::find_for_user(&state.db, user_id, id)
        .await?
        .filter(|row| row.revoked_at.is_none())
        .ok_or_else(no_active_key)?;
    let now = state.clock.now_ms();
    let own = patch.applied_to(row.own, now, &state.models.catalog_keys())?;
    let row = store_limits(state, user_id, id, &own).await?;
    tracing::info!(%user_id, key_id = %id, "API key limits set by its owner");
    let mut key = KeyView::at(row, now);
    key.month_spend = month_spend(state, id).await?;
    Ok(key)
}

/// Stores a key's own limits and forgets this replica's cached copy (the
/// others hear of it through `db::announce`).
#[cfg(feature = "ssr")]
async fn store_limits(
    state: &crate::state::AppState,
    user_id: &str,
    id: &str,
    own: &crate::db::keys::OwnLimits,
) -> Result<crate::db::keys::KeyRow, AppError> {
    let (_, month) = crate::billing::budget::day_and_month_starts(state.clock.now_ms());
    let row = crate::db::keys::update_own_limits(&state.db, user_id, id, own, month)
        .await?
        .ok_or_else(no_active_key)?;
    state.keys.forget_user(user_id);
    Ok(row)
}

/// The 404 for a key that is not the user's, or not active: someone else's
/// key and an unknown one look the same.
#[cfg(feature = "ssr")]
fn no_active_key() -> AppError {
    AppError::NotFound("No active key with this id.".into())
}

/// Changes to the limits a key's owner sets: for each, `None` keeps it,
/// `Some(None)` removes it, `Some(Some(_))` sets it.
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsPatch {
    /// Nano-USD per calendar month (UTC).
    pub monthly_cap: Option<Option<i64>>,
    pub allowed_models: Option<Option<Vec<String>>>,
    /// Epoch milliseconds.
    pub expires_at: Option<Option<i64>>,
}

#[cfg(feature = "ssr")]
impl LimitsPatch {
    /// The form's fields, as typed: a USD amount, model names separated by
    /// commas or spaces, a date (YYYY-MM-DD, UTC). The form sends all three;
    /// an empty one means no such limit.
    pub fn from_form(
        monthly_cap: &str,
        allowed_models: &str,
        expires_at: &str,
    ) -> Result<Self, AppError> {
        Ok(Self {
            monthly_cap: Some(parse_cap(monthly_cap)?),
            allowed_models: Some(parse_model_list(allowed_models)),
            expires_at: Some(parse_expiry(expires_at)?),
        })
    }

    /// `own` with these changes, each checked at `now_ms` against the
    /// models the gateway serves (`served`, as `provider:model`).
    pub fn applied_to(
        &self,
        mut own: crate::db::keys::OwnLimits,
        now_ms: i64,
        served: &[String],
    ) -> Result<crate::db::keys::OwnLimits, AppError> {
        use crate::auth::keys::{check_cap, check_expiry, check_own_models};
        if let Some(cap) = self.monthly_cap {
            check_cap(cap)?;
            own.monthly_cap = cap;
        }
        if let Some(models) = &self.allowed_models {
            if let Some(list) = models {
                check_own_models(list, served)?;
            }
            own.allowed_models = models
                .as_ref()
                .map(|list| serde_json::to_string(list).unwrap_or_default());
        }
        if let Some(at) = self.expires_at {
            check_expiry(at, now_ms)?;
            own.expires_at = at;
        }
        Ok(own)
    }
}

/// A monthly cap typed in USD (`20`, `$12.50`); empty: none.
#[cfg(feature = "ssr")]
fn parse_cap(text: &str) -> Result<Option<i64>, AppError> {
    let text = text.trim();
    let text = text.strip_prefix('$').unwrap_or(text);
    if text.is_empty() {
        return Ok(None);
    }
    crate::billing::money::parse_usd(text)
        .map(Some)
        .ok_or_else(|| {
            AppError::invalid(
                "monthly_cap",
                "Give the monthly cap in USD, such as 20 or 12.50, or leave it empty for none.",
            )
        })
}

/// Model names separated by commas or spaces; none: every model.
#[cfg(feature = "ssr")]
fn parse_model_list(text: &str) -> Option<Vec<String>> {
    let models: Vec<String> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    (!models.is_empty()).then_some(models)
}

/// An expiry typed as a date (YYYY-MM-DD: the key stops working at its
/// first moment, UTC) or an RFC 3339 time; empty: none.
#[cfg(feature = "ssr")]
pub fn parse_expiry(text: &str) -> Result<Option<i64>, AppError> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let date = time::Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map(|d| d.midnight().assume_utc());
    date.or_else(|_| time::OffsetDateTime::parse(text, &Rfc3339))
        .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| {
            AppError::invalid(
                "expires_at",
                "Give the expiry as a date, YYYY-MM-DD (UTC), or leave it empty for none.",
            )
        })
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
        Err(no_active_key())
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn form_fields_parse_or_name_themselves() {
        let patch = LimitsPatch::from_form("$12.50", "openai:a, b  groq:*", "").unwrap();
        assert_eq!(patch.monthly_cap, Some(Some(12_500_000_000)));
        assert_eq!(
            patch.allowed_models,
            Some(Some(vec!["openai:a".into(), "b".into(), "groq:*".into()]))
        );
        assert_eq!(patch.expires_at, Some(None));
        let cleared = LimitsPatch::from_form("", " , ", "").unwrap();
        assert_eq!(cleared.monthly_cap, Some(None));
        assert_eq!(cleared.allowed_models, Some(None));
        // 2027-01-02 00:00 UTC
        assert_eq!(parse_expiry("2027-01-02").unwrap(), Some(1_798_848_000_000));
        assert_eq!(
            parse_expiry("2027-01-02T00:00:00Z").unwrap(),
            Some(1_798_848_000_000)
        );
        for (cap, models, expiry, field) in [
            ("12,50", "", "", "monthly_cap"),
            ("", "", "02/01/2027", "expires_at"),
        ] {
            let err = LimitsPatch::from_form(cap, models, expiry).unwrap_err();
            assert_eq!(err.param(), Some(field));
        }
    }
}

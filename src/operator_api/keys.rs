//! `/v1/keys`: issue keys with limits, list, show, update, revoke.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{
    check_id, metadata_json, metadata_text, nullable, opt_rfc3339, rfc3339, time_field, usd,
    usd_limit, JsonBody, Operator, Paging, PagingQuery,
};
use crate::auth::{self, keys::MAX_KEY_NAME_LEN};
use crate::billing::budget::{window_at, Period};
use crate::db::keys::{self, parse_models, AdminKeyRow, KeySettings};
use crate::db::{budgets, users};
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;

/// `POST /v1/keys`
#[derive(Deserialize, ToSchema)]
pub struct CreateKey {
    /// 1 to 64 characters (default `key`).
    key_name: Option<String>,
    /// The key's user, created if there is none with this id; when absent,
    /// a user is created for the key.
    user_id: Option<String>,
    /// RFC 3339 text or Unix seconds.
    #[schema(value_type = Option<String>, example = "2027-01-01T00:00:00Z")]
    expires_at: Option<Value>,
    /// `provider:model`, bare model names, or `provider:*`.
    allowed_models: Option<Vec<String>>,
    rpm_limit: Option<i64>,
    tpm_limit: Option<i64>,
    /// USD per budget period (or over the key's life).
    #[schema(value_type = Option<String>, example = "5.00")]
    max_budget: Option<Value>,
    /// Seconds, or text such as `30d`, `12h`, `15m`.
    #[schema(value_type = Option<String>, example = "30d")]
    budget_duration: Option<Value>,
    /// The same as `budget_duration`.
    #[schema(value_type = Option<String>)]
    budget_duration_sec: Option<Value>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// `PATCH /v1/keys/{key_id}`: absent fields stay as they are; `null` clears.
#[derive(Deserialize, ToSchema)]
pub struct UpdateKey {
    key_name: Option<String>,
    /// `false` revokes the key; `true` restores it.
    is_active: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    expires_at: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    rpm_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    tpm_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    max_budget: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    budget_duration: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Option<Value>>,
}

/// `?user_id=`: only this user's keys.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyFilter {
    user_id: Option<String>,
}

/// A key, as the admin API shows it: never its hash, and its plaintext
/// (`key`) only in the answer that created it.
#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    id: String,
    /// The plaintext key: only when just created.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    key_name: String,
    key_prefix: String,
    user_id: String,
    is_active: bool,
    created_at: String,
    last_used_at: Option<String>,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    allowed_models: Option<Vec<String>>,
    rpm_limit: Option<i64>,
    tpm_limit: Option<i64>,
    /// USD.
    max_budget: Option<f64>,
    budget_duration_sec: Option<i64>,
    /// Spent in the current budget period, in USD.
    spend: f64,
    budget_reset_at: Option<String>,
    #[schema(value_type = Object)]
    metadata: Value,
}

/// Issues a key; its plaintext is in `key`, once. A `user_id` with no user
/// yet gets one, and without a `user_id` a user is created for the key (as
/// any-llm-gateway does).
#[utoipa::path(post, path = "/v1/keys", operation_id = "create_key", tag = "keys", request_body = CreateKey,
    responses((status = 201, body = KeyOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "`user_deleted`: the user was deleted", body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn create(
    _: Operator,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<Response, AppError> {
    let name = key_name(body.key_name.as_deref().unwrap_or("key"))?;
    let duration = body.budget_duration.or(body.budget_duration_sec);
    let settings = KeySettings {
        name,
        expires_at: future_time(&state, body.expires_at.as_ref())?,
        allowed_models: models_text(body.allowed_models),
        rpm_limit: body.rpm_limit,
        tpm_limit: body.tpm_limit,
        max_budget: body
            .max_budget
            .as_ref()
            .map(|v| usd_limit("max_budget", v))
            .transpose()?,
        budget_duration_sec: duration.as_ref().map(duration_secs).transpose()?,
        metadata: metadata_text(body.metadata.as_ref())?,
        revoked_at: None,
    };
    // Checked before a user is made for the key: a refusal writes nothing.
    auth::keys::check_settings(&settings)?;
    let user_id = key_owner(&state, body.user_id).await?;
    let issued = auth::keys::issue(&state.db, state.clock.now_ms(), &user_id, settings).await?;
    let mut view = view(&state, &issued.row).await?;
    view.key = Some(issued.secret);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The user a new key is for: the one named, created if there is no user
/// with this id yet, or one made for the key when none is named.
async fn key_owner(state: &AppState, user_id: Option<String>) -> Result<String, AppError> {
    let id = match user_id {
        Some(id) => {
            check_id("user_id", &id)?;
            id
        }
        None => format!("apikey-{}", uuid::Uuid::new_v4().simple()),
    };
    match users::find_or_create(&state.db, &id, state.clock.now_ms()).await {
        Ok(user) => Ok(user.id),
        // The id is taken by a deleted user.
        Err(sqlx::Error::RowNotFound) => Err(AppError::denied(
            "user_deleted",
            format!("The user `{id}` has been deleted."),
        )),
        Err(err) => Err(err.into()),
    }
}

/// Lists keys, oldest first; never their plaintext.
#[utoipa::path(get, path = "/v1/keys", operation_id = "list_keys", tag = "keys", params(PagingQuery, KeyFilter),
    responses((status = 200, body = Vec<KeyOut>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn list(
    _: Operator,
    State(state): State<AppState>,
    paging: Paging,
    Query(filter): Query<KeyFilter>,
) -> Result<Json<Vec<KeyOut>>, AppError> {
    let rows = keys::list_admin(
        &state.db,
        filter.user_id.as_deref(),
        paging.skip,
        paging.limit,
    )
    .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        views.push(view(&state, row).await?);
    }
    Ok(Json(views))
}

/// One key.
#[utoipa::path(get, path = "/v1/keys/{key_id}", operation_id = "get_key", tag = "keys", params(("key_id" = String, Path)),
    responses((status = 200, body = KeyOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn show(
    _: Operator,
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<Json<KeyOut>, AppError> {
    let row = find(&state, &key_id).await?;
    Ok(Json(view(&state, &row).await?))
}

/// Updates a key: only the fields present change; `null` clears.
#[utoipa::path(patch, path = "/v1/keys/{key_id}", operation_id = "update_key", tag = "keys", params(("key_id" = String, Path)),
    request_body = UpdateKey,
    responses((status = 200, body = KeyOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn update(
    _: Operator,
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    JsonBody(body): JsonBody<UpdateKey>,
) -> Result<Json<KeyOut>, AppError> {
    let row = find(&state, &key_id).await?;
    let mut settings = KeySettings {
        name: row.name.clone(),
        expires_at: row.expires_at,
        allowed_models: row.allowed_models.clone(),
        rpm_limit: row.rpm_limit,
        tpm_limit: row.tpm_limit,
        max_budget: row.max_budget,
        budget_duration_sec: row.budget_duration_sec,
        metadata: row.metadata.clone(),
        revoked_at: row.revoked_at,
    };
    if let Some(name) = body.key_name {
        settings.name = key_name(&name)?;
    }
    if let Some(active) = body.is_active {
        settings.revoked_at = match (active, row.revoked_at) {
            (true, _) => None,
            (false, Some(at)) => Some(at),
            (false, None) => Some(state.clock.now_ms()),
        };
    }
    if let Some(expires_at) = body.expires_at {
        settings.expires_at = future_time(&state, expires_at.as_ref())?;
    }
    if let Some(models) = body.allowed_models {
        settings.allowed_models = models_text(models);
    }
    if let Some(rpm) = body.rpm_limit {
        settings.rpm_limit = rpm;
    }
    if let Some(tpm) = body.tpm_limit {
        settings.tpm_limit = tpm;
    }
    if let Some(max) = body.max_budget {
        settings.max_budget = max
            .as_ref()
            .map(|v| usd_limit("max_budget", v))
            .transpose()?;
    }
    if let Some(duration) = body.budget_duration {
        settings.budget_duration_sec = duration.as_ref().map(duration_secs).transpose()?;
    }
    if let Some(metadata) = body.metadata {
        settings.metadata = metadata_text(metadata.as_ref())?;
    }
    auth::keys::check_settings(&settings)?;
    let row = keys::update_settings(&state.db, &key_id, &settings)
        .await?
        .ok_or_else(|| no_key(&key_id))?;
    state.keys.forget_user(&row.user_id);
    tracing::info!(key = %row.key_prefix, "API key updated by the operator");
    Ok(Json(view(&state, &row).await?))
}

/// Revokes a key, at once.
#[utoipa::path(delete, path = "/v1/keys/{key_id}", operation_id = "delete_key", tag = "keys", params(("key_id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("master_key" = [])))]
pub async fn delete(
    _: Operator,
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, AppError> {
    let row = find(&state, &key_id).await?;
    if row.revoked_at.is_none() {
        let settings = KeySettings {
            name: row.name,
            expires_at: row.expires_at,
            allowed_models: row.allowed_models,
            rpm_limit: row.rpm_limit,
            tpm_limit: row.tpm_limit,
            max_budget: row.max_budget,
            budget_duration_sec: row.budget_duration_sec,
            metadata: row.metadata,
            revoked_at: Some(state.clock.now_ms()),
        };
        keys::update_settings(&state.db, &key_id, &settings).await?;
    }
    state.keys.forget_user(&row.user_id);
    tracing::info!(key = %row.key_prefix, "API key revoked by the operator");
    Ok(StatusCode::NO_CONTENT)
}

async fn find(state: &AppState, key_id: &str) -> Result<AdminKeyRow, AppError> {
    keys::find_admin(&state.db, key_id)
        .await?
        .ok_or_else(|| no_key(key_id))
}

fn no_key(key_id: &str) -> AppError {
    AppError::NotFound(format!("No key with id `{key_id}`."))
}

/// A key name, checked by the one rule (`auth::keys`), named as this API names it.
fn key_name(name: &str) -> Result<String, AppError> {
    auth::keys::validate_name(name).map_err(|_| {
        AppError::invalid(
            "key_name",
            format!("`key_name` must be 1 to {MAX_KEY_NAME_LEN} characters."),
        )
    })
}

fn future_time(state: &AppState, value: Option<&Value>) -> Result<Option<i64>, AppError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let at = time_field("expires_at", value)?;
    auth::keys::check_expiry(Some(at), state.clock.now_ms())?;
    Ok(Some(at))
}

/// The allow-list as stored (checked by `auth::keys::check_settings`).
fn models_text(models: Option<Vec<String>>) -> Option<String> {
    models.map(|models| serde_json::to_string(&models).unwrap_or_default())
}

/// A budget duration: seconds, or text such as `30d`, `12h`, `15m`, `90s`.
fn duration_secs(value: &Value) -> Result<i64, AppError> {
    let invalid = || {
        AppError::invalid(
            "budget_duration",
            "`budget_duration` must be positive seconds or text such as `30d`, `12h` or `15m`.",
        )
    };
    let seconds = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => {
            let text = text.trim();
            let split = text.len().saturating_sub(1);
            let (number, unit) = text.split_at(split);
            let scale = match unit {
                "s" => Some(1),
                "m" => Some(60),
                "h" => Some(3600),
                "d" => Some(86_400),
                "w" => Some(604_800),
                _ => None,
            };
            scale.and_then(|s| number.parse::<i64>().ok()?.checked_mul(s))
        }
        _ => None,
    };
    seconds.filter(|s| *s > 0).ok_or_else(invalid)
}

/// A key as the API shows it: never its plaintext or hash.
async fn view(state: &AppState, row: &AdminKeyRow) -> Result<KeyOut, AppError> {
    let now = state.clock.now_ms();
    let (mut spend, mut reset_at) = (0, None);
    if row.max_budget.is_some() {
        let period = Period::from_parts(row.budget_duration_sec, None);
        if let Some((start, spent)) = budgets::window(&state.db, &format!("key:{}", row.id)).await?
        {
            let (spent, _, reset) = window_at(period, start, spent, now);
            spend = spent;
            reset_at = reset;
        }
    }
    let is_active = row.revoked_at.is_none() && row.expires_at.is_none_or(|at| at > now);
    Ok(KeyOut {
        id: row.id.clone(),
        key: None,
        key_name: row.name.clone(),
        key_prefix: row.key_prefix.clone(),
        user_id: row.user_id.clone(),
        is_active,
        created_at: rfc3339(row.created_at),
        last_used_at: opt_rfc3339(row.last_used_at),
        expires_at: opt_rfc3339(row.expires_at),
        revoked_at: opt_rfc3339(row.revoked_at),
        allowed_models: parse_models(row.allowed_models.as_deref()),
        rpm_limit: row.rpm_limit,
        tpm_limit: row.tpm_limit,
        max_budget: row.max_budget.map(usd),
        budget_duration_sec: row.budget_duration_sec,
        spend: usd(spend),
        budget_reset_at: opt_rfc3339(reset_at),
        metadata: metadata_json(row.metadata.as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_take_seconds_or_units() {
        assert_eq!(duration_secs(&json!(3600)).unwrap(), 3600);
        assert_eq!(duration_secs(&json!("30d")).unwrap(), 30 * 86_400);
        assert_eq!(duration_secs(&json!("15m")).unwrap(), 900);
        assert!(duration_secs(&json!(0)).is_err());
        assert!(duration_secs(&json!("soon")).is_err());
        assert!(duration_secs(&json!("")).is_err());
    }
}

//! The reseller MVP's REST routes (seed 002), under `/api`: sign-up,
//! sign-in and sign-out, and the signed-in user's keys, balance and usage.
//!
//! They take and return JSON and use the dashboard's session cookie. Each
//! calls the very function its dashboard server function calls (in
//! `auth`, `keys` and `billing`), so rules, throttling and messages are the
//! forms'. Errors are OpenAI's shape with [`AppError`]'s status: 401 without
//! a session, 403 for a cross-origin call that changes state.

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{middleware, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use tower_sessions::Session;
use utoipa::ToSchema;

use super::auth::{authenticate, register, view_of};
use super::billing::{
    begin_top_up, figures_for, site_origin, usage_for, AccountFigures, TopUpStart, UsageQuery,
    UsageView,
};
use super::context::{active_user, peer_ip};
use super::keys::{create_for, list_for, parse_expiry, revoke_for, set_limits_for, LimitsPatch};
use super::{CreatedKey, KeyView, UserView};
use crate::auth::origin::refuse_cross_origin_writes;
use crate::db::users::UserRow;
use crate::error::{AppError, ErrorBody};
use crate::operator_api::{nullable, usd_field, JsonBody};
use crate::state::AppState;

/// The routes, refusing cross-origin state changes. They need the session
/// layer (`auth::session::layer`) around them.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/signup", post(sign_up))
        .route("/api/auth/signin", post(sign_in))
        .route("/api/auth/signout", post(sign_out))
        .route("/api/auth/me", get(me))
        .route("/api/keys", get(list_keys).post(create_key))
        .route("/api/keys/{id}", delete(delete_key).patch(update_key))
        .route("/api/balance", get(balance))
        .route("/api/balance/charge", post(charge))
        .route("/api/usage", get(usage))
        .route_layer(middleware::from_fn(refuse_cross_origin_writes))
}

/// The request's session (the session layer is always around these routes).
pub struct SessionOf(pub Session);

impl<S: Send + Sync> FromRequestParts<S> for SessionOf {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Session::from_request_parts(parts, state)
            .await
            .map(SessionOf)
            .map_err(|(_, err)| {
                tracing::error!(err, "session layer missing");
                AppError::Internal
            })
    }
}

/// The active user the session is signed in as; a 401 otherwise.
pub struct SignedIn(pub UserRow);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let SessionOf(session) = SessionOf::from_request_parts(parts, state).await?;
        active_user(state, &session).await.map(SignedIn)
    }
}

/// The client's IP, as the sign-in form's throttling reads it.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let trust = state.config.trust_forwarded_for;
        Ok(ClientIp(peer_ip(Some(&parts.headers), peer, trust)))
    }
}

/// `POST /api/auth/signup` and `POST /api/auth/signin`.
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    #[serde(default)]
    #[schema(example = "ada@example.com")]
    email: String,
    /// At least 8 characters to sign up.
    #[serde(default)]
    password: String,
}

/// `POST /api/keys`: a name and, optionally, the limits of [`KeyLimitsBody`].
#[derive(Deserialize, ToSchema)]
pub struct NewKey {
    /// 1 to 64 characters.
    #[serde(default)]
    #[schema(example = "my script")]
    name: String,
    #[serde(flatten)]
    limits: KeyLimitsBody,
}

/// `PATCH /api/keys/{id}`: the limits the user sets on a key. An absent
/// field keeps its limit; `null` removes it.
#[derive(Deserialize, ToSchema, Default)]
pub struct KeyLimitsBody {
    /// USD per calendar month (UTC), as a number or a decimal string.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, example = "20.00")]
    monthly_cap: Option<Option<Value>>,
    /// `provider:model`, model names or `provider:*`, each matching a model
    /// the gateway serves; at least one.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["openai:gpt-4o-mini"]))]
    allowed_models: Option<Option<Vec<String>>>,
    /// A date (`YYYY-MM-DD`, the key stops at its first moment, UTC) or an
    /// RFC 3339 time, in the future.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, example = "2027-01-01")]
    expires_at: Option<Option<String>>,
}

impl KeyLimitsBody {
    /// The changes asked for, parsed as the form's fields are.
    fn patch(&self) -> Result<LimitsPatch, AppError> {
        let cap = |value: &Value| {
            let nanos = usd_field("monthly_cap", value)?;
            Ok::<_, AppError>(Some(nanos))
        };
        let monthly_cap = match &self.monthly_cap {
            Some(Some(value)) => Some(cap(value)?),
            Some(None) => Some(None),
            None => None,
        };
        let expires_at = match &self.expires_at {
            Some(Some(text)) if text.trim().is_empty() => {
                return Err(AppError::invalid(
                    "expires_at",
                    "Give the expiry as a date, YYYY-MM-DD (UTC), or null for none.",
                ))
            }
            Some(Some(text)) => Some(parse_expiry(text)?),
            Some(None) => Some(None),
            None => None,
        };
        Ok(LimitsPatch {
            monthly_cap,
            allowed_models: self.allowed_models.clone(),
            expires_at,
        })
    }
}

/// `POST /api/balance/charge`.
#[derive(Deserialize, ToSchema)]
pub struct Charge {
    /// USD, 0.01 to 1000, as a number or a decimal string.
    #[schema(value_type = String, example = "5")]
    amount: Option<Value>,
}

/// What a charge did: in test mode the new balance; with Stripe, the
/// Checkout page to send the user to (credit follows Stripe's webhook).
#[derive(Serialize, ToSchema)]
pub struct Charged {
    /// The new balance, in nano-USD (test mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<i64>,
    /// Stripe Checkout's page for this payment (stripe mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    checkout_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_id: Option<String>,
}

/// Creates an account, grants the sign-up credit and signs in (the session
/// cookie is set).
#[utoipa::path(post, path = "/api/auth/signup", operation_id = "mvp_sign_up", tag = "account",
    request_body = Credentials,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody),
        (status = 403, description = "A cross-origin call", body = ErrorBody),
        (status = 409, description = "The email is taken", body = ErrorBody)))]
pub async fn sign_up(
    State(state): State<AppState>,
    SessionOf(session): SessionOf,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<UserView>), AppError> {
    let user = register(&state, &session, &body.email, body.password).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Signs in (the session cookie is set). Failures are throttled per account
/// and per IP address, as on the sign-in form.
#[utoipa::path(post, path = "/api/auth/signin", operation_id = "mvp_sign_in", tag = "account",
    request_body = Credentials,
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody),
        (status = 401, description = "Invalid email or password", body = ErrorBody),
        (status = 403, description = "A disabled account, or a cross-origin call", body = ErrorBody),
        (status = 429, description = "Too many failed attempts; see `Retry-After`", body = ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    SessionOf(session): SessionOf,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Json<UserView>, AppError> {
    let user = authenticate(&state, &session, &body.email, body.password, ip).await?;
    Ok(Json(user))
}

/// Signs out: the session is deleted on the server (signed in or not).
#[utoipa::path(post, path = "/api/auth/signout", operation_id = "mvp_sign_out", tag = "account",
    responses((status = 204, description = "Signed out"),
        (status = 403, description = "A cross-origin call", body = ErrorBody)))]
pub async fn sign_out(SessionOf(session): SessionOf) -> Result<StatusCode, AppError> {
    crate::auth::session::sign_out(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/auth/me", operation_id = "mvp_me", tag = "account",
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)),
    security(("session" = [])))]
pub async fn me(State(state): State<AppState>, SignedIn(user): SignedIn) -> Json<UserView> {
    Json(view_of(&state, user))
}

/// The signed-in user's keys, newest first; never their secrets.
#[utoipa::path(get, path = "/api/keys", operation_id = "mvp_list_keys", tag = "account",
    responses((status = 200, body = Vec<KeyView>), (status = 401, body = ErrorBody)),
    security(("session" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
) -> Result<Json<Vec<KeyView>>, AppError> {
    Ok(Json(list_for(&state, &user.id).await?))
}

/// Creates a key; its plaintext is in `secret`, this once.
#[utoipa::path(post, path = "/api/keys", operation_id = "mvp_create_key", tag = "account",
    request_body = NewKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "A cross-origin call", body = ErrorBody)),
    security(("session" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    JsonBody(body): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), AppError> {
    crate::auth::verified::ensure_verified(&state.config, &user)?;
    let limits = body.limits.patch()?;
    let created = create_for(&state, &user.id, &body.name, &limits).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes one of the signed-in user's keys, at once.
#[utoipa::path(delete, path = "/api/keys/{id}", operation_id = "mvp_delete_key", tag = "account",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody),
        (status = 403, description = "A cross-origin call", body = ErrorBody),
        (status = 404, description = "No active key of the user's with this id", body = ErrorBody)),
    security(("session" = [])))]
pub async fn delete_key(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    revoke_for(&state, &user.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the limits the signed-in user puts on one of their keys: a monthly
/// cap, allowed models, an expiry. They narrow the operator's limits, and
/// the key's next request, on every replica, is held to them.
#[utoipa::path(patch, path = "/api/keys/{id}", operation_id = "mvp_update_key", tag = "account",
    params(("id" = String, Path, description = "The key's id")),
    request_body = KeyLimitsBody,
    responses((status = 200, body = KeyView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "A cross-origin call", body = ErrorBody),
        (status = 404, description = "No active key of the user's with this id", body = ErrorBody)),
    security(("session" = [])))]
pub async fn update_key(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<KeyLimitsBody>,
) -> Result<Json<KeyView>, AppError> {
    let patch = body.patch()?;
    Ok(Json(set_limits_for(&state, &user.id, &id, &patch).await?))
}

/// The signed-in user's balance, debt and spend, in nano-USD.
#[utoipa::path(get, path = "/api/balance", operation_id = "mvp_balance", tag = "account",
    responses((status = 200, body = AccountFigures), (status = 401, body = ErrorBody)),
    security(("session" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
) -> Result<Json<AccountFigures>, AppError> {
    Ok(Json(figures_for(&state, &user.id).await?))
}

/// Adds credit: at once with `payments: {mode: test}`, through a Stripe
/// Checkout page with `{mode: stripe}`; refused with 403 otherwise.
#[utoipa::path(post, path = "/api/balance/charge", operation_id = "mvp_charge", tag = "account",
    request_body = Charge,
    responses((status = 200, body = Charged), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Payments are off, or a cross-origin call", body = ErrorBody),
        (status = 502, description = "Stripe could not open a Checkout Session", body = ErrorBody)),
    security(("session" = [])))]
pub async fn charge(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<Charge>,
) -> Result<Json<Charged>, AppError> {
    let amount = match body.amount {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let origin = site_origin(&state.config, Some(&headers));
    Ok(Json(
        match begin_top_up(&state, &user, &amount, &origin).await? {
            TopUpStart::Credited { balance } => Charged {
                balance: Some(balance),
                checkout_url: None,
                payment_id: None,
            },
            TopUpStart::Checkout { url, payment_id } => Charged {
                balance: None,
                checkout_url: Some(url),
                payment_id: Some(payment_id),
            },
        },
    ))
}

/// A page of the signed-in user's requests, newest first, with the usage
/// page's filters.
#[utoipa::path(get, path = "/api/usage", operation_id = "mvp_usage", tag = "account",
    params(UsageQuery),
    responses((status = 200, body = UsageView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("session" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageView>, AppError> {
    let Query(query) = query.map_err(|err| AppError::Validation {
        field: None,
        message: format!("Invalid query: {}", err.body_text()),
    })?;
    Ok(Json(usage_for(&state, &user.id, &query).await?))
}

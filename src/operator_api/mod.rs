//! The operator's REST API, compatible with any-llm-gateway's: users,
//! credits, keys, budgets and pricing under `/v1` (and `/api/v1`). Every
//! route but `GET /v1/pricing` needs the master key.

pub mod audit;
pub mod budgets;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod pricing;
pub mod users;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::auth::api_key::{constant_time_eq, presented_key};
use crate::billing::money::{nanos_to_usd_f64, parse_usd};
use crate::error::AppError;
use crate::state::AppState;

/// The admin routes, under both `/v1` and `/api/v1`.
pub fn routes() -> Router<AppState> {
    let v1 = Router::new()
        .route("/users", post(users::create).get(users::list))
        .route(
            "/users/{user_id}",
            get(users::show).patch(users::update).delete(users::delete),
        )
        .route("/users/{user_id}/usage", get(users::usage))
        .route("/users/{user_id}/credits", post(users::credit))
        .route("/debts", get(audit::debts))
        .route("/reconciliation", get(audit::reconciliation))
        .route("/keys", post(keys::create).get(keys::list))
        .route(
            "/keys/{key_id}",
            get(keys::show).patch(keys::update).delete(keys::delete),
        )
        .route("/budgets", post(budgets::create).get(budgets::list))
        .route(
            "/budgets/{budget_id}",
            get(budgets::show)
                .patch(budgets::update)
                .delete(budgets::delete),
        )
        .route("/pricing", get(pricing::list).post(pricing::set))
        .route("/pricing/history", get(pricing::history))
        .route(
            "/pricing/{model_key}",
            get(pricing::show).delete(pricing::delete),
        );
    Router::new().nest("/v1", v1.clone()).nest("/api/v1", v1)
}

/// The operator, proven by the master key in `Authorization: Bearer`,
/// `X-AnyLLM-Key: Bearer` or `Otari-Key` (see
/// `auth::api_key::presented_key`), compared in constant time.
pub struct Operator;

impl axum::extract::OptionalFromRequestParts<AppState> for Operator {
    type Rejection = AppError;

    /// `None` for a caller without the master key, rather than a 401.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, AppError> {
        Ok(
            <Self as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let denied = || {
            AppError::Unauthorized(
                "This endpoint needs the master key, as `Authorization: Bearer <master key>`."
                    .into(),
            )
        };
        let master = state.config.master_key.as_deref().ok_or_else(denied)?;
        let presented = presented_key(&parts.headers).ok_or_else(denied)?;
        if constant_time_eq(presented.as_bytes(), master.as_bytes()) {
            Ok(Operator)
        } else {
            Err(denied())
        }
    }
}

/// A JSON request body; a malformed one is a 400 naming the bad field.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|err| AppError::Validation {
                    field: None,
                    message: format!("Cannot read the request body: {err}"),
                })?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(&mut deserializer)
            .map(JsonBody)
            .map_err(|err| {
                let path = err.path().to_string();
                AppError::Validation {
                    field: (path != ".").then_some(path),
                    message: format!("Invalid request body: {}", err.inner()),
                }
            })
    }
}

/// `?skip=&limit=` paging, as any-llm-gateway takes it.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub skip: i64,
    pub limit: i64,
}

/// The most items one page returns.
pub const MAX_PAGE: i64 = 1000;

/// `?skip=&limit=`, as documented.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PagingQuery {
    /// Items to skip (default 0).
    skip: Option<i64>,
    /// Items to return, 1 to 1000 (default 100).
    limit: Option<i64>,
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Query(query): Query<PagingQuery> = Query::from_request_parts(parts, state)
            .await
            .map_err(|err: QueryRejection| AppError::Validation {
                field: None,
                message: format!("Invalid query: {}", err.body_text()),
            })?;
        let skip = query.skip.unwrap_or(0);
        let limit = query.limit.unwrap_or(100);
        if skip < 0 {
            return Err(AppError::invalid("skip", "`skip` must be 0 or more."));
        }
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AppError::invalid(
                "limit",
                format!("`limit` must be from 1 to {MAX_PAGE}."),
            ));
        }
        Ok(Self { skip, limit })
    }
}

/// For PATCH bodies: tells a field set to `null` (`Some(None)`) from an
/// absent one (`None`). Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A USD amount given as a JSON number or a decimal string, exactly, in nano-USD.
pub fn usd_field(field: &str, value: &Value) -> Result<i64, AppError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    parse_usd(&text).ok_or_else(|| {
        AppError::invalid(
            field,
            format!("`{field}` must be a USD amount such as 12.50, with at most 9 decimals."),
        )
    })
}

/// A non-negative USD amount, for limits and prices.
pub fn usd_limit(field: &str, value: &Value) -> Result<i64, AppError> {
    let nanos = usd_field(field, value)?;
    if nanos < 0 {
        return Err(AppError::invalid(
            field,
            format!("`{field}` must not be negative."),
        ));
    }
    Ok(nanos)
}

/// A time given as RFC 3339 text or Unix seconds, in epoch milliseconds.
pub fn time_field(field: &str, value: &Value) -> Result<i64, AppError> {
    use time::format_description::well_known::Rfc3339;
    let invalid = || {
        AppError::invalid(
            field,
            format!("`{field}` must be an RFC 3339 time (2026-12-31T00:00:00Z) or Unix seconds."),
        )
    };
    match value {
        Value::Number(n) => n
            .as_i64()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(invalid),
        Value::String(s) => time::OffsetDateTime::parse(s, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

/// Epoch milliseconds as RFC 3339 text.
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Optional epoch milliseconds as RFC 3339 text.
pub fn opt_rfc3339(ms: Option<i64>) -> Option<String> {
    ms.map(rfc3339)
}

/// Nano-USD as USD, for display (`*_nanos` fields are exact).
pub fn usd(nanos: i64) -> f64 {
    nanos_to_usd_f64(nanos)
}

/// A `metadata` value: a JSON object, stored as text.
pub fn metadata_text(value: Option<&Value>) -> Result<Option<String>, AppError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(object @ Value::Object(_)) => Ok(Some(object.to_string())),
        Some(_) => Err(AppError::invalid(
            "metadata",
            "`metadata` must be a JSON object.",
        )),
    }
}

/// Stored metadata text as JSON (an empty object when unset).
pub fn metadata_json(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| Value::Object(Default::default()))
}

/// An id given by the caller: 1 to 128 letters, digits and `._@:-`.
pub fn check_id(field: &str, id: &str) -> Result<(), AppError> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@:-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(AppError::invalid(
            field,
            format!("`{field}` must be 1 to 128 letters, digits or `._@:-`."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_fields_are_exact() {
        assert_eq!(
            usd_field("amount", &json!("12.50")).unwrap(),
            12_500_000_000
        );
        assert_eq!(usd_field("amount", &json!(0.1)).unwrap(), 100_000_000);
        assert_eq!(usd_field("amount", &json!("-3")).unwrap(), -3_000_000_000);
        assert!(usd_field("amount", &json!("1e3")).is_err());
        assert!(usd_field("amount", &json!(true)).is_err());
        assert!(usd_limit("max_budget", &json!(-1)).is_err());
    }

    #[test]
    fn times_parse_from_rfc3339_or_seconds() {
        assert_eq!(
            time_field("t", &json!(1_700_000_000)).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            time_field("t", &json!("2023-11-14T22:13:20Z")).unwrap(),
            1_700_000_000_000
        );
        assert!(time_field("t", &json!("tomorrow")).is_err());
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn ids_are_bounded() {
        assert!(check_id("user_id", "alice@example.com").is_ok());
        assert!(check_id("user_id", "").is_err());
        assert!(check_id("user_id", "a b").is_err());
        assert!(check_id("user_id", &"x".repeat(129)).is_err());
    }
}

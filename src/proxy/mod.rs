//! The OpenAI-compatible API: `/v1/chat/completions`, `/v1/embeddings`,
//! `/v1/models`, and the key holder's `/v1/key` and `/v1/generation`, also
//! mounted under `/api/v1`.

mod account;
pub mod auth;
mod chat;
pub mod limits;
mod models;
pub mod recorder;
pub mod routing;
mod stream;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

pub use auth::Caller;
pub use chat::session_chat;

use crate::error::AppError;
use crate::providers::Body;
use crate::server::AppState;

/// The proxy's routes, under both `/v1` and `/api/v1`.
pub fn routes() -> Router<AppState> {
    let v1 = Router::new()
        .route("/chat/completions", post(chat::chat_completions))
        .route("/embeddings", post(chat::embeddings))
        .route("/models", get(models::list_models))
        .route("/key", get(account::key_info))
        .route("/generation", get(account::generation))
        // The body limit is enforced by `parse_body`, with an OpenAI-shaped 413.
        .layer(DefaultBodyLimit::disable());
    Router::new().nest("/v1", v1.clone()).nest("/api/v1", v1)
}

/// Parses a JSON object body, enforcing the size limit.
pub(crate) fn parse_body(bytes: &Bytes, limit: usize) -> Result<Body, AppError> {
    if bytes.len() > limit {
        return Err(AppError::PayloadTooLarge(format!(
            "The request body is {} bytes; the limit is {limit} bytes.",
            bytes.len()
        )));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AppError::Validation {
            field: None,
            message: "The request body must be a JSON object.".into(),
        }),
        Err(err) => Err(AppError::Validation {
            field: None,
            message: format!("The request body is not valid JSON: {err}"),
        }),
    }
}

/// A new request id. Always the gateway's own, since it keys the usage
/// record and the ledger (a client's id could repeat).
pub(crate) fn request_id(_headers: &HeaderMap) -> String {
    format!("req_{}", uuid::Uuid::new_v4().simple())
}

/// Adds `x-request-id` to a response's headers.
pub(crate) fn with_request_id(headers: &mut HeaderMap, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert("x-request-id", value);
    }
}

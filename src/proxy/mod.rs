//! The callers' API: OpenAI's `/v1/chat/completions`, `/v1/embeddings`,
//! `/v1/responses` and `/v1/models`, Anthropic's `/v1/messages`, and the key
//! holder's `/v1/key` and `/v1/generation`, also mounted under `/api/v1`.

mod account;
pub mod auth;
mod chat;
pub mod idempotency;
pub mod limits;
mod messages;
mod models;
mod responses;
mod route;
mod spend;
mod stream;
mod validate;

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
use crate::state::AppState;

/// The proxy's routes, under both `/v1` and `/api/v1`.
pub fn routes() -> Router<AppState> {
    let v1 = Router::new()
        .route("/chat/completions", post(chat::chat_completions))
        .route("/embeddings", post(chat::embeddings))
        .route("/messages", post(messages::messages))
        .route("/messages/count_tokens", post(messages::count_tokens))
        .route("/responses", post(responses::create))
        .route(
            "/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
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

/// The ids of one request: the gateway's own, which keys the usage record
/// and the ledger (a client's id could repeat), and the client's, if it sent
/// a usable `x-request-id`.
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// The gateway's own id, `req_…`.
    pub own: String,
    /// The client's `x-request-id`, if usable.
    pub client: Option<String>,
}

/// The longest client request id kept.
const CLIENT_ID_MAX: usize = 128;

/// A new gateway request id, `req_` and a UUIDv7.
fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

/// The client's `x-request-id`, if usable: 1 to 128 visible ASCII characters.
fn client_request_id(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get("x-request-id").filter(|id| {
        let id = id.as_bytes();
        (1..=CLIENT_ID_MAX).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic)
    })
}

/// Middleware: every response carries `x-request-id`, the client's echoed or
/// a new one, unless the handler set its own (the proxy's, which also keys
/// the usage record).
pub async fn ensure_request_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let client = client_request_id(request.headers()).cloned();
    let mut response = next.run(request).await;
    if !response.headers().contains_key("x-request-id") {
        let id = client.or_else(|| HeaderValue::from_str(&new_request_id()).ok());
        if let Some(id) = id {
            response.headers_mut().insert("x-request-id", id);
        }
    }
    response
}

impl RequestIds {
    /// A new gateway id (time-ordered, UUIDv7, so usage records append to
    /// their index), and the client's `x-request-id` if it is 1 to 128
    /// visible ASCII characters (anything else is ignored, not refused).
    pub fn new(headers: &HeaderMap) -> Self {
        Self {
            own: new_request_id(),
            client: client_request_id(headers)
                .and_then(|id| id.to_str().ok())
                .map(str::to_owned),
        }
    }

    /// Both ids, as a usage record keeps them (see `billing::meter::Meter::new`).
    pub fn pair(&self) -> (String, Option<String>) {
        (self.own.clone(), self.client.clone())
    }

    /// Adds `x-request-id` (the client's, echoed, or else the gateway's) and
    /// `x-generation-id` (the gateway's, for `GET /v1/generation`, unless
    /// the response names the request it replays).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let echoed = self.client.as_deref().unwrap_or(&self.own);
        if let Ok(value) = HeaderValue::from_str(echoed) {
            headers.insert("x-request-id", value);
        }
        if !headers.contains_key("x-generation-id") {
            if let Ok(value) = HeaderValue::from_str(&self.own) {
                headers.insert("x-generation-id", value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids_for(client: Option<&'static str>) -> RequestIds {
        let mut headers = HeaderMap::new();
        if let Some(id) = client {
            headers.insert("x-request-id", HeaderValue::from_static(id));
        }
        RequestIds::new(&headers)
    }

    #[test]
    fn a_client_id_is_echoed_beside_the_gateway_id() {
        let ids = ids_for(Some("trace-42"));
        assert_eq!(ids.client.as_deref(), Some("trace-42"));
        assert!(ids.own.starts_with("req_"));
        let mut headers = HeaderMap::new();
        ids.apply(&mut headers);
        assert_eq!(headers["x-request-id"], "trace-42");
        assert_eq!(headers["x-generation-id"], ids.own.as_str());
    }

    #[test]
    fn unusable_client_ids_are_ignored() {
        let long: &'static str = Box::leak("a".repeat(CLIENT_ID_MAX + 1).into_boxed_str());
        for bad in ["", "has space", long] {
            let ids = ids_for(Some(bad));
            assert_eq!(ids.client, None, "{bad:?}");
            let mut headers = HeaderMap::new();
            ids.apply(&mut headers);
            assert_eq!(headers["x-request-id"], ids.own.as_str());
        }
        let longest: &'static str = Box::leak("a".repeat(CLIENT_ID_MAX).into_boxed_str());
        assert_eq!(ids_for(Some(longest)).client.as_deref(), Some(longest));
        assert_eq!(ids_for(None).client, None);
    }
}

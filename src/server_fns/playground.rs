//! The dashboard playground: a streaming chat billed to the signed-in user.
//!
//! The WASM client posts an OpenAI chat body to [`CHAT_PATH`] and reads the
//! server-sent events as they arrive; [`EventReader`] turns those bytes into
//! [`ReplyEvent`]s. The server side is the proxy's own chat handler, with the
//! session's user as the payer.

use leptos::prelude::*;
use serde_json::Value;

use crate::error::AppError;

/// Where the playground posts its chat requests (session-authenticated).
pub const CHAT_PATH: &str = "/rpc/playground/chat";

/// Something the reply stream said.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// More of the reply's text.
    Delta(String),
    /// The final usage, with the cost in nano-USD.
    Usage {
        prompt_tokens: i64,
        completion_tokens: i64,
        cost: i64,
    },
    /// The stream failed; the message is for people.
    Error(String),
    /// `data: [DONE]`.
    Done,
}

/// Splits a server-sent event byte stream into [`ReplyEvent`]s, however the
/// bytes are chunked (an event or a UTF-8 character may span chunks).
#[derive(Debug, Default)]
pub struct EventReader {
    pending: Vec<u8>,
}

impl EventReader {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<ReplyEvent> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = find_event_end(&self.pending) {
            let raw: Vec<u8> = self.pending.drain(..end.0 + end.1).collect();
            let text = String::from_utf8_lossy(&raw[..end.0]);
            for line in text.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    events.extend(parse_data(data.trim()));
                }
            }
        }
        events
    }
}

/// The end of the first complete event: (where it ends, separator length).
fn find_event_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_data(data: &str) -> Vec<ReplyEvent> {
    if data == "[DONE]" {
        return vec![ReplyEvent::Done];
    }
    let Ok(chunk) = serde_json::from_str::<Value>(data) else {
        return vec![ReplyEvent::Error(
            "The gateway sent an unreadable event.".into(),
        )];
    };
    if let Some(error) = chunk.get("error") {
        return vec![ReplyEvent::Error(error_message(error))];
    }
    let mut events = Vec::new();
    let delta = chunk
        .pointer("/choices/0/delta/content")
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty());
    if let Some(text) = delta {
        events.push(ReplyEvent::Delta(text.to_string()));
    }
    if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
        let count = |name: &str| usage.get(name).and_then(Value::as_i64).unwrap_or(0);
        events.push(ReplyEvent::Usage {
            prompt_tokens: count("prompt_tokens"),
            completion_tokens: count("completion_tokens"),
            cost: usage
                .get("cost")
                .and_then(Value::as_f64)
                .map_or(0, usd_to_display_nanos),
        });
    }
    events
}

/// `usage.cost` is a JSON number of USD (OpenRouter's convention); this
/// brings it back to nano-USD for display. The ledger never sees it.
fn usd_to_display_nanos(usd: f64) -> i64 {
    (usd * crate::billing::money::NANOS_PER_USD as f64).round() as i64
}

/// The message of an OpenAI-shaped error object, or a generic one.
pub fn error_message(error: &Value) -> String {
    error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("The request failed.")
        .to_string()
}

/// The signed-in user's balance once the request `request_id` is settled:
/// settlement is written just after a stream ends, so this waits for it
/// (up to a few seconds) before reading.
#[server(prefix = "/rpc", endpoint = "settled_balance")]
pub async fn settled_balance(request_id: String) -> Result<i64, AppError> {
    use crate::db::{ledger, usage};
    use crate::server_fns::context::{finish, require_user};
    finish(
        async {
            let (state, user) = require_user().await?;
            for _ in 0..40 {
                if usage::find_for_user(&state.db, &request_id, &user.id)
                    .await?
                    .is_some()
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let (balance, _) = ledger::balance(&state.db, &user.id)
                .await?
                .unwrap_or((0, 0));
            Ok(balance)
        }
        .await,
    )
}

/// `POST /rpc/playground/chat`: the proxy's chat completions, billed to the
/// session's user. Cross-site calls are refused by the origin middleware.
#[cfg(feature = "ssr")]
pub async fn chat(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    session: tower_sessions::Session,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let user = match signed_in_user(&state, &session).await {
        Ok(user) => user,
        Err(err) => return err.into_response(),
    };
    crate::proxy::session_chat(&state, user, request.into_body()).await
}

/// The session's active user, as every other session route asks it (a
/// session from before a password reset or change is signed out).
#[cfg(feature = "ssr")]
async fn signed_in_user(
    state: &crate::state::AppState,
    session: &tower_sessions::Session,
) -> Result<String, AppError> {
    let user = super::context::active_user(state, session).await?;
    Ok(user.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &str) -> String {
        format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [{"index": 0, "delta": {"content": content}}]})
        )
    }

    #[test]
    fn reads_deltas_usage_and_done_across_chunk_boundaries() {
        let usage = r#"data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"cost":0.000001234}}"#;
        let stream = format!(
            "{}{}{usage}\n\ndata: [DONE]\n\n",
            chunk("Héllo"),
            chunk(" world")
        );
        let bytes = stream.as_bytes();
        // Every split point, including inside the two-byte "é".
        for split in 0..bytes.len() {
            let mut reader = EventReader::default();
            let mut events = reader.push(&bytes[..split]);
            events.extend(reader.push(&bytes[split..]));
            assert_eq!(
                events,
                vec![
                    ReplyEvent::Delta("Héllo".into()),
                    ReplyEvent::Delta(" world".into()),
                    ReplyEvent::Usage {
                        prompt_tokens: 5,
                        completion_tokens: 7,
                        cost: 1234
                    },
                    ReplyEvent::Done,
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_error_event_becomes_its_message() {
        let mut reader = EventReader::default();
        let events = reader.push(
            b"data: {\"error\":{\"message\":\"upstream went away\",\"type\":\"server_error\"}}\r\n\r\n",
        );
        assert_eq!(events, vec![ReplyEvent::Error("upstream went away".into())]);
        assert_eq!(
            reader.push(b"data: {not json}\n\n"),
            vec![ReplyEvent::Error(
                "The gateway sent an unreadable event.".into()
            )]
        );
    }

    #[test]
    fn an_incomplete_event_waits_for_more() {
        let mut reader = EventReader::default();
        assert!(reader
            .push(chunk("partial").trim_end().as_bytes())
            .is_empty());
        assert_eq!(
            reader.push(b"\n\n"),
            vec![ReplyEvent::Delta("partial".into())]
        );
    }
}

//! Upstream providers: one file per wire format, behind the [`Provider`] trait.
//!
//! Every adapter takes an OpenAI-shaped chat request and answers in OpenAI's
//! shapes: a `chat.completion` object, or a stream of `chat.completion.chunk`
//! objects whose last one carries `usage` (as OpenAI does with
//! `stream_options.include_usage`).

pub mod anthropic;
pub mod completion;
pub mod gemini;
pub mod openai;
pub mod sse;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ProviderKind};

pub use completion::{Completion, UpstreamJson};
pub use sse::SseParser;

/// A chat request body as the client sent it (OpenAI's shape).
pub type Body = Map<String, Value>;

/// Token counts of one request, by bucket. `prompt_tokens` counts every
/// input token; the cache buckets are parts of it, each billed at its own
/// price (see `billing::pricing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Prompt tokens read from the provider's cache.
    pub cached_tokens: i64,
    /// Prompt tokens written to the provider's cache for 5 minutes.
    pub cache_write_tokens: i64,
    /// Prompt tokens written to the provider's cache for an hour.
    pub cache_write_1h_tokens: i64,
}

impl Usage {
    /// Reads OpenAI's `usage` object: `prompt_tokens_details.cached_tokens`,
    /// and the cache writes the gateway adds there for providers that
    /// report them (`cache_write_tokens`, `cache_write_1h_tokens`).
    pub fn from_openai(usage: &Value) -> Option<Self> {
        let prompt = usage.get("prompt_tokens")?.as_i64()?;
        let detail = |key: &str| {
            usage
                .get("prompt_tokens_details")
                .and_then(|d| d.get(key))
                .and_then(Value::as_i64)
                .unwrap_or(0)
        };
        Some(Self {
            prompt_tokens: prompt,
            completion_tokens: usage
                .get("completion_tokens")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            cached_tokens: detail("cached_tokens"),
            cache_write_tokens: detail("cache_write_tokens"),
            cache_write_1h_tokens: detail("cache_write_1h_tokens"),
        })
    }

    /// A local count, for an answer that never reported its usage: the
    /// prompt's estimate and ≈4 generated characters a token.
    pub fn estimated(prompt_tokens: i64, generated_chars: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens: (generated_chars as i64 + 3) / 4,
            ..Self::default()
        }
    }

    /// OpenAI's `usage` object; cache writes appear in
    /// `prompt_tokens_details` only when there are some.
    pub fn to_openai(self) -> Value {
        let mut details = json!({ "cached_tokens": self.cached_tokens });
        if self.cache_write_tokens > 0 {
            details["cache_write_tokens"] = json!(self.cache_write_tokens);
        }
        if self.cache_write_1h_tokens > 0 {
            details["cache_write_1h_tokens"] = json!(self.cache_write_1h_tokens);
        }
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": details,
        })
    }
}

/// Why an upstream call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The provider answered with an error status.
    #[error("{message}")]
    Status {
        status: u16,
        message: String,
        code: Option<String>,
    },
    /// No answer in time.
    #[error("the upstream provider timed out")]
    Timeout,
    /// The connection failed or broke.
    #[error("could not reach the upstream provider: {0}")]
    Connect(String),
    /// The provider answered something we cannot read.
    #[error("the upstream provider sent an invalid response: {0}")]
    Protocol(String),
    /// The provider closed its answer (a stream, or an empty body) before
    /// finishing it.
    #[error("the upstream provider ended its answer before finishing it")]
    Truncated,
}

impl UpstreamError {
    /// Whether trying again may help: 429, 5xx and connection errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Connect(_) | Self::Timeout | Self::Truncated => true,
            Self::Protocol(_) => false,
        }
    }

    /// Whether the provider refused the gateway's own credentials (401): the
    /// operator's problem, not the client's, and another provider may serve.
    pub fn is_gateway_credentials(&self) -> bool {
        matches!(self, Self::Status { status: 401, .. })
    }

    /// Classifies a reqwest failure.
    pub fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            Self::Timeout
        } else if err.is_decode() && !broke_in_transit(&err) {
            Self::Protocol(err.to_string())
        } else {
            // Never include the URL: it may carry an API key (Gemini).
            Self::Connect(err.without_url().to_string())
        }
    }
}

/// Whether a decode error is a connection that broke: reqwest reports every
/// failure while streaming a body as one, with the transport's error inside.
fn broke_in_transit(err: &reqwest::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<reqwest::Error>())
        .is_some_and(reqwest::Error::is_body)
}

/// A stream of OpenAI chat chunks.
pub type ChunkStream = BoxStream<'static, Result<Value, UpstreamError>>;

/// One upstream wire format.
#[async_trait]
pub trait Provider: Send + Sync {
    /// A non-streaming chat completion, as OpenAI's `chat.completion`.
    async fn chat(&self, body: &Body, model: &str) -> Result<Completion, UpstreamError>;
    /// A streaming chat completion, as OpenAI chunks ending with a usage chunk.
    async fn chat_stream(&self, body: &Body, model: &str) -> Result<ChunkStream, UpstreamError>;
    /// Embeddings, as OpenAI's list; only OpenAI-compatible providers have them.
    async fn embeddings(&self, body: &Body, model: &str) -> Result<Completion, UpstreamError> {
        let _ = (body, model);
        Err(UpstreamError::Status {
            status: 400,
            message: "this provider does not offer embeddings through the gateway".into(),
            code: Some("unsupported".into()),
        })
    }
}

/// A configured provider: its name, kind and client.
#[derive(Clone)]
pub struct ProviderEntry {
    pub name: String,
    pub kind: ProviderKind,
    pub client: Arc<dyn Provider>,
}

/// Timeouts shared by every upstream client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

/// All configured providers, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<String, ProviderEntry>,
}

impl Providers {
    /// Builds a client for every provider in the config.
    pub fn from_config(config: &Config) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.upstream.connect_timeout_secs))
            .read_timeout(Duration::from_secs(config.upstream.read_timeout_secs))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        let mut by_name = BTreeMap::new();
        for (name, provider) in &config.providers {
            let Some(kind) = provider.kind.or_else(|| ProviderKind::from_name(name)) else {
                continue; // rejected by config validation
            };
            let key = provider.api_key.clone().unwrap_or_default();
            let base = provider.api_base.clone();
            let client: Arc<dyn Provider> = match kind {
                ProviderKind::Openai => Arc::new(openai::OpenAi::new(http.clone(), base, key)),
                ProviderKind::Anthropic => {
                    Arc::new(anthropic::Anthropic::new(http.clone(), base, key))
                }
                ProviderKind::Gemini => Arc::new(gemini::Gemini::new(http.clone(), base, key)),
            };
            by_name.insert(
                name.clone(),
                ProviderEntry {
                    name: name.clone(),
                    kind,
                    client,
                },
            );
        }
        Ok(Self { by_name })
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Option<&ProviderEntry> {
        self.by_name.get(name)
    }

    /// Whether a provider called `name` is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

/// Sends a JSON request and returns the response if its status is a success.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, UpstreamError> {
    let response = request.send().await.map_err(UpstreamError::from_reqwest)?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Err(error_from_body(status, &text))
}

/// Reads a provider's error body: OpenAI, Anthropic and Gemini all use `error.message`.
pub(crate) fn error_from_body(status: u16, text: &str) -> UpstreamError {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    error_from_json(status, parsed.as_ref(), text)
}

/// An error that an upstream reported inside a 200 (OpenRouter and other
/// aggregators do, in a body or a stream chunk): its numeric `code` is the
/// status when it is one, else 502.
pub(crate) fn in_band_error(body: &Value) -> UpstreamError {
    let status = body
        .pointer("/error/code")
        .and_then(Value::as_u64)
        .filter(|code| (400..=599).contains(code))
        .map_or(502, |code| code as u16);
    error_from_json(status, Some(body), "upstream error")
}

/// The error in a parsed body; `text` is quoted when it has no message. A
/// 401's message is never kept: providers quote part of the key they refused.
fn error_from_json(status: u16, parsed: Option<&Value>, text: &str) -> UpstreamError {
    if status == 401 {
        return UpstreamError::Status {
            status,
            message: "the provider rejected the gateway's API key for it".into(),
            code: Some("invalid_api_key".into()),
        };
    }
    let error = parsed.and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .or_else(|| e.as_str())
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let snippet: String = text.chars().take(200).collect();
            if snippet.is_empty() {
                format!("upstream status {status}")
            } else {
                snippet
            }
        });
    let code = error
        .and_then(|e| {
            e.get("code")
                .or_else(|| e.get("type"))
                .or_else(|| e.get("status"))
        })
        .and_then(|c| {
            c.as_str()
                .map(str::to_owned)
                .or_else(|| Some(c.to_string()))
        });
    UpstreamError::Status {
        status,
        message,
        code,
    }
}

/// Reads a success body as JSON.
pub(crate) async fn json_body(response: reqwest::Response) -> Result<Value, UpstreamError> {
    let bytes = response
        .bytes()
        .await
        .map_err(UpstreamError::from_reqwest)?;
    if bytes.trim_ascii().is_empty() {
        return Err(UpstreamError::Truncated);
    }
    serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Protocol(e.to_string()))
}

/// Reads a success body from an OpenAI-compatible upstream, to pass on as it is.
pub(crate) async fn upstream_json(
    response: reqwest::Response,
) -> Result<UpstreamJson, UpstreamError> {
    let bytes = response
        .bytes()
        .await
        .map_err(UpstreamError::from_reqwest)?;
    UpstreamJson::parse(bytes)
}

/// A `chat.completion.chunk` with one choice.
pub fn chunk(
    id: &str,
    model: &str,
    created: i64,
    delta: Value,
    finish_reason: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    })
}

/// The final, choice-less chunk that carries usage.
pub fn usage_chunk(id: &str, model: &str, created: i64, usage: Usage) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage.to_openai(),
    })
}

/// Seconds since the epoch, for `created`.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The characters an assistant message (or a stream delta) generated: its
/// text and its tool calls' arguments, for a local count of output tokens.
pub fn generated_chars(message: &Value) -> usize {
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .map_or(0, |t| t.chars().count());
    let arguments: usize = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|call| call.pointer("/function/arguments").and_then(Value::as_str))
        .map(|args| args.chars().count())
        .sum();
    text + arguments
}

/// The text of a message's `content`, whether a string or a list of parts.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The `stop` parameter as a list.
pub(crate) fn stop_list(body: &Body) -> Option<Vec<Value>> {
    match body.get("stop")? {
        Value::String(s) => Some(vec![Value::String(s.clone())]),
        Value::Array(items) => Some(items.clone()),
        _ => None,
    }
}

/// Appends a message `{role, <field>: items}`, merging the items into the
/// previous message when the role repeats: Anthropic and Gemini require
/// alternating roles where OpenAI allows runs.
pub(crate) fn push_merged(messages: &mut Vec<Value>, role: &str, field: &str, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut().filter(|last| last["role"] == role) {
        if let Some(existing) = last[field].as_array_mut() {
            existing.extend(items);
            return;
        }
    }
    messages.push(json!({ "role": role, field: items }));
}

/// Splits a `data:` URL into (media type, base64 data).
pub(crate) fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type.to_string(), data.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_round_trips_openai_shape() {
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 3,
            ..Usage::default()
        };
        assert_eq!(Usage::from_openai(&usage.to_openai()), Some(usage));
        assert_eq!(usage.to_openai()["total_tokens"], 15);
        assert!(usage.to_openai()["prompt_tokens_details"]
            .get("cache_write_tokens")
            .is_none());
        let writes = Usage {
            cache_write_tokens: 2,
            cache_write_1h_tokens: 1,
            ..usage
        };
        assert_eq!(Usage::from_openai(&writes.to_openai()), Some(writes));
    }

    #[test]
    fn provider_errors_keep_their_message() {
        let err = error_from_body(
            404,
            r#"{"error":{"message":"model gone","type":"invalid_request_error"}}"#,
        );
        assert!(
            matches!(err, UpstreamError::Status { status: 404, ref message, .. } if message == "model gone")
        );
        let err = error_from_body(502, "<html>bad gateway</html>");
        assert!(err.to_string().contains("bad gateway"));
        assert!(error_from_body(429, "").is_retryable());
        assert!(!error_from_body(400, "").is_retryable());
    }

    #[test]
    fn a_refused_provider_key_is_never_quoted() {
        let err = error_from_body(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-proj-****abcd","code":"invalid_api_key"}}"#,
        );
        assert!(err.is_gateway_credentials());
        assert!(!err.to_string().contains("abcd"), "{err}");
        assert!(!error_from_body(403, "").is_gateway_credentials());
    }

    #[test]
    fn repeated_roles_are_merged() {
        let mut messages = Vec::new();
        push_merged(&mut messages, "user", "parts", vec![json!({"text": "a"})]);
        push_merged(&mut messages, "user", "parts", vec![json!({"text": "b"})]);
        push_merged(&mut messages, "model", "parts", vec![]);
        push_merged(&mut messages, "model", "parts", vec![json!({"text": "c"})]);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["parts"].as_array().unwrap().len(), 2);
        assert_eq!(messages[1]["role"], "model");
    }

    #[test]
    fn data_urls_are_split() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png".into(), "AAAA".into()))
        );
        assert_eq!(parse_data_url("https://x/y.png"), None);
    }
}

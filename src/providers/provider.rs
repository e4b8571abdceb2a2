//! The [`Provider`] trait every wire format implements, and the configured
//! providers by name.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{anthropic, gemini, openai, Body, Completion, UpstreamError};
use crate::clock::Clock;
use crate::config::{Config, ProviderKind};

/// A stream of OpenAI chat chunks (or, from [`Provider::messages_stream`],
/// Anthropic's events).
pub type ChunkStream = BoxStream<'static, Result<Value, UpstreamError>>;

/// A request in Anthropic's Messages shape, for an Anthropic upstream: sent
/// as the client wrote it, unknown fields included, with only `model` set to
/// the upstream's name, and the client's `anthropic-beta` header passed on.
#[derive(Debug, Clone, Copy)]
pub struct NativeMessages<'a> {
    pub body: &'a Body,
    pub model: &'a str,
    pub beta: Option<&'a str>,
}

/// The refusal of a provider that does not speak Anthropic's Messages API.
fn not_anthropic() -> UpstreamError {
    UpstreamError::Status {
        status: 400,
        message: "this provider does not take Anthropic's Messages API as it is".into(),
        code: Some("unsupported".into()),
    }
}

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
    /// Anthropic's Messages API, answered in its own shape; only Anthropic
    /// providers have it (the others are reached by translation).
    async fn messages(&self, request: NativeMessages<'_>) -> Result<Value, UpstreamError> {
        let _ = request;
        Err(not_anthropic())
    }
    /// The same, streamed: Anthropic's events, each its `data` object.
    async fn messages_stream(
        &self,
        request: NativeMessages<'_>,
    ) -> Result<ChunkStream, UpstreamError> {
        let _ = request;
        Err(not_anthropic())
    }
    /// Anthropic's token count for a Messages request, `{"input_tokens"}`.
    async fn count_tokens(&self, request: NativeMessages<'_>) -> Result<Value, UpstreamError> {
        let _ = request;
        Err(not_anthropic())
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
    /// Builds a client for every provider in the config; `clock` dates the
    /// answers the gateway translates (their `created`).
    pub fn from_config(config: &Config, clock: &Clock) -> Result<Self, reqwest::Error> {
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
            // The demo is the mock, which `server` serves and points `api_base` at.
            let kind = kind.wire_format();
            let key = provider.api_key.clone().unwrap_or_default();
            let base = provider.api_base.clone();
            let client: Arc<dyn Provider> = match kind {
                ProviderKind::Openai | ProviderKind::Demo => {
                    Arc::new(openai::OpenAi::new(http.clone(), base, key))
                }
                ProviderKind::Anthropic => Arc::new(anthropic::Anthropic::new(
                    http.clone(),
                    base,
                    key,
                    clock.clone(),
                )),
                ProviderKind::Gemini => {
                    Arc::new(gemini::Gemini::new(http.clone(), base, key, clock.clone()))
                }
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

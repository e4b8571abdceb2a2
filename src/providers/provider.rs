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
            let key = provider.api_key.clone().unwrap_or_default();
            let base = provider.api_base.clone();
            let client: Arc<dyn Provider> = match kind {
                ProviderKind::Openai => Arc::new(openai::OpenAi::new(http.clone(), base, key)),
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

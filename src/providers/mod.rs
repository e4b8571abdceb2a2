//! Upstream providers: one file per wire format, behind the [`Provider`] trait.
//!
//! Every adapter takes an OpenAI-shaped chat request and answers in OpenAI's
//! shapes: a `chat.completion` object, or a stream of `chat.completion.chunk`
//! objects whose last one carries `usage` (as OpenAI does with
//! `stream_options.include_usage`). The model router picks the adapter by
//! model name.

pub mod anthropic;
pub mod completion;
pub mod error;
pub mod gemini;
pub mod openai;
pub mod provider;
pub mod router;
pub mod sse;
pub mod usage;
pub mod wire;

use serde_json::{Map, Value};

pub use completion::{Completion, UpstreamJson};
pub use error::UpstreamError;
pub use provider::{ChunkStream, NativeMessages, Provider, ProviderEntry, Providers, Timeouts};
pub use sse::SseParser;
pub use usage::Usage;
pub use wire::{content_text, generated_chars};

/// A chat request body as the client sent it (OpenAI's shape).
pub type Body = Map<String, Value>;

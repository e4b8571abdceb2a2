//! The front doors' wire formats other than OpenAI's chat: each translated
//! to the gateway's chat shape on the way in and back on the way out, so
//! that every door shares one routing, metering and billing path.

pub mod anthropic;
pub mod responses;

use serde_json::Value;

/// What a chat chunk's first choice carries: its text, its tool call
/// deltas and its finish reason (what both stream translators read).
pub struct ChunkDelta<'a> {
    pub text: Option<&'a str>,
    pub calls: &'a [Value],
    pub finish_reason: Option<&'a str>,
}

impl<'a> ChunkDelta<'a> {
    /// The chunk's first choice, if it has one (a usage-only chunk has none).
    pub fn of(chunk: &'a Value) -> Option<Self> {
        let choice = chunk.pointer("/choices/0")?;
        let delta = choice.get("delta");
        Some(Self {
            text: delta
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty()),
            calls: delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
                .map_or(&[], Vec::as_slice),
            finish_reason: choice.get("finish_reason").and_then(Value::as_str),
        })
    }
}

//! The token counts one request used, by bucket, in OpenAI's shape.

use serde_json::{json, Value};

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

    /// Reads Anthropic's `usage`; none without `input_tokens`. Anthropic
    /// counts cache reads and writes apart from `input_tokens`; the prompt is
    /// their sum. Writes are split by lifetime in `cache_creation` (5 minutes
    /// and 1 hour); without it, every write is a 5-minute one.
    pub fn from_anthropic(usage: Option<&Value>) -> Option<Self> {
        let usage = usage?;
        let input = usage.get("input_tokens")?.as_i64()?;
        let mut counts = Self::default();
        counts.merge_anthropic(usage);
        counts.prompt_tokens = input + counts.cache_tokens();
        Some(counts)
    }

    /// Updates the counts with the fields present in an Anthropic `usage`
    /// object (`message_delta` repeats them, cumulative); the prompt total
    /// is recomputed when any of its parts is given.
    pub fn merge_anthropic(&mut self, usage: &Value) {
        let get = |key: &str| usage.get(key).and_then(Value::as_i64);
        let uncached = self.prompt_tokens - self.cache_tokens();
        if let Some(output) = get("output_tokens") {
            self.completion_tokens = output;
        }
        if let Some(read) = get("cache_read_input_tokens") {
            self.cached_tokens = read;
        }
        let split = usage.get("cache_creation").map(|c| {
            let part = |key: &str| c.get(key).and_then(Value::as_i64).unwrap_or(0);
            (
                part("ephemeral_5m_input_tokens"),
                part("ephemeral_1h_input_tokens"),
            )
        });
        match (split, get("cache_creation_input_tokens")) {
            (Some((five_minutes, one_hour)), _) => {
                self.cache_write_tokens = five_minutes;
                self.cache_write_1h_tokens = one_hour;
            }
            (None, Some(written)) => {
                self.cache_write_tokens = written;
                self.cache_write_1h_tokens = 0;
            }
            (None, None) => {}
        }
        let uncached = get("input_tokens").unwrap_or(uncached.max(0));
        self.prompt_tokens = uncached + self.cache_tokens();
    }

    /// Anthropic's `usage` object: `input_tokens` counts only the prompt
    /// tokens that neither read nor wrote the cache.
    pub fn to_anthropic(self) -> Value {
        json!({
            "input_tokens": (self.prompt_tokens - self.cache_tokens()).max(0),
            "output_tokens": self.completion_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens + self.cache_write_1h_tokens,
            "cache_read_input_tokens": self.cached_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_tokens,
                "ephemeral_1h_input_tokens": self.cache_write_1h_tokens,
            },
        })
    }

    /// The prompt tokens that read or wrote the cache.
    fn cache_tokens(self) -> i64 {
        self.cached_tokens + self.cache_write_tokens + self.cache_write_1h_tokens
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
        assert_eq!(
            Usage::from_anthropic(Some(&writes.to_anthropic())),
            Some(writes)
        );
        assert_eq!(writes.to_anthropic()["input_tokens"], 4);
    }
}

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
    }
}

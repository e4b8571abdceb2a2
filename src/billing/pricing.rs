//! Prices: what a model costs the operator, and what it costs the user
//! (cost plus margin), per million tokens, in nano-USD.

use serde::Serialize;

use crate::providers::Usage;

/// Tokens in the unit prices are quoted for.
const PER: i128 = 1_000_000;
/// Basis points in 100%.
const BP: i128 = 10_000;

/// A model's provider cost, per million tokens, in nano-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Price {
    pub input: i64,
    pub output: i64,
    /// Cached prompt tokens; `None` bills them as ordinary input.
    pub cached_input: Option<i64>,
    /// This model's margin in basis points (2000 = 20%), overriding the global one.
    pub margin_bp: Option<i64>,
}

/// What the user pays per million tokens, margin included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UserPrice {
    pub input: i64,
    pub output: i64,
    pub cached_input: i64,
}

impl Price {
    /// The user's price: each component × (1 + margin), rounded up to a nano.
    pub fn for_user(&self, default_margin_bp: i64) -> UserPrice {
        let margin = self.margin_bp.unwrap_or(default_margin_bp) as i128;
        let apply = |nanos: i64| -> i64 {
            let scaled = nanos as i128 * (BP + margin);
            (scaled.div_euclid(BP) + i128::from(scaled.rem_euclid(BP) != 0)) as i64
        };
        UserPrice {
            input: apply(self.input),
            output: apply(self.output),
            cached_input: apply(self.cached_input.unwrap_or(self.input)),
        }
    }
}

impl UserPrice {
    /// Whether every component is zero (such models need no balance).
    pub fn is_free(&self) -> bool {
        self.input == 0 && self.output == 0 && self.cached_input == 0
    }

    /// The cost of a request's usage, rounded up to the next nano-USD once per
    /// request. Saturates instead of overflowing on absurd token counts.
    pub fn cost(&self, usage: Usage) -> i64 {
        let cached = usage.cached_tokens.clamp(0, usage.prompt_tokens.max(0)) as i128;
        let uncached = usage.prompt_tokens.max(0) as i128 - cached;
        let total = uncached * self.input as i128
            + cached * self.cached_input as i128
            + usage.completion_tokens.max(0) as i128 * self.output as i128;
        let cost = total / PER + i128::from(total % PER != 0);
        cost.min(i64::MAX as i128) as i64
    }

    /// The most a request may cost: its prompt estimate plus `max_output` tokens.
    pub fn estimate(&self, prompt_tokens: i64, max_output: i64) -> i64 {
        self.cost(Usage {
            prompt_tokens,
            completion_tokens: max_output,
            cached_tokens: 0,
        })
    }
}

/// Built-in provider costs (USD per million tokens: input, output, cached
/// input), seeded into the catalog for models the config does not price.
pub const BUILT_IN: &[(&str, f64, f64, Option<f64>)] = &[
    ("openai:gpt-4o", 2.50, 10.00, Some(1.25)),
    ("openai:gpt-4o-mini", 0.15, 0.60, Some(0.075)),
    ("openai:gpt-4-turbo", 10.00, 30.00, None),
    ("openai:gpt-4", 30.00, 60.00, None),
    ("openai:gpt-3.5-turbo", 0.50, 1.50, None),
    ("openai:gpt-4.1", 2.00, 8.00, Some(0.50)),
    ("openai:gpt-4.1-mini", 0.40, 1.60, Some(0.10)),
    ("openai:gpt-4.1-nano", 0.10, 0.40, Some(0.025)),
    ("openai:o3-mini", 1.10, 4.40, Some(0.55)),
    ("openai:text-embedding-3-small", 0.02, 0.0, None),
    ("openai:text-embedding-3-large", 0.13, 0.0, None),
    ("anthropic:claude-3-5-haiku-latest", 0.80, 4.00, Some(0.08)),
    (
        "anthropic:claude-3-5-sonnet-latest",
        3.00,
        15.00,
        Some(0.30),
    ),
    (
        "anthropic:claude-3-7-sonnet-latest",
        3.00,
        15.00,
        Some(0.30),
    ),
    ("anthropic:claude-sonnet-4-0", 3.00, 15.00, Some(0.30)),
    ("anthropic:claude-opus-4-0", 15.00, 75.00, Some(1.50)),
    ("gemini:gemini-2.0-flash", 0.10, 0.40, Some(0.025)),
    ("gemini:gemini-2.5-flash", 0.30, 2.50, Some(0.075)),
    ("gemini:gemini-2.5-pro", 1.25, 10.00, Some(0.31)),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::money::usd_to_nanos;

    fn price(input: f64, output: f64) -> Price {
        Price {
            input: usd_to_nanos(input),
            output: usd_to_nanos(output),
            cached_input: None,
            margin_bp: None,
        }
    }

    #[test]
    fn twenty_percent_margin_matches_the_published_list() {
        for (cost_in, cost_out, user_in, user_out) in [
            (0.15, 0.60, 0.18, 0.72),
            (2.50, 10.00, 3.00, 12.00),
            (0.50, 1.50, 0.60, 1.80),
            (10.0, 30.0, 12.0, 36.0),
            (30.0, 60.0, 36.0, 72.0),
        ] {
            let user = price(cost_in, cost_out).for_user(2000);
            assert_eq!(user.input, usd_to_nanos(user_in), "{cost_in}");
            assert_eq!(user.output, usd_to_nanos(user_out), "{cost_out}");
        }
    }

    #[test]
    fn per_model_margin_overrides_and_rounds_up() {
        let mut p = price(0.000_000_001, 0.0);
        p.margin_bp = Some(1);
        // 1 nano × 1.0001 = 1.0001 → rounds up to 2.
        assert_eq!(p.for_user(2000).input, 2);
        p.margin_bp = Some(0);
        assert_eq!(p.for_user(2000).input, 1);
    }

    #[test]
    fn cost_rounds_up_once_per_request() {
        let user = price(0.15, 0.60).for_user(2000); // 180 and 720 nano per token
        let usage = |p, c, cached| Usage {
            prompt_tokens: p,
            completion_tokens: c,
            cached_tokens: cached,
        };
        assert_eq!(user.cost(usage(1, 0, 0)), 180);
        assert_eq!(user.cost(usage(1000, 500, 0)), 180 * 1000 + 720 * 500);
        assert_eq!(user.cost(usage(0, 0, 0)), 0);
        // 0.075/1M at 20% = 0.09/1M = 90 nano per token; a third of a nano rounds up.
        let odd = Price {
            input: 1,
            output: 0,
            cached_input: None,
            margin_bp: Some(0),
        }
        .for_user(0);
        assert_eq!(odd.cost(usage(1, 0, 0)), 1, "1e-6 nano rounds up to 1");
        assert_eq!(odd.cost(usage(1_000_000, 0, 0)), 1);
        assert_eq!(odd.cost(usage(1_000_001, 0, 0)), 2);
    }

    #[test]
    fn cached_tokens_use_their_own_price() {
        let mut p = price(1.0, 2.0);
        p.cached_input = Some(usd_to_nanos(0.1));
        let user = p.for_user(0);
        let cost = user.cost(Usage {
            prompt_tokens: 100,
            completion_tokens: 0,
            cached_tokens: 60,
        });
        assert_eq!(cost, 40 * 1000 + 60 * 100);
    }

    #[test]
    fn zero_price_is_free_and_huge_counts_saturate() {
        let free = price(0.0, 0.0).for_user(2000);
        assert!(free.is_free());
        assert_eq!(free.estimate(1_000_000, 1_000_000), 0);
        let expensive = price(1000.0, 1000.0).for_user(2000);
        let cost = expensive.cost(Usage {
            prompt_tokens: i64::MAX,
            completion_tokens: i64::MAX,
            cached_tokens: 0,
        });
        assert_eq!(cost, i64::MAX);
        assert_eq!(
            expensive.cost(Usage {
                prompt_tokens: -5,
                completion_tokens: 0,
                cached_tokens: 0
            }),
            0
        );
    }
}

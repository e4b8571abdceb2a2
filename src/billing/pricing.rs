//! Prices: what a model costs the operator, and what it costs the user
//! (cost plus margin), per million tokens, in nano-USD.

use serde::Serialize;

use crate::db::prices::PriceRow;
use crate::providers::Usage;

/// Tokens in the unit prices are quoted for.
const PER: i128 = 1_000_000;
/// Basis points in 100%.
const BP: i128 = 10_000;

/// A model's provider cost, per million tokens, in nano-USD. A cache price
/// left out bills those tokens as ordinary input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Price {
    pub input: i64,
    pub output: i64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: Option<i64>,
    /// Prompt tokens written to the cache for 5 minutes (Anthropic's default).
    pub cache_write: Option<i64>,
    /// Prompt tokens written to the cache for an hour; unset, the 5-minute price.
    pub cache_write_1h: Option<i64>,
    /// This model's margin in basis points (2000 = 20%), overriding the global one.
    pub margin_bp: Option<i64>,
}

impl Price {
    /// The price as the catalog stores it, for `model_key`.
    pub fn row(&self, model_key: &str) -> PriceRow {
        PriceRow {
            model_key: model_key.to_string(),
            input_per_million: self.input,
            output_per_million: self.output,
            cached_input_per_million: self.cached_input,
            cache_write_per_million: self.cache_write,
            cache_write_1h_per_million: self.cache_write_1h,
            margin_bp: self.margin_bp,
        }
    }
}

impl PriceRow {
    /// The price a catalog row holds.
    pub fn price(&self) -> Price {
        Price {
            input: self.input_per_million,
            output: self.output_per_million,
            cached_input: self.cached_input_per_million,
            cache_write: self.cache_write_per_million,
            cache_write_1h: self.cache_write_1h_per_million,
            margin_bp: self.margin_bp,
        }
    }
}

/// What each kind of token costs per million, in nano-USD: the user's
/// price (margin included) or the provider's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UserPrice {
    pub input: i64,
    pub output: i64,
    pub cached_input: i64,
    pub cache_write: i64,
    pub cache_write_1h: i64,
}

/// A model's prices for one request: what the user pays, and what the
/// provider charges the operator (their difference is the margin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quote {
    pub user: UserPrice,
    pub provider: UserPrice,
}

impl Price {
    /// Every bucket's provider rate, the unset cache prices filled in.
    pub fn provider_rates(&self) -> UserPrice {
        let cache_write = self.cache_write.unwrap_or(self.input);
        UserPrice {
            input: self.input,
            output: self.output,
            cached_input: self.cached_input.unwrap_or(self.input),
            cache_write,
            cache_write_1h: self.cache_write_1h.unwrap_or(cache_write),
        }
    }

    /// The user's price: each component × (1 + margin), rounded up to a nano.
    pub fn for_user(&self, default_margin_bp: i64) -> UserPrice {
        let margin = self.margin_bp.unwrap_or(default_margin_bp) as i128;
        let apply = |nanos: i64| -> i64 {
            let scaled = nanos as i128 * (BP + margin);
            let rounded = scaled.div_euclid(BP) + i128::from(scaled.rem_euclid(BP) != 0);
            rounded.clamp(0, i64::MAX as i128) as i64
        };
        let at_cost = self.provider_rates();
        UserPrice {
            input: apply(at_cost.input),
            output: apply(at_cost.output),
            cached_input: apply(at_cost.cached_input),
            cache_write: apply(at_cost.cache_write),
            cache_write_1h: apply(at_cost.cache_write_1h),
        }
    }

    /// The user's and the provider's prices.
    pub fn quote(&self, default_margin_bp: i64) -> Quote {
        Quote {
            user: self.for_user(default_margin_bp),
            provider: self.provider_rates(),
        }
    }
}

impl UserPrice {
    /// Whether every component is zero (such models need no balance).
    pub fn is_free(&self) -> bool {
        self.input == 0
            && self.output == 0
            && self.cached_input == 0
            && self.cache_write == 0
            && self.cache_write_1h == 0
    }

    /// The larger of two prices in every component.
    pub fn max(self, other: Self) -> Self {
        Self {
            input: self.input.max(other.input),
            output: self.output.max(other.output),
            cached_input: self.cached_input.max(other.cached_input),
            cache_write: self.cache_write.max(other.cache_write),
            cache_write_1h: self.cache_write_1h.max(other.cache_write_1h),
        }
    }

    /// The cost of a request's usage: each bucket at its rate, summed, then
    /// rounded up to the next nano-USD once per request. The cache buckets
    /// are parts of the prompt; counts a provider reports inconsistently
    /// (more cached than prompted) are cut to the prompt, reads first.
    /// Never negative; saturates instead of overflowing on absurd counts.
    pub fn cost(&self, usage: Usage) -> i64 {
        let prompt = usage.prompt_tokens.max(0) as i128;
        let mut left = prompt;
        let mut take = |tokens: i64| {
            let taken = (tokens.max(0) as i128).min(left);
            left -= taken;
            taken
        };
        let read = take(usage.cached_tokens);
        let write = take(usage.cache_write_tokens);
        let write_1h = take(usage.cache_write_1h_tokens);
        let output = usage.completion_tokens.max(0) as i128;
        let total = [
            (left, self.input),
            (read, self.cached_input),
            (write, self.cache_write),
            (write_1h, self.cache_write_1h),
            (output, self.output),
        ]
        .into_iter()
        .map(|(tokens, rate)| tokens.saturating_mul(rate.max(0) as i128))
        .fold(0i128, i128::saturating_add);
        let cost = total / PER + i128::from(total % PER != 0);
        cost.min(i64::MAX as i128) as i64
    }

    /// The most a request may cost: its prompt estimate, all uncached, plus
    /// `max_output` tokens.
    pub fn estimate(&self, prompt_tokens: i64, max_output: i64) -> i64 {
        let dearest_input = self.input.max(self.cache_write).max(self.cache_write_1h);
        UserPrice {
            input: dearest_input,
            ..*self
        }
        .cost(Usage {
            prompt_tokens,
            completion_tokens: max_output,
            ..Usage::default()
        })
    }
}

impl Quote {
    /// The larger of two quotes, in every component of both prices.
    pub fn max(self, other: Self) -> Self {
        Self {
            user: self.user.max(other.user),
            provider: self.provider.max(other.provider),
        }
    }
}

/// A built-in provider cost, in USD per million tokens.
#[derive(Debug, Clone, Copy)]
pub struct BuiltInPrice {
    pub model_key: &'static str,
    pub input: f64,
    pub output: f64,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    pub cache_write_1h: Option<f64>,
}

/// An OpenAI or Gemini model: cached input is read at its own price, and
/// writing the cache costs nothing extra (neither reports cache writes).
const fn cache_reads(model_key: &'static str, input: f64, output: f64, read: f64) -> BuiltInPrice {
    BuiltInPrice {
        model_key,
        input,
        output,
        cache_read: Some(read),
        cache_write: None,
        cache_write_1h: None,
    }
}

/// A model without cache prices: cached tokens are billed as input.
const fn plain(model_key: &'static str, input: f64, output: f64) -> BuiltInPrice {
    BuiltInPrice {
        model_key,
        input,
        output,
        cache_read: None,
        cache_write: None,
        cache_write_1h: None,
    }
}

/// An Anthropic model, priced as Anthropic publishes it: cache reads at a
/// tenth of input, 5-minute writes at 1.25 times, 1-hour writes at twice.
const fn anthropic(model_key: &'static str, input: f64, output: f64) -> BuiltInPrice {
    BuiltInPrice {
        model_key,
        input,
        output,
        cache_read: Some(input / 10.0),
        cache_write: Some(input * 1.25),
        cache_write_1h: Some(input * 2.0),
    }
}

/// Built-in provider costs, seeded into the catalog for models the config
/// does not price (and that an operator has not deleted).
pub const BUILT_IN: &[BuiltInPrice] = &[
    cache_reads("openai:gpt-4o", 2.50, 10.00, 1.25),
    cache_reads("openai:gpt-4o-mini", 0.15, 0.60, 0.075),
    plain("openai:gpt-4-turbo", 10.00, 30.00),
    plain("openai:gpt-4", 30.00, 60.00),
    plain("openai:gpt-3.5-turbo", 0.50, 1.50),
    cache_reads("openai:gpt-4.1", 2.00, 8.00, 0.50),
    cache_reads("openai:gpt-4.1-mini", 0.40, 1.60, 0.10),
    cache_reads("openai:gpt-4.1-nano", 0.10, 0.40, 0.025),
    cache_reads("openai:o3-mini", 1.10, 4.40, 0.55),
    plain("openai:text-embedding-3-small", 0.02, 0.0),
    plain("openai:text-embedding-3-large", 0.13, 0.0),
    anthropic("anthropic:claude-3-5-haiku-latest", 0.80, 4.00),
    anthropic("anthropic:claude-3-5-sonnet-latest", 3.00, 15.00),
    anthropic("anthropic:claude-3-7-sonnet-latest", 3.00, 15.00),
    anthropic("anthropic:claude-sonnet-4-0", 3.00, 15.00),
    anthropic("anthropic:claude-opus-4-0", 15.00, 75.00),
    cache_reads("gemini:gemini-2.0-flash", 0.10, 0.40, 0.025),
    cache_reads("gemini:gemini-2.5-flash", 0.30, 2.50, 0.075),
    cache_reads("gemini:gemini-2.5-pro", 1.25, 10.00, 0.31),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::money::usd_to_nanos;
    use proptest::prelude::*;

    fn price(input: f64, output: f64) -> Price {
        Price {
            input: usd_to_nanos(input),
            output: usd_to_nanos(output),
            cached_input: None,
            cache_write: None,
            cache_write_1h: None,
            margin_bp: None,
        }
    }

    fn usage(prompt: i64, completion: i64, read: i64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: read,
            ..Usage::default()
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
        assert_eq!(user.cost(usage(1, 0, 0)), 180);
        assert_eq!(user.cost(usage(1000, 500, 0)), 180 * 1000 + 720 * 500);
        assert_eq!(user.cost(usage(0, 0, 0)), 0);
        let odd = Price {
            input: 1,
            margin_bp: Some(0),
            ..price(0.0, 0.0)
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
        assert_eq!(user.cost(usage(100, 0, 60)), 40 * 1000 + 60 * 100);
    }

    #[test]
    fn every_cache_bucket_has_its_price_and_defaults_to_input() {
        // Anthropic's published ratios on a $3 input: reads $0.30, 5-minute
        // writes $3.75, 1-hour writes $6.
        let sonnet = Price {
            cached_input: Some(usd_to_nanos(0.30)),
            cache_write: Some(usd_to_nanos(3.75)),
            cache_write_1h: Some(usd_to_nanos(6.0)),
            ..price(3.0, 15.0)
        };
        let at_cost = sonnet.provider_rates();
        let all = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 0,
            cached_tokens: 400_000,
            cache_write_tokens: 300_000,
            cache_write_1h_tokens: 200_000,
        };
        // 100k uncached × 3 + 400k × 0.30 + 300k × 3.75 + 200k × 6 (USD per 1M).
        assert_eq!(at_cost.cost(all), usd_to_nanos(0.3 + 0.12 + 1.125 + 1.2));
        // Unset, a write costs input, and a 1-hour write the 5-minute price.
        let plain = price(3.0, 15.0).provider_rates();
        assert_eq!(plain.cost(all), usd_to_nanos(3.0));
        let only_5m = Price {
            cache_write: Some(usd_to_nanos(3.75)),
            ..price(3.0, 15.0)
        };
        assert_eq!(only_5m.provider_rates().cache_write_1h, usd_to_nanos(3.75));
        // The margin applies to every bucket; the quote keeps both prices.
        let quote = sonnet.quote(2000);
        assert_eq!(quote.user.cache_write_1h, usd_to_nanos(7.2));
        assert_eq!(quote.provider, at_cost);
    }

    #[test]
    fn inconsistent_cache_counts_are_cut_to_the_prompt() {
        let user = Price {
            cached_input: Some(100),
            cache_write: Some(10_000),
            ..price(0.000_001, 0.0)
        }
        .provider_rates();
        // 10 prompt tokens, of which "20" read and "5" written: 10 read, none written.
        let odd = Usage {
            prompt_tokens: 10,
            cached_tokens: 20,
            cache_write_tokens: 5,
            ..Usage::default()
        };
        assert_eq!(user.cost(odd), 1, "10 × 100 nano per 1M, rounded up");
    }

    #[test]
    fn the_estimate_covers_a_prompt_written_to_the_dearest_cache() {
        let user = Price {
            cache_write_1h: Some(usd_to_nanos(6.0)),
            ..price(3.0, 15.0)
        }
        .provider_rates();
        assert_eq!(user.estimate(1_000_000, 0), usd_to_nanos(6.0));
        assert_eq!(user.estimate(0, 1_000_000), usd_to_nanos(15.0));
    }

    #[test]
    fn zero_price_is_free_and_huge_counts_saturate() {
        let free = price(0.0, 0.0).for_user(2000);
        assert!(free.is_free());
        assert_eq!(free.estimate(1_000_000, 1_000_000), 0);
        let expensive = price(1000.0, 1000.0).for_user(2000);
        assert_eq!(expensive.cost(usage(i64::MAX, i64::MAX, 0)), i64::MAX);
        assert_eq!(expensive.cost(usage(-5, 0, 0)), 0);
    }

    #[test]
    fn the_dearest_prices_and_counts_saturate_instead_of_wrapping() {
        let absurd = Price {
            input: i64::MAX,
            output: i64::MAX,
            cached_input: Some(i64::MAX),
            cache_write: Some(i64::MAX),
            cache_write_1h: Some(i64::MAX),
            margin_bp: Some(i64::MAX / 2),
        };
        let user = absurd.for_user(0);
        assert_eq!(
            user.input,
            i64::MAX,
            "a margin never wraps a price negative"
        );
        let all = Usage {
            prompt_tokens: i64::MAX,
            completion_tokens: i64::MAX,
            cached_tokens: i64::MAX / 4,
            cache_write_tokens: i64::MAX / 4,
            cache_write_1h_tokens: i64::MAX / 4,
        };
        assert_eq!(user.cost(all), i64::MAX);
    }

    #[test]
    fn built_in_anthropic_prices_follow_the_published_ratios() {
        let sonnet = BUILT_IN
            .iter()
            .find(|p| p.model_key == "anthropic:claude-sonnet-4-0")
            .unwrap();
        assert_eq!(
            (sonnet.cache_read, sonnet.cache_write, sonnet.cache_write_1h),
            (Some(0.30), Some(3.75), Some(6.0))
        );
    }

    /// Token counts as independent buckets: uncached input, cache reads,
    /// 5-minute and 1-hour writes, and output.
    fn buckets() -> impl Strategy<Value = [i64; 5]> {
        prop::array::uniform5(0i64..10_000_000)
    }

    fn from_buckets([uncached, read, write, write_1h, output]: [i64; 5]) -> Usage {
        Usage {
            prompt_tokens: uncached + read + write + write_1h,
            completion_tokens: output,
            cached_tokens: read,
            cache_write_tokens: write,
            cache_write_1h_tokens: write_1h,
        }
    }

    fn rates() -> impl Strategy<Value = UserPrice> {
        prop::array::uniform5(0i64..200_000_000_000).prop_map(|[a, b, c, d, e]| UserPrice {
            input: a,
            output: b,
            cached_input: c,
            cache_write: d,
            cache_write_1h: e,
        })
    }

    proptest! {
        #[test]
        fn a_cost_is_never_negative(rates in rates(), counts in prop::array::uniform5(any::<i64>())) {
            let [prompt, completion, read, write, write_1h] = counts;
            let usage = Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                cached_tokens: read,
                cache_write_tokens: write,
                cache_write_1h_tokens: write_1h,
            };
            prop_assert!(rates.cost(usage) >= 0);
        }

        #[test]
        fn a_cost_grows_with_every_bucket(
            rates in rates(),
            counts in buckets(),
            bucket in 0usize..5,
            more in 1i64..1_000_000,
        ) {
            let mut larger = counts;
            larger[bucket] += more;
            prop_assert!(rates.cost(from_buckets(larger)) >= rates.cost(from_buckets(counts)));
        }

        #[test]
        fn a_cost_is_the_exact_sum_rounded_up_once(rates in rates(), counts in buckets()) {
            let [uncached, read, write, write_1h, output] = counts.map(i128::from);
            let exact = uncached * i128::from(rates.input)
                + read * i128::from(rates.cached_input)
                + write * i128::from(rates.cache_write)
                + write_1h * i128::from(rates.cache_write_1h)
                + output * i128::from(rates.output);
            let cost = i128::from(rates.cost(from_buckets(counts)));
            // The smallest whole nano-USD at or above the exact amount.
            prop_assert!(cost * 1_000_000 >= exact);
            prop_assert!((cost - 1) * 1_000_000 < exact);
        }

        #[test]
        fn the_user_never_pays_less_than_the_provider(
            rates in prop::array::uniform5(0i64..200_000_000_000),
            margin_bp in 0i64..100_000,
            counts in buckets(),
        ) {
            let [input, output, read, write, write_1h] = rates;
            let price = Price {
                input,
                output,
                cached_input: Some(read),
                cache_write: Some(write),
                cache_write_1h: Some(write_1h),
                margin_bp: Some(margin_bp),
            };
            let quote = price.quote(0);
            let usage = from_buckets(counts);
            prop_assert!(quote.user.cost(usage) >= quote.provider.cost(usage));
        }
    }
}

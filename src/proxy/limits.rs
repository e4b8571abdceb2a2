//! What a request must stay within before it is forwarded: the models its
//! key may call and the key's rate limits. The budgets and the balance are
//! held after these, by `billing::reservation`.

use axum::http::{HeaderMap, HeaderValue};
use std::sync::Arc;

use crate::auth::policy::KeyPolicy;
use crate::auth::rate_buckets::RateLimits;
use crate::billing::budget::BudgetLimit;
use crate::billing::meter::Meter;
use crate::db::{budgets, rate_limits};
use crate::error::AppError;
use crate::state::AppState;

/// The limits a request is subject to.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// The key's policy (none for the master key and the playground).
    pub policy: Option<Arc<KeyPolicy>>,
    /// The budgets the request must fit in.
    pub budgets: Vec<BudgetLimit>,
}

impl Limits {
    /// A key's limits: its policy, and the budgets it carries.
    pub fn of_key(policy: Arc<KeyPolicy>) -> Self {
        Self {
            budgets: policy.budgets.clone(),
            policy: Some(policy),
        }
    }

    /// A user's limits without a key: their budget, if they have one.
    pub async fn of_user(state: &AppState, user_id: &str) -> Result<Self, AppError> {
        let budget = budgets::for_user(&state.db, user_id).await?;
        Ok(Self {
            policy: None,
            budgets: budget.map(|b| b.limit_for(user_id)).into_iter().collect(),
        })
    }

    /// Refuses a `provider:model` the key may not call.
    pub fn check_model(&self, provider: &str, model: &str) -> Result<(), AppError> {
        match &self.policy {
            Some(policy) if !policy.allows(provider, model) => Err(AppError::denied(
                "model_not_allowed",
                format!("This API key may not call `{provider}:{model}`."),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the key may call `provider:model` (fallbacks it may not are skipped).
    pub fn allows(&self, provider: &str, model: &str) -> bool {
        self.check_model(provider, model).is_ok()
    }
}

/// Where a key stands against its rate limits, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    /// Requests per minute: (limit, remaining).
    pub requests: Option<(i64, i64)>,
    /// Tokens per minute: (limit, remaining).
    pub tokens: Option<(i64, i64)>,
    /// Milliseconds until the window resets.
    pub reset_in_ms: i64,
}

impl RateStatus {
    /// Whether `headers` already say where the key stands.
    pub fn is_in(headers: &HeaderMap) -> bool {
        headers.contains_key("x-ratelimit-reset-requests")
            || headers.contains_key("x-ratelimit-reset-tokens")
    }

    /// Adds OpenAI's `x-ratelimit-*` headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let reset = format!("{}s", (self.reset_in_ms + 999) / 1000);
        for (kind, counts) in [("requests", self.requests), ("tokens", self.tokens)] {
            if let Some((limit, remaining)) = counts {
                headers.insert(header_name("limit", kind), HeaderValue::from(limit));
                headers.insert(
                    header_name("remaining", kind),
                    HeaderValue::from(remaining.max(0)),
                );
                if let Ok(value) = HeaderValue::from_str(&reset) {
                    headers.insert(header_name("reset", kind), value);
                }
            }
        }
    }
}

fn header_name(what: &str, kind: &str) -> axum::http::HeaderName {
    axum::http::HeaderName::try_from(format!("x-ratelimit-{what}-{kind}"))
        .expect("a valid header name")
}

/// Where a key with rate limits stands now, without counting anything: for
/// the headers of a response refused before the request was counted.
pub async fn current_rate(
    state: &AppState,
    key_id: &str,
    policy: &KeyPolicy,
) -> Option<RateStatus> {
    if policy.rpm_limit.is_none() && policy.tpm_limit.is_none() {
        return None;
    }
    let now = state.clock.now_ms();
    let window = rate_limits::window_start(now);
    let (requests, tokens) = rate_limits::counts(&state.db, key_id, window).await.ok()?;
    Some(RateStatus {
        requests: policy.rpm_limit.map(|l| (l, l - requests)),
        tokens: policy.tpm_limit.map(|l| (l, l - tokens)),
        reset_in_ms: window + rate_limits::WINDOW_MS - now,
    })
}

/// Counts the request against its key's rate limits (in this replica's
/// slice of the shared window: `auth::rate_buckets`), and returns where the
/// key stands (`None` for a caller without rate limits); 429 with
/// `Retry-After` when over either.
pub async fn admit_rate(
    state: &AppState,
    limits: &Limits,
    meter: &mut Meter,
    prompt_tokens: i64,
) -> Result<Option<RateStatus>, AppError> {
    let (Some(policy), Some(key_id)) = (&limits.policy, meter.key_id()) else {
        return Ok(None);
    };
    if policy.rpm_limit.is_none() && policy.tpm_limit.is_none() {
        return Ok(None);
    }
    let now = state.clock.now_ms();
    let window = rate_limits::window_start(now);
    let key_limits = RateLimits {
        rpm: policy.rpm_limit,
        tpm: policy.tpm_limit,
    };
    let admission = state
        .rate_buckets
        .admit(&state.db, key_id, key_limits, prompt_tokens, now)
        .await?;
    let reset_in_ms = window + rate_limits::WINDOW_MS - now;
    if admission.admitted {
        if policy.tpm_limit.is_some() {
            meter.count_tokens_in(window);
        }
        return Ok(Some(RateStatus {
            requests: policy.rpm_limit.map(|l| (l, l - admission.requests)),
            tokens: policy.tpm_limit.map(|l| (l, l - admission.tokens)),
            reset_in_ms,
        }));
    }
    let rpm = policy.rpm_limit.unwrap_or(i64::MAX);
    let tpm = policy.tpm_limit.unwrap_or(i64::MAX);
    let used_requests = admission.requests;
    let what = if used_requests >= rpm {
        format!("{rpm} requests per minute")
    } else {
        format!("{tpm} tokens per minute")
    };
    Err(AppError::TooManyRequests {
        message: format!("Rate limit reached: this API key allows {what}. Try again shortly."),
        retry_after_secs: ((reset_in_ms + 999) / 1000).max(1) as u64,
    })
}

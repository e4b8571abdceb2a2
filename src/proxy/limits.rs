//! What a request must stay within before it is forwarded: the key's rate
//! limits, then the budgets and the balance, held through one reservation.

use axum::http::{HeaderMap, HeaderValue};
use std::sync::Arc;

use super::stream::Meter;
use crate::billing::budget::{window_at, BudgetLimit};
use crate::billing::money::format_usd;
use crate::db::keys::KeyPolicy;
use crate::db::{budgets, rate_limits};
use crate::error::AppError;
use crate::server::AppState;

/// A reservation outlives any request; past this it is released by the sweeper.
pub const RESERVATION_TTL_MS: i64 = 60 * 60 * 1000;

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

/// Counts the request against its key's rate limits; 429 with `Retry-After`
/// when over either. `status` receives where the key stands, either way.
pub async fn admit_rate(
    state: &AppState,
    limits: &Limits,
    meter: &mut Meter,
    prompt_tokens: i64,
    status: &mut Option<RateStatus>,
) -> Result<(), AppError> {
    let (Some(policy), Some(key_id)) = (&limits.policy, meter.key_id()) else {
        return Ok(());
    };
    if policy.rpm_limit.is_none() && policy.tpm_limit.is_none() {
        return Ok(());
    }
    let now = state.clock.now_ms();
    let window = rate_limits::window_start(now);
    let rpm = policy.rpm_limit.unwrap_or(i64::MAX);
    let tpm = policy.tpm_limit.unwrap_or(i64::MAX);
    let tokens = if policy.tpm_limit.is_some() {
        prompt_tokens
    } else {
        0
    };
    let (admitted, used_requests, used_tokens) =
        rate_limits::admit(&state.db, key_id, window, tokens, rpm, tpm).await?;
    let reset_in_ms = window + rate_limits::WINDOW_MS - now;
    *status = Some(RateStatus {
        requests: policy.rpm_limit.map(|l| (l, l - used_requests)),
        tokens: policy.tpm_limit.map(|l| (l, l - used_tokens)),
        reset_in_ms,
    });
    if admitted {
        if policy.tpm_limit.is_some() {
            meter.count_tokens_in(window);
        }
        return Ok(());
    }
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

/// Holds the most the request can cost, from its budgets and then from the
/// balance: 402 `budget_exceeded` or `insufficient_credits` when either
/// cannot cover it. Free requests hold nothing.
pub async fn reserve(
    state: &AppState,
    limits: &Limits,
    meter: &mut Meter,
    prompt_tokens: i64,
    max_output: i64,
) -> Result<(), AppError> {
    let estimate = meter.estimate(prompt_tokens, max_output);
    if estimate == 0 {
        return Ok(());
    }
    let now = state.clock.now_ms();
    if !limits.budgets.is_empty() {
        let held = state
            .recorder
            .reserve_budgets(
                meter.request_id(),
                meter.user_id(),
                &limits.budgets,
                estimate,
                now,
                RESERVATION_TTL_MS,
            )
            .await?;
        if !held {
            return Err(budget_exceeded(state, &limits.budgets, estimate, now).await);
        }
        meter.hold_budgets(limits.budgets.iter().map(|b| b.scope.clone()).collect());
    }
    if state
        .recorder
        .reserve(
            meter.request_id(),
            meter.user_id(),
            estimate,
            RESERVATION_TTL_MS,
        )
        .await?
    {
        meter.hold(estimate);
        return Ok(());
    }
    let (_, available) = state.recorder.balance(meter.user_id()).await?;
    Err(AppError::PaymentRequired {
        message: format!(
            "Insufficient credits: this request may cost up to ${}, and the available balance is ${}. Add credits to continue.",
            format_usd(estimate),
            format_usd(available)
        ),
        code: "insufficient_credits".into(),
    })
}

/// The 402 for a refused budget, naming the tightest one.
async fn budget_exceeded(
    state: &AppState,
    limits: &[BudgetLimit],
    estimate: i64,
    now: i64,
) -> AppError {
    let mut tightest: Option<(&BudgetLimit, i64)> = None;
    for limit in limits {
        let spent = match budgets::window(&state.db, &limit.scope).await {
            Ok(Some((start, spent))) => window_at(limit.period, start, spent, now).0,
            _ => 0,
        };
        let left = limit.max - spent;
        if tightest.is_none_or(|(_, l)| left < l) {
            tightest = Some((limit, left));
        }
    }
    let (owner, max, left) = tightest.map_or(("key", 0, 0), |(l, left)| (l.owner(), l.max, left));
    AppError::PaymentRequired {
        message: format!(
            "Budget exceeded: this request may cost up to ${}, more than the {owner}'s budget of ${} per period has free now (${} unspent, less what requests in flight hold).",
            format_usd(estimate),
            format_usd(max),
            format_usd(left.max(0)),
        ),
        code: "budget_exceeded".into(),
    }
}

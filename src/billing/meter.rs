//! The meter: what one request used and costs, measured from its start to
//! its end, and handed to the [`UsageRecorder`] exactly once, however the
//! request ends (answered, failed, streamed, cut, or dropped by its client).

use std::time::Instant;

use super::budget::HeldBudget;
use super::pricing::Quote;
use super::recorder::{HeldBy, Holds, UsageRecorder};
use super::TokensSource;
use crate::db::usage::UsageRecord;
use crate::error::AppError;
use crate::providers::router::Target;
use crate::providers::{UpstreamError, Usage};

/// Status recorded for a stream the client walked away from (nginx's convention).
pub const CLIENT_CLOSED: i32 = 499;

/// A request's token counts and how they were known.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    pub usage: Usage,
    pub source: TokensSource,
}

impl Counted {
    /// Counts the provider reported.
    pub fn upstream(usage: Usage) -> Self {
        Self {
            usage,
            source: TokensSource::Upstream,
        }
    }

    /// Counts the gateway made itself.
    pub fn locally(usage: Usage) -> Self {
        Self {
            usage,
            source: TokensSource::LocalCount,
        }
    }
}

/// Measures one request and submits exactly one usage record for it.
pub struct Meter {
    recorder: UsageRecorder,
    record: UsageRecord,
    started: Instant,
    first_byte_ms: Option<i64>,
    /// The user's and the provider's prices, once the model is known.
    quote: Option<Quote>,
    /// What the request holds, released when it is settled.
    holds: Holds,
    /// The prompt's local count, once the request went to a provider: what a
    /// request dropped before its answer is billed.
    sent_prompt_tokens: Option<i64>,
    done: bool,
}

impl Meter {
    /// A meter for request `request_id` (and the client's own id for it),
    /// billed to `user_id`, made with `key_id`, by the route `endpoint`.
    pub fn new(
        recorder: UsageRecorder,
        (request_id, client_request_id): (String, Option<String>),
        user_id: String,
        key_id: Option<String>,
        endpoint: &str,
    ) -> Self {
        Self {
            record: UsageRecord {
                id: request_id,
                client_request_id,
                user_id,
                key_id,
                endpoint: endpoint.to_string(),
                created_at: recorder.clock().now_ms(),
                ..UsageRecord::default()
            },
            recorder,
            started: Instant::now(),
            first_byte_ms: None,
            quote: None,
            holds: Holds::default(),
            sent_prompt_tokens: None,
            done: false,
        }
    }

    /// The request's id.
    pub fn request_id(&self) -> &str {
        &self.record.id
    }

    /// The user the request is billed to.
    pub fn user_id(&self) -> &str {
        &self.record.user_id
    }

    /// The route the request came by, as its record names it.
    pub fn endpoint(&self) -> &str {
        &self.record.endpoint
    }

    /// Records nothing: the request was answered without a provider and
    /// costs nothing (a replayed answer).
    pub fn discard(&mut self) {
        self.done = true;
    }

    /// Sets the prices the request is billed at.
    pub fn set_price(&mut self, quote: Quote) {
        self.quote = Some(quote);
    }

    /// Notes that `amount` of the balance is reserved for this request.
    pub fn hold(&mut self, amount: i64, held_by: HeldBy) {
        self.holds.balance = amount;
        self.holds.held_by = held_by;
        self.recorder.metrics().reservations(1);
    }

    /// Notes that the request holds `amount` of each of these budgets.
    pub fn hold_budgets(&mut self, amount: i64, budgets: std::sync::Arc<[HeldBudget]>) {
        self.holds.budget_amount = amount;
        self.holds.budgets = Some(budgets);
    }

    /// Notes the rate-limit window the request's tokens count in.
    pub fn count_tokens_in(&mut self, window: i64) {
        self.holds.rate_window = Some(window);
    }

    /// The key the request was made with, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.record.key_id.as_deref()
    }

    /// What `usage` costs the user at this request's price, in nano-USD.
    pub fn cost_of(&self, usage: Usage) -> i64 {
        self.quote.map_or(0, |quote| quote.user.cost(usage))
    }

    /// The most the request may cost the user: a prompt of `prompt_tokens`
    /// and `max_output` generated tokens (see `UserPrice::estimate`).
    pub fn estimate(&self, prompt_tokens: i64, max_output: i64) -> i64 {
        self.quote
            .map_or(0, |quote| quote.user.estimate(prompt_tokens, max_output))
    }

    /// Notes that the request is going to a provider, with a prompt of
    /// about `prompt_tokens`.
    pub fn sent_upstream(&mut self, prompt_tokens: i64) {
        self.sent_prompt_tokens = Some(prompt_tokens);
    }

    /// Notes where the request went.
    pub fn target(&mut self, target: &Target) {
        self.record.provider = Some(target.provider.name.clone());
        self.record.model = Some(target.model.clone());
    }

    /// Notes that the answer is a stream, now open.
    pub fn stream_opened(&mut self) {
        self.record.streamed = 1;
        self.recorder.metrics().streams(1);
    }

    /// Notes that the stream closed (before its record is finished).
    pub fn stream_closed(&self) {
        self.recorder.metrics().streams(-1);
    }

    /// Counts a failed upstream call against the request's provider.
    pub fn upstream_failed(&self, err: &UpstreamError) {
        let provider = self.record.provider.as_deref().unwrap_or_default();
        let now = self.recorder.clock().now_ms();
        self.recorder.metrics().upstream_error(provider, err, now);
    }

    /// Moves the meter out (to a stream, or to finish it), leaving a spent one behind.
    pub fn take(&mut self) -> Meter {
        let taken = Meter {
            recorder: self.recorder.clone(),
            record: std::mem::take(&mut self.record),
            started: self.started,
            first_byte_ms: self.first_byte_ms,
            quote: self.quote,
            holds: std::mem::take(&mut self.holds),
            sent_prompt_tokens: self.sent_prompt_tokens,
            done: false,
        };
        self.done = true;
        taken
    }

    /// Notes that the first byte of the answer went out (once).
    pub fn mark_first_byte(&mut self) {
        if self.first_byte_ms.is_none() {
            self.first_byte_ms = Some(self.started.elapsed().as_millis() as i64);
        }
    }

    /// Records a failed request (no tokens: nothing the provider bills).
    pub fn fail(&mut self, err: &AppError) {
        if !self.done {
            self.take().finish(
                err.status() as i32,
                Some(err.code().to_string()),
                Counted::locally(Usage::default()),
                false,
            );
        }
    }

    /// Submits the record, billed for `counted` at the request's prices.
    pub fn finish(
        mut self,
        status: i32,
        error_code: Option<String>,
        counted: Counted,
        aborted: bool,
    ) {
        self.done = true;
        let usage = counted.usage;
        let record = UsageRecord {
            cost: self.cost_of(usage),
            provider_cost: self.quote.map_or(0, |q| q.provider.cost(usage)),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_tokens: usage.cached_tokens,
            cache_write_tokens: usage.cache_write_tokens,
            cache_write_1h_tokens: usage.cache_write_1h_tokens,
            tokens_source: counted.source.as_str().to_string(),
            status,
            error_code,
            latency_ms: self.started.elapsed().as_millis() as i64,
            ttft_ms: self.first_byte_ms,
            aborted: aborted as i32,
            ..std::mem::take(&mut self.record)
        };
        self.recorder
            .record(record, std::mem::take(&mut self.holds));
    }
}

impl Drop for Meter {
    /// The request was dropped unsettled: the client went away while it
    /// waited (for a provider, a retry's backoff, or a stream's first chunk).
    /// It is recorded, and its holds released, like a stream the client
    /// left; a provider that had the prompt is paid for it.
    fn drop(&mut self) {
        if !self.done {
            let usage = Usage {
                prompt_tokens: self.sent_prompt_tokens.unwrap_or(0),
                ..Usage::default()
            };
            let counted = Counted {
                usage,
                source: TokensSource::ClientAborted,
            };
            self.take()
                .finish(CLIENT_CLOSED, Some("client_closed".into()), counted, true);
        }
    }
}

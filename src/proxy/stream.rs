//! Streaming responses: OpenAI chunks relayed as server-sent events the moment
//! they arrive, with usage captured however the stream ends.

use axum::body::{Body as HttpBody, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::watch;

use super::chat::upstream_to_app;
use super::recorder::{Holds, UsageRecorder};
use super::routing::Target;
use super::RequestIds;
use crate::billing::money::nanos_to_usd_f64;
use crate::billing::pricing::Quote;
use crate::billing::TokensSource;
use crate::db::usage::UsageRecord;
use crate::error::AppError;
use crate::providers::{generated_chars, ChunkStream, Usage};

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
    pub fn new(
        recorder: UsageRecorder,
        ids: &RequestIds,
        user_id: String,
        key_id: Option<String>,
        endpoint: &str,
    ) -> Self {
        Self {
            recorder,
            record: UsageRecord {
                id: ids.own.clone(),
                client_request_id: ids.client.clone(),
                user_id,
                key_id,
                endpoint: endpoint.to_string(),
                created_at: crate::db::now_ms(),
                ..UsageRecord::default()
            },
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
    pub fn hold(&mut self, amount: i64) {
        self.holds.balance = amount;
        self.recorder.metrics().reservations(1);
    }

    /// Notes that the request holds the budgets of these scopes.
    pub fn hold_budgets(&mut self, scopes: std::sync::Arc<[String]>) {
        self.holds.budgets = Some(scopes);
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

    fn mark_first_byte(&mut self) {
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

/// The SSE response for a chunk stream.
pub fn sse_response(
    chunks: ChunkStream,
    mut meter: Meter,
    include_usage: bool,
    prompt_estimate: i64,
    mut cut_off: watch::Receiver<bool>,
) -> Response {
    meter.record.streamed = 1;
    meter.recorder.metrics().streams(1);
    let cut_off = async move {
        let _ = cut_off.wait_for(|cut| *cut).await;
    };
    let body = MeteredStream {
        inner: chunks,
        cut_off: Box::pin(cut_off),
        meter: Some(meter),
        include_usage,
        usage: None,
        generated_chars: 0,
        prompt_estimate,
        finished: false,
    };
    let mut response = Response::new(HttpBody::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

struct MeteredStream {
    inner: ChunkStream,
    /// Resolves when a shutdown's grace period is over.
    cut_off: Pin<Box<dyn Future<Output = ()> + Send>>,
    meter: Option<Meter>,
    include_usage: bool,
    usage: Option<Usage>,
    generated_chars: usize,
    prompt_estimate: i64,
    finished: bool,
}

impl MeteredStream {
    /// The usage to bill: the upstream's, or else a local count, known
    /// for the reason `unreported` gives.
    fn counted(&self, unreported: TokensSource) -> Counted {
        match self.usage {
            Some(usage) => Counted::upstream(usage),
            None => Counted {
                usage: Usage::estimated(self.prompt_estimate, self.generated_chars),
                source: unreported,
            },
        }
    }

    /// Submits the record; `unreported` says why the tokens were counted
    /// locally, should the upstream not have reported them.
    fn end(
        &mut self,
        status: i32,
        error_code: Option<String>,
        aborted: bool,
        unreported: TokensSource,
    ) {
        let counted = self.counted(unreported);
        if let Some(meter) = self.meter.take() {
            meter.recorder.metrics().streams(-1);
            meter.finish(status, error_code, counted, aborted);
        }
    }

    /// Inspects a chunk; returns the bytes to send, if any.
    fn on_chunk(&mut self, mut chunk: Value) -> Option<Bytes> {
        if let Some(usage) = chunk.get("usage").and_then(Usage::from_openai) {
            self.usage = Some(usage);
            if let (Some(meter), Some(object)) = (&self.meter, chunk["usage"].as_object_mut()) {
                object.insert("cost".into(), nanos_to_usd_f64(meter.cost_of(usage)).into());
            }
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if let Some(delta) = choice.get("delta") {
                self.generated_chars += generated_chars(delta);
            }
        }
        let usage_only = choices.is_some_and(|c| c.is_empty())
            && chunk.get("usage").is_some_and(|u| !u.is_null());
        if !self.include_usage {
            if usage_only {
                return None; // The gateway asked for it; the client did not.
            }
            if let Some(object) = chunk.as_object_mut() {
                object.remove("usage");
            }
        }
        if let Some(meter) = self.meter.as_mut() {
            meter.mark_first_byte();
        }
        Some(sse_data(&chunk.to_string()))
    }
}

fn sse_data(data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 8);
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

impl Stream for MeteredStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            if self.cut_off.as_mut().poll(cx).is_ready() {
                self.finished = true;
                let err = AppError::Unavailable(
                    "The gateway is shutting down; the stream was cut short.".into(),
                );
                self.end(
                    err.status() as i32,
                    Some("shutdown".into()),
                    true,
                    TokensSource::Shutdown,
                );
                return Poll::Ready(Some(Ok(sse_data(&err.to_openai_json().to_string()))));
            }
            match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(bytes) = self.on_chunk(chunk) {
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    self.finished = true;
                    if let Some(meter) = &self.meter {
                        let provider = meter.record.provider.as_deref().unwrap_or_default();
                        let now = crate::db::now_ms();
                        meter.recorder.metrics().upstream_error(provider, &err, now);
                    }
                    let err = upstream_to_app(err);
                    tracing::warn!(error = %err, "stream failed mid-way");
                    let code = Some(err.code().to_string());
                    self.end(err.status() as i32, code, true, TokensSource::UpstreamCut);
                    return Poll::Ready(Some(Ok(sse_data(&err.to_openai_json().to_string()))));
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    self.end(200, None, false, TokensSource::LocalCount);
                    return Poll::Ready(Some(Ok(Bytes::from_static(b"data: [DONE]\n\n"))));
                }
            }
        }
    }
}

impl Drop for MeteredStream {
    /// The body was dropped before the end: the client went away.
    fn drop(&mut self) {
        if self.meter.is_some() {
            self.end(
                CLIENT_CLOSED,
                Some("client_closed".into()),
                true,
                TokensSource::ClientAborted,
            );
        }
    }
}

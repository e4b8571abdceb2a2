//! Routing a request admitted to spend: its targets (the model and its
//! fallbacks, priced), its reservation, the calls with retries, and the
//! record of a complete answer. Every door routes its chat-shaped request
//! here.

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{stream, StreamExt};
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};

use super::limits::{admit_rate, Limits, RateStatus};
use crate::billing::estimate::{self, ImageRule};
use crate::billing::meter::{Counted, Meter};
use crate::billing::money::nanos_to_usd_f64;
use crate::billing::pricing::Quote;
use crate::billing::reservation::reserve;
use crate::error::AppError;
use crate::providers::router::Target;
use crate::providers::{Body, ChunkStream, Completion, UpstreamError, Usage};
use crate::state::AppState;

/// A request admitted to spend: the targets it may go to, its prompt's
/// estimate, and where its key stands against its rate limits.
pub(super) struct Admitted {
    pub targets: Vec<Priced>,
    pub prompt_tokens: i64,
    pub rate: Option<RateStatus>,
}

/// Admits a chat-shaped request: its model resolved to targets the caller
/// may use, its rate limits and its reservation taken. From here on, the
/// meter counts it as sent upstream.
pub(super) async fn admit(
    state: &AppState,
    body: &Body,
    meter: &mut Meter,
    limits: &Limits,
) -> Result<Admitted, AppError> {
    let model = requested_model(body)?;
    let primary = state.models.resolve(model)?;
    meter.target(&primary);
    let targets = allowed_targets(state, limits, primary, meter)?;
    let prompt_tokens = prompt_estimate(body, &targets);
    let rate = admit_rate(state, limits, meter, prompt_tokens).await?;
    let max_output = max_output(state, body);
    reserve(
        &state.recorder,
        &limits.budgets,
        meter,
        prompt_tokens,
        max_output,
    )
    .await?;
    meter.sent_upstream(prompt_tokens);
    Ok(Admitted {
        targets,
        prompt_tokens,
        rate,
    })
}

/// Waits for a stream's first chunk and puts it back in front, so that a
/// stream that fails before anything reaches the client (a connection that
/// breaks, an error event first) is retried or falls back like a failed
/// request, and the client gets an HTTP error rather than a broken stream.
/// A stream that ends with nothing in it failed too.
pub(super) async fn with_first_chunk(
    mut chunks: ChunkStream,
) -> Result<ChunkStream, UpstreamError> {
    match chunks.next().await {
        Some(Err(err)) => Err(err),
        Some(Ok(first)) => Ok(stream::iter([Ok(first)]).chain(chunks).boxed()),
        None => Err(UpstreamError::Truncated),
    }
}

/// Records the usage of a complete response and reports its cost in
/// `usage.cost`. An answer without usage is billed on a local count.
pub(super) fn finish_with_cost(
    meter: &mut Meter,
    completion: Completion,
    prompt_estimate: i64,
) -> Response {
    let counted = counted(completion.usage(), prompt_estimate, || {
        completion.generated_chars()
    });
    let cost = meter.cost_of(counted.usage);
    let body = completion.into_body(nanos_to_usd_f64(cost));
    finish_json(meter, counted, body)
}

/// The usage to bill a complete answer: what it reports, or else a local
/// count of the prompt's estimate and the characters it generated.
pub(super) fn counted(
    reported: Option<Usage>,
    prompt_estimate: i64,
    generated_chars: impl FnOnce() -> usize,
) -> Counted {
    match reported {
        Some(usage) => Counted::upstream(usage),
        None => Counted::locally(Usage::estimated(prompt_estimate, generated_chars())),
    }
}

/// Records a complete answer, billed as `counted`, and sends its JSON.
pub(super) fn finish_json(meter: &mut Meter, counted: Counted, body: Bytes) -> Response {
    meter.take().finish(200, None, counted, false);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A target the request may go to, and the prices there.
pub(super) struct Priced {
    pub target: Target,
    price: Quote,
}

impl Priced {
    /// Bills the request to this target, the one that answered, at its own
    /// price: the reservation was made at the dearest of the model and its
    /// fallbacks, but the charge is what was used.
    pub(super) fn bill(&self, meter: &mut Meter) {
        meter.target(&self.target);
        meter.set_price(self.price);
    }
}

/// Keeps the targets that have a price; the primary must have one. The
/// request is reserved at the dearest of them (a fallback may cost more).
fn priced_targets(
    state: &AppState,
    targets: Vec<Target>,
    meter: &mut Meter,
) -> Result<Vec<Priced>, AppError> {
    let mut priced: Vec<Priced> = Vec::with_capacity(targets.len());
    for target in targets {
        let Some(price) = state.prices.quote(&target.key()) else {
            if priced.is_empty() {
                return Err(AppError::Forbidden(format!(
                    "The model `{}` has no price on this gateway, so it cannot be called.",
                    target.key()
                )));
            }
            continue;
        };
        priced.push(Priced { target, price });
    }
    let dearest = priced.iter().map(|p| p.price).reduce(Quote::max);
    if let Some(dearest) = dearest {
        meter.set_price(dearest);
    }
    Ok(priced)
}

/// The model and its fallbacks that the key may call and that have a price;
/// 403 when the model itself is not allowed or has no price.
pub(super) fn allowed_targets(
    state: &AppState,
    limits: &Limits,
    primary: Target,
    meter: &mut Meter,
) -> Result<Vec<Priced>, AppError> {
    limits.check_model(&primary.provider.name, &primary.model)?;
    let mut targets = state.models.with_fallbacks(primary);
    targets.retain(|t| limits.allows(&t.provider.name, &t.model));
    priced_targets(state, targets, meter)
}

/// The most output tokens the request may generate, across all its
/// choices: what its reservation covers.
fn max_output(state: &AppState, body: &Body) -> i64 {
    let per_choice = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_i64)
        .filter(|n| *n > 0)
        .unwrap_or(state.config.reserve_output_tokens);
    let choices = body
        .get("n")
        .and_then(Value::as_i64)
        .filter(|n| *n > 1)
        .unwrap_or(1);
    per_choice.saturating_mul(choices)
}

/// The model the body asks for (the body was checked; this is its guard).
pub(super) fn requested_model(body: &Body) -> Result<&str, AppError> {
    body.get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::invalid("model", "`model` is required and must be a string."))
}

/// The prompt's tokens by the dearest of the targets' rules (see
/// `billing::estimate`): what the reservation covers, and the local count
/// if the upstream never reports usage.
pub(super) fn prompt_estimate(body: &Body, targets: &[Priced]) -> i64 {
    let rules: Vec<ImageRule> = targets
        .iter()
        .map(|p| ImageRule::for_target(p.target.provider.kind, &p.target.model))
        .collect();
    estimate::prompt_tokens(body, &rules)
}

/// Calls each target in turn (the model, then its fallbacks), retrying
/// retryable failures with exponential backoff. A client error (4xx other
/// than 429) is returned at once: another provider would refuse it too.
pub(super) async fn with_retries<'t, T, F, Fut>(
    state: &AppState,
    targets: &'t [Priced],
    mut call: F,
) -> Result<(&'t Priced, T), AppError>
where
    F: FnMut(Target) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let retries = state.config.upstream.max_retries;
    let backoff = Duration::from_millis(state.config.upstream.retry_backoff_ms);
    let mut last = None;
    for priced in targets {
        let target = &priced.target;
        for attempt in 0..=retries {
            let started = Instant::now();
            match call(target.clone()).await {
                Ok(value) => return Ok((priced, value)),
                Err(err) => {
                    let metrics = state.recorder.metrics();
                    metrics.upstream_error(&target.provider.name, &err, state.clock.now_ms());
                    tracing::warn!(
                        provider = %target.provider.name, model = %target.model, attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64, error = %err,
                        "upstream call failed"
                    );
                    if err.is_gateway_credentials() {
                        last = Some(err);
                        break; // The next provider may take the request.
                    }
                    if !err.is_retryable() {
                        return Err(AppError::from(err));
                    }
                    last = Some(err);
                    if attempt < retries {
                        tokio::time::sleep(backoff * 2u32.pow(attempt)).await;
                    }
                }
            }
        }
    }
    Err(AppError::from(last.unwrap_or(UpstreamError::Connect(
        "no provider to call".into(),
    ))))
}

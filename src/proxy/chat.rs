//! `POST /v1/chat/completions` and `POST /v1/embeddings`.

use axum::body::{Body as HttpBody, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures::{stream, StreamExt};
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};

use super::auth::billed_user;
use super::idempotency::{self, Begin, Held};
use super::limits::{admit_rate, current_rate, Limits, RateStatus};
use super::stream::sse_response;
use super::{parse_body, validate, Caller, RequestIds};
use crate::billing::estimate::{self, ImageRule};
use crate::billing::meter::{Counted, Meter};
use crate::billing::money::nanos_to_usd_f64;
use crate::billing::pricing::Quote;
use crate::billing::reservation::reserve;
use crate::config::ProviderKind;
use crate::error::AppError;
use crate::providers::router::Target;
use crate::providers::{Body, ChunkStream, Completion, UpstreamError, Usage};
use crate::state::AppState;

/// Chat completions, streaming or not, routed to the model's provider.
pub async fn chat_completions(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let ids = RequestIds::new(&headers);
    let result = chat(&state, &caller, &ids, &headers, request.into_body()).await;
    respond(&state, &caller, &ids, result).await
}

/// The dashboard playground's chat: the same request, billed to the
/// signed-in user instead of a key.
pub async fn session_chat(state: &AppState, user_id: String, body: HttpBody) -> Response {
    let headers = HeaderMap::new();
    let ids = RequestIds::new(&headers);
    let caller = Caller::Session { user_id };
    let result = chat(state, &caller, &ids, &headers, body).await;
    respond(state, &caller, &ids, result).await
}

/// Embeddings, for OpenAI-compatible providers.
pub async fn embeddings(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let ids = RequestIds::new(&headers);
    let result = embed(&state, &caller, &ids, &headers, request.into_body()).await;
    respond(&state, &caller, &ids, result).await
}

/// The response, or the error in OpenAI's shape, with the request's ids and,
/// for a key with rate limits, where it stands against them, either way.
async fn respond(
    state: &AppState,
    caller: &Caller,
    ids: &RequestIds,
    result: Result<Response, AppError>,
) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    ids.apply(response.headers_mut());
    if let Caller::Key { key_id, policy, .. } = caller {
        if !RateStatus::is_in(response.headers()) {
            // Not answered after its admission (a bad body, a refusal, an
            // upstream error): report where the key stands now.
            if let Some(rate) = current_rate(state, key_id, policy).await {
                rate.apply(response.headers_mut());
            }
        }
    }
    response
}

/// Adds where the key stands to an answer (see `limits::admit_rate`).
fn with_rate(
    result: Result<Response, AppError>,
    rate: Option<RateStatus>,
) -> Result<Response, AppError> {
    result.map(|mut response| {
        if let Some(rate) = rate {
            rate.apply(response.headers_mut());
        }
        response
    })
}

/// What a spending route checks its body against (see `validate`).
type Check = fn(&Body) -> Result<(), AppError>;

/// A request read and checked, with who pays for it and under what limits.
struct Prepared {
    body: Body,
    /// The body as it came, byte for byte (for `Idempotency-Key`).
    raw: Bytes,
    meter: Meter,
    limits: Limits,
}

/// Reads, parses and checks the body, then finds who pays for the request
/// and what limits it is under. A key's requests are metered from the
/// start, so even a bad body leaves a record; nothing is reserved or sent
/// before the body passes `check`.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    ids: &RequestIds,
    headers: &HeaderMap,
    body: HttpBody,
    endpoint: &str,
    check: Check,
) -> Result<Prepared, AppError> {
    let known_payer = match caller {
        Caller::Key {
            user_id, key_id, ..
        } => Some((user_id.clone(), Some(key_id.clone()))),
        Caller::Session { user_id } => Some((user_id.clone(), None)),
        Caller::Master => None,
    };
    let mut early_meter = known_payer.map(|(user_id, key_id)| {
        Meter::new(
            state.recorder.clone(),
            ids.pair(),
            user_id,
            key_id,
            endpoint,
        )
    });
    let read = read_checked(state, headers, body, check).await;
    let (raw, body) = match (read, early_meter.as_mut()) {
        (Ok(read), _) => read,
        (Err(err), Some(meter)) => {
            meter.fail(&err);
            return Err(err);
        }
        (Err(err), None) => return Err(err),
    };
    if let Some(mut meter) = early_meter {
        let limits = match caller {
            Caller::Key { policy, .. } => Ok(Limits::of_key(policy.clone())),
            _ => Limits::of_user(state, meter.user_id()).await,
        };
        return match limits {
            Ok(limits) => Ok(Prepared {
                body,
                raw,
                meter,
                limits,
            }),
            Err(err) => {
                meter.fail(&err);
                Err(err)
            }
        };
    }
    let (user_id, key_id) =
        billed_user(caller, body.get("user").and_then(Value::as_str), state).await?;
    let limits = Limits::of_user(state, &user_id).await?;
    let meter = Meter::new(
        state.recorder.clone(),
        ids.pair(),
        user_id,
        key_id,
        endpoint,
    );
    Ok(Prepared {
        body,
        raw,
        meter,
        limits,
    })
}

/// A JSON body (415 for another content type), read within the size
/// limit, parsed and checked: its bytes and its fields.
async fn read_checked(
    state: &AppState,
    headers: &HeaderMap,
    body: HttpBody,
    check: Check,
) -> Result<(Bytes, Body), AppError> {
    validate::json_content_type(headers)?;
    let (raw, body) = read_json(body, state.config.max_request_bytes).await?;
    check(&body)?;
    Ok((raw, body))
}

/// Claims the request's `Idempotency-Key`, if it sent one; a repeat of an
/// answered request gets the kept answer, and its meter records nothing
/// (it is neither billed nor sent upstream).
async fn claim_key(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    prepared: &mut Prepared,
) -> Result<Begin, AppError> {
    if !headers.contains_key(idempotency::HEADER) {
        return Ok(Begin::Proceed(None));
    }
    let meter = &mut prepared.meter;
    let endpoint = meter.endpoint().to_string();
    let begun = idempotency::begin(
        state,
        caller,
        headers,
        &endpoint,
        &prepared.raw,
        meter.user_id(),
        meter.request_id(),
    )
    .await;
    match begun {
        Ok(Begin::Replay(response)) => {
            meter.discard();
            Ok(Begin::Replay(response))
        }
        Ok(begin) => Ok(begin),
        Err(err) => {
            meter.fail(&err);
            Err(err)
        }
    }
}

/// The answer, kept for its idempotency key if it has one.
async fn keep_answer(
    held: Option<Held>,
    result: Result<Response, AppError>,
) -> Result<Response, AppError> {
    match held {
        Some(held) => held.finish(result).await,
        None => result,
    }
}

/// Reads up to `limit` bytes of JSON object: 413 past the limit, 400 for a
/// body that breaks off or is not one.
async fn read_json(body: HttpBody, limit: usize) -> Result<(Bytes, Body), AppError> {
    let bytes = axum::body::to_bytes(body, limit + 1).await.map_err(|err| {
        if err.into_inner().is::<http_body_util::LengthLimitError>() {
            AppError::PayloadTooLarge(format!(
                "The request body is over the limit of {limit} bytes."
            ))
        } else {
            AppError::Validation {
                field: None,
                message: "The request body could not be read in full.".into(),
            }
        }
    })?;
    let parsed = parse_body(&bytes, limit)?;
    Ok((bytes, parsed))
}

async fn chat(
    state: &AppState,
    caller: &Caller,
    ids: &RequestIds,
    headers: &HeaderMap,
    body: HttpBody,
) -> Result<Response, AppError> {
    let endpoint = match caller {
        Caller::Session { .. } => "playground",
        _ => "chat.completions",
    };
    let request = Spending::new(ids, headers, endpoint, validate::chat_request);
    spend(state, caller, request, body, async |body, meter, limits| {
        route_chat(state, body, meter, limits).await
    })
    .await
}

/// A request to a route that spends: its ids and headers, its name in
/// usage records, and what its body is checked against.
struct Spending<'a> {
    ids: &'a RequestIds,
    headers: &'a HeaderMap,
    endpoint: &'a str,
    check: Check,
}

impl<'a> Spending<'a> {
    fn new(ids: &'a RequestIds, headers: &'a HeaderMap, endpoint: &'a str, check: Check) -> Self {
        Self {
            ids,
            headers,
            endpoint,
            check,
        }
    }
}

/// Runs a spending request from its body to its answer: read and checked,
/// its idempotency key claimed (or its kept answer replayed), answered by
/// `answer`, recorded if that failed, and its answer kept for the key.
async fn spend(
    state: &AppState,
    caller: &Caller,
    request: Spending<'_>,
    body: HttpBody,
    answer: impl AsyncFnOnce(&Body, &mut Meter, &Limits) -> Result<Response, AppError>,
) -> Result<Response, AppError> {
    let Spending {
        ids,
        headers,
        endpoint,
        check,
    } = request;
    let mut prepared = prepare(state, caller, ids, headers, body, endpoint, check).await?;
    let held = match claim_key(state, caller, headers, &mut prepared).await? {
        Begin::Replay(response) => return Ok(response),
        Begin::Proceed(held) => held,
    };
    let Prepared {
        body,
        mut meter,
        limits,
        ..
    } = prepared;
    let result = answer(&body, &mut meter, &limits).await;
    if let Err(err) = &result {
        meter.fail(err);
    }
    keep_answer(held, result).await
}

async fn route_chat(
    state: &AppState,
    body: &Body,
    meter: &mut Meter,
    limits: &Limits,
) -> Result<Response, AppError> {
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
    with_rate(
        forward_chat(state, body, meter, &targets, prompt_tokens).await,
        rate,
    )
}

/// Sends a chat request to the first target that answers, streamed or not.
async fn forward_chat(
    state: &AppState,
    body: &Body,
    meter: &mut Meter,
    targets: &[Priced],
    prompt_tokens: i64,
) -> Result<Response, AppError> {
    if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        let include_usage = body
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (answered, chunks) = with_retries(state, targets, |t| async move {
            with_first_chunk(t.provider.client.chat_stream(body, &t.model).await?).await
        })
        .await?;
        answered.bill(meter);
        Ok(sse_response(
            chunks,
            meter.take(),
            include_usage,
            prompt_tokens,
            state.cut_off.clone(),
        ))
    } else {
        let (answered, response) = with_retries(state, targets, |t| async move {
            t.provider.client.chat(body, &t.model).await
        })
        .await?;
        answered.bill(meter);
        Ok(finish_with_cost(meter, response, prompt_tokens))
    }
}

/// Waits for a stream's first chunk and puts it back in front, so that a
/// stream that fails before anything reaches the client (a connection that
/// breaks, an error event first) is retried or falls back like a failed
/// request, and the client gets an HTTP error rather than a broken stream.
/// A stream that ends with nothing in it failed too.
async fn with_first_chunk(mut chunks: ChunkStream) -> Result<ChunkStream, UpstreamError> {
    match chunks.next().await {
        Some(Err(err)) => Err(err),
        Some(Ok(first)) => Ok(stream::iter([Ok(first)]).chain(chunks).boxed()),
        None => Err(UpstreamError::Truncated),
    }
}

/// Records the usage of a complete response and reports its cost in
/// `usage.cost`. An answer without usage is billed on a local count.
fn finish_with_cost(meter: &mut Meter, completion: Completion, prompt_estimate: i64) -> Response {
    let counted = match completion.usage() {
        Some(usage) => Counted::upstream(usage),
        None => Counted::locally(Usage::estimated(
            prompt_estimate,
            completion.generated_chars(),
        )),
    };
    let cost = meter.cost_of(counted.usage);
    let body = completion.into_body(nanos_to_usd_f64(cost));
    meter.take().finish(200, None, counted, false);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A target the request may go to, and the prices there.
struct Priced {
    target: Target,
    price: Quote,
}

impl Priced {
    /// Bills the request to this target, the one that answered, at its own
    /// price: the reservation was made at the dearest of the model and its
    /// fallbacks, but the charge is what was used.
    fn bill(&self, meter: &mut Meter) {
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
fn allowed_targets(
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

async fn embed(
    state: &AppState,
    caller: &Caller,
    ids: &RequestIds,
    headers: &HeaderMap,
    body: HttpBody,
) -> Result<Response, AppError> {
    let request = Spending::new(ids, headers, "embeddings", validate::embeddings_request);
    spend(state, caller, request, body, async |body, meter, limits| {
        route_embeddings(state, body, meter, limits).await
    })
    .await
}

async fn route_embeddings(
    state: &AppState,
    body: &Body,
    meter: &mut Meter,
    limits: &Limits,
) -> Result<Response, AppError> {
    let model = requested_model(body)?;
    let target = state.models.resolve(model)?;
    meter.target(&target);
    if target.provider.kind != ProviderKind::Openai {
        return Err(AppError::invalid(
            "model",
            format!(
                "Embeddings are available from OpenAI-compatible providers; `{}` is not one.",
                target.provider.name
            ),
        ));
    }
    let targets = allowed_targets(state, limits, target, meter)?;
    let input_tokens = estimate::embedding_tokens(body.get("input").unwrap_or(&Value::Null));
    let rate = admit_rate(state, limits, meter, input_tokens).await?;
    reserve(&state.recorder, &limits.budgets, meter, input_tokens, 0).await?;
    meter.sent_upstream(input_tokens);
    let (answered, response) = with_retries(state, &targets, |t| async move {
        t.provider.client.embeddings(body, &t.model).await
    })
    .await?;
    answered.bill(meter);
    with_rate(Ok(finish_with_cost(meter, response, input_tokens)), rate)
}

/// The model the body asks for (the body was checked; this is its guard).
fn requested_model(body: &Body) -> Result<&str, AppError> {
    body.get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::invalid("model", "`model` is required and must be a string."))
}

/// The prompt's tokens by the dearest of the targets' rules (see
/// `billing::estimate`): what the reservation covers, and the local count
/// if the upstream never reports usage.
fn prompt_estimate(body: &Body, targets: &[Priced]) -> i64 {
    let rules: Vec<ImageRule> = targets
        .iter()
        .map(|p| ImageRule::for_target(p.target.provider.kind, &p.target.model))
        .collect();
    estimate::prompt_tokens(body, &rules)
}

/// Calls each target in turn (the model, then its fallbacks), retrying
/// retryable failures with exponential backoff. A client error (4xx other
/// than 429) is returned at once: another provider would refuse it too.
async fn with_retries<'t, T, F, Fut>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    #[tokio::test]
    async fn a_body_that_breaks_off_is_a_bad_request_and_a_long_one_too_large() {
        let parts: [Result<Bytes, std::io::Error>; 2] = [
            Ok(Bytes::from_static(b"{\"model\"")),
            Err(std::io::Error::other("connection reset")),
        ];
        let broken = HttpBody::from_stream(stream::iter(parts));
        let err = read_json(broken, 100).await.unwrap_err();
        assert_eq!(err.status(), 400, "{err}");

        let long = HttpBody::from(format!("{{\"a\":\"{}\"}}", "x".repeat(200)));
        let err = read_json(long, 100).await.unwrap_err();
        assert_eq!(err.status(), 413, "{err}");

        let fine = HttpBody::from(r#"{"model":"m"}"#);
        assert_eq!(read_json(fine, 100).await.unwrap().1["model"], "m");
    }
}

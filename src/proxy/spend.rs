//! The life of a request that spends, whatever its door: its body read
//! and checked, who pays and under what limits, its idempotency key, and
//! its answer or error in the caller's API shape with the request's ids.

use axum::body::{Body as HttpBody, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::auth::billed_user;
use super::idempotency::{self, Begin, Held};
use super::limits::{current_rate, Limits, RateStatus};
use super::{parse_body, validate, Caller, RequestIds};
use crate::billing::meter::Meter;
use crate::error::{AppError, ErrorShape};
use crate::providers::Body;
use crate::state::AppState;

/// The response, or the error in OpenAI's shape, with the request's ids and,
/// for a key with rate limits, where it stands against them, either way.
pub(super) async fn respond(
    state: &AppState,
    caller: &Caller,
    ids: &RequestIds,
    result: Result<Response, AppError>,
) -> Response {
    respond_shaped(state, Some(caller), ids, result, ErrorShape::OpenAi).await
}

/// [`respond`], with an error in `shape`; a request refused before its
/// caller was known (`None`) reports no rate limits.
pub(super) async fn respond_shaped(
    state: &AppState,
    caller: Option<&Caller>,
    ids: &RequestIds,
    result: Result<Response, AppError>,
    shape: ErrorShape,
) -> Response {
    let mut response = result.unwrap_or_else(|err| err.into_response_shaped(shape));
    ids.apply(response.headers_mut());
    if let Some(Caller::Key { key_id, policy, .. }) = caller {
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
pub(super) fn with_rate(
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

/// Where a body names the user the master key bills.
type UserField = fn(&Body) -> Option<&str>;

/// The `user` of a chat, embeddings or Responses body.
fn top_level_user(body: &Body) -> Option<&str> {
    body.get("user").and_then(Value::as_str)
}

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
    (check, user_field): (Check, UserField),
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
    let (user_id, key_id) = billed_user(caller, user_field(&body), state).await?;
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
pub(super) async fn read_checked(
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
pub(super) async fn read_json(body: HttpBody, limit: usize) -> Result<(Bytes, Body), AppError> {
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

/// A request to a route that spends: its ids and headers, its name in
/// usage records, what its body is checked against, and where the body
/// names the user the master key bills.
pub(super) struct Spending<'a> {
    ids: &'a RequestIds,
    headers: &'a HeaderMap,
    endpoint: &'a str,
    check: Check,
    user_field: UserField,
}

impl<'a> Spending<'a> {
    pub(super) fn new(
        ids: &'a RequestIds,
        headers: &'a HeaderMap,
        endpoint: &'a str,
        check: Check,
    ) -> Self {
        Self {
            ids,
            headers,
            endpoint,
            check,
            user_field: top_level_user,
        }
    }

    /// The same, with the billed user read from `user_field`.
    pub(super) fn billing_user_from(mut self, user_field: UserField) -> Self {
        self.user_field = user_field;
        self
    }
}

/// Runs a spending request from its body to its answer: read and checked,
/// its idempotency key claimed (or its kept answer replayed), answered by
/// `answer`, recorded if that failed, and its answer kept for the key.
pub(super) async fn spend(
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
        user_field,
    } = request;
    let checks = (check, user_field);
    let mut prepared = prepare(state, caller, ids, headers, body, endpoint, checks).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

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

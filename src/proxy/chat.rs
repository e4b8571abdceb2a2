//! `POST /v1/chat/completions` and `POST /v1/embeddings`.

use axum::body::Body as HttpBody;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::limits::{admit_rate, Limits};
use super::route::{
    admit, allowed_targets, finish_with_cost, requested_model, with_first_chunk, with_retries,
    Admitted, Priced,
};
use super::spend::{respond, spend, with_rate, Spending};
use super::stream::{sse_response, ChatChunks};
use super::{validate, Caller, RequestIds};
use crate::billing::estimate;
use crate::billing::meter::Meter;
use crate::billing::reservation::reserve;
use crate::config::ProviderKind;
use crate::error::AppError;
use crate::providers::Body;
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

async fn route_chat(
    state: &AppState,
    body: &Body,
    meter: &mut Meter,
    limits: &Limits,
) -> Result<Response, AppError> {
    let Admitted {
        targets,
        prompt_tokens,
        rate,
    } = admit(state, body, meter, limits).await?;
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
            Box::new(ChatChunks { include_usage }),
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

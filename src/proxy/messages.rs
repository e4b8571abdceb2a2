//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's
//! Messages API. An Anthropic upstream gets the body as it was sent; any
//! other gets it translated to chat (`dialects::anthropic`), and its answer
//! comes back in Anthropic's shape. Either way the request is admitted,
//! reserved and billed on the chat route's path. Errors are Anthropic's.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::limits::Limits;
use super::route::{
    admit, counted, finish_json, requested_model, with_first_chunk, with_retries, Admitted,
};
use super::spend::{read_checked, respond_shaped, spend, with_rate, Spending};
use super::stream::{events_bytes, sse_event, sse_response, Frames, Tally};
use super::{validate, Caller, RequestIds};
use crate::billing::estimate::{self, ImageRule};
use crate::billing::meter::Meter;
use crate::config::ProviderKind;
use crate::dialects::anthropic::{self, ChatRequest, ChatToEvents};
use crate::error::{AppError, ErrorShape};
use crate::providers::router::Target;
use crate::providers::{Body, ChunkStream, Completion, NativeMessages, Usage};
use crate::state::AppState;

/// Messages, streaming or not, routed to the model's provider.
pub async fn messages(
    caller: Result<Caller, AppError>,
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let ids = RequestIds::new(&headers);
    let result = match &caller {
        Ok(caller) => answer(&state, caller, &ids, &headers, request).await,
        Err(err) => Err(err.clone()),
    };
    respond_shaped(
        &state,
        caller.as_ref().ok(),
        &ids,
        result,
        ErrorShape::Anthropic,
    )
    .await
}

/// The `user_id` in a Messages body's `metadata`: the user the master key bills.
fn metadata_user(body: &Body) -> Option<&str> {
    body.get("metadata")?.get("user_id")?.as_str()
}

async fn answer(
    state: &AppState,
    caller: &Caller,
    ids: &RequestIds,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, AppError> {
    let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
    let spending = Spending::new(ids, headers, "messages", validate::messages_request)
        .billing_user_from(metadata_user);
    spend(
        state,
        caller,
        spending,
        request.into_body(),
        async |body, meter, limits| {
            let chat = anthropic::to_chat(body);
            let mut admitted = admit(state, &chat.body, meter, limits).await?;
            if let Some(reason) = &chat.unsupported {
                // Only an Anthropic upstream takes what has no chat counterpart.
                admitted.targets.retain(|t| Call::is_native(&t.target));
                if admitted.targets.is_empty() {
                    return Err(AppError::invalid("tools", reason.clone()));
                }
            }
            let call = Call {
                state,
                original: body,
                chat: &chat,
                beta,
                id: message_id(ids),
                model: requested_model(body)?,
            };
            let rate = admitted.rate;
            with_rate(call.forward(meter, admitted).await, rate)
        },
    )
    .await
}

/// An Anthropic message id from the request's own (`req_…` → `msg_…`).
fn message_id(ids: &RequestIds) -> String {
    format!("msg_{}", ids.own.trim_start_matches("req_"))
}

/// One admitted Messages request, as each target takes it.
struct Call<'a> {
    state: &'a AppState,
    /// The body as the client sent it, for an Anthropic upstream.
    original: &'a Body,
    /// The body in chat shape, for any other.
    chat: &'a ChatRequest,
    beta: Option<&'a str>,
    id: String,
    /// The model as the client named it, for the translated answer.
    model: &'a str,
}

/// What a target answered: Anthropic's own shape (`N`), or chat's (`C`).
enum Answer<N, C> {
    Native(N),
    Chat(C),
}

impl Call<'_> {
    fn native<'m>(&'m self, target: &'m Target) -> NativeMessages<'m> {
        NativeMessages {
            body: self.original,
            model: &target.model,
            beta: self.beta,
        }
    }

    fn is_native(target: &Target) -> bool {
        target.provider.kind == ProviderKind::Anthropic
    }

    async fn forward(&self, meter: &mut Meter, admitted: Admitted) -> Result<Response, AppError> {
        if self.original.get("stream").and_then(Value::as_bool) == Some(true) {
            self.forward_stream(meter, admitted).await
        } else {
            self.forward_whole(meter, admitted).await
        }
    }

    async fn forward_whole(
        &self,
        meter: &mut Meter,
        admitted: Admitted,
    ) -> Result<Response, AppError> {
        let (answered, answer) = with_retries(self.state, &admitted.targets, |t| async move {
            let client = &t.provider.client;
            if Self::is_native(&t) {
                return Ok(Answer::Native(client.messages(self.native(&t)).await?));
            }
            let completion = client.chat(&self.chat.body, &t.model).await?;
            Ok(Answer::Chat(completion))
        })
        .await?;
        answered.bill(meter);
        let prompt = admitted.prompt_tokens;
        Ok(match answer {
            Answer::Native(message) => {
                let reported = Usage::from_anthropic(message.get("usage"));
                let counted = counted(reported, prompt, || anthropic::generated_chars(&message));
                finish_json(meter, counted, Bytes::from(message.to_string()))
            }
            Answer::Chat(completion) => self.finish_translated(meter, completion, prompt),
        })
    }

    fn finish_translated(
        &self,
        meter: &mut Meter,
        completion: Completion,
        prompt: i64,
    ) -> Response {
        let counted = counted(completion.usage(), prompt, || completion.generated_chars());
        let message = anthropic::from_chat(
            &completion.into_value(),
            &self.id,
            self.model,
            counted.usage,
        );
        finish_json(meter, counted, Bytes::from(message.to_string()))
    }

    async fn forward_stream(
        &self,
        meter: &mut Meter,
        admitted: Admitted,
    ) -> Result<Response, AppError> {
        let (answered, answer) = with_retries(self.state, &admitted.targets, |t| async move {
            let client = &t.provider.client;
            if Self::is_native(&t) {
                let events = client.messages_stream(self.native(&t)).await?;
                return Ok(Answer::Native(with_first_chunk(events).await?));
            }
            let chunks = client.chat_stream(&self.chat.body, &t.model).await?;
            Ok(Answer::Chat(with_first_chunk(chunks).await?))
        })
        .await?;
        answered.bill(meter);
        let prompt = admitted.prompt_tokens;
        let (items, frames): (ChunkStream, Box<dyn Frames>) = match answer {
            Answer::Native(events) => (events, Box::new(NativeEvents)),
            Answer::Chat(chunks) => {
                let events = ChatToEvents::new(&self.id, self.model, prompt);
                (chunks, Box::new(EventsFromChat(events)))
            }
        };
        let cut_off = self.state.cut_off.clone();
        Ok(sse_response(items, meter.take(), frames, prompt, cut_off))
    }
}

/// An Anthropic upstream's events, passed on as they came.
struct NativeEvents;

impl Frames for NativeEvents {
    fn item(&mut self, event: Value, tally: &mut Tally, _: Option<&Meter>) -> Option<Bytes> {
        anthropic::read_usage(&event, &mut tally.usage);
        tally.generated_chars += anthropic::generated_chars(&event);
        Some(sse_event(&event))
    }

    fn end(
        &mut self,
        _billed: Usage,
    ) -> (
        Option<Bytes>,
        Option<futures::future::BoxFuture<'static, ()>>,
    ) {
        (None, None) // `message_stop` has been sent
    }

    fn failed(&mut self, err: &AppError) -> Bytes {
        sse_event(&err.to_anthropic_json())
    }
}

/// Chat chunks, translated to Anthropic's events.
struct EventsFromChat(ChatToEvents);

impl Frames for EventsFromChat {
    fn item(&mut self, chunk: Value, tally: &mut Tally, _: Option<&Meter>) -> Option<Bytes> {
        tally.read_chunk(&chunk);
        events_bytes(self.0.on_chunk(&chunk))
    }

    fn end(
        &mut self,
        billed: Usage,
    ) -> (
        Option<Bytes>,
        Option<futures::future::BoxFuture<'static, ()>>,
    ) {
        (events_bytes(self.0.finish(billed)), None)
    }

    fn failed(&mut self, err: &AppError) -> Bytes {
        sse_event(&err.to_anthropic_json())
    }
}

/// `POST /v1/messages/count_tokens`: an Anthropic upstream's own count, or
/// else the gateway's local estimate (the one its reservations use). It
/// costs nothing and leaves no usage record.
pub async fn count_tokens(
    caller: Result<Caller, AppError>,
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let result = match caller {
        Ok(caller) => count(&state, &caller, &headers, request).await,
        Err(err) => Err(err),
    };
    result.unwrap_or_else(|err| err.into_response_shaped(ErrorShape::Anthropic))
}

async fn count(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, AppError> {
    let check = validate::count_tokens_request;
    let (_, body) = read_checked(state, headers, request.into_body(), check).await?;
    let target = state.models.resolve(requested_model(&body)?)?;
    if let Caller::Key { policy, .. } = caller {
        Limits::of_key(policy.clone()).check_model(&target.provider.name, &target.model)?;
    }
    if target.provider.kind == ProviderKind::Anthropic {
        let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
        let request = NativeMessages {
            body: &body,
            model: &target.model,
            beta,
        };
        let counted = target.provider.client.count_tokens(request).await?;
        return Ok(Json(counted).into_response());
    }
    let chat = anthropic::to_chat(&body);
    let rule = ImageRule::for_target(target.provider.kind, &target.model);
    let tokens = estimate::prompt_tokens(&chat.body, &[rule]);
    Ok(Json(json!({"input_tokens": tokens})).into_response())
}

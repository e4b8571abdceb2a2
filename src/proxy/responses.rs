//! `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`: OpenAI's
//! Responses API. Every request is translated to chat
//! (`dialects::responses`), admitted, reserved and billed on the chat
//! route's path, and its answer translated back. With `store` (OpenAI's
//! default), the response and its conversation are kept for 30 days,
//! readable only by the user whose key made it, and continued with
//! `previous_response_id`.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::route::{
    admit, counted, finish_json, requested_model, with_first_chunk, with_retries, Admitted,
};
use super::spend::{respond, spend, with_rate, Spending};
use super::stream::{events_bytes, sse_response, Frames, Tally};
use super::{validate, Caller, RequestIds};
use crate::billing::meter::Meter;
use crate::db::{self, responses::NewResponse, Db};
use crate::dialects::responses::{self, ChatToEvents, Header};
use crate::error::AppError;
use crate::providers::{Body, Usage};
use crate::state::AppState;

/// How long a stored response is kept.
const KEPT_FOR_MS: i64 = 30 * 24 * 3600 * 1000;

/// Creates a response, streamed or not.
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let ids = RequestIds::new(&headers);
    let result = answer(&state, &caller, &ids, &headers, request).await;
    respond(&state, &caller, &ids, result).await
}

async fn answer(
    state: &AppState,
    caller: &Caller,
    ids: &RequestIds,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, AppError> {
    let spending = Spending::new(ids, headers, "responses", validate::responses_request);
    spend(
        state,
        caller,
        spending,
        request.into_body(),
        async |body, meter, limits| {
            let previous = body.get("previous_response_id").and_then(Value::as_str);
            let mut conversation = match previous {
                Some(id) => earlier_conversation(state, meter.user_id(), id).await?,
                None => Vec::new(),
            };
            let chat = responses::to_chat(body, &conversation);
            if let Some(reason) = chat.unsupported {
                return Err(AppError::invalid("tools", reason));
            }
            let admitted = admit(state, &chat.body, meter, limits).await?;
            let header = Header {
                id: format!("resp_{}", ids.own.trim_start_matches("req_")),
                model: requested_model(body)?.to_string(),
                created_at: state.clock.now_secs(),
                echo: responses::echoed(body, previous),
                custom_tools: responses::custom_tool_names(body),
            };
            conversation.extend(responses::input_items(body));
            let keep = responses::stores(body).then(|| Keep {
                db: state.db.clone(),
                user_id: meter.user_id().to_string(),
                key_id: meter.key_id().map(str::to_owned),
                conversation,
                created_at: state.clock.now_ms(),
            });
            let rate = admitted.rate;
            let call = Call {
                state,
                chat: &chat.body,
                header,
                keep,
            };
            with_rate(call.forward(meter, admitted).await, rate)
        },
    )
    .await
}

/// The conversation a stored response ends: 404 if the user has none by that id.
async fn earlier_conversation(
    state: &AppState,
    user_id: &str,
    id: &str,
) -> Result<Vec<Value>, AppError> {
    let stored = db::responses::find(&state.db, id, user_id, state.clock.now_ms())
        .await?
        .ok_or_else(|| not_found(id))?;
    serde_json::from_str(&stored.conversation).map_err(|err| {
        tracing::error!(%err, id, "a stored conversation does not parse");
        AppError::Internal
    })
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("No response with id `{id}` was found."))
}

/// What keeping a response needs: where, whose, and the items before its output.
struct Keep {
    db: Db,
    user_id: String,
    key_id: Option<String>,
    conversation: Vec<Value>,
    created_at: i64,
}

impl Keep {
    /// Stores the finished response with its conversation. A failure is
    /// logged: the answer has been paid for, and the client still gets it.
    async fn store(self, response: Value) {
        let mut conversation = self.conversation;
        let output = response["output"].as_array().cloned().unwrap_or_default();
        conversation.extend(output);
        let id = response["id"].as_str().unwrap_or_default().to_string();
        let new = NewResponse {
            id: &id,
            user_id: &self.user_id,
            key_id: self.key_id.as_deref(),
            response: &response.to_string(),
            conversation: &Value::Array(conversation).to_string(),
            created_at: self.created_at,
            expires_at: self.created_at + KEPT_FOR_MS,
        };
        if let Err(err) = db::responses::insert(&self.db, &new).await {
            tracing::error!(%err, id, "storing a response failed");
        }
    }
}

/// One admitted Responses request.
struct Call<'a> {
    state: &'a AppState,
    chat: &'a Body,
    header: Header,
    keep: Option<Keep>,
}

impl Call<'_> {
    async fn forward(self, meter: &mut Meter, admitted: Admitted) -> Result<Response, AppError> {
        let prompt = admitted.prompt_tokens;
        let chat = self.chat;
        if chat.get("stream").and_then(Value::as_bool) == Some(true) {
            let (answered, chunks) = with_retries(self.state, &admitted.targets, |t| async move {
                with_first_chunk(t.provider.client.chat_stream(chat, &t.model).await?).await
            })
            .await?;
            answered.bill(meter);
            let frames = ResponseEvents {
                events: ChatToEvents::new(self.header),
                keep: self.keep,
            };
            let cut_off = self.state.cut_off.clone();
            return Ok(sse_response(
                chunks,
                meter.take(),
                Box::new(frames),
                prompt,
                cut_off,
            ));
        }
        let (answered, completion) = with_retries(self.state, &admitted.targets, |t| async move {
            t.provider.client.chat(chat, &t.model).await
        })
        .await?;
        answered.bill(meter);
        let counted = counted(completion.usage(), prompt, || completion.generated_chars());
        let response = responses::from_chat(&completion.into_value(), &self.header, counted.usage);
        if let Some(keep) = self.keep {
            keep.store(response.clone()).await;
        }
        Ok(finish_json(
            meter,
            counted,
            Bytes::from(response.to_string()),
        ))
    }
}

/// Chat chunks as Responses events; a complete response is stored before
/// its `response.completed` is sent.
struct ResponseEvents {
    events: ChatToEvents,
    keep: Option<Keep>,
}

impl Frames for ResponseEvents {
    fn item(&mut self, chunk: Value, tally: &mut Tally, _: Option<&Meter>) -> Option<Bytes> {
        tally.read_chunk(&chunk);
        events_bytes(self.events.on_chunk(&chunk))
    }

    fn end(&mut self, billed: Usage) -> (Option<Bytes>, Option<BoxFuture<'static, ()>>) {
        let (events, response) = self.events.finish(billed);
        let store = self
            .keep
            .take()
            .map(|keep| -> BoxFuture<'static, ()> { Box::pin(keep.store(response)) });
        (events_bytes(events), store)
    }

    fn failed(&mut self, err: &AppError) -> Bytes {
        let events = self.events.failed(err.code(), &err.to_string());
        events_bytes(events).unwrap_or_default()
    }
}

/// The user whose stored responses a caller may read: a key's or a
/// signed-in user's, never the master key's (a response is its user's).
fn reader(caller: &Caller) -> Result<&str, AppError> {
    match caller {
        Caller::Key { user_id, .. } | Caller::Session { user_id } => Ok(user_id),
        Caller::Master => Err(AppError::Forbidden(
            "Stored responses are read with the API key of the user who made them.".into(),
        )),
    }
}

/// `GET /v1/responses/{id}`: a stored response.
pub async fn get(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let user_id = reader(&caller)?;
    let stored = db::responses::find(&state.db, &id, user_id, state.clock.now_ms())
        .await?
        .ok_or_else(|| not_found(&id))?;
    let headers = [(axum::http::header::CONTENT_TYPE, "application/json")];
    Ok((headers, stored.response).into_response())
}

/// `DELETE /v1/responses/{id}`: forgets a stored response.
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let user_id = reader(&caller)?;
    if !db::responses::delete(&state.db, &id, user_id).await? {
        return Err(not_found(&id));
    }
    let body = json!({"id": id, "object": "response.deleted", "deleted": true});
    Ok(axum::Json(body).into_response())
}

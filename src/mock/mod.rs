//! A mock upstream provider speaking OpenAI's, Anthropic's and Gemini's wire
//! formats, streaming included, for tests, benchmarks and trying the gateway
//! without a provider account.
//!
//! Replies are deterministic, and `GET /mock/calls` counts the requests
//! received. Faults are injected per request by a directive
//! in the last user message, e.g. `[mock status=503]`, `[mock disconnect_after=2]`,
//! `[mock first_byte_ms=500 chunks=10 delay_ms=5]`, `[mock malformed]`,
//! `[mock no_usage]`, `[mock end_after=2]` (a stream that ends cleanly, but
//! unfinished, after two frames), `[mock empty]` (a 200 with an empty body),
//! and, in OpenAI's format, `[mock in_band_error=429]` (a
//! 200 whose body, or whose stream after its first chunk, is an error
//! object, as aggregators such as OpenRouter send). A model name containing
//! `status-503` (any code) fails with that status, which lets fallbacks be
//! exercised. A request with `tools` gets a call to its first tool.
//! OpenAI-format non-streaming replies echo the request they received as
//! `mock_request`; Anthropic-format ones echo it with its `anthropic-beta`
//! header. `POST /v1/messages/count_tokens` counts the prompt's words.
//!
//! Reported usage can be chosen, in each format's own fields:
//! `[mock prompt_tokens=100000 completion_tokens=7]` sets the counts (by
//! default, the prompt's words and one token per chunk), and
//! `[mock cached=40 cache_write=20 cache_write_1h=10]` the cache buckets,
//! which are parts of the prompt: OpenAI's `cached_tokens`, Anthropic's
//! `cache_read_input_tokens` and `cache_creation` (5-minute and 1-hour
//! writes apart), Gemini's `cachedContentTokenCount`.

pub mod smtp;
pub mod stripe;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Defaults for every request; directives override them.
#[derive(Debug, Clone, Copy)]
pub struct MockOptions {
    /// Delay before answering (non-streaming) or before the first chunk.
    pub latency_ms: u64,
    /// Content chunks per reply.
    pub chunks: usize,
    /// Delay between stream chunks.
    pub chunk_delay_ms: u64,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            chunks: 6,
            chunk_delay_ms: 0,
        }
    }
}

/// The mock's routes, and `GET /mock/calls`: how many requests its
/// provider routes have received (tests check what reached a provider).
pub fn router(options: MockOptions) -> Router {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let count = move |request: axum::extract::Request, next: axum::middleware::Next| {
        if request.method() == axum::http::Method::POST {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        next.run(request)
    };
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/v1/models", get(openai_models))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
        .route("/v1beta/models/{spec}", post(gemini_generate))
        .with_state(options)
        .layer(axum::middleware::from_fn(count))
        .route(
            "/mock/calls",
            get(move || async move { Json(json!({"calls": calls.load(Ordering::SeqCst)})) }),
        )
}

const WORDS: [&str; 6] = ["Hello", "from", "the", "llm-gateway", "mock", "provider."];

/// What one request asked of the mock.
#[derive(Debug, Clone, Default)]
struct Plan {
    status: Option<u16>,
    first_byte_ms: u64,
    chunk_delay_ms: u64,
    chunks: usize,
    disconnect_after: Option<usize>,
    /// A stream ends, without an error, after this many frames.
    end_after: Option<usize>,
    /// A 200 with nothing in its body.
    empty: bool,
    malformed: bool,
    no_usage: bool,
    /// The `code` of an error sent with a 200.
    in_band_error: Option<u16>,
    tool: Option<String>,
    prompt_tokens: i64,
    /// Reported completion tokens; by default one per chunk.
    completion_tokens: Option<i64>,
    /// Cache buckets, parts of `prompt_tokens`.
    cached: i64,
    cache_write: i64,
    cache_write_1h: i64,
}

impl Plan {
    /// Applies a `status-NNN` in the model name.
    fn with_model(mut self, model: &str) -> Self {
        if let Some(code) = model
            .split("status-")
            .nth(1)
            .and_then(|rest| rest.get(..3)?.parse().ok())
        {
            self.status = Some(code);
        }
        self
    }

    fn new(options: MockOptions, prompt_text: &str, tool: Option<String>) -> Self {
        let mut plan = Plan {
            first_byte_ms: options.latency_ms,
            chunk_delay_ms: options.chunk_delay_ms,
            chunks: options.chunks.max(1),
            tool,
            prompt_tokens: prompt_text.split_whitespace().count().max(1) as i64,
            ..Plan::default()
        };
        if let Some(start) = prompt_text.find("[mock") {
            let directive = &prompt_text[start + 5..];
            let directive = &directive[..directive.find(']').unwrap_or(directive.len())];
            for item in directive.split_whitespace() {
                let (key, value) = item.split_once('=').unwrap_or((item, ""));
                let number = value.parse::<u64>().ok();
                match key {
                    "status" => plan.status = number.map(|n| n as u16),
                    "first_byte_ms" | "latency_ms" => plan.first_byte_ms = number.unwrap_or(0),
                    "delay_ms" => plan.chunk_delay_ms = number.unwrap_or(0),
                    "chunks" => plan.chunks = number.unwrap_or(1).max(1) as usize,
                    "disconnect_after" => plan.disconnect_after = number.map(|n| n as usize),
                    "end_after" => plan.end_after = number.map(|n| n as usize),
                    "empty" => plan.empty = true,
                    "malformed" => plan.malformed = true,
                    "no_usage" => plan.no_usage = true,
                    "in_band_error" => plan.in_band_error = Some(number.unwrap_or(500) as u16),
                    "prompt_tokens" => plan.prompt_tokens = number.unwrap_or(0) as i64,
                    "completion_tokens" => plan.completion_tokens = number.map(|n| n as i64),
                    "cached" => plan.cached = number.unwrap_or(0) as i64,
                    "cache_write" => plan.cache_write = number.unwrap_or(0) as i64,
                    "cache_write_1h" => plan.cache_write_1h = number.unwrap_or(0) as i64,
                    _ => {}
                }
            }
        }
        plan
    }

    /// The non-streaming reply's body when a fault breaks it.
    fn broken_body(&self) -> Option<Response> {
        if self.empty {
            Some(([("content-type", "application/json")], "").into_response())
        } else if self.malformed {
            Some(malformed_json())
        } else {
            None
        }
    }

    fn pieces(&self) -> Vec<String> {
        (0..self.chunks)
            .map(|i| {
                let word = WORDS[i % WORDS.len()];
                if i + 1 == self.chunks {
                    word.to_string()
                } else {
                    format!("{word} ")
                }
            })
            .collect()
    }

    fn text(&self) -> String {
        self.pieces().concat()
    }

    fn completion_tokens(&self) -> i64 {
        self.completion_tokens.unwrap_or(self.chunks as i64)
    }

    /// Prompt tokens that are neither read from nor written to the cache.
    fn uncached_tokens(&self) -> i64 {
        (self.prompt_tokens - self.cached - self.cache_write - self.cache_write_1h).max(0)
    }

    /// OpenAI's `usage`.
    fn openai_usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens(),
            "total_tokens": self.prompt_tokens + self.completion_tokens(),
            "prompt_tokens_details": {"cached_tokens": self.cached},
        })
    }

    /// Anthropic's `usage`: input apart from cache reads and writes.
    fn anthropic_usage(&self, output_tokens: i64) -> Value {
        json!({
            "input_tokens": self.uncached_tokens(),
            "output_tokens": output_tokens,
            "cache_read_input_tokens": self.cached,
            "cache_creation_input_tokens": self.cache_write + self.cache_write_1h,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            },
        })
    }

    /// Gemini's `usageMetadata`.
    fn gemini_usage(&self) -> Value {
        json!({
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": self.completion_tokens(),
            "totalTokenCount": self.prompt_tokens + self.completion_tokens(),
            "cachedContentTokenCount": self.cached,
        })
    }

    async fn wait_first_byte(&self) {
        if self.first_byte_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.first_byte_ms)).await;
        }
    }
}

/// All message text of an OpenAI or Anthropic request, for directives and counts.
fn messages_text(body: &Value, key: &str) -> String {
    let mut text = String::new();
    for message in body
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let content = message.get("content").or_else(|| message.get("parts"));
        match content {
            Some(Value::String(s)) => text.push_str(s),
            Some(Value::Array(parts)) => {
                for part in parts {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        text.push_str(t);
                        text.push(' ');
                    }
                }
            }
            _ => {}
        }
        text.push(' ');
    }
    if let Some(system) = body.get("system").and_then(Value::as_str) {
        text.push_str(system);
    }
    text
}

fn first_tool(body: &Value) -> Option<String> {
    let tool = body.get("tools")?.as_array()?.first()?;
    tool.pointer("/function/name")
        .or_else(|| tool.get("name"))
        .or_else(|| tool.pointer("/functionDeclarations/0/name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

const TOOL_ARGUMENTS: &str = r#"{"query":"mock"}"#;

fn error_response(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({"error": {"message": message, "type": "mock_error", "code": status.as_u16()}})),
    )
        .into_response()
}

/// An SSE body from frames, honouring the chunk delay; with `disconnect_after`
/// the connection breaks after that many frames, with `end_after` (or
/// `empty`: after none) the body ends there.
fn sse_body(plan: &Plan, mut frames: Vec<String>) -> Response {
    let delay = Duration::from_millis(plan.chunk_delay_ms);
    let ends_at = plan.empty.then_some(0).or(plan.end_after);
    if let Some(n) = plan.disconnect_after.or(ends_at) {
        frames.truncate(n);
    }
    // The break comes a moment after the last frame, so the frames go out first.
    let broken = futures::stream::iter(plan.disconnect_after).then(|_| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "mock disconnect",
        ))
    });
    let stream = futures::stream::iter(frames.into_iter().enumerate())
        .then(move |(i, frame)| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(Bytes::from(frame))
        })
        .chain(broken);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

/// A 200 whose JSON body breaks off: the non-streaming form of `malformed`.
fn malformed_json() -> Response {
    (
        [("content-type", "application/json")],
        "{\"id\": \"mock\", \"choices\": [malformed",
    )
        .into_response()
}

/// The error object of `in_band_error`.
fn in_band_error(code: u16) -> Value {
    json!({"error": {"message": format!("mock in-band failure {code}"), "code": code}})
}

fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

async fn openai_chat(State(options): State<MockOptions>, Json(body): Json<Value>) -> Response {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    let plan = Plan::new(
        options,
        &messages_text(&body, "messages"),
        first_tool(&body),
    )
    .with_model(&model);
    plan.wait_first_byte().await;
    if let Some(status) = plan.status {
        return error_response(status, &format!("mock failure with status {status}"));
    }
    let usage = plan.openai_usage();
    let tool_call = |with_index: bool| {
        let mut call = json!({"id": "call_mock", "type": "function", "function": {"name": plan.tool, "arguments": TOOL_ARGUMENTS}});
        if with_index {
            call["index"] = json!(0);
        }
        call
    };
    if !body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        if let Some(response) = plan.broken_body() {
            return response;
        }
        if let Some(code) = plan.in_band_error {
            return Json(in_band_error(code)).into_response();
        }
        let message = match &plan.tool {
            Some(_) => {
                json!({"role": "assistant", "content": null, "tool_calls": [tool_call(false)]})
            }
            None => json!({"role": "assistant", "content": plan.text()}),
        };
        let finish = if plan.tool.is_some() {
            "tool_calls"
        } else {
            "stop"
        };
        return Json(json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": if plan.no_usage { Value::Null } else { usage },
            "mock_request": body,
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut frames = vec![data(&chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ))];
    if plan.malformed {
        frames.push("data: {\"choices\": [malformed\n\n".into());
    }
    if let Some(code) = plan.in_band_error {
        frames.push(data(&in_band_error(code)));
        return sse_body(&plan, frames);
    }
    match &plan.tool {
        Some(_) => frames.push(data(&chunk(
            json!({"tool_calls": [tool_call(true)]}),
            Value::Null,
        ))),
        None => frames.extend(
            plan.pieces()
                .iter()
                .map(|p| data(&chunk(json!({"content": p}), Value::Null))),
        ),
    }
    let finish = if plan.tool.is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    frames.push(data(&chunk(json!({}), json!(finish))));
    let wants_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    if wants_usage && !plan.no_usage {
        frames.push(data(
            &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                                 "model": model, "choices": [], "usage": usage}),
        ));
    }
    frames.push("data: [DONE]\n\n".into());
    sse_body(&plan, frames)
}

async fn openai_embeddings(
    State(options): State<MockOptions>,
    Json(body): Json<Value>,
) -> Response {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => return error_response(400, "input is required"),
    };
    let plan = Plan::new(options, &inputs.join(" "), None);
    plan.wait_first_byte().await;
    if let Some(status) = plan.status {
        return error_response(status, &format!("mock failure with status {status}"));
    }
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let seed = text.len() as f64;
            let vector: Vec<f64> = (0..8).map(|d| ((seed + d as f64) * 0.1).sin()).collect();
            json!({"object": "embedding", "index": i, "embedding": vector})
        })
        .collect();
    Json(json!({
        "object": "list", "data": data, "model": body.get("model").cloned().unwrap_or(json!("mock")),
        "usage": {"prompt_tokens": plan.prompt_tokens, "total_tokens": plan.prompt_tokens},
    }))
    .into_response()
}

async fn openai_models() -> Json<Value> {
    Json(
        json!({"object": "list", "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}]}),
    )
}

async fn anthropic_messages(
    State(options): State<MockOptions>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if headers.get("anthropic-version").is_none() {
        return error_response(400, "anthropic-version header is required");
    }
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return error_response(400, "max_tokens is required");
    }
    let model = body.get("model").cloned().unwrap_or(json!("mock"));
    let plan = Plan::new(
        options,
        &messages_text(&body, "messages"),
        first_tool(&body),
    )
    .with_model(model.as_str().unwrap_or_default());
    plan.wait_first_byte().await;
    if let Some(status) = plan.status {
        return error_response(status, &format!("mock failure with status {status}"));
    }
    let tool_block = |name: &String| json!({"type": "tool_use", "id": "toolu_mock", "name": name, "input": {"query": "mock"}});
    let stop_reason = if plan.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if !body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        if let Some(response) = plan.broken_body() {
            return response;
        }
        let content = match &plan.tool {
            Some(name) => json!([tool_block(name)]),
            None => json!([{"type": "text", "text": plan.text()}]),
        };
        let mut message = json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason,
        });
        if !plan.no_usage {
            message["usage"] = plan.anthropic_usage(plan.completion_tokens());
        }
        let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
        message["mock_request"] = json!({"body": body, "anthropic_beta": beta});
        return Json(message).into_response();
    }
    let event = |name: &str, value: Value| format!("event: {name}\ndata: {value}\n\n");
    let mut start = json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message",
        "role": "assistant", "model": model, "content": []}});
    if !plan.no_usage {
        start["message"]["usage"] = plan.anthropic_usage(1);
    }
    let mut frames = vec![event("message_start", start)];
    if plan.malformed {
        frames.push("event: content_block_delta\ndata: {malformed\n\n".into());
    }
    match &plan.tool {
        Some(name) => {
            frames.push(event("content_block_start", json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_mock", "name": name, "input": {}}})));
            frames.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": TOOL_ARGUMENTS}}),
            ));
        }
        None => {
            frames.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ));
            frames.extend(plan.pieces().iter().map(|p| {
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta",
                "index": 0, "delta": {"type": "text_delta", "text": p}}),
                )
            }));
        }
    }
    frames.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    let output_tokens = if plan.no_usage {
        Value::Null
    } else {
        json!(plan.completion_tokens())
    };
    frames.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason},
        "usage": {"output_tokens": output_tokens}}),
    ));
    frames.push(event("message_stop", json!({"type": "message_stop"})));
    sse_body(&plan, frames)
}

/// Anthropic's token count: the prompt's words, as the mock's usage counts them.
async fn anthropic_count_tokens(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if headers.get("anthropic-version").is_none() {
        return error_response(400, "anthropic-version header is required");
    }
    if body.get("max_tokens").is_some() {
        return error_response(400, "max_tokens: Extra inputs are not permitted");
    }
    let words = messages_text(&body, "messages")
        .split_whitespace()
        .count()
        .max(1);
    Json(json!({"input_tokens": words})).into_response()
}

async fn gemini_generate(
    State(options): State<MockOptions>,
    Path(spec): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let Some((model, method)) = spec.split_once(':') else {
        return error_response(404, "expected models/{model}:generateContent");
    };
    let mut text = String::new();
    for content in body
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for part in content
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                text.push_str(t);
                text.push(' ');
            }
        }
    }
    let plan = Plan::new(options, &text, first_tool(&body)).with_model(model);
    plan.wait_first_byte().await;
    if let Some(status) = plan.status {
        return error_response(status, &format!("mock failure with status {status}"));
    }
    let usage = plan.gemini_usage();
    let candidate = |parts: Value, finish: Option<&str>| {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        c
    };
    let tool_part =
        |name: &String| json!([{"functionCall": {"name": name, "args": {"query": "mock"}}}]);
    if method == "generateContent" {
        if let Some(response) = plan.broken_body() {
            return response;
        }
        let parts = match &plan.tool {
            Some(name) => tool_part(name),
            None => json!([{"text": plan.text()}]),
        };
        let mut response = json!({"candidates": [candidate(parts, Some("STOP"))]});
        if !plan.no_usage {
            response["usageMetadata"] = usage;
        }
        return Json(response).into_response();
    }
    if !method.starts_with("streamGenerateContent") {
        return error_response(404, "unknown method");
    }
    let mut frames = Vec::new();
    let pieces: Vec<Value> = match &plan.tool {
        Some(name) => vec![tool_part(name)],
        None => plan
            .pieces()
            .into_iter()
            .map(|p| json!([{"text": p}]))
            .collect(),
    };
    let last = pieces.len() - 1;
    for (i, parts) in pieces.into_iter().enumerate() {
        let mut response = json!({"candidates": [candidate(parts, (i == last).then_some("STOP"))]});
        if i == last && !plan.no_usage {
            response["usageMetadata"] = usage.clone();
        }
        frames.push(data(&response));
        if i == 0 && plan.malformed {
            frames.push("data: {malformed\n\n".into());
        }
    }
    sse_body(&plan, frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read_from_the_prompt() {
        let plan = Plan::new(
            MockOptions::default(),
            "hi [mock status=503 chunks=3 no_usage disconnect_after=2]",
            None,
        );
        assert_eq!(plan.status, Some(503));
        assert_eq!(plan.chunks, 3);
        assert!(plan.no_usage);
        assert_eq!(plan.disconnect_after, Some(2));
        assert_eq!(plan.text(), "Hello from the");
        let failing = Plan::new(MockOptions::default(), "x", None).with_model("gpt-status-429");
        assert_eq!(failing.status, Some(429));
        let plain = Plan::new(MockOptions::default(), "hello there", None).with_model("gpt-4o");
        assert_eq!(
            (plain.status, plain.chunks, plain.prompt_tokens),
            (None, 6, 2)
        );
        let counts = Plan::new(
            MockOptions::default(),
            "x [mock prompt_tokens=1000 completion_tokens=9 cached=500 cache_write=200 cache_write_1h=100]",
            None,
        );
        assert_eq!(counts.openai_usage()["prompt_tokens"], 1000);
        assert_eq!(counts.openai_usage()["completion_tokens"], 9);
        assert_eq!(
            counts.openai_usage()["prompt_tokens_details"]["cached_tokens"],
            500
        );
        let anthropic = counts.anthropic_usage(9);
        assert_eq!(anthropic["input_tokens"], 200);
        assert_eq!(anthropic["cache_creation_input_tokens"], 300);
        assert_eq!(
            anthropic["cache_creation"]["ephemeral_1h_input_tokens"],
            100
        );
        assert_eq!(counts.gemini_usage()["cachedContentTokenCount"], 500);
    }
}

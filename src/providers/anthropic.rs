//! Anthropic's Messages API (`POST /v1/messages`), translated to and from
//! OpenAI's chat shapes, streaming included.

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::sse::{self, SseEvent, Step};
use super::wire::{
    chunk, content_text, json_body, parse_data_url, push_merged, send, stop_list, usage_chunk,
};
use super::{Body, ChunkStream, Completion, NativeMessages, Provider, UpstreamError, Usage};
use crate::clock::Clock;

const DEFAULT_BASE: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when the client gave none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A client for Anthropic.
pub struct Anthropic {
    http: reqwest::Client,
    /// Dates the answers (`created`).
    clock: Clock,
    base: String,
    api_key: String,
}

impl Anthropic {
    pub fn new(http: reqwest::Client, base: Option<String>, api_key: String, clock: Clock) -> Self {
        let base = base.unwrap_or_else(|| DEFAULT_BASE.into());
        Self {
            http,
            clock,
            base: base
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_string(),
            api_key,
        }
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.post_to("/v1/messages", body, None)
    }

    fn post_to(&self, path: &str, body: &Value, beta: Option<&str>) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", API_VERSION);
        match beta {
            Some(beta) => request.header("anthropic-beta", beta),
            None => request,
        }
        .json(body)
    }
}

/// The client's body with `model` set to the upstream's name, and `stream`
/// as the call needs it (a count's body is left as it came).
fn native_body(request: NativeMessages<'_>, stream: Option<bool>) -> Value {
    let mut body = request.body.clone();
    body.insert("model".into(), json!(request.model));
    match stream {
        Some(true) => {
            body.insert("stream".into(), json!(true));
        }
        Some(false) => {
            body.remove("stream");
        }
        None => {}
    }
    Value::Object(body)
}

#[async_trait]
impl Provider for Anthropic {
    async fn chat(&self, body: &Body, model: &str) -> Result<Completion, UpstreamError> {
        let request = to_anthropic(body, model, false)?;
        let response = json_body(send(self.post(&request)).await?).await?;
        Ok(Completion::Translated(from_anthropic(
            &response,
            model,
            self.clock.now_secs(),
        )))
    }

    async fn chat_stream(&self, body: &Body, model: &str) -> Result<ChunkStream, UpstreamError> {
        let request = to_anthropic(body, model, true)?;
        let response = send(self.post(&request)).await?;
        Ok(stream_chunks(
            response,
            model.to_string(),
            self.clock.now_secs(),
        ))
    }

    async fn messages(&self, request: NativeMessages<'_>) -> Result<Value, UpstreamError> {
        let body = native_body(request, Some(false));
        json_body(send(self.post_to("/v1/messages", &body, request.beta)).await?).await
    }

    async fn messages_stream(
        &self,
        request: NativeMessages<'_>,
    ) -> Result<ChunkStream, UpstreamError> {
        let body = native_body(request, Some(true));
        let response = send(self.post_to("/v1/messages", &body, request.beta)).await?;
        Ok(sse::translate(
            response,
            NativeStream::default(),
            NativeStream::on_event,
            NativeStream::on_end,
        ))
    }

    async fn count_tokens(&self, request: NativeMessages<'_>) -> Result<Value, UpstreamError> {
        let body = native_body(request, None);
        let path = "/v1/messages/count_tokens";
        json_body(send(self.post_to(path, &body, request.beta)).await?).await
    }
}

/// Anthropic's own events, passed on as they came: a stream is complete at
/// `message_stop`, or when it ends after `message_delta` gave a stop reason.
#[derive(Default)]
struct NativeStream {
    stopped: bool,
}

impl NativeStream {
    fn on_event(&mut self, event: &SseEvent) -> Step {
        let value = match serde_json::from_str::<Value>(&event.data) {
            Ok(value) => value,
            Err(e) => return Step::Fail(UpstreamError::Protocol(format!("bad event: {e}"))),
        };
        match value.get("type").and_then(Value::as_str).unwrap_or("") {
            "error" => Step::Fail(stream_error(&value)),
            "message_stop" => Step::Finish(vec![value]),
            "message_delta" => {
                self.stopped |= value
                    .pointer("/delta/stop_reason")
                    .is_some_and(|r| !r.is_null());
                Step::Continue(vec![value])
            }
            _ => Step::Continue(vec![value]),
        }
    }

    fn on_end(&mut self) -> Result<Vec<Value>, UpstreamError> {
        if self.stopped {
            Ok(vec![json!({"type": "message_stop"})])
        } else {
            Err(UpstreamError::Truncated)
        }
    }
}

/// The failure an `error` event reports.
fn stream_error(event: &Value) -> UpstreamError {
    let kind = event.pointer("/error/type").and_then(Value::as_str);
    UpstreamError::Status {
        status: if kind == Some("overloaded_error") {
            529
        } else {
            502
        },
        message: event
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("upstream stream error")
            .to_string(),
        code: kind.map(str::to_owned),
    }
}

fn bad_request(message: impl Into<String>) -> UpstreamError {
    UpstreamError::Status {
        status: 400,
        message: message.into(),
        code: Some("invalid_request".into()),
    }
}

/// Builds a Messages API request from an OpenAI chat request.
pub fn to_anthropic(body: &Body, model: &str, stream: bool) -> Result<Value, UpstreamError> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("`messages` must be an array"))?;
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(bad_request(
            "Anthropic answers with one choice: `n` must be 1 for its models",
        ));
    }
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for message in messages {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        let content = message.get("content").cloned().unwrap_or(Value::Null);
        match role {
            "system" | "developer" => system.push(content_text(&content)),
            "assistant" => {
                let mut blocks = content_blocks(&content);
                for call in message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let arguments = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": tool_use_id(call.get("id")),
                        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
                    }));
                }
                push_message(&mut out, "assistant", blocks);
            }
            "tool" => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": tool_use_id(message.get("tool_call_id")),
                    "content": content_text(&content),
                });
                push_message(&mut out, "user", vec![block]);
            }
            _ => push_message(&mut out, "user", content_blocks(&content)),
        }
    }
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut request = Map::new();
    request.insert("model".into(), json!(model));
    request.insert("max_tokens".into(), json!(max_tokens));
    request.insert("messages".into(), Value::Array(out));
    if let Some(format) = output_format(body)? {
        match format {
            OutputFormat::AnyJson => system.push(JSON_OBJECT_INSTRUCTION.into()),
            OutputFormat::Schema(schema) => {
                request.insert(
                    "output_config".into(),
                    json!({"format": {"type": "json_schema", "schema": schema}}),
                );
            }
        }
    }
    if !system.is_empty() {
        request.insert("system".into(), json!(system.join("\n\n")));
    }
    insert_sampling(body, &mut request);
    if let Some(stop) = stop_list(body) {
        request.insert("stop_sequences".into(), Value::Array(stop));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                json!({
                    "name": f.get("name").cloned().unwrap_or(Value::Null),
                    "description": f.get("description").cloned().unwrap_or(json!("")),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                })
            })
            .collect();
        request.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice(body) {
        request.insert("tool_choice".into(), choice);
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        request.insert("metadata".into(), json!({ "user_id": user }));
    }
    if stream {
        request.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(request))
}

/// The system instruction that stands in for OpenAI's JSON mode, which
/// Anthropic has no switch for.
const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with a single valid JSON object and nothing else: no prose, no code fences.";

/// What `response_format` asks of the answer.
enum OutputFormat {
    /// `json_object`: any JSON object.
    AnyJson,
    /// `json_schema`: JSON that matches this schema (Anthropic's structured
    /// outputs, `output_config.format`).
    Schema(Value),
}

/// Reads `response_format`; `text` (or none) asks for nothing.
fn output_format(body: &Body) -> Result<Option<OutputFormat>, UpstreamError> {
    let Some(format) = body.get("response_format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(OutputFormat::AnyJson)),
        Some("json_schema") => format
            .pointer("/json_schema/schema")
            .filter(|schema| schema.is_object())
            .map(|schema| Some(OutputFormat::Schema(schema.clone())))
            .ok_or_else(|| bad_request("`response_format.json_schema.schema` must be an object")),
        _ => Err(bad_request(
            "`response_format.type` must be `text`, `json_object` or `json_schema`",
        )),
    }
}

/// Copies `temperature` and `top_p` within Anthropic's rules: temperature
/// runs from 0 to 1 (OpenAI's to 2), and recent models refuse both at once,
/// so temperature wins.
fn insert_sampling(body: &Body, request: &mut Map<String, Value>) {
    let temperature = body.get("temperature").and_then(Value::as_f64);
    if let Some(temperature) = temperature {
        request.insert("temperature".into(), json!(temperature.clamp(0.0, 1.0)));
    } else if let Some(top_p) = body.get("top_p").filter(|v| v.is_number()) {
        request.insert("top_p".into(), top_p.clone());
    }
}

/// OpenAI's `tool_choice` and `parallel_tool_calls` as Anthropic's `tool_choice`.
fn tool_choice(body: &Body) -> Option<Value> {
    let serial = body.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    let mut choice = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => return Some(json!({"type": "none"})),
        Some(Value::String(s)) if s == "required" => json!({"type": "any"}),
        Some(other) => match other.pointer("/function/name") {
            Some(name) => json!({"type": "tool", "name": name}),
            None => json!({"type": "auto"}),
        },
        None if serial && body.get("tools").is_some() => json!({"type": "auto"}),
        None => return None,
    };
    if serial {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    Some(choice)
}

/// A tool call id as Anthropic accepts one: without what another provider
/// carries in it (Gemini's thought signature), in `[A-Za-z0-9_-]`.
fn tool_use_id(id: Option<&Value>) -> Value {
    let Some(id) = id.and_then(Value::as_str) else {
        return id.cloned().unwrap_or(Value::Null);
    };
    let base = id
        .split_once(super::gemini::SIGNATURE_MARK)
        .map_or(id, |(base, _)| base);
    let clean = |c: char| {
        if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        }
    };
    Value::String(base.chars().map(clean).collect())
}

/// Appends blocks as a message (Anthropic requires alternating roles).
fn push_message(out: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    push_merged(out, role, "content", blocks);
}

/// OpenAI content (a string or parts) as Anthropic content blocks.
fn content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(text) if !text.is_empty() => vec![json!({"type": "text", "text": text})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Some(
                    json!({"type": "text", "text": part.get("text").cloned().unwrap_or(json!(""))}),
                ),
                Some("image_url") => {
                    let url = part.pointer("/image_url/url").and_then(Value::as_str)?;
                    Some(match parse_data_url(url) {
                        Some((media_type, data)) => json!({
                            "type": "image",
                            "source": {"type": "base64", "media_type": media_type, "data": data},
                        }),
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Maps Anthropic's `stop_reason` to OpenAI's `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Builds an OpenAI `chat.completion` from a Messages API response.
pub fn from_anthropic(response: &Value, model: &str, created: i64) -> Value {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in response
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({ "role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) } });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let stop = response
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    json!({
        "id": response.get("id").cloned().unwrap_or(json!("msg")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason(stop) }],
        // Left out when Anthropic sent none: the proxy then counts locally.
        "usage": Usage::from_anthropic(response.get("usage")).map(Usage::to_openai),
    })
}

/// State carried across a stream's events.
struct StreamState {
    id: String,
    model: String,
    created: i64,
    /// From `message_start`; `message_delta` updates it (the output
    /// tokens, and any input counts it repeats).
    usage: Option<Usage>,
    /// Anthropic block index → the tool call it streams.
    tool_blocks: std::collections::HashMap<u64, ToolBlock>,
    /// Whether `message_delta` said why the answer stopped.
    stopped: bool,
}

/// A `tool_use` block being streamed.
#[derive(Clone, Copy)]
struct ToolBlock {
    /// Its OpenAI tool call index.
    index: usize,
    /// Whether any of its input JSON has arrived: a call without arguments
    /// streams none, and OpenAI's clients expect `{}` then.
    has_arguments: bool,
}

impl StreamState {
    fn new(model: String, created: i64) -> Self {
        Self {
            id: "msg".into(),
            model,
            created,
            usage: None,
            tool_blocks: Default::default(),
            stopped: false,
        }
    }

    /// Translates one event into zero or more OpenAI chunks.
    fn on_event(&mut self, event: &Value) -> Result<Vec<Value>, UpstreamError> {
        let (id, model, created) = (self.id.clone(), self.model.clone(), self.created);
        let chunk = |delta: Value, finish: Option<&str>| chunk(&id, &model, created, delta, finish);
        match event.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                if let Some(message_id) = event.pointer("/message/id").and_then(Value::as_str) {
                    self.id = message_id.to_string();
                }
                self.usage = Usage::from_anthropic(event.pointer("/message/usage"));
                Ok(vec![chunk_with_id(
                    &self.id,
                    &model,
                    created,
                    json!({"role": "assistant", "content": ""}),
                )])
            }
            "content_block_start" => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                    return Ok(vec![]);
                }
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let tool_index = self.tool_blocks.len();
                let block_tool = ToolBlock {
                    index: tool_index,
                    has_arguments: false,
                };
                self.tool_blocks.insert(index, block_tool);
                Ok(vec![chunk(
                    json!({"tool_calls": [{
                        "index": tool_index,
                        "id": block.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                    }]}),
                    None,
                )])
            }
            "content_block_delta" => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => Ok(vec![chunk(
                        json!({"content": delta.get("text").cloned().unwrap_or(json!(""))}),
                        None,
                    )]),
                    Some("input_json_delta") => {
                        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let partial = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let Some(block) = self.tool_blocks.get_mut(&index) else {
                            return Ok(vec![]);
                        };
                        if partial.is_empty() {
                            return Ok(vec![]);
                        }
                        block.has_arguments = true;
                        Ok(vec![chunk(
                            json!({"tool_calls": [{
                                "index": block.index,
                                "function": {"arguments": partial},
                            }]}),
                            None,
                        )])
                    }
                    _ => Ok(vec![]),
                }
            }
            "content_block_stop" => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                match self.tool_blocks.get(&index) {
                    Some(block) if !block.has_arguments => Ok(vec![chunk(
                        json!({"tool_calls": [{
                            "index": block.index,
                            "function": {"arguments": "{}"},
                        }]}),
                        None,
                    )]),
                    _ => Ok(vec![]),
                }
            }
            "message_delta" => {
                if let (Some(usage), Some(delta)) = (&mut self.usage, event.get("usage")) {
                    usage.merge_anthropic(delta);
                }
                let stop = event
                    .pointer("/delta/stop_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                self.stopped = true;
                Ok(vec![chunk(json!({}), Some(finish_reason(stop)))])
            }
            "message_stop" => Ok(self.usage_chunk().into_iter().collect()),
            "error" => Err(stream_error(event)),
            _ => Ok(vec![]),
        }
    }
}

impl StreamState {
    /// The last chunk, with usage, if Anthropic reported it.
    fn usage_chunk(&self) -> Option<Value> {
        self.usage
            .map(|usage| usage_chunk(&self.id, &self.model, self.created, usage))
    }

    /// A body that ends without `message_stop` is complete only if
    /// `message_delta` said why the answer stopped.
    fn on_end(&mut self) -> Result<Vec<Value>, UpstreamError> {
        if self.stopped {
            Ok(self.usage_chunk().into_iter().collect())
        } else {
            Err(UpstreamError::Truncated)
        }
    }
}

fn chunk_with_id(id: &str, model: &str, created: i64, delta: Value) -> Value {
    chunk(id, model, created, delta, None)
}

/// Translates Anthropic's event stream into OpenAI chunks.
fn stream_chunks(response: reqwest::Response, model: String, created: i64) -> ChunkStream {
    let state = StreamState::new(model, created);
    sse::translate(response, state, on_sse_event, StreamState::on_end)
}

fn on_sse_event(state: &mut StreamState, event: &SseEvent) -> Step {
    let value = match serde_json::from_str::<Value>(&event.data) {
        Ok(value) => value,
        Err(e) => return Step::Fail(UpstreamError::Protocol(format!("bad event: {e}"))),
    };
    let last = value.get("type").and_then(Value::as_str) == Some("message_stop");
    match state.on_event(&value) {
        Ok(chunks) if last => Step::Finish(chunks),
        Ok(chunks) => Step::Continue(chunks),
        Err(err) => Step::Fail(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Body {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn request_maps_system_tools_images_and_stop() {
        let request = to_anthropic(
            &body(json!({
                "model": "anthropic:claude",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
                ],
                "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
                "tool_choice": "required",
                "stop": "END", "temperature": 0.2
            })),
            "claude-x",
            false,
        )
        .unwrap();
        assert_eq!(request["system"], "Be brief.");
        assert_eq!(request["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(
            request["messages"][0]["content"][1]["source"]["media_type"],
            "image/png"
        );
        assert_eq!(request["messages"][1]["content"][0]["type"], "tool_use");
        assert_eq!(request["messages"][1]["content"][0]["input"]["q"], 1);
        assert_eq!(request["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(request["messages"][1]["content"][0]["id"], "call_1");
        assert_eq!(
            request["messages"][2]["content"][0]["tool_use_id"],
            "call_1"
        );
        assert_eq!(
            tool_use_id(Some(&json!("call_ab__thought__c2ln-_A"))),
            "call_ab"
        );
        assert_eq!(tool_use_id(Some(&json!("call.x:1"))), "call_x_1");
        assert_eq!(request["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(request["tool_choice"]["type"], "any");
        assert_eq!(request["stop_sequences"][0], "END");
        assert_eq!(request["temperature"], 0.2);
    }

    #[test]
    fn response_maps_text_tools_reason_and_cache_usage() {
        let response = from_anthropic(
            &json!({
                "id": "msg_1",
                "content": [
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "tu_1", "name": "look", "input": {"q": 2}}
                ],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 6, "cache_creation_input_tokens": 2}
            }),
            "claude-x",
            1,
        );
        let choice = &response["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Looking.");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"q\":2}"
        );
        assert_eq!(response["usage"]["prompt_tokens"], 18);
        assert_eq!(
            response["usage"]["prompt_tokens_details"]["cached_tokens"],
            6
        );
        assert_eq!(response["usage"]["completion_tokens"], 4);
    }

    #[test]
    fn stream_events_become_chunks() {
        let mut state = StreamState::new("claude-x".into(), 1);
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_9", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu", "name": "f"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ];
        let chunks: Vec<Value> = events
            .iter()
            .flat_map(|e| state.on_event(e).unwrap())
            .collect();
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\""
        );
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[5]["usage"]["prompt_tokens"], 7);
        assert_eq!(chunks[5]["usage"]["completion_tokens"], 12);
        assert_eq!(chunks[5]["id"], "msg_9");
    }

    #[test]
    fn a_tool_call_without_arguments_streams_an_empty_object() {
        let mut state = StreamState::new("claude-x".into(), 1);
        let events = [
            json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "tu", "name": "now", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu2", "name": "at", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"x\":1}"}}),
            json!({"type": "content_block_stop", "index": 1}),
        ];
        let mut arguments = ["".to_string(), "".to_string()];
        for event in &events {
            for chunk in state.on_event(event).unwrap() {
                for call in chunk["choices"][0]["delta"]["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let index = call["index"].as_u64().unwrap() as usize;
                    arguments[index].push_str(call["function"]["arguments"].as_str().unwrap());
                }
            }
        }
        assert_eq!(arguments, ["{}", "{\"x\":1}"]);
    }

    #[test]
    fn native_events_pass_as_they_came_until_their_end() {
        let event = |data: Value| SseEvent {
            event: data["type"].as_str().map(str::to_owned),
            data: data.to_string(),
        };
        let mut stream = NativeStream::default();
        let start = json!({"type": "message_start", "message": {"id": "msg_1", "future": 1}});
        match stream.on_event(&event(start.clone())) {
            Step::Continue(items) => assert_eq!(items, [start]),
            _ => panic!("a start continues"),
        }
        assert!(matches!(stream.on_end(), Err(UpstreamError::Truncated)));
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}});
        assert!(matches!(stream.on_event(&event(delta)), Step::Continue(_)));
        assert_eq!(stream.on_end().unwrap(), [json!({"type": "message_stop"})]);
        let stop = json!({"type": "message_stop"});
        assert!(matches!(stream.on_event(&event(stop)), Step::Finish(_)));
        let overloaded =
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}});
        match stream.on_event(&event(overloaded)) {
            Step::Fail(UpstreamError::Status {
                status, message, ..
            }) => {
                assert_eq!((status, message.as_str()), (529, "busy"))
            }
            _ => panic!("an error event fails the stream"),
        }
    }

    #[test]
    fn a_stream_cut_before_its_stop_reason_is_truncated() {
        let mut state = StreamState::new("claude-x".into(), 1);
        let start =
            json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}});
        state.on_event(&start).unwrap();
        assert!(matches!(state.on_end(), Err(UpstreamError::Truncated)));
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}});
        state.on_event(&delta).unwrap();
        let last = state.on_end().unwrap();
        assert_eq!(last[0]["usage"]["completion_tokens"], 2, "{last:?}");
    }

    #[test]
    fn sampling_response_format_and_serial_tools_follow_anthropics_rules() {
        let request = |extra: Value| {
            let mut value = json!({
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            });
            value
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            to_anthropic(&body(value), "claude-x", false)
        };
        let out = request(json!({"temperature": 1.7, "top_p": 0.5, "parallel_tool_calls": false}))
            .unwrap();
        assert_eq!(out["temperature"], 1.0);
        assert!(out.get("top_p").is_none(), "{out}");
        assert_eq!(
            out["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let out = request(json!({"top_p": 0.5, "tool_choice": "none"})).unwrap();
        assert_eq!(out["top_p"], 0.5);
        assert_eq!(out["tool_choice"], json!({"type": "none"}));

        let out = request(json!({"response_format": {"type": "json_object"}})).unwrap();
        assert!(
            out["system"]
                .as_str()
                .unwrap()
                .starts_with("Be brief.\n\nRespond with a single valid JSON object"),
            "{out}"
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let out = request(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}})).unwrap();
        assert_eq!(
            out["output_config"]["format"],
            json!({"type": "json_schema", "schema": schema})
        );
        assert_eq!(out["system"], "Be brief.");
        let out = request(json!({"response_format": {"type": "text"}})).unwrap();
        assert!(out.get("output_config").is_none());
        let err = request(json!({"response_format": {"type": "xml"}})).unwrap_err();
        assert!(
            matches!(err, UpstreamError::Status { status: 400, .. }),
            "{err:?}"
        );
        assert_eq!(finish_reason("model_context_window_exceeded"), "length");
        let err = request(json!({"n": 2})).unwrap_err();
        assert!(
            matches!(err, UpstreamError::Status { status: 400, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn missing_usage_is_left_out_not_zeroed() {
        let response = from_anthropic(
            &json!({"id": "m", "content": [{"type": "text", "text": "hi"}]}),
            "claude-x",
            1,
        );
        assert!(response["usage"].is_null(), "{response}");
        let mut state = StreamState::new("claude-x".into(), 1);
        let start = json!({"type": "message_start", "message": {"id": "m"}});
        let delta = json!({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 3}});
        for event in [start, delta] {
            state.on_event(&event).unwrap();
        }
        let last = state.on_event(&json!({"type": "message_stop"})).unwrap();
        assert!(last.is_empty(), "no usage chunk: {last:?}");
    }
}

//! Google Gemini (`generateContent`, `streamGenerateContent?alt=sse`),
//! translated to and from OpenAI's chat shapes.

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

use super::sse::{self, SseEvent, Step};
use super::wire::{
    chunk, content_text, json_body, parse_data_url, push_merged, send, stop_list, usage_chunk,
};
use super::{Body, ChunkStream, Completion, Provider, UpstreamError, Usage};
use crate::clock::Clock;

const DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com";
/// Joins a tool call id and the thought signature it carries (as LiteLLM does).
pub(crate) const SIGNATURE_MARK: &str = "__thought__";
/// Google's documented stand-in for a function call that has no signature.
const DUMMY_SIGNATURE: &str = "skip_thought_signature_validator";

/// A client for the Gemini API.
pub struct Gemini {
    http: reqwest::Client,
    /// Dates the answers (`created`).
    clock: Clock,
    base: String,
    api_key: String,
}

impl Gemini {
    pub fn new(http: reqwest::Client, base: Option<String>, api_key: String, clock: Clock) -> Self {
        let base = base.unwrap_or_else(|| DEFAULT_BASE.into());
        Self {
            http,
            clock,
            base: base
                .trim_end_matches('/')
                .trim_end_matches("/v1beta")
                .to_string(),
            api_key,
        }
    }

    fn post(&self, model: &str, method: &str, body: &Value) -> reqwest::RequestBuilder {
        // The key goes in a header, never in the URL, so it cannot leak into logs.
        self.http
            .post(format!("{}/v1beta/models/{model}:{method}", self.base))
            .header("x-goog-api-key", &self.api_key)
            .json(body)
    }
}

#[async_trait]
impl Provider for Gemini {
    async fn chat(&self, body: &Body, model: &str) -> Result<Completion, UpstreamError> {
        let request = to_gemini(body)?;
        let response =
            json_body(send(self.post(model, "generateContent", &request)).await?).await?;
        let mut state = ChunkState::new(model, self.clock.now_secs());
        Ok(Completion::Translated(state.completion(&response)))
    }

    async fn chat_stream(&self, body: &Body, model: &str) -> Result<ChunkStream, UpstreamError> {
        let request = to_gemini(body)?;
        let response = send(self.post(model, "streamGenerateContent?alt=sse", &request)).await?;
        Ok(stream_chunks(
            response,
            model.to_string(),
            self.clock.now_secs(),
        ))
    }
}

fn bad_request(message: impl Into<String>) -> UpstreamError {
    UpstreamError::Status {
        status: 400,
        message: message.into(),
        code: Some("invalid_request".into()),
    }
}

/// Builds a `generateContent` request from an OpenAI chat request.
pub fn to_gemini(body: &Body) -> Result<Value, UpstreamError> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("`messages` must be an array"))?;
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut tool_names: HashMap<String, String> = HashMap::new();
    for message in messages {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        let content = message.get("content").cloned().unwrap_or(Value::Null);
        match role {
            "system" | "developer" => system.push(json!({"text": content_text(&content)})),
            "assistant" => {
                let mut parts = parts_of(&content);
                for call in message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = call
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let (id, signature) =
                        split_call_id(call.get("id").and_then(Value::as_str).unwrap_or(""));
                    tool_names.insert(id.to_string(), name.to_string());
                    let arguments = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    let args: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
                    let mut function_call = json!({"name": name, "args": args});
                    if !id.is_empty() {
                        function_call["id"] = json!(id);
                    }
                    let mut part = json!({ "functionCall": function_call });
                    if let Some(signature) = signature {
                        part["thoughtSignature"] = json!(standard_base64(signature));
                    }
                    parts.push(part);
                }
                push_content(&mut contents, "model", parts);
            }
            "tool" => {
                let (id, _) = split_call_id(
                    message
                        .get("tool_call_id")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                );
                let name = tool_names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| id.to_string());
                let mut response =
                    json!({"name": name, "response": {"content": content_text(&content)}});
                if !id.is_empty() {
                    response["id"] = json!(id);
                }
                push_content(
                    &mut contents,
                    "user",
                    vec![json!({ "functionResponse": response })],
                );
            }
            _ => push_content(&mut contents, "user", parts_of(&content)),
        }
    }
    for content in contents.iter_mut().filter(|c| c["role"] == "model") {
        sign_first_call(content);
    }
    let mut request = Map::new();
    request.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        request.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let mut generation = Map::new();
    let mapping = [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("max_tokens", "maxOutputTokens"),
        ("max_completion_tokens", "maxOutputTokens"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ];
    for (openai, gemini) in mapping {
        if let Some(value) = body.get(openai) {
            generation.insert(gemini.into(), value.clone());
        }
    }
    if let Some(stop) = stop_list(body) {
        generation.insert("stopSequences".into(), Value::Array(stop));
    }
    if let Some(budget) = body.get("reasoning_effort").and_then(thinking_budget) {
        generation.insert("thinkingConfig".into(), json!({"thinkingBudget": budget}));
    }
    if let Some(format) = body.get("response_format").filter(|f| !f.is_null()) {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some(kind @ ("json_object" | "json_schema")) => {
                generation.insert("responseMimeType".into(), json!("application/json"));
                let schema = format.pointer("/json_schema/schema");
                if let Some(schema) = schema.filter(|_| kind == "json_schema") {
                    generation.insert("responseJsonSchema".into(), schema.clone());
                }
            }
            other => {
                return Err(bad_request(format!(
                    "unsupported `response_format` type {}: expected \"text\", \"json_object\" or \"json_schema\"",
                    other.map_or_else(|| "(none)".to_string(), |t| format!("{t:?}"))
                )))
            }
        }
    }
    if !generation.is_empty() {
        request.insert("generationConfig".into(), Value::Object(generation));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let declarations: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut declaration = json!({
                    "name": f.get("name").cloned().unwrap_or(Value::Null),
                    "description": f.get("description").cloned().unwrap_or(json!("")),
                });
                // Full JSON Schema; `parameters` is an OpenAPI subset that
                // rejects `additionalProperties`, `$ref` and the like.
                if let Some(parameters) = f.get("parameters") {
                    declaration["parametersJsonSchema"] = parameters.clone();
                }
                declaration
            })
            .collect();
        request.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
    }
    if let Some(choice) = body.get("tool_choice") {
        let config = match choice {
            Value::String(s) if s == "required" => json!({"mode": "ANY"}),
            Value::String(s) if s == "none" => json!({"mode": "NONE"}),
            Value::String(_) => json!({"mode": "AUTO"}),
            other => match other.pointer("/function/name") {
                Some(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
                None => json!({"mode": "AUTO"}),
            },
        };
        request.insert(
            "toolConfig".into(),
            json!({ "functionCallingConfig": config }),
        );
    }
    Ok(Value::Object(request))
}

/// Appends parts as a content (Gemini requires alternating roles).
fn push_content(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    push_merged(contents, role, "parts", parts);
}

/// A tool call id's base and the thought signature carried in it, if any.
fn split_call_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(SIGNATURE_MARK) {
        Some((base, signature)) if !signature.is_empty() => (base, Some(signature)),
        Some((base, _)) => (base, None),
        None => (id, None),
    }
}

/// A signature (standard base64) in the URL-safe alphabet, unpadded, so that
/// the id keeps to the characters every provider accepts in a tool call id
/// (Anthropic's are `[A-Za-z0-9_-]`).
fn url_safe_base64(signature: &str) -> String {
    let swap = |c| match c {
        '+' => '-',
        '/' => '_',
        c => c,
    };
    signature.trim_end_matches('=').chars().map(swap).collect()
}

/// The signature back in standard, padded base64, as Gemini sent it.
fn standard_base64(signature: &str) -> String {
    let swap = |c| match c {
        '-' => '+',
        '_' => '/',
        c => c,
    };
    let mut standard: String = signature.chars().map(swap).collect();
    while !standard.len().is_multiple_of(4) {
        standard.push('=');
    }
    standard
}

/// Gives a model turn's first function call Google's stand-in signature when
/// none of its calls carries one (history from another provider or client):
/// Gemini 3 rejects function calls without it.
fn sign_first_call(content: &mut Value) {
    let Some(parts) = content["parts"].as_array_mut() else {
        return;
    };
    let is_call = |part: &&mut Value| part.get("functionCall").is_some();
    if parts
        .iter_mut()
        .filter(is_call)
        .any(|part| part.get("thoughtSignature").is_some())
    {
        return;
    }
    if let Some(first) = parts.iter_mut().find(is_call) {
        first["thoughtSignature"] = json!(DUMMY_SIGNATURE);
    }
}

/// The image type a URL's extension suggests; JPEG when it suggests none.
fn image_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let extension = path
        .rsplit_once('.')
        .map_or(String::new(), |(_, e)| e.to_ascii_lowercase());
    match extension.as_str() {
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => "image/jpeg",
    }
}

fn parts_of(content: &Value) -> Vec<Value> {
    match content {
        Value::String(text) if !text.is_empty() => vec![json!({"text": text})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => {
                    Some(json!({"text": part.get("text").cloned().unwrap_or(json!(""))}))
                }
                Some("image_url") => {
                    let url = part.pointer("/image_url/url").and_then(Value::as_str)?;
                    Some(match parse_data_url(url) {
                        Some((mime, data)) => {
                            json!({"inlineData": {"mimeType": mime, "data": data}})
                        }
                        None => json!({"fileData": {"mimeType": image_mime(url), "fileUri": url}}),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// OpenAI's `reasoning_effort` as a Gemini thinking budget, as Gemini's
/// own OpenAI-compatible endpoint maps it.
fn thinking_budget(effort: &Value) -> Option<i64> {
    match effort.as_str()? {
        "minimal" | "none" => Some(0),
        "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

/// Maps Gemini's `finishReason` to OpenAI's `finish_reason`.
pub fn finish_reason(reason: &str, has_tool_calls: bool) -> &'static str {
    match reason {
        _ if has_tool_calls => "tool_calls",
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => "content_filter",
        _ => "stop",
    }
}

/// Reads Gemini's `usageMetadata`. Its prompt count includes the cached
/// part (`cachedContentTokenCount`); tool-use prompts and thoughts are
/// billed as input and output.
fn usage_of(metadata: &Value) -> Usage {
    let get = |key: &str| metadata.get(key).and_then(Value::as_i64).unwrap_or(0);
    Usage {
        prompt_tokens: get("promptTokenCount") + get("toolUsePromptTokenCount"),
        completion_tokens: get("candidatesTokenCount") + get("thoughtsTokenCount"),
        cached_tokens: get("cachedContentTokenCount"),
        ..Usage::default()
    }
}

/// One candidate of a response, as an OpenAI choice.
struct Choice {
    index: u64,
    text: String,
    calls: Vec<Value>,
    /// OpenAI's `finish_reason`, once the candidate has one.
    finish: Option<&'static str>,
}

/// The id of a tool call: Gemini's own, else a fresh one, with the part's
/// thought signature appended (see [`split_call_id`]).
fn call_id(call: &Value, part: &Value) -> String {
    let base = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(
            || format!("call_{}", uuid::Uuid::new_v4().simple()),
            str::to_owned,
        );
    match part.get("thoughtSignature").and_then(Value::as_str) {
        Some(signature) if !signature.is_empty() => {
            format!("{base}{SIGNATURE_MARK}{}", url_safe_base64(signature))
        }
        _ => base,
    }
}

/// State across a response or stream: ids, usage and tool call numbering.
struct ChunkState {
    id: String,
    model: String,
    created: i64,
    /// Tool calls so far, by choice index.
    tool_calls: HashMap<u64, usize>,
    usage: Option<Usage>,
    /// The choices whose first chunk (the assistant role) went out.
    started: HashSet<u64>,
    /// Whether a candidate said why it finished.
    finished: bool,
}

impl ChunkState {
    fn new(model: &str, created: i64) -> Self {
        Self {
            id: format!("gemini-{}", uuid::Uuid::new_v4().simple()),
            model: model.to_string(),
            created,
            tool_calls: HashMap::new(),
            usage: None,
            started: HashSet::new(),
            finished: false,
        }
    }

    /// Every candidate of a response; a blocked prompt (no candidates, a
    /// `promptFeedback.blockReason`) is one choice, filtered out.
    fn read(&mut self, response: &Value) -> Vec<Choice> {
        if let Some(metadata) = response.get("usageMetadata") {
            self.usage = Some(usage_of(metadata));
        }
        let candidates = response
            .get("candidates")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if candidates.is_empty() && response.pointer("/promptFeedback/blockReason").is_some() {
            return vec![Choice {
                index: 0,
                text: String::new(),
                calls: Vec::new(),
                finish: Some("content_filter"),
            }];
        }
        candidates
            .iter()
            .enumerate()
            .map(|(position, candidate)| self.read_candidate(position, candidate))
            .collect()
    }

    /// Text and tool calls of one candidate, with its finish reason.
    fn read_candidate(&mut self, position: usize, candidate: &Value) -> Choice {
        // Gemini leaves `index` out when it is 0.
        let index = candidate
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let count = self.tool_calls.entry(index).or_default();
        let mut text = String::new();
        let mut calls = Vec::new();
        for part in candidate
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                if part.get("thought").and_then(Value::as_bool) != Some(true) {
                    text.push_str(t);
                }
            } else if let Some(call) = part.get("functionCall") {
                calls.push(json!({
                    "index": *count,
                    "id": call_id(call, part),
                    "type": "function",
                    "function": {
                        "name": call.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": call.get("args").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                    },
                }));
                *count += 1;
            }
        }
        let finish = candidate
            .get("finishReason")
            .and_then(Value::as_str)
            .map(|reason| finish_reason(reason, *count > 0));
        Choice {
            index,
            text,
            calls,
            finish,
        }
    }

    /// A whole `chat.completion` from a `generateContent` response.
    fn completion(&mut self, response: &Value) -> Value {
        let mut choices = self.read(response);
        if choices.is_empty() {
            choices.push(Choice {
                index: 0,
                text: String::new(),
                calls: Vec::new(),
                finish: None,
            });
        }
        let choices: Vec<Value> = choices
            .into_iter()
            .map(|choice| {
                let finish = choice
                    .finish
                    .unwrap_or_else(|| finish_reason("STOP", !choice.calls.is_empty()));
                let mut message = json!({"role": "assistant", "content": choice.text});
                if !choice.calls.is_empty() {
                    let mut calls = choice.calls;
                    for call in &mut calls {
                        call.as_object_mut().map(|c| c.remove("index"));
                    }
                    message["tool_calls"] = Value::Array(calls);
                }
                json!({"index": choice.index, "message": message, "finish_reason": finish})
            })
            .collect();
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            // Left out when Gemini sent none: the proxy then counts locally.
            "usage": self.usage.map(Usage::to_openai),
        })
    }

    /// A chunk for the choice at `index`.
    fn choice_chunk(&self, index: u64, delta: Value, finish: Option<&str>) -> Value {
        let mut out = chunk(&self.id, &self.model, self.created, delta, finish);
        out["choices"][0]["index"] = json!(index);
        out
    }

    /// The assistant role chunk of a choice, the first time it is asked for.
    fn role(&mut self, index: u64) -> Option<Value> {
        self.started
            .insert(index)
            .then(|| self.choice_chunk(index, json!({"role": "assistant", "content": ""}), None))
    }

    /// The chunks for one streamed response piece, per candidate.
    fn chunks(&mut self, response: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        for choice in self.read(response) {
            self.finished |= choice.finish.is_some();
            out.extend(self.role(choice.index));
            let mut delta = json!({});
            if !choice.text.is_empty() {
                delta["content"] = json!(choice.text);
            }
            if !choice.calls.is_empty() {
                delta["tool_calls"] = Value::Array(choice.calls);
            }
            if delta.as_object().is_some_and(|d| !d.is_empty()) || choice.finish.is_some() {
                out.push(self.choice_chunk(choice.index, delta, choice.finish));
            }
        }
        out
    }
}

/// Translates Gemini's SSE stream into OpenAI chunks, ending with usage.
fn stream_chunks(response: reqwest::Response, model: String, created: i64) -> ChunkStream {
    let state = ChunkState::new(&model, created);
    sse::translate(response, state, on_sse_event, ChunkState::on_end)
}

impl ChunkState {
    /// Gemini's stream has no end event: it is complete if an answer said
    /// why it finished, and then its usage goes last.
    fn on_end(&mut self) -> Result<Vec<Value>, UpstreamError> {
        if !self.finished {
            return Err(UpstreamError::Truncated);
        }
        Ok(self
            .usage
            .map(|usage| vec![usage_chunk(&self.id, &self.model, self.created, usage)])
            .unwrap_or_default())
    }
}

fn on_sse_event(state: &mut ChunkState, event: &SseEvent) -> Step {
    match serde_json::from_str::<Value>(&event.data) {
        Ok(value) => {
            // The role goes out with the first event, not before: until
            // Gemini has sent something, the stream can still be retried.
            let mut chunks: Vec<Value> = state.role(0).into_iter().collect();
            chunks.extend(state.chunks(&value));
            Step::Continue(chunks)
        }
        Err(e) => Step::Fail(UpstreamError::Protocol(format!("bad event: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_maps_roles_system_tools_and_config() {
        let body: Body = serde_json::from_value(json!({
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_0", "content": "cold"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "auto", "max_tokens": 50, "temperature": 0.1, "stop": ["x"]
        }))
        .unwrap();
        let request = to_gemini(&body).unwrap();
        assert_eq!(
            request["systemInstruction"]["parts"][0]["text"],
            "Be brief."
        );
        assert_eq!(request["contents"][0]["role"], "user");
        assert_eq!(request["contents"][1]["role"], "model");
        assert_eq!(
            request["contents"][1]["parts"][0]["functionCall"]["args"]["city"],
            "Oslo"
        );
        assert_eq!(
            request["contents"][2]["parts"][0]["functionResponse"]["name"],
            "weather"
        );
        assert_eq!(
            request["contents"][2]["parts"][0]["functionResponse"]["id"],
            "call_0"
        );
        assert_eq!(
            request["contents"][1]["parts"][0]["thoughtSignature"],
            DUMMY_SIGNATURE
        );
        assert_eq!(
            request["tools"][0]["functionDeclarations"][0]["name"],
            "weather"
        );
        assert_eq!(
            request["toolConfig"]["functionCallingConfig"]["mode"],
            "AUTO"
        );
        assert_eq!(request["generationConfig"]["maxOutputTokens"], 50);
        assert_eq!(request["generationConfig"]["stopSequences"][0], "x");
    }

    #[test]
    fn response_maps_text_calls_reason_and_usage() {
        let mut state = ChunkState::new("gemini-x", 1);
        let completion = state.completion(&json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "Checking."}, {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "cachedContentTokenCount": 4}
        }));
        let choice = &completion["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Checking.");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(completion["usage"]["prompt_tokens"], 9);
        assert_eq!(completion["usage"]["completion_tokens"], 3);
        assert_eq!(
            completion["usage"]["prompt_tokens_details"]["cached_tokens"],
            4
        );
        assert_eq!(finish_reason("MAX_TOKENS", false), "length");
        assert_eq!(finish_reason("SAFETY", false), "content_filter");
    }

    fn body(value: Value) -> Body {
        serde_json::from_value(value).unwrap()
    }

    fn event(value: Value) -> SseEvent {
        SseEvent {
            event: None,
            data: value.to_string(),
        }
    }

    fn stream(state: &mut ChunkState, value: Value) -> Vec<Value> {
        match on_sse_event(state, &event(value)) {
            Step::Continue(chunks) => chunks,
            _ => panic!("the stream stopped"),
        }
    }

    #[test]
    fn a_stream_ends_complete_only_after_a_finish_reason() {
        let mut state = ChunkState::new("gemini-x", 1);
        state.chunks(&json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}));
        assert!(matches!(state.on_end(), Err(UpstreamError::Truncated)));
        state.chunks(&json!({
            "candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1}
        }));
        let last = state.on_end().unwrap();
        assert_eq!(last[0]["usage"]["prompt_tokens"], 2, "{last:?}");
    }

    #[test]
    fn thought_signatures_ride_in_tool_call_ids() {
        let mut state = ChunkState::new("gemini-3", 1);
        let completion = state.completion(&json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": "c2ln+/A="}
        ]}, "finishReason": "STOP"}]}));
        let id = completion["choices"][0]["message"]["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (base, signature) = split_call_id(&id);
        assert!(base.starts_with("call_"), "{id}");
        assert_eq!(signature, Some("c2ln-_A"));
        assert_eq!(id, format!("{base}__thought__c2ln-_A"));
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{id}"
        );

        let request = to_gemini(&body(json!({"messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": "weather", "arguments": "{}"}},
                {"id": "second", "type": "function", "function": {"name": "time", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": id, "content": "cold"},
            {"role": "tool", "tool_call_id": "second", "content": "noon"}
        ]})))
        .unwrap();
        let model = &request["contents"][1]["parts"];
        assert_eq!(model[0]["thoughtSignature"], "c2ln+/A=");
        assert_eq!(model[0]["functionCall"]["id"], base);
        // A signed turn gets no stand-in signature anywhere.
        assert!(model[1].get("thoughtSignature").is_none());
        let responses = &request["contents"][2]["parts"];
        assert_eq!(responses[0]["functionResponse"]["name"], "weather");
        assert_eq!(responses[0]["functionResponse"]["id"], base);
        assert_eq!(responses[1]["functionResponse"]["name"], "time");
        assert_eq!(responses[1]["functionResponse"]["id"], "second");
    }

    #[test]
    fn unsigned_model_turns_get_the_stand_in_on_their_first_call() {
        let request = to_gemini(&body(json!({"messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "noon"},
            {"role": "assistant", "content": "Cold at noon."}
        ]})))
        .unwrap();
        let model = &request["contents"][1]["parts"];
        assert!(model[0].get("thoughtSignature").is_none()); // the text
        assert_eq!(model[1]["thoughtSignature"], DUMMY_SIGNATURE);
        assert!(model[2].get("thoughtSignature").is_none());
        assert!(request["contents"][3]["parts"][0]
            .get("thoughtSignature")
            .is_none());
    }

    #[test]
    fn tool_call_ids_are_unique_and_gemini_ids_are_kept() {
        let response = json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "a", "args": {}}},
            {"functionCall": {"name": "b", "args": {}, "id": "fc-7"}}
        ]}}]});
        let first = ChunkState::new("g", 1).completion(&response);
        let second = ChunkState::new("g", 1).completion(&response);
        let id = |c: &Value, i: usize| {
            c["choices"][0]["message"]["tool_calls"][i]["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert!(id(&first, 0).starts_with("call_"));
        assert_ne!(id(&first, 0), "call_0");
        assert_ne!(id(&first, 0), id(&second, 0));
        assert_eq!(id(&first, 1), "fc-7");

        // In a stream, calls keep counting and each keeps its own id.
        let mut state = ChunkState::new("g", 1);
        let piece = json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "a", "args": {}}}]}}]});
        let one = stream(&mut state, piece.clone());
        let two = stream(&mut state, piece);
        let call = |chunks: &[Value]| {
            chunks.last().unwrap()["choices"][0]["delta"]["tool_calls"][0].clone()
        };
        assert_eq!(call(&one)["index"], 0);
        assert_eq!(call(&two)["index"], 1);
        assert_ne!(call(&one)["id"], call(&two)["id"]);
    }

    #[test]
    fn tools_send_full_json_schema() {
        let schema = json!({"type": "object", "additionalProperties": false,
            "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"const": 1}}});
        let request = to_gemini(&body(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]
        })))
        .unwrap();
        let declaration = &request["tools"][0]["functionDeclarations"][0];
        assert_eq!(declaration["parametersJsonSchema"], schema);
        assert!(declaration.get("parameters").is_none());
    }

    #[test]
    fn response_format_asks_for_json() {
        let config = |format: Value| {
            to_gemini(&body(
                json!({"messages": [{"role": "user", "content": "hi"}], "response_format": format}),
            ))
            .map(|request| request["generationConfig"].clone())
        };
        let object = config(json!({"type": "json_object"})).unwrap();
        assert_eq!(object["responseMimeType"], "application/json");
        assert!(object.get("responseJsonSchema").is_none());
        let schema = json!({"type": "object", "additionalProperties": false});
        let typed =
            config(json!({"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}))
                .unwrap();
        assert_eq!(typed["responseMimeType"], "application/json");
        assert_eq!(typed["responseJsonSchema"], schema);
        assert_eq!(config(json!({"type": "text"})).unwrap(), Value::Null);
        let err = config(json!({"type": "xml"})).unwrap_err();
        assert!(
            matches!(&err, UpstreamError::Status { status: 400, message, .. } if message.contains("response_format")),
            "{err:?}"
        );
    }

    #[test]
    fn blocked_prompts_finish_with_content_filter() {
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}});
        let completion = ChunkState::new("g", 1).completion(&blocked);
        assert_eq!(completion["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(completion["choices"][0]["message"]["content"], "");

        let mut state = ChunkState::new("g", 1);
        let chunks = stream(&mut state, blocked);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn every_candidate_is_a_choice() {
        let response = json!({"candidates": [
            {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP"},
            {"index": 1, "content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}, "finishReason": "STOP"}
        ], "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 6}});
        let completion = ChunkState::new("g", 1).completion(&response);
        let choices = completion["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 2);
        assert_eq!(choices[0]["index"], 0);
        assert_eq!(choices[0]["message"]["content"], "A");
        assert_eq!(choices[0]["finish_reason"], "stop");
        assert_eq!(choices[1]["index"], 1);
        assert_eq!(
            choices[1]["message"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(choices[1]["finish_reason"], "tool_calls");

        let mut state = ChunkState::new("g", 1);
        let chunks = stream(&mut state, response);
        let summary: Vec<(Value, Value, Value)> = chunks
            .iter()
            .map(|c| {
                let choice = &c["choices"][0];
                (
                    choice["index"].clone(),
                    choice["delta"]["role"].clone(),
                    choice["finish_reason"].clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (json!(0), json!("assistant"), Value::Null),
                (json!(0), Value::Null, json!("stop")),
                (json!(1), json!("assistant"), Value::Null),
                (json!(1), Value::Null, json!("tool_calls")),
            ]
        );
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"][0]["index"],
            0
        );
    }

    #[test]
    fn image_urls_carry_a_mime_type() {
        let parts = parts_of(&json!([
            {"type": "image_url", "image_url": {"url": "https://x.test/a/cat.PNG?size=2"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/photo"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/p.webp#frag"}}
        ]));
        assert_eq!(parts[0]["fileData"]["mimeType"], "image/png");
        assert_eq!(
            parts[0]["fileData"]["fileUri"],
            "https://x.test/a/cat.PNG?size=2"
        );
        assert_eq!(parts[1]["fileData"]["mimeType"], "image/jpeg");
        assert_eq!(parts[2]["fileData"]["mimeType"], "image/webp");
        assert_eq!(image_mime("https://x.test/i.heic"), "image/heic");
        assert_eq!(image_mime("https://x.test/i.gif"), "image/gif");
    }
}

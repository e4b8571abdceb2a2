//! Google Gemini (`generateContent`, `streamGenerateContent?alt=sse`),
//! translated to and from OpenAI's chat shapes.

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use super::sse::{self, SseEvent, Step};
use super::{
    chunk, content_text, json_body, parse_data_url, push_merged, send, stop_list, unix_now,
    usage_chunk, Body, ChunkStream, Completion, Provider, UpstreamError, Usage,
};

const DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com";

/// A client for the Gemini API.
pub struct Gemini {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

impl Gemini {
    pub fn new(http: reqwest::Client, base: Option<String>, api_key: String) -> Self {
        let base = base.unwrap_or_else(|| DEFAULT_BASE.into());
        Self {
            http,
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
        let mut state = ChunkState::new(model);
        Ok(Completion::Translated(state.completion(&response)))
    }

    async fn chat_stream(&self, body: &Body, model: &str) -> Result<ChunkStream, UpstreamError> {
        let request = to_gemini(body)?;
        let response = send(self.post(model, "streamGenerateContent?alt=sse", &request)).await?;
        Ok(stream_chunks(response, model.to_string()))
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
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        tool_names.insert(id.to_string(), name.to_string());
                    }
                    let arguments = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    let args: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
                    parts.push(json!({"functionCall": {"name": name, "args": args}}));
                }
                push_content(&mut contents, "model", parts);
            }
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let name = tool_names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| id.to_string());
                let part = json!({"functionResponse": {"name": name, "response": {"content": content_text(&content)}}});
                push_content(&mut contents, "user", vec![part]);
            }
            _ => push_content(&mut contents, "user", parts_of(&content)),
        }
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
                if let Some(parameters) = f.get("parameters") {
                    declaration["parameters"] = parameters.clone();
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
                        None => json!({"fileData": {"fileUri": url}}),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
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

fn usage_of(metadata: &Value) -> Usage {
    let get = |key: &str| metadata.get(key).and_then(Value::as_i64).unwrap_or(0);
    Usage {
        prompt_tokens: get("promptTokenCount"),
        completion_tokens: get("candidatesTokenCount") + get("thoughtsTokenCount"),
        cached_tokens: get("cachedContentTokenCount"),
    }
}

/// Numbering of tool calls across a response or stream.
struct ChunkState {
    id: String,
    model: String,
    created: i64,
    tool_calls: usize,
    usage: Option<Usage>,
    /// Whether a stream's first chunk (the assistant role) went out.
    started: bool,
}

impl ChunkState {
    fn new(model: &str) -> Self {
        Self {
            id: format!("gemini-{}", uuid::Uuid::new_v4().simple()),
            model: model.to_string(),
            created: unix_now(),
            tool_calls: 0,
            usage: None,
            started: false,
        }
    }

    /// Text and tool calls of the first candidate, with its finish reason.
    fn read(&mut self, response: &Value) -> (String, Vec<Value>, Option<String>) {
        if let Some(metadata) = response.get("usageMetadata") {
            self.usage = Some(usage_of(metadata));
        }
        let candidate = response.pointer("/candidates/0").unwrap_or(&Value::Null);
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
                let index = self.tool_calls;
                self.tool_calls += 1;
                calls.push(json!({
                    "index": index,
                    "id": format!("call_{index}"),
                    "type": "function",
                    "function": {
                        "name": call.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": call.get("args").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                    },
                }));
            }
        }
        let finish = candidate
            .get("finishReason")
            .and_then(Value::as_str)
            .map(str::to_owned);
        (text, calls, finish)
    }

    /// A whole `chat.completion` from a `generateContent` response.
    fn completion(&mut self, response: &Value) -> Value {
        let (text, mut calls, finish) = self.read(response);
        let mut message = json!({"role": "assistant", "content": text});
        if !calls.is_empty() {
            for call in &mut calls {
                call.as_object_mut().map(|c| c.remove("index"));
            }
            message["tool_calls"] = Value::Array(calls);
        }
        let reason = finish_reason(finish.as_deref().unwrap_or("STOP"), self.tool_calls > 0);
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reason}],
            // Left out when Gemini sent none: the proxy then counts locally.
            "usage": self.usage.map(Usage::to_openai),
        })
    }

    /// The chunks for one streamed response piece.
    fn chunks(&mut self, response: &Value) -> Vec<Value> {
        let (text, calls, finish) = self.read(response);
        let mut out = Vec::new();
        let mut delta = json!({});
        if !text.is_empty() {
            delta["content"] = json!(text);
        }
        if !calls.is_empty() {
            delta["tool_calls"] = Value::Array(calls);
        }
        let reason = finish
            .as_deref()
            .map(|f| finish_reason(f, self.tool_calls > 0));
        if delta.as_object().is_some_and(|d| !d.is_empty()) || reason.is_some() {
            out.push(chunk(&self.id, &self.model, self.created, delta, reason));
        }
        out
    }
}

/// Translates Gemini's SSE stream into OpenAI chunks, ending with usage.
fn stream_chunks(response: reqwest::Response, model: String) -> ChunkStream {
    let state = ChunkState::new(&model);
    sse::translate(response, state, on_sse_event, |state| {
        state
            .usage
            .map(|usage| vec![usage_chunk(&state.id, &state.model, state.created, usage)])
            .unwrap_or_default()
    })
}

fn on_sse_event(state: &mut ChunkState, event: &SseEvent) -> Step {
    match serde_json::from_str::<Value>(&event.data) {
        Ok(value) => {
            // The role goes out with the first event, not before: until
            // Gemini has sent something, the stream can still be retried.
            let mut chunks = Vec::new();
            if !state.started {
                state.started = true;
                let role = json!({"role": "assistant", "content": ""});
                chunks.push(chunk(&state.id, &state.model, state.created, role, None));
            }
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
        let mut state = ChunkState::new("gemini-x");
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
}

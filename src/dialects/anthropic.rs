//! Anthropic's Messages API as a front door: its requests translated to the
//! gateway's chat shape for OpenAI-compatible and Gemini upstreams, and
//! their answers, streamed or not, translated back.

use serde_json::{json, Map, Value};

use super::ChunkDelta;
use crate::providers::{content_text, Body, Usage};

/// A Messages request in chat shape, and what in it has no chat
/// counterpart (such as Anthropic's server tools): an Anthropic upstream
/// takes the request as it came, any other refuses it.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub body: Body,
    pub unsupported: Option<String>,
}

/// Translates a Messages request (checked by the proxy) to a chat request.
pub fn to_chat(request: &Body) -> ChatRequest {
    let mut unsupported = None;
    let mut body = Map::new();
    body.insert(
        "model".into(),
        request.get("model").cloned().unwrap_or_default(),
    );
    body.insert("messages".into(), Value::Array(chat_messages(request)));
    if let Some(max) = request.get("max_tokens") {
        body.insert("max_completion_tokens".into(), max.clone());
    }
    for key in ["temperature", "top_p", "top_k"] {
        if let Some(value) = request.get(key).filter(|v| v.is_number()) {
            body.insert(key.into(), value.clone());
        }
    }
    if let Some(stop) = request.get("stop_sequences").filter(|s| s.is_array()) {
        body.insert("stop".into(), stop.clone());
    }
    if let Some(user) = request
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .filter(|u| u.is_string())
    {
        body.insert("user".into(), user.clone());
    }
    if let Some(effort) = request.get("thinking").and_then(reasoning_effort) {
        body.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        let (functions, server_tool) = chat_tools(tools);
        unsupported = server_tool.map(|kind| {
            format!("the tool type `{kind}` is Anthropic's own; only Anthropic models take it")
        });
        if !functions.is_empty() {
            body.insert("tools".into(), Value::Array(functions));
        }
    }
    if let Some(choice) = request.get("tool_choice") {
        insert_tool_choice(choice, &mut body);
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    ChatRequest { body, unsupported }
}

/// `thinking` as OpenAI's `reasoning_effort`, by its token budget.
fn reasoning_effort(thinking: &Value) -> Option<&'static str> {
    if thinking.get("type").and_then(Value::as_str) != Some("enabled") {
        return None;
    }
    let budget = thinking.get("budget_tokens").and_then(Value::as_i64)?;
    Some(match budget {
        ..4096 => "low",
        4096..16384 => "medium",
        _ => "high",
    })
}

/// The system prompt, then each message: a user message's `tool_result`
/// blocks become `tool` messages ahead of the rest of it, and an assistant
/// message's `tool_use` blocks become its `tool_calls`.
fn chat_messages(request: &Body) -> Vec<Value> {
    let mut out = Vec::new();
    let system = request.get("system").map(content_text).unwrap_or_default();
    if !system.is_empty() {
        out.push(json!({"role": "system", "content": system}));
    }
    let messages = request.get("messages").and_then(Value::as_array);
    for message in messages.into_iter().flatten() {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message.get("role").and_then(Value::as_str) {
            Some("assistant") => out.push(assistant_message(content)),
            _ => user_messages(content, &mut out),
        }
    }
    out
}

fn assistant_message(content: &Value) -> Value {
    let blocks = match content {
        Value::String(text) => return json!({"role": "assistant", "content": text}),
        Value::Array(blocks) => blocks,
        _ => return json!({"role": "assistant", "content": ""}),
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or_default(),
                    "arguments": block.get("input").unwrap_or(&json!({})).to_string(),
                },
            })),
            _ => {} // thinking blocks belong to the model that wrote them
        }
    }
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

/// A user message: its tool results first, as `tool` messages, then its
/// other blocks as one user message.
fn user_messages(content: &Value, out: &mut Vec<Value>) {
    let blocks = match content {
        Value::Array(blocks) => blocks,
        other => {
            out.push(json!({"role": "user", "content": content_text(other)}));
            return;
        }
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("tool_result") => {
                let result = block.get("content").unwrap_or(&Value::Null);
                out.push(json!({
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id").cloned().unwrap_or_default(),
                    "content": content_text(result),
                }));
                // Images a tool returned follow as the user's.
                let images = result.as_array().into_iter().flatten();
                parts.extend(
                    images
                        .filter(|b| b["type"] == "image")
                        .filter_map(chat_part),
                );
            }
            _ => parts.extend(chat_part(block)),
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
}

/// A text, image or document block as a chat content part.
fn chat_part(block: &Value) -> Option<Value> {
    let source = block.get("source");
    let source_type = source.and_then(|s| s.get("type")).and_then(Value::as_str);
    let field = |key: &str| {
        source
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let data_url = || format!("data:{};base64,{}", field("media_type"), field("data"));
    match (block.get("type").and_then(Value::as_str)?, source_type) {
        ("text", _) => Some(json!({"type": "text", "text": block.get("text")?})),
        ("image", Some("base64")) => {
            Some(json!({"type": "image_url", "image_url": {"url": data_url()}}))
        }
        ("image", Some("url")) => {
            Some(json!({"type": "image_url", "image_url": {"url": field("url")}}))
        }
        ("document", Some("text")) => Some(json!({"type": "text", "text": field("data")})),
        ("document", Some("base64")) => Some(json!({"type": "file", "file": {
            "filename": block.get("title").and_then(Value::as_str).unwrap_or("document.pdf"),
            "file_data": data_url(),
        }})),
        ("document", Some("url")) => {
            Some(json!({"type": "file", "file": {"file_url": field("url")}}))
        }
        _ => None,
    }
}

/// Client tools as chat functions, and the type of the first server tool
/// (one with no `input_schema`), which has no counterpart.
fn chat_tools(tools: &[Value]) -> (Vec<Value>, Option<String>) {
    let mut functions = Vec::new();
    let mut server_tool = None;
    for tool in tools {
        let custom = matches!(
            tool.get("type").and_then(Value::as_str),
            None | Some("custom")
        );
        match tool.get("input_schema") {
            Some(schema) if custom => functions.push(json!({"type": "function", "function": {
                "name": tool.get("name").cloned().unwrap_or_default(),
                "description": tool.get("description").cloned().unwrap_or(json!("")),
                "parameters": schema,
            }})),
            _ => {
                server_tool.get_or_insert_with(|| {
                    tool.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_string()
                });
            }
        }
    }
    (functions, server_tool)
}

fn insert_tool_choice(choice: &Value, body: &mut Body) {
    let chat_choice = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => json!({"type": "function", "function": {"name": choice.get("name")}}),
        _ => return,
    };
    body.insert("tool_choice".into(), chat_choice);
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        body.insert("parallel_tool_calls".into(), json!(false));
    }
}

/// OpenAI's `finish_reason` as Anthropic's `stop_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// A Messages API answer from a chat completion, billed as `usage`.
pub fn from_chat(completion: &Value, id: &str, model: &str, usage: Usage) -> Value {
    let choice = completion.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let mut content = Vec::new();
    if let Some(text) = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    let calls = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        content.push(tool_use_block(call, true));
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        .unwrap_or("stop");
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason(finish), "stop_sequence": null,
        "usage": usage.to_anthropic(),
    })
}

/// A chat tool call as a `tool_use` block; its input parsed when `full`
/// (the streamed form starts empty and gets its input as JSON deltas).
fn tool_use_block(call: &Value, full: bool) -> Value {
    let input = match full {
        true => call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({})),
        false => json!({}),
    };
    json!({
        "type": "tool_use",
        "id": call.get("id").cloned().unwrap_or_else(|| json!("toolu_gateway")),
        "name": call.pointer("/function/name").cloned().unwrap_or_default(),
        "input": input,
    })
}

/// The characters an Anthropic answer or event generated (text, thinking
/// and tool input), for a local count when it reports no usage.
pub fn generated_chars(value: &Value) -> usize {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map_or(0, str::len);
    match value.get("type").and_then(Value::as_str) {
        Some("message") => value
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|block| {
                text(block, "text")
                    + text(block, "thinking")
                    + block.get("input").map_or(0, |i| i.to_string().len())
            })
            .sum(),
        Some("content_block_delta") => value.get("delta").map_or(0, |delta| {
            text(delta, "text") + text(delta, "partial_json") + text(delta, "thinking")
        }),
        _ => 0,
    }
}

/// What an Anthropic event says of the usage so far.
pub fn read_usage(event: &Value, usage: &mut Option<Usage>) {
    match event.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            *usage = Usage::from_anthropic(event.pointer("/message/usage"));
        }
        Some("message_delta") => {
            if let (Some(usage), Some(delta)) = (usage.as_mut(), event.get("usage")) {
                usage.merge_anthropic(delta);
            }
        }
        _ => {}
    }
}

/// The block being streamed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    None,
    Text,
    /// A tool call, by its chat index.
    Tool(u64),
}

/// Turns a chat chunk stream into Anthropic's event sequence:
/// `message_start`, then for each block `content_block_start`, its deltas
/// and `content_block_stop`, then `message_delta` and `message_stop`.
pub struct ChatToEvents {
    id: String,
    model: String,
    prompt_estimate: i64,
    started: bool,
    open: Open,
    /// Blocks started so far: the next block's index.
    blocks: u64,
    finish_reason: Option<String>,
}

impl ChatToEvents {
    /// A translator for the answer `id` to `model`; `message_start` reports
    /// `prompt_estimate` input tokens (the real count comes at the end).
    pub fn new(id: &str, model: &str, prompt_estimate: i64) -> Self {
        Self {
            id: id.into(),
            model: model.into(),
            prompt_estimate,
            started: false,
            open: Open::None,
            blocks: 0,
            finish_reason: None,
        }
    }

    /// The events one chat chunk makes.
    pub fn on_chunk(&mut self, chunk: &Value) -> Vec<Value> {
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            events.push(json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": self.prompt_estimate, "output_tokens": 0},
            }}));
        }
        let Some(delta) = ChunkDelta::of(chunk) else {
            return events;
        };
        if let Some(text) = delta.text {
            self.open_block(Open::Text, json!({"type": "text", "text": ""}), &mut events);
            events.push(self.delta(json!({"type": "text_delta", "text": text})));
        }
        for call in delta.calls {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if self.open != Open::Tool(index) {
                self.open_block(Open::Tool(index), tool_use_block(call, false), &mut events);
            }
            if let Some(arguments) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                events.push(
                    self.delta(json!({"type": "input_json_delta", "partial_json": arguments})),
                );
            }
        }
        if let Some(reason) = delta.finish_reason {
            self.finish_reason = Some(reason.into());
        }
        events
    }

    /// The closing events of a complete answer, billed as `usage`.
    pub fn finish(&mut self, usage: Usage) -> Vec<Value> {
        let mut events = self.on_chunk(&json!({}));
        self.close_block(&mut events);
        let reason = stop_reason(self.finish_reason.as_deref().unwrap_or("stop"));
        events.push(json!({"type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": null},
            "usage": usage.to_anthropic()}));
        events.push(json!({"type": "message_stop"}));
        events
    }

    fn open_block(&mut self, kind: Open, block: Value, events: &mut Vec<Value>) {
        if self.open == kind {
            return;
        }
        self.close_block(events);
        self.open = kind;
        events.push(
            json!({"type": "content_block_start", "index": self.blocks, "content_block": block}),
        );
        self.blocks += 1;
    }

    fn close_block(&mut self, events: &mut Vec<Value>) {
        if self.open != Open::None {
            events.push(json!({"type": "content_block_stop", "index": self.blocks - 1}));
            self.open = Open::None;
        }
    }

    fn delta(&self, delta: Value) -> Value {
        json!({"type": "content_block_delta", "index": self.blocks - 1, "delta": delta})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Body {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn a_request_translates_system_blocks_tools_and_results() {
        let request = body(json!({
            "model": "m", "max_tokens": 100, "stream": true,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            "temperature": 0.5, "top_k": 5, "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 8000},
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Sunny"}]},
                    {"type": "text", "text": "Thanks"},
                ]},
            ],
        }));
        let ChatRequest { body, unsupported } = to_chat(&request);
        assert_eq!(unsupported, None);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "Be brief.\nBe kind."})
        );
        assert_eq!(
            messages[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(
            messages[1]["content"][2]["file"]["file_data"],
            "data:application/pdf;base64,JVBE"
        );
        assert_eq!(messages[2]["content"], Value::Null);
        assert_eq!(
            messages[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(
            messages[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"})
        );
        assert_eq!(messages[4]["content"][0]["text"], "Thanks");
        assert_eq!(body["max_completion_tokens"], 100);
        assert_eq!(body["stop"], json!(["END"]));
        assert_eq!(body["user"], "u-1");
        assert_eq!(body["top_k"], 5);
        assert_eq!(body["reasoning_effort"], "medium");
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(body["parallel_tool_calls"], false);
        assert_eq!(
            body["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(body["stream_options"]["include_usage"], true);
    }

    #[test]
    fn a_server_tool_is_marked_unsupported() {
        let request = body(json!({"model": "m", "max_tokens": 5, "messages": [],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
        let translated = to_chat(&request);
        assert!(translated
            .unsupported
            .unwrap()
            .contains("web_search_20250305"));
        assert!(translated.body.get("tools").is_none());
    }

    #[test]
    fn a_completion_becomes_a_message_with_cache_buckets() {
        let completion = json!({"choices": [{"finish_reason": "tool_calls", "message": {
            "content": "Let me look.",
            "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{\"a\":1}"}}],
        }}]});
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 4,
            cached_tokens: 3,
            cache_write_tokens: 2,
            ..Usage::default()
        };
        let message = from_chat(&completion, "msg_1", "m", usage);
        assert_eq!(
            message["content"][0],
            json!({"type": "text", "text": "Let me look."})
        );
        assert_eq!(message["content"][1]["input"], json!({"a": 1}));
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(message["usage"]["input_tokens"], 5);
        assert_eq!(message["usage"]["cache_read_input_tokens"], 3);
        assert_eq!(message["usage"]["cache_creation_input_tokens"], 2);
        assert_eq!(stop_reason("length"), "max_tokens");
        assert_eq!(stop_reason("stop"), "end_turn");
    }

    #[test]
    fn chunks_become_the_event_sequence() {
        let mut events = ChatToEvents::new("msg_1", "m", 7);
        let mut out = Vec::new();
        for chunk in [
            json!({"choices": [{"delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"delta": {"content": "Hi"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
        ] {
            out.extend(events.on_chunk(&chunk));
        }
        let usage = Usage {
            prompt_tokens: 7,
            completion_tokens: 2,
            ..Usage::default()
        };
        out.extend(events.finish(usage));
        let kinds: Vec<&str> = out.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(out[0]["message"]["usage"]["input_tokens"], 7);
        assert_eq!(out[4]["index"], 1);
        assert_eq!(out[4]["content_block"]["type"], "tool_use");
        assert_eq!(out[5]["delta"]["partial_json"], "{}");
        assert_eq!(out[7]["delta"]["stop_reason"], "tool_use");
        assert_eq!(out[7]["usage"]["output_tokens"], 2);
    }

    #[test]
    fn usage_is_read_from_native_events() {
        let mut usage = None;
        read_usage(
            &json!({"type": "message_start", "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
            &mut usage,
        );
        read_usage(
            &json!({"type": "message_delta", "usage": {"output_tokens": 9}}),
            &mut usage,
        );
        let usage = usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.cached_tokens,
                usage.completion_tokens
            ),
            (7, 2, 9)
        );
        let delta =
            json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "abcd"}});
        assert_eq!(generated_chars(&delta), 4);
    }
}

//! OpenAI's Responses API as a front door: its requests (with the
//! conversation a `previous_response_id` continues) translated to the
//! gateway's chat shape, and chat answers, streamed or not, translated to
//! response objects and Responses events.

use serde_json::{json, Map, Value};

use super::ChunkDelta;
use crate::providers::{content_text, Body, Usage};

/// A Responses request in chat shape, and what in it has no chat
/// counterpart (such as a hosted tool), which no upstream can then take.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub body: Body,
    pub unsupported: Option<String>,
}

/// The request's `input` as a list of items (a string is one user message).
pub fn input_items(request: &Body) -> Vec<Value> {
    match request.get("input") {
        Some(Value::String(text)) => {
            vec![json!({"type": "message", "role": "user", "content": text})]
        }
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// Translates a Responses request to a chat request; `conversation` is the
/// items before this request's input (from `previous_response_id`).
pub fn to_chat(request: &Body, conversation: &[Value]) -> ChatRequest {
    let mut body = Map::new();
    let mut unsupported = None;
    body.insert(
        "model".into(),
        request.get("model").cloned().unwrap_or_default(),
    );
    let mut messages = Vec::new();
    if let Some(instructions) = request
        .get("instructions")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty())
    {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    for item in conversation.iter().chain(input_items(request).iter()) {
        push_item(item, &mut messages);
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(max) = request.get("max_output_tokens").filter(|m| m.is_number()) {
        body.insert("max_completion_tokens".into(), max.clone());
    }
    for key in ["temperature", "top_p", "parallel_tool_calls"] {
        if let Some(value) = request.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), value.clone());
        }
    }
    if let Some(user) = request
        .get("user")
        .or_else(|| request.get("safety_identifier"))
        .filter(|u| u.is_string())
    {
        body.insert("user".into(), user.clone());
    }
    if let Some(effort) = reasoning_effort(request).filter(|e| e.is_string()) {
        body.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(format) = request
        .get("text")
        .and_then(|t| t.get("format"))
        .and_then(response_format)
    {
        body.insert("response_format".into(), format);
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        let (functions, hosted) = chat_tools(tools);
        unsupported = hosted.map(|kind| {
            format!("the tool type `{kind}` is hosted by OpenAI; the gateway passes on function and custom tools only")
        });
        if !functions.is_empty() {
            body.insert("tools".into(), Value::Array(functions));
        }
    }
    if let Some(choice) = request.get("tool_choice").and_then(tool_choice) {
        body.insert("tool_choice".into(), choice);
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    ChatRequest { body, unsupported }
}

/// The request's `reasoning.effort`.
fn reasoning_effort(request: &Body) -> Option<&Value> {
    request.get("reasoning")?.get("effort")
}

/// Adds one input item to the chat messages: consecutive function calls
/// join one assistant message, as chat has them.
fn push_item(item: &Value, messages: &mut Vec<Value>) {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
            let content = item.get("content").unwrap_or(&Value::Null);
            messages.push(json!({"role": role, "content": chat_content(role, content)}));
        }
        "function_call" | "custom_tool_call" => {
            let arguments = match kind {
                "custom_tool_call" => json!({"input": item.get("input")}).to_string(),
                _ => item
                    .get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("{}")
                    .to_string(),
            };
            let call = json!({
                "id": item.get("call_id").cloned().unwrap_or_default(),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": arguments},
            });
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    if !last.get("tool_calls").is_some_and(Value::is_array) {
                        last["tool_calls"] = json!([]);
                    }
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" | "custom_tool_call_output" => {
            let output = content_text(item.get("output").unwrap_or(&Value::Null));
            messages.push(
                json!({"role": "tool", "tool_call_id": item.get("call_id"), "content": output}),
            );
        }
        _ => {} // reasoning and references stay with the model that made them
    }
}

/// A message's content in chat shape: assistant text as a string, the
/// user's parts as chat parts.
fn chat_content(role: &str, content: &Value) -> Value {
    let Value::Array(parts) = content else {
        return content.clone();
    };
    if role == "assistant" || role == "system" || role == "developer" {
        return json!(content_text(content));
    }
    let chat_parts: Vec<Value> = parts.iter().filter_map(chat_part).collect();
    Value::Array(chat_parts)
}

fn chat_part(part: &Value) -> Option<Value> {
    match part.get("type").and_then(Value::as_str)? {
        "input_text" | "output_text" | "text" => {
            Some(json!({"type": "text", "text": part.get("text")?}))
        }
        "input_image" => {
            let mut image = json!({"url": part.get("image_url")?});
            if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                image["detail"] = detail.clone();
            }
            Some(json!({"type": "image_url", "image_url": image}))
        }
        "input_file" => Some(json!({"type": "file", "file": {
            "filename": part.get("filename"), "file_data": part.get("file_data")?,
        }})),
        _ => None,
    }
}

/// `text.format` as chat's `response_format`.
fn response_format(format: &Value) -> Option<Value> {
    match format.get("type").and_then(Value::as_str)? {
        "json_schema" => {
            let mut schema = json!({
                "name": format.get("name").cloned().unwrap_or(json!("response")),
                "schema": format.get("schema").cloned().unwrap_or(json!({})),
            });
            if let Some(strict) = format.get("strict").filter(|s| s.is_boolean()) {
                schema["strict"] = strict.clone();
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        "json_object" => Some(json!({"type": "json_object"})),
        _ => None,
    }
}

/// The names of the request's freeform (`custom`) tools, such as Codex's
/// `apply_patch`: chat has no such tools, so each goes as a function that
/// takes its input as one string, and its calls come back as
/// `custom_tool_call` items.
pub fn custom_tool_names(request: &Body) -> Vec<String> {
    let tools = request.get("tools").and_then(Value::as_array);
    tools
        .into_iter()
        .flatten()
        .filter(|tool| tool["type"] == "custom")
        .filter_map(|tool| tool.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// A freeform tool as a chat function with one string parameter, `input`;
/// its format (a grammar, say) is told in the description.
fn custom_as_function(tool: &Value) -> Value {
    let mut description = tool
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(format) = tool.get("format").filter(|f| f["type"] == "grammar") {
        let syntax = format.get("syntax").and_then(Value::as_str).unwrap_or("");
        let definition = format
            .get("definition")
            .and_then(Value::as_str)
            .unwrap_or("");
        description.push_str(&format!(
            "\n\nPut the whole input in `input`; it follows this {syntax} grammar:\n{definition}"
        ));
    }
    json!({"type": "function", "function": {
        "name": tool.get("name"),
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "string", "description": "The tool's input, as free text."}},
            "required": ["input"],
            "additionalProperties": false,
        },
    }})
}

/// A freeform tool's input, from the arguments its stand-in function got.
fn custom_input(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .and_then(|a| a.get("input").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| arguments.to_string())
}

/// Function and freeform tools in chat shape, and the type of the first
/// hosted tool.
fn chat_tools(tools: &[Value]) -> (Vec<Value>, Option<String>) {
    let mut functions = Vec::new();
    let mut hosted = None;
    for tool in tools {
        match tool.get("type").and_then(Value::as_str) {
            Some("custom") => functions.push(custom_as_function(tool)),
            Some("function") => {
                let mut function = json!({
                    "name": tool.get("name"),
                    "parameters": tool.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                });
                for key in ["description", "strict"] {
                    if let Some(value) = tool.get(key).filter(|v| !v.is_null()) {
                        function[key] = value.clone();
                    }
                }
                functions.push(json!({"type": "function", "function": function}));
            }
            other => {
                hosted.get_or_insert_with(|| other.unwrap_or("unknown").to_string());
            }
        }
    }
    (functions, hosted)
}

fn tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(_) => Some(choice.clone()),
        Value::Object(_) if choice["type"] == "function" || choice["type"] == "custom" => {
            Some(json!({"type": "function", "function": {"name": choice.get("name")}}))
        }
        _ => None,
    }
}

/// The fields of a response object that echo its request.
pub fn echoed(request: &Body, previous: Option<&str>) -> Map<String, Value> {
    let field = |key: &str| request.get(key).cloned().unwrap_or(Value::Null);
    let mut echo = Map::new();
    for key in [
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "user",
    ] {
        echo.insert(key.into(), field(key));
    }
    echo.insert(
        "metadata".into(),
        request.get("metadata").cloned().unwrap_or(json!({})),
    );
    echo.insert(
        "tools".into(),
        request.get("tools").cloned().unwrap_or(json!([])),
    );
    echo.insert(
        "tool_choice".into(),
        request.get("tool_choice").cloned().unwrap_or(json!("auto")),
    );
    echo.insert(
        "parallel_tool_calls".into(),
        request
            .get("parallel_tool_calls")
            .cloned()
            .unwrap_or(json!(true)),
    );
    echo.insert(
        "text".into(),
        request
            .get("text")
            .cloned()
            .unwrap_or(json!({"format": {"type": "text"}})),
    );
    echo.insert("store".into(), json!(stores(request)));
    echo.insert("previous_response_id".into(), json!(previous));
    echo.insert("truncation".into(), json!("disabled"));
    echo.insert(
        "reasoning".into(),
        json!({"effort": reasoning_effort(request), "summary": null}),
    );
    echo
}

/// Whether the response is to be stored: `store`, true unless set false.
pub fn stores(request: &Body) -> bool {
    request
        .get("store")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Identifies a response and the model it names.
#[derive(Debug, Clone)]
pub struct Header {
    pub id: String,
    pub model: String,
    pub created_at: i64,
    /// The request's echoed fields (see [`echoed`]).
    pub echo: Map<String, Value>,
    /// Its freeform tools (see [`custom_tool_names`]).
    pub custom_tools: Vec<String>,
}

impl Header {
    /// A response object around `output`.
    pub fn object(&self, status: &str, output: &[Value], usage: Option<Value>) -> Value {
        let mut object = self.echo.clone();
        let text: String = output
            .iter()
            .filter(|item| item["type"] == "message")
            .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
            .filter_map(|part| part.get("text").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for (key, value) in [
            ("id", json!(self.id)),
            ("object", json!("response")),
            ("created_at", json!(self.created_at)),
            ("status", json!(status)),
            ("error", Value::Null),
            ("incomplete_details", Value::Null),
            ("model", json!(self.model)),
            ("output", json!(output)),
            ("output_text", json!(text)),
            ("usage", usage.unwrap_or(Value::Null)),
        ] {
            object.insert(key.into(), value);
        }
        Value::Object(object)
    }
}

/// The Responses `usage` object; `reasoning_tokens` is the part of the
/// output the model spent thinking, when the upstream says.
pub fn usage_object(usage: Usage, reasoning_tokens: i64) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// The reasoning tokens of a chat `usage` object.
pub fn reasoning_tokens(chat_usage: Option<&Value>) -> i64 {
    chat_usage
        .and_then(|u| u.pointer("/completion_tokens_details/reasoning_tokens"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The status (and its `incomplete_details`) a chat `finish_reason` means.
fn status_of(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// A finished response object from a chat completion, billed as `usage`.
pub fn from_chat(completion: &Value, header: &Header, usage: Usage) -> Value {
    let choice = completion.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let mut output = Vec::new();
    if let Some(text) = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        output.push(message_item(
            &format!("msg_{}", header.id_tail()),
            text,
            "completed",
        ));
    }
    let calls = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array);
    for (i, call) in calls.into_iter().flatten().enumerate() {
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str);
        output.push(
            header.call_item(
                &format!("fc_{}_{i}", header.id_tail()),
                call.get("id").and_then(Value::as_str).unwrap_or_default(),
                call.pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                arguments.unwrap_or("{}"),
            ),
        );
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str);
    let (status, incomplete) = status_of(finish);
    let reasoning = reasoning_tokens(completion.get("usage"));
    let mut object = header.object(status, &output, Some(usage_object(usage, reasoning)));
    object["incomplete_details"] = incomplete;
    object
}

impl Header {
    /// The response id without its `resp_`, to name its items by.
    fn id_tail(&self) -> &str {
        self.id.strip_prefix("resp_").unwrap_or(&self.id)
    }

    fn is_custom(&self, name: &str) -> bool {
        self.custom_tools.iter().any(|tool| tool == name)
    }

    /// The output item for a finished tool call: a `function_call`, or a
    /// `custom_tool_call` for a freeform tool.
    fn call_item(&self, id: &str, call_id: &str, name: &str, arguments: &str) -> Value {
        if self.is_custom(name) {
            let id = id.replacen("fc_", "ctc_", 1);
            json!({"type": "custom_tool_call", "id": id, "call_id": call_id, "name": name,
                "input": custom_input(arguments), "status": "completed"})
        } else {
            function_item(id, call_id, name, arguments, "completed")
        }
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

fn function_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status})
}

/// An output item being streamed.
#[derive(Debug)]
struct OpenItem {
    /// Its chat tool call index, for a function call.
    tool_index: Option<u64>,
    item: Value,
    /// The text or arguments so far.
    text: String,
}

/// Turns a chat chunk stream into the Responses event sequence, and keeps
/// the output for the finished response.
pub struct ChatToEvents {
    header: Header,
    sequence: u64,
    started: bool,
    open: Option<OpenItem>,
    output: Vec<Value>,
    finish_reason: Option<String>,
    reasoning_tokens: i64,
}

impl ChatToEvents {
    pub fn new(header: Header) -> Self {
        Self {
            header,
            sequence: 0,
            started: false,
            open: None,
            output: Vec::new(),
            finish_reason: None,
            reasoning_tokens: 0,
        }
    }

    /// The events one chat chunk makes.
    pub fn on_chunk(&mut self, chunk: &Value) -> Vec<Value> {
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            let response = self.header.object("in_progress", &[], None);
            events.push(self.event("response.created", json!({"response": response})));
            let response = self.header.object("in_progress", &[], None);
            events.push(self.event("response.in_progress", json!({"response": response})));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.reasoning_tokens = reasoning_tokens(Some(usage));
        }
        let Some(delta) = ChunkDelta::of(chunk) else {
            return events;
        };
        if let Some(text) = delta.text {
            self.text_delta(text, &mut events);
        }
        for call in delta.calls {
            self.call_delta(call, &mut events);
        }
        if let Some(reason) = delta.finish_reason {
            self.finish_reason = Some(reason.into());
        }
        events
    }

    fn text_delta(&mut self, text: &str, events: &mut Vec<Value>) {
        if !matches!(&self.open, Some(open) if open.tool_index.is_none()) {
            let id = format!("msg_{}_{}", self.header.id_tail(), self.output.len());
            let mut item = message_item(&id, "", "in_progress");
            item["content"] = json!([]);
            self.open_item(None, item, events);
            let part = json!({"type": "output_text", "text": "", "annotations": []});
            let at = self.position();
            events.push(self.event(
                "response.content_part.added",
                json!({"item_id": id, "output_index": at, "content_index": 0, "part": part}),
            ));
        }
        let at = self.position();
        let open = self.open.as_mut().expect("a message item is open");
        open.text.push_str(text);
        let id = open.item["id"].clone();
        events.push(self.event("response.output_text.delta", json!({"item_id": id, "output_index": at, "content_index": 0, "delta": text, "logprobs": []})));
    }

    fn call_delta(&mut self, call: &Value, events: &mut Vec<Value>) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        if !matches!(&self.open, Some(open) if open.tool_index == Some(index)) {
            let id = format!("fc_{}_{}", self.header.id_tail(), self.output.len());
            let call_id = call.get("id").and_then(Value::as_str).unwrap_or_default();
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut item = function_item(&id, call_id, name, "", "in_progress");
            if self.header.is_custom(name) {
                let id = id.replacen("fc_", "ctc_", 1);
                item = json!({"type": "custom_tool_call", "id": id, "call_id": call_id,
                    "name": name, "input": "", "status": "in_progress"});
            }
            self.open_item(Some(index), item, events);
        }
        let Some(arguments) = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let at = self.position();
        let open = self.open.as_mut().expect("a function call item is open");
        open.text.push_str(arguments);
        if open.item["type"] == "custom_tool_call" {
            return; // its input is sent whole once its arguments are
        }
        let id = open.item["id"].clone();
        events.push(self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": at, "delta": arguments}),
        ));
    }

    /// The output index of the open item.
    fn position(&self) -> usize {
        self.output.len()
    }

    fn open_item(&mut self, tool_index: Option<u64>, item: Value, events: &mut Vec<Value>) {
        self.close_item(events);
        let at = self.position();
        events.push(self.event(
            "response.output_item.added",
            json!({"output_index": at, "item": item}),
        ));
        self.open = Some(OpenItem {
            tool_index,
            item,
            text: String::new(),
        });
    }

    fn close_item(&mut self, events: &mut Vec<Value>) {
        let Some(OpenItem {
            tool_index,
            mut item,
            text,
        }) = self.open.take()
        else {
            return;
        };
        let at = self.position();
        let id = item["id"].clone();
        item["status"] = json!("completed");
        if item["type"] == "custom_tool_call" {
            let input = custom_input(&text);
            item["input"] = json!(input);
            if !input.is_empty() {
                let delta = json!({"item_id": id, "output_index": at, "delta": input});
                events.push(self.event("response.custom_tool_call_input.delta", delta));
            }
            let done = json!({"item_id": id, "output_index": at, "input": input});
            events.push(self.event("response.custom_tool_call_input.done", done));
        } else if tool_index.is_some() {
            let arguments = if text.is_empty() {
                "{}".to_string()
            } else {
                text
            };
            item["arguments"] = json!(arguments);
            let name = item["name"].clone();
            events.push(self.event(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": at, "name": name, "arguments": arguments}),
            ));
        } else {
            let part =
                json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
            events.push(self.event("response.output_text.done", json!({"item_id": id, "output_index": at, "content_index": 0, "text": text, "logprobs": []})));
            events.push(self.event(
                "response.content_part.done",
                json!({"item_id": id, "output_index": at, "content_index": 0, "part": part}),
            ));
            item["content"] = json!([part]);
        }
        events.push(self.event(
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        ));
        self.output.push(item);
    }

    /// The closing events of a complete answer, billed as `usage`, and the
    /// finished response object.
    pub fn finish(&mut self, usage: Usage) -> (Vec<Value>, Value) {
        let mut events = self.on_chunk(&json!({}));
        self.close_item(&mut events);
        let (status, incomplete) = status_of(self.finish_reason.as_deref());
        let usage = usage_object(usage, self.reasoning_tokens);
        let mut response = self.header.object(status, &self.output, Some(usage));
        response["incomplete_details"] = incomplete;
        let kind = match status {
            "completed" => "response.completed",
            _ => "response.incomplete",
        };
        events.push(self.event(kind, json!({"response": response})));
        (events, response)
    }

    /// The event ending a failed stream: `response.failed`.
    pub fn failed(&mut self, code: &str, message: &str) -> Vec<Value> {
        let mut events = self.on_chunk(&json!({}));
        let mut response = self.header.object("failed", &self.output, None);
        response["error"] = json!({"code": code, "message": message});
        events.push(self.event("response.failed", json!({"response": response})));
        events
    }

    /// The output items finished so far.
    pub fn output(&self) -> &[Value] {
        &self.output
    }

    fn event(&mut self, kind: &str, fields: Value) -> Value {
        let mut event = fields;
        event["type"] = json!(kind);
        event["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Body {
        value.as_object().cloned().unwrap()
    }

    fn header() -> Header {
        Header {
            id: "resp_1".into(),
            model: "m".into(),
            created_at: 5,
            echo: echoed(&body(json!({"model": "m", "metadata": {"k": "v"}})), None),
            custom_tools: vec!["apply_patch".into()],
        }
    }

    #[test]
    fn a_request_translates_items_tools_and_format() {
        let request = body(json!({
            "model": "m", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.2,
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": true}},
            "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Hi"}, {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{\"a\":1}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
            ],
        }));
        let earlier = [json!({"type": "message", "role": "user", "content": "Before"})];
        let ChatRequest { body, unsupported } = to_chat(&request, &earlier);
        assert_eq!(unsupported, None);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(messages[1]["content"], "Before");
        assert_eq!(
            messages[2]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AA"
        );
        assert_eq!(messages[3]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            messages[4],
            json!({"role": "tool", "tool_call_id": "c1", "content": "one"})
        );
        assert_eq!(body["max_completion_tokens"], 50);
        assert_eq!(body["response_format"]["json_schema"]["name"], "answer");
        assert_eq!(body["tool_choice"]["function"]["name"], "f");
        assert_eq!(body["tools"][0]["function"]["description"], "d");
        let hosted = body_with_tool(json!({"type": "web_search"}));
        assert!(to_chat(&hosted, &[])
            .unsupported
            .unwrap()
            .contains("web_search"));
    }

    fn body_with_tool(tool: Value) -> Body {
        body(json!({"model": "m", "input": "x", "tools": [tool]}))
    }

    #[test]
    fn a_custom_tool_goes_as_a_function_and_comes_back_as_its_own_call() {
        let request = body(
            json!({"model": "m", "tool_choice": {"type": "custom", "name": "apply_patch"},
            "tools": [{"type": "custom", "name": "apply_patch", "description": "Patches files.",
                "format": {"type": "grammar", "syntax": "lark", "definition": "start: PATCH"}}],
            "input": [
                {"type": "custom_tool_call", "call_id": "c0", "name": "apply_patch", "input": "*** Begin"},
                {"type": "custom_tool_call_output", "call_id": "c0", "output": "done"},
            ]}),
        );
        assert_eq!(custom_tool_names(&request), ["apply_patch"]);
        let ChatRequest { body, unsupported } = to_chat(&request, &[]);
        assert_eq!(unsupported, None);
        let function = &body["tools"][0]["function"];
        assert_eq!(function["parameters"]["required"], json!(["input"]));
        assert!(function["description"]
            .as_str()
            .unwrap()
            .contains("start: PATCH"));
        assert_eq!(body["tool_choice"]["function"]["name"], "apply_patch");
        let call = &body["messages"][0]["tool_calls"][0]["function"];
        assert_eq!(call["arguments"], json!({"input": "*** Begin"}).to_string());
        assert_eq!(body["messages"][1]["role"], "tool");

        let input = "*** Begin Patch\n*** End Patch";
        let arguments = json!({"input": input}).to_string();
        let completion = json!({"choices": [{"finish_reason": "tool_calls", "message": {"tool_calls": [
            {"id": "c1", "function": {"name": "apply_patch", "arguments": arguments}}]}}]});
        let response = from_chat(&completion, &header(), Usage::default());
        assert_eq!(response["output"][0]["type"], "custom_tool_call");
        assert_eq!(response["output"][0]["input"], input);

        let mut events = ChatToEvents::new(header());
        let (first, rest) = arguments.split_at(10);
        let mut out = Vec::new();
        for piece in [first, rest] {
            out.extend(events.on_chunk(&json!({"choices": [{"delta": {"tool_calls": [
                {"index": 0, "id": "c1", "function": {"name": "apply_patch", "arguments": piece}}]}}]})));
        }
        let (closing, response) = events.finish(Usage::default());
        out.extend(closing);
        let kinds: Vec<&str> = out.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert!(
            !kinds.contains(&"response.function_call_arguments.delta"),
            "{kinds:?}"
        );
        let done = out
            .iter()
            .find(|e| e["type"] == "response.custom_tool_call_input.done")
            .unwrap();
        assert_eq!(done["input"], input);
        assert_eq!(response["output"][0]["input"], input);
    }

    #[test]
    fn a_completion_becomes_a_response() {
        let completion = json!({"choices": [{"finish_reason": "length", "message": {"content": "Hello"}}],
            "usage": {"completion_tokens_details": {"reasoning_tokens": 3}}});
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 4,
            cached_tokens: 2,
            ..Usage::default()
        };
        let response = from_chat(&completion, &header(), usage);
        assert_eq!(response["status"], "incomplete");
        assert_eq!(
            response["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(response["output_text"], "Hello");
        assert_eq!(
            response["usage"]["input_tokens_details"]["cached_tokens"],
            2
        );
        assert_eq!(
            response["usage"]["output_tokens_details"]["reasoning_tokens"],
            3
        );
        assert_eq!(response["usage"]["total_tokens"], 14);
        assert_eq!(response["metadata"]["k"], "v");
    }

    #[test]
    fn chunks_become_the_event_sequence() {
        let mut events = ChatToEvents::new(header());
        let mut out = Vec::new();
        for chunk in [
            json!({"choices": [{"delta": {"content": "He"}}]}),
            json!({"choices": [{"delta": {"content": "llo"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
        ] {
            out.extend(events.on_chunk(&chunk));
        }
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            ..Usage::default()
        };
        let (closing, response) = events.finish(usage);
        out.extend(closing);
        let kinds: Vec<&str> = out.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let numbers: Vec<u64> = out
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (0..15).collect::<Vec<_>>());
        assert_eq!(out[6]["text"], "Hello");
        assert_eq!(response["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(response["output"][1]["call_id"], "c1");
        assert_eq!(response["usage"]["output_tokens"], 2);
        assert_eq!(response["output_text"], "Hello");
    }
}

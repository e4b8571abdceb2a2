//! Request bodies checked against their API's schema (OpenAI's chat,
//! embeddings and Responses, Anthropic's Messages) before they cost
//! anything: before a reservation, before a provider is called. The check
//! reads the parsed body in place (nothing is copied) and looks only at
//! the fields it knows; unknown fields pass through to the provider as
//! they came. A refusal is a 400 naming the field, in OpenAI's shape.

use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};

use crate::error::AppError;

/// The roles OpenAI's chat messages take.
const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Refuses a body whose `Content-Type` is not JSON (415). A request
/// without one is read as JSON, as OpenAI's API does.
pub fn json_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media_type = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let json_suffix = media_type.len() > 5
        && media_type.is_char_boundary(media_type.len() - 5)
        && media_type[media_type.len() - 5..].eq_ignore_ascii_case("+json");
    if media_type.eq_ignore_ascii_case("application/json") || json_suffix {
        Ok(())
    } else {
        Err(AppError::UnsupportedMediaType(format!(
            "The request body must be JSON, sent as `Content-Type: application/json`; it was `{}`.",
            value.to_str().unwrap_or("unreadable")
        )))
    }
}

/// Checks a `POST /v1/chat/completions` body, in one pass over its fields.
pub fn chat_request(body: &Map<String, Value>) -> Result<(), AppError> {
    let root = Path::Root;
    let (mut model, mut messages) = (false, false);
    for (key, value) in body {
        let at = root.field(key);
        match key.as_str() {
            "model" => model = non_empty_string(value, &at)?,
            "messages" => {
                match value.as_array().filter(|m| !m.is_empty()) {
                    Some(list) => {
                        for (i, message) in list.iter().enumerate() {
                            chat_message(message, &at.item(i))?;
                        }
                    }
                    None => {
                        return Err(invalid(&at, "must be a non-empty array of message objects"))
                    }
                }
                messages = true;
            }
            "stream" | "logprobs" | "parallel_tool_calls" | "store" => {
                expect(value, &at, Value::is_boolean, "a boolean")?
            }
            "stream_options" => {
                expect(value, &at, Value::is_object, "an object")?;
                if let Some(include) = value.get("include_usage") {
                    expect(
                        include,
                        &at.field("include_usage"),
                        Value::is_boolean,
                        "a boolean",
                    )?;
                }
            }
            "n" | "max_tokens" | "max_completion_tokens" => {
                expect(value, &at, is_positive_integer, "a positive integer")?
            }
            "temperature" => expect(value, &at, in_range(0.0, 2.0), "a number from 0 to 2")?,
            "top_p" => expect(value, &at, in_range(0.0, 1.0), "a number from 0 to 1")?,
            "presence_penalty" | "frequency_penalty" => {
                expect(value, &at, in_range(-2.0, 2.0), "a number from -2 to 2")?
            }
            "seed" => expect(value, &at, is_integer, "an integer")?,
            "top_logprobs" => expect(value, &at, integer_in(0, 20), "an integer from 0 to 20")?,
            "user" => expect(value, &at, Value::is_string, "a string")?,
            "logit_bias" | "metadata" => expect(value, &at, Value::is_object, "an object")?,
            "stop" => expect(
                value,
                &at,
                is_stop,
                "a string or an array of up to 4 strings",
            )?,
            "tool_choice" => expect(value, &at, is_string_or_object, "a string or an object")?,
            "tools" | "functions" => tools(value, key == "functions", &at)?,
            "response_format" if !value.is_null() => {
                let format = object(value, &at)?;
                required_string(format, "type", &at)?;
            }
            _ => {}
        }
    }
    if !model {
        return Err(invalid(
            &root.field("model"),
            "is required and must be a non-empty string",
        ));
    }
    if !messages {
        return Err(invalid(
            &root.field("messages"),
            "must be a non-empty array of message objects",
        ));
    }
    Ok(())
}

/// Checks a `POST /v1/embeddings` body.
pub fn embeddings_request(body: &Map<String, Value>) -> Result<(), AppError> {
    let root = Path::Root;
    required_string(body, "model", &root)?;
    let input_ok = match body.get("input") {
        Some(Value::String(_)) => true,
        Some(Value::Array(items)) => {
            !items.is_empty()
                && (items.iter().all(Value::is_string)
                    || items.iter().all(is_token)
                    || items.iter().all(|item| {
                        item.as_array()
                            .is_some_and(|tokens| !tokens.is_empty() && tokens.iter().all(is_token))
                    }))
        }
        _ => false,
    };
    if !input_ok {
        return Err(invalid(
            &root.field("input"),
            "must be a string, or a non-empty array of strings, of token ids, or of arrays of token ids",
        ));
    }
    for (key, value) in body {
        let at = root.field(key);
        match key.as_str() {
            "dimensions" => expect(value, &at, is_positive_integer, "a positive integer")?,
            "encoding_format" => expect(
                value,
                &at,
                |v| matches!(v.as_str(), Some("float" | "base64")),
                "`float` or `base64`",
            )?,
            "user" => expect(value, &at, Value::is_string, "a string")?,
            _ => {}
        }
    }
    Ok(())
}

/// Checks a `POST /v1/messages` body (Anthropic's Messages API); a
/// `count_tokens` body is the same without `max_tokens`.
pub fn messages_request(body: &Map<String, Value>) -> Result<(), AppError> {
    let root = Path::Root;
    match body.get("max_tokens") {
        Some(value) if is_positive_integer(value) => {}
        _ => {
            return Err(invalid(
                &root.field("max_tokens"),
                "is required and must be a positive integer",
            ))
        }
    }
    count_tokens_request(body)
}

/// Checks a `POST /v1/messages/count_tokens` body.
pub fn count_tokens_request(body: &Map<String, Value>) -> Result<(), AppError> {
    let root = Path::Root;
    required_string(body, "model", &root)?;
    let at = root.field("messages");
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid(&at, "is required and must be a non-empty array of messages"))?;
    for (i, message) in messages.iter().enumerate() {
        let at = at.item(i);
        let message = object(message, &at)?;
        let role = required_string(message, "role", &at)?;
        if role != "user" && role != "assistant" {
            return Err(invalid(&at.field("role"), "must be `user` or `assistant`"));
        }
        blocks(message.get("content"), &at.field("content"), true)?;
    }
    for (key, value) in body {
        let at = root.field(key);
        match key.as_str() {
            "system" => blocks(Some(value), &at, false)?,
            "stream" => expect(value, &at, Value::is_boolean, "a boolean")?,
            "temperature" | "top_p" => {
                expect(value, &at, in_range(0.0, 1.0), "a number from 0 to 1")?
            }
            "top_k" => expect(value, &at, is_integer, "an integer")?,
            "stop_sequences" => expect(
                value,
                &at,
                |v| v.as_array().is_some_and(|s| s.iter().all(Value::is_string)),
                "an array of strings",
            )?,
            "metadata" | "tool_choice" | "thinking" => {
                expect(value, &at, Value::is_object, "an object")?
            }
            "tools" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| invalid(&at, "must be an array"))?;
                for (i, tool) in list.iter().enumerate() {
                    required_string(object(tool, &at.item(i))?, "name", &at.item(i))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Content as Anthropic takes it: a string, or an array of blocks that
/// each name their `type` (`required` refuses an absent one).
fn blocks(content: Option<&Value>, at: &Path, required: bool) -> Result<(), AppError> {
    match content {
        Some(Value::String(_)) => Ok(()),
        None | Some(Value::Null) if !required => Ok(()),
        Some(Value::Array(list)) => {
            for (i, block) in list.iter().enumerate() {
                required_string(object(block, &at.item(i))?, "type", &at.item(i))?;
            }
            Ok(())
        }
        _ => Err(invalid(
            at,
            "must be a string or an array of content blocks",
        )),
    }
}

/// Checks a `POST /v1/responses` body (OpenAI's Responses API).
pub fn responses_request(body: &Map<String, Value>) -> Result<(), AppError> {
    let root = Path::Root;
    required_string(body, "model", &root)?;
    let at = root.field("input");
    match body.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                response_item(item, &at.item(i))?;
            }
        }
        None if body.get("previous_response_id").is_some() => {}
        _ => {
            return Err(invalid(
                &at,
                "is required and must be a string or an array of items",
            ))
        }
    }
    for (key, value) in body {
        let at = root.field(key);
        match key.as_str() {
            "instructions" | "previous_response_id" | "user" => {
                expect(value, &at, Value::is_string, "a string")?
            }
            "stream" | "store" | "parallel_tool_calls" | "background" => {
                expect(value, &at, Value::is_boolean, "a boolean")?
            }
            "max_output_tokens" => expect(value, &at, is_positive_integer, "a positive integer")?,
            "temperature" => expect(value, &at, in_range(0.0, 2.0), "a number from 0 to 2")?,
            "top_p" => expect(value, &at, in_range(0.0, 1.0), "a number from 0 to 1")?,
            "metadata" | "text" | "reasoning" => expect(value, &at, Value::is_object, "an object")?,
            "tool_choice" => expect(value, &at, is_string_or_object, "a string or an object")?,
            "tools" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| invalid(&at, "must be an array"))?;
                for (i, tool) in list.iter().enumerate() {
                    let tool = object(tool, &at.item(i))?;
                    let kind = required_string(tool, "type", &at.item(i))?;
                    if kind == "function" || kind == "custom" {
                        required_string(tool, "name", &at.item(i))?;
                    }
                }
            }
            _ => {}
        }
    }
    if body.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(
            &root.field("background"),
            "is not offered by this gateway; leave it false",
        ));
    }
    Ok(())
}

/// One input item: a message, a function call or its output.
fn response_item(item: &Value, at: &Path) -> Result<(), AppError> {
    let item = object(item, at)?;
    match item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
    {
        "message" => {
            required_string(item, "role", at)?;
            match item.get("content") {
                Some(Value::String(_)) => Ok(()),
                Some(Value::Array(parts)) => {
                    for (i, part) in parts.iter().enumerate() {
                        required_string(object(part, &at.item(i))?, "type", &at.item(i))?;
                    }
                    Ok(())
                }
                _ => Err(invalid(
                    &at.field("content"),
                    "must be a string or an array of parts",
                )),
            }
        }
        "function_call" => {
            required_string(item, "call_id", at)?;
            required_string(item, "name", at)?;
            required_text(item, "arguments", at)
        }
        "custom_tool_call" => {
            required_string(item, "call_id", at)?;
            required_string(item, "name", at)?;
            required_text(item, "input", at)
        }
        "function_call_output" | "custom_tool_call_output" => {
            required_string(item, "call_id", at)?;
            match item.get("output") {
                Some(Value::String(_) | Value::Array(_)) => Ok(()),
                _ => Err(invalid(
                    &at.field("output"),
                    "must be a string or an array of parts",
                )),
            }
        }
        _ => Ok(()),
    }
}

/// One chat message: an object with a known `role` and content fit for it.
fn chat_message(message: &Value, at: &Path) -> Result<(), AppError> {
    let message = object(message, at)?;
    let role = required_string(message, "role", at)?;
    if !ROLES.contains(&role) {
        let message = format!("must be one of {}; it was `{role}`", ROLES.join(", "));
        return Err(invalid(&at.field("role"), &message));
    }
    let content_at = at.field("content");
    match message.get("content") {
        None | Some(Value::Null) if matches!(role, "assistant" | "function") => {}
        Some(Value::String(_)) => {}
        Some(Value::Array(parts)) => {
            for (i, part) in parts.iter().enumerate() {
                content_part(part, &content_at.item(i))?;
            }
        }
        _ => {
            return Err(invalid(
                &content_at,
                "must be a string or an array of content parts",
            ))
        }
    }
    if let Some(name) = message.get("name") {
        expect(name, &at.field("name"), Value::is_string, "a string")?;
    }
    if role == "tool" {
        required_string(message, "tool_call_id", at)?;
    }
    if let Some(calls) = message.get("tool_calls").filter(|v| !v.is_null()) {
        let calls_at = at.field("tool_calls");
        let Some(calls) = calls.as_array() else {
            return Err(invalid(&calls_at, "must be an array"));
        };
        for (i, call) in calls.iter().enumerate() {
            let call_at = calls_at.item(i);
            let call = object(call, &call_at)?;
            let function_at = call_at.field("function");
            let function = object(call.get("function").unwrap_or(&Value::Null), &function_at)?;
            required_string(function, "name", &function_at)?;
            required_text(function, "arguments", &function_at)?;
        }
    }
    Ok(())
}

/// One content part: an object with a string `type`, and for the types
/// OpenAI defines, the fields that type needs.
fn content_part(part: &Value, at: &Path) -> Result<(), AppError> {
    let part = object(part, at)?;
    let kind = required_string(part, "type", at)?;
    match kind {
        "text" => required_text(part, "text", at)?,
        "image_url" => {
            let image_at = at.field("image_url");
            match part.get("image_url") {
                Some(Value::String(_)) => {}
                Some(Value::Object(image)) => {
                    required_string(image, "url", &image_at)?;
                }
                _ => return Err(invalid(&image_at, "must be an object with a `url`")),
            }
        }
        "input_audio" => {
            let audio_at = at.field("input_audio");
            let audio = object(part.get("input_audio").unwrap_or(&Value::Null), &audio_at)?;
            required_string(audio, "data", &audio_at)?;
            required_string(audio, "format", &audio_at)?;
        }
        "file" => {
            object(part.get("file").unwrap_or(&Value::Null), &at.field("file"))?;
        }
        _ => {}
    }
    Ok(())
}

/// `tools` (or the older `functions`): an array of definitions with names.
fn tools(list: &Value, functions: bool, at: &Path) -> Result<(), AppError> {
    if list.is_null() {
        return Ok(());
    }
    let Some(list) = list.as_array() else {
        return Err(invalid(at, "must be an array"));
    };
    for (i, tool) in list.iter().enumerate() {
        let tool_at = at.item(i);
        let tool = object(tool, &tool_at)?;
        let function_at = tool_at.field("function");
        let function = if functions {
            Some((tool, &tool_at))
        } else if required_string(tool, "type", &tool_at)? == "function" {
            let function = object(tool.get("function").unwrap_or(&Value::Null), &function_at)?;
            Some((function, &function_at))
        } else {
            None
        };
        if let Some((function, function_at)) = function {
            required_string(function, "name", function_at)?;
            if let Some(parameters) = function.get("parameters") {
                let at = function_at.field("parameters");
                expect(parameters, &at, Value::is_object, "an object")?;
            }
        }
    }
    Ok(())
}

/// Where a value sits in the body, written out only for an error, as
/// OpenAI names parameters: `messages[0].content`.
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Item(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    fn field(&'a self, name: &'a str) -> Path<'a> {
        Path::Field(self, name)
    }

    fn item(&'a self, index: usize) -> Path<'a> {
        Path::Item(self, index)
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => f.write_str("body"),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Item(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// A 400 about the value at `at`, which `problem` describes ("must be…").
fn invalid(at: &Path, problem: &str) -> AppError {
    let name = at.to_string();
    let message = format!("`{name}` {problem}.");
    AppError::invalid(&name, message)
}

fn object<'a>(value: &'a Value, at: &Path) -> Result<&'a Map<String, Value>, AppError> {
    value
        .as_object()
        .ok_or_else(|| invalid(at, "must be an object"))
}

fn non_empty_string(value: &Value, at: &Path) -> Result<bool, AppError> {
    match value {
        Value::String(text) if !text.is_empty() => Ok(true),
        _ => Err(invalid(at, "is required and must be a non-empty string")),
    }
}

fn required_string<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    at: &Path,
) -> Result<&'a str, AppError> {
    match map.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        _ => Err(invalid(
            &at.field(name),
            "is required and must be a non-empty string",
        )),
    }
}

/// A required string that may be empty (a text part, a call's arguments).
fn required_text(map: &Map<String, Value>, name: &str, at: &Path) -> Result<(), AppError> {
    if map.get(name).is_some_and(Value::is_string) {
        return Ok(());
    }
    Err(invalid(&at.field(name), "is required and must be a string"))
}

/// Checks an optional value, which may also be `null`.
fn expect(
    value: &Value,
    at: &Path,
    valid: impl Fn(&Value) -> bool,
    expected: &str,
) -> Result<(), AppError> {
    if value.is_null() || valid(value) {
        Ok(())
    } else {
        Err(invalid(at, &format!("must be {expected}")))
    }
}

fn is_integer(value: &Value) -> bool {
    value.is_i64() || value.is_u64()
}

fn is_positive_integer(value: &Value) -> bool {
    value.as_i64().is_some_and(|n| n > 0) || value.as_u64().is_some_and(|n| n > 0)
}

fn is_token(value: &Value) -> bool {
    value.as_u64().is_some()
}

fn integer_in(low: i64, high: i64) -> impl Fn(&Value) -> bool {
    move |value| value.as_i64().is_some_and(|n| (low..=high).contains(&n))
}

fn in_range(low: f64, high: f64) -> impl Fn(&Value) -> bool {
    move |value| value.as_f64().is_some_and(|n| (low..=high).contains(&n))
}

fn is_stop(value: &Value) -> bool {
    match value {
        Value::String(_) => true,
        Value::Array(items) => items.len() <= 4 && items.iter().all(Value::is_string),
        _ => false,
    }
}

fn is_string_or_object(value: &Value) -> bool {
    value.is_string() || value.is_object()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(value: Value) -> Result<(), AppError> {
        chat_request(value.as_object().unwrap())
    }

    fn refused_field(value: Value) -> String {
        let err = chat(value).expect_err("refused");
        assert_eq!(err.status(), 400);
        err.param().unwrap_or("").to_string()
    }

    fn valid() -> Value {
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = valid();
        body[field] = value;
        body
    }

    #[test]
    fn a_well_formed_request_with_unknown_fields_passes() {
        let mut body = valid();
        body["some_future_field"] = json!({"anything": [1, 2]});
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        body["max_tokens"] = json!(null);
        body["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
        body["messages"] = json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                {"type": "future_part", "whatever": 1}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]);
        chat(body).unwrap();
    }

    #[test]
    fn each_malformed_field_is_named() {
        assert_eq!(refused_field(with("stream", json!("yes"))), "stream");
        assert_eq!(
            refused_field(with("messages", json!(["hi"]))),
            "messages[0]"
        );
        assert_eq!(refused_field(with("messages", json!([]))), "messages");
        assert_eq!(refused_field(with("messages", json!("hi"))), "messages");
        assert_eq!(
            refused_field(with("messages", json!([{"role": 5, "content": "x"}]))),
            "messages[0].role"
        );
        assert_eq!(
            refused_field(with(
                "messages",
                json!([{"role": "wizard", "content": "x"}])
            )),
            "messages[0].role"
        );
        assert_eq!(
            refused_field(with("messages", json!([{"role": "user", "content": 7}]))),
            "messages[0].content"
        );
        assert_eq!(
            refused_field(with(
                "messages",
                json!([{"role": "user", "content": [{"type": "text"}]}])
            )),
            "messages[0].content[0].text"
        );
        assert_eq!(
            refused_field(with("messages", json!([{"role": "tool", "content": "x"}]))),
            "messages[0].tool_call_id"
        );
        for field in ["n", "max_tokens", "max_completion_tokens"] {
            for bad in [json!(0), json!(-1), json!(1.5), json!("3")] {
                assert_eq!(refused_field(with(field, bad)), field);
            }
        }
        assert_eq!(
            refused_field(with("tools", json!({"type": "function"}))),
            "tools"
        );
        assert_eq!(
            refused_field(with("tools", json!([{"type": "function", "function": {}}]))),
            "tools[0].function.name"
        );
        assert_eq!(refused_field(with("temperature", json!(3))), "temperature");
        assert_eq!(refused_field(with("stop", json!([1]))), "stop");
        assert_eq!(refused_field(with("model", json!(4))), "model");
        assert_eq!(
            refused_field(with("response_format", json!("json"))),
            "response_format"
        );
        assert_eq!(
            refused_field(with("stream_options", json!({"include_usage": "yes"}))),
            "stream_options.include_usage"
        );
        let err = chat(with("n", json!(0))).unwrap_err();
        assert_eq!(
            err.to_openai_json()["error"]["type"],
            "invalid_request_error"
        );
        assert!(err.to_string().contains("`n`"), "{err}");
    }

    #[test]
    fn embeddings_take_strings_or_tokens() {
        let body = |input: Value| json!({"model": "text-embedding-3-small", "input": input});
        for good in [
            json!("a"),
            json!(["a", "b"]),
            json!([1, 2]),
            json!([[1], [2, 3]]),
        ] {
            embeddings_request(body(good).as_object().unwrap()).unwrap();
        }
        for bad in [
            json!(null),
            json!([]),
            json!([1, "a"]),
            json!({"a": 1}),
            json!([[]]),
        ] {
            let err = embeddings_request(body(bad.clone()).as_object().unwrap()).unwrap_err();
            assert_eq!(err.param(), Some("input"), "{bad}");
        }
        let mut missing = body(json!("a"));
        missing.as_object_mut().unwrap().remove("input");
        assert!(embeddings_request(missing.as_object().unwrap()).is_err());
    }

    #[test]
    fn only_json_content_types_pass() {
        let headers = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            headers
        };
        for good in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
        ] {
            json_content_type(&headers(good)).unwrap();
        }
        json_content_type(&HeaderMap::new()).unwrap();
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
        ] {
            let err = json_content_type(&headers(bad)).unwrap_err();
            assert_eq!(err.status(), 415, "{bad}");
        }
    }
}

//! Request bodies checked against OpenAI's schema before they cost
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
        .trim()
        .to_ascii_lowercase();
    if media_type == "application/json" || media_type.ends_with("+json") {
        Ok(())
    } else {
        Err(AppError::UnsupportedMediaType(format!(
            "The request body must be JSON, sent as `Content-Type: application/json`; it was `{}`.",
            value.to_str().unwrap_or("unreadable")
        )))
    }
}

/// Checks a `POST /v1/chat/completions` body.
pub fn chat_request(body: &Map<String, Value>) -> Result<(), AppError> {
    let at = Path::root();
    required_string(body, "model", &at)?;
    let messages = match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        _ => {
            return Err(AppError::invalid(
                "messages",
                "`messages` must be a non-empty array of message objects.",
            ))
        }
    };
    for (i, message) in messages.iter().enumerate() {
        chat_message(message, &at.index("messages", i))?;
    }
    optional(body, "stream", &at, is_bool, "a boolean")?;
    optional(body, "stream_options", &at, Value::is_object, "an object")?;
    if let Some(Value::Object(options)) = body.get("stream_options") {
        optional(
            options,
            "include_usage",
            &at.field("stream_options"),
            is_bool,
            "a boolean",
        )?;
    }
    for field in ["n", "max_tokens", "max_completion_tokens"] {
        optional(body, field, &at, is_positive_integer, "a positive integer")?;
    }
    optional(
        body,
        "temperature",
        &at,
        in_range(0.0, 2.0),
        "a number from 0 to 2",
    )?;
    optional(
        body,
        "top_p",
        &at,
        in_range(0.0, 1.0),
        "a number from 0 to 1",
    )?;
    for field in ["presence_penalty", "frequency_penalty"] {
        optional(
            body,
            field,
            &at,
            in_range(-2.0, 2.0),
            "a number from -2 to 2",
        )?;
    }
    optional(body, "seed", &at, is_integer, "an integer")?;
    optional(
        body,
        "top_logprobs",
        &at,
        integer_in(0, 20),
        "an integer from 0 to 20",
    )?;
    for field in ["logprobs", "parallel_tool_calls", "store"] {
        optional(body, field, &at, is_bool, "a boolean")?;
    }
    optional(body, "user", &at, Value::is_string, "a string")?;
    for field in ["logit_bias", "metadata"] {
        optional(body, field, &at, Value::is_object, "an object")?;
    }
    optional(
        body,
        "stop",
        &at,
        is_stop,
        "a string or an array of up to 4 strings",
    )?;
    optional(
        body,
        "tool_choice",
        &at,
        is_string_or_object,
        "a string or an object",
    )?;
    tools(body, &at)?;
    if let Some(format) = body.get("response_format").filter(|v| !v.is_null()) {
        let at = at.field("response_format");
        let format = object(format, &at)?;
        required_string(format, "type", &at)?;
    }
    Ok(())
}

/// Checks a `POST /v1/embeddings` body.
pub fn embeddings_request(body: &Map<String, Value>) -> Result<(), AppError> {
    let at = Path::root();
    required_string(body, "model", &at)?;
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
        return Err(AppError::invalid(
            "input",
            "`input` must be a string, or a non-empty array of strings, of token ids, or of arrays of token ids.",
        ));
    }
    optional(
        body,
        "dimensions",
        &at,
        is_positive_integer,
        "a positive integer",
    )?;
    optional(
        body,
        "encoding_format",
        &at,
        |v| matches!(v.as_str(), Some("float" | "base64")),
        "`float` or `base64`",
    )?;
    optional(body, "user", &at, Value::is_string, "a string")?;
    Ok(())
}

/// One chat message: an object with a known `role` and content fit for it.
fn chat_message(message: &Value, at: &Path) -> Result<(), AppError> {
    let message = object(message, at)?;
    let role = required_string(message, "role", at)?;
    if !ROLES.contains(&role) {
        return Err(AppError::invalid(
            &at.field("role").0,
            format!(
                "`{}` must be one of {}; it was `{role}`.",
                at.field("role").0,
                ROLES.join(", ")
            ),
        ));
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
            return Err(AppError::invalid(
                &content_at.0,
                format!(
                    "`{}` must be a string or an array of content parts.",
                    content_at.0
                ),
            ))
        }
    }
    optional(message, "name", at, Value::is_string, "a string")?;
    if role == "tool" {
        required_string(message, "tool_call_id", at)?;
    }
    if let Some(calls) = message.get("tool_calls").filter(|v| !v.is_null()) {
        let calls_at = at.field("tool_calls");
        let Some(calls) = calls.as_array() else {
            return Err(AppError::invalid(
                &calls_at.0,
                format!("`{}` must be an array.", calls_at.0),
            ));
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
        "text" => {
            required_text(part, "text", at)?;
        }
        "image_url" => {
            let image_at = at.field("image_url");
            match part.get("image_url") {
                Some(Value::String(_)) => {}
                Some(Value::Object(image)) => {
                    required_string(image, "url", &image_at)?;
                }
                _ => {
                    return Err(AppError::invalid(
                        &image_at.0,
                        format!("`{}` must be an object with a `url`.", image_at.0),
                    ))
                }
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

/// `tools` (and the older `functions`): arrays of definitions with names.
fn tools(body: &Map<String, Value>, at: &Path) -> Result<(), AppError> {
    for field in ["tools", "functions"] {
        let Some(list) = body.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let list_at = at.field(field);
        let Some(list) = list.as_array() else {
            return Err(AppError::invalid(
                &list_at.0,
                format!("`{}` must be an array.", list_at.0),
            ));
        };
        for (i, tool) in list.iter().enumerate() {
            let tool_at = list_at.item(i);
            let tool = object(tool, &tool_at)?;
            let function = if field == "functions" {
                Some((tool, tool_at))
            } else {
                let kind = required_string(tool, "type", &tool_at)?;
                (kind == "function")
                    .then(|| {
                        let function_at = tool_at.field("function");
                        object(tool.get("function").unwrap_or(&Value::Null), &function_at)
                            .map(|f| (f, function_at))
                    })
                    .transpose()?
            };
            if let Some((function, function_at)) = function {
                required_string(function, "name", &function_at)?;
                optional(
                    function,
                    "parameters",
                    &function_at,
                    Value::is_object,
                    "an object",
                )?;
            }
        }
    }
    Ok(())
}

/// Where a value sits in the body, as OpenAI names parameters:
/// `messages[0].content`.
#[derive(Debug, Clone)]
struct Path(String);

impl Path {
    fn root() -> Self {
        Self(String::new())
    }

    fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    fn item(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    fn index(&self, name: &str, index: usize) -> Self {
        self.field(name).item(index)
    }
}

fn object<'a>(value: &'a Value, at: &Path) -> Result<&'a Map<String, Value>, AppError> {
    value.as_object().ok_or_else(|| {
        let name = if at.0.is_empty() { "body" } else { &at.0 };
        AppError::invalid(name, format!("`{name}` must be an object."))
    })
}

fn required_string<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    at: &Path,
) -> Result<&'a str, AppError> {
    let field = at.field(name);
    match map.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        _ => Err(AppError::invalid(
            &field.0,
            format!("`{}` is required and must be a non-empty string.", field.0),
        )),
    }
}

/// A required string that may be empty (a text part, a call's arguments).
fn required_text(map: &Map<String, Value>, name: &str, at: &Path) -> Result<(), AppError> {
    if map.get(name).is_some_and(Value::is_string) {
        return Ok(());
    }
    let field = at.field(name);
    Err(AppError::invalid(
        &field.0,
        format!("`{}` is required and must be a string.", field.0),
    ))
}

/// Checks an optional field, which may also be `null`.
fn optional(
    map: &Map<String, Value>,
    name: &str,
    at: &Path,
    valid: impl Fn(&Value) -> bool,
    expected: &str,
) -> Result<(), AppError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(value) if valid(value) => Ok(()),
        Some(_) => {
            let field = at.field(name);
            Err(AppError::invalid(
                &field.0,
                format!("`{}` must be {expected}.", field.0),
            ))
        }
    }
}

fn is_bool(value: &Value) -> bool {
    value.is_boolean()
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

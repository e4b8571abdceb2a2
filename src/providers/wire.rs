//! Helpers the adapters share: sending a request, reading a body, building
//! OpenAI's chunks, and reshaping messages.

use serde_json::{json, Value};

use super::error::error_from_body;
use super::{Body, UpstreamError, UpstreamJson, Usage};

/// Sends a JSON request and returns the response if its status is a success.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, UpstreamError> {
    let response = request.send().await.map_err(UpstreamError::from_reqwest)?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Err(error_from_body(status, &text))
}

/// Reads a success body as JSON.
pub(crate) async fn json_body(response: reqwest::Response) -> Result<Value, UpstreamError> {
    let bytes = response
        .bytes()
        .await
        .map_err(UpstreamError::from_reqwest)?;
    if bytes.trim_ascii().is_empty() {
        return Err(UpstreamError::Truncated);
    }
    serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Protocol(e.to_string()))
}

/// Reads a success body from an OpenAI-compatible upstream, to pass on as it is.
pub(crate) async fn upstream_json(
    response: reqwest::Response,
) -> Result<UpstreamJson, UpstreamError> {
    let bytes = response
        .bytes()
        .await
        .map_err(UpstreamError::from_reqwest)?;
    UpstreamJson::parse(bytes)
}

/// A `chat.completion.chunk` with one choice.
pub fn chunk(
    id: &str,
    model: &str,
    created: i64,
    delta: Value,
    finish_reason: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    })
}

/// The final, choice-less chunk that carries usage.
pub fn usage_chunk(id: &str, model: &str, created: i64, usage: Usage) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage.to_openai(),
    })
}

/// The characters an assistant message (or a stream delta) generated: its
/// text and its tool calls' arguments, for a local count of output tokens.
pub fn generated_chars(message: &Value) -> usize {
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .map_or(0, |t| t.chars().count());
    let arguments: usize = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|call| call.pointer("/function/arguments").and_then(Value::as_str))
        .map(|args| args.chars().count())
        .sum();
    text + arguments
}

/// The text of a message's `content`, whether a string or a list of parts.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The `stop` parameter as a list.
pub(crate) fn stop_list(body: &Body) -> Option<Vec<Value>> {
    match body.get("stop")? {
        Value::String(s) => Some(vec![Value::String(s.clone())]),
        Value::Array(items) => Some(items.clone()),
        _ => None,
    }
}

/// Appends a message `{role, <field>: items}`, merging the items into the
/// previous message when the role repeats: Anthropic and Gemini require
/// alternating roles where OpenAI allows runs.
pub(crate) fn push_merged(messages: &mut Vec<Value>, role: &str, field: &str, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut().filter(|last| last["role"] == role) {
        if let Some(existing) = last[field].as_array_mut() {
            existing.extend(items);
            return;
        }
    }
    messages.push(json!({ "role": role, field: items }));
}

/// Splits a `data:` URL into (media type, base64 data).
pub(crate) fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type.to_string(), data.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_roles_are_merged() {
        let mut messages = Vec::new();
        push_merged(&mut messages, "user", "parts", vec![json!({"text": "a"})]);
        push_merged(&mut messages, "user", "parts", vec![json!({"text": "b"})]);
        push_merged(&mut messages, "model", "parts", vec![]);
        push_merged(&mut messages, "model", "parts", vec![json!({"text": "c"})]);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["parts"].as_array().unwrap().len(), 2);
        assert_eq!(messages[1]["role"], "model");
    }

    #[test]
    fn data_urls_are_split() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png".into(), "AAAA".into()))
        );
        assert_eq!(parse_data_url("https://x/y.png"), None);
    }
}

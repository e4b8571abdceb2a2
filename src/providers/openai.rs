//! OpenAI and every OpenAI-compatible upstream (Groq, Together, DeepSeek,
//! Mistral, OpenRouter, vLLM, Ollama, …). The request body is forwarded as the
//! client sent it, unknown fields included; only `model` is rewritten.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::sse::{self, SseEvent, Step};
use super::{json_body, send, Body, ChunkStream, Provider, UpstreamError};

const DEFAULT_BASE: &str = "https://api.openai.com/v1";

/// A client for one OpenAI-compatible base URL.
pub struct OpenAi {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

impl OpenAi {
    pub fn new(http: reqwest::Client, base: Option<String>, api_key: String) -> Self {
        let base = base.unwrap_or_else(|| DEFAULT_BASE.into());
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            api_key,
        }
    }

    fn post(&self, path: &str, body: &Body) -> reqwest::RequestBuilder {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(body);
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        request
    }
}

/// The body to send upstream: the client's, with our model name.
fn upstream_body(body: &Body, model: &str) -> Body {
    let mut out = body.clone();
    out.insert("model".into(), Value::String(model.to_string()));
    out
}

#[async_trait]
impl Provider for OpenAi {
    async fn chat(&self, body: &Body, model: &str) -> Result<Value, UpstreamError> {
        let mut body = upstream_body(body, model);
        body.remove("stream");
        body.remove("stream_options");
        json_body(send(self.post("/chat/completions", &body)).await?).await
    }

    async fn chat_stream(&self, body: &Body, model: &str) -> Result<ChunkStream, UpstreamError> {
        let mut body = upstream_body(body, model);
        body.insert("stream".into(), Value::Bool(true));
        // Always ask for usage; the proxy strips it if the client did not.
        let mut options = body
            .get("stream_options")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        options.insert("include_usage".into(), json!(true));
        body.insert("stream_options".into(), Value::Object(options));
        let response = send(self.post("/chat/completions", &body)).await?;
        Ok(openai_sse_chunks(response))
    }

    async fn embeddings(&self, body: &Body, model: &str) -> Result<Value, UpstreamError> {
        let body = upstream_body(body, model);
        json_body(send(self.post("/embeddings", &body)).await?).await
    }
}

/// Turns an OpenAI SSE response into chunk values, ending at `[DONE]`.
fn openai_sse_chunks(response: reqwest::Response) -> ChunkStream {
    sse::translate(response, (), Vec::new(), on_event, |_| Vec::new())
}

fn on_event(_: &mut (), event: &SseEvent) -> Step {
    if event.data == "[DONE]" {
        return Step::Finish(Vec::new());
    }
    match parse_chunk(&event.data) {
        Ok(chunk) => Step::Continue(vec![chunk]),
        Err(err) => Step::Fail(err),
    }
}

fn parse_chunk(data: &str) -> Result<Value, UpstreamError> {
    let value: Value = serde_json::from_str(data)
        .map_err(|e| UpstreamError::Protocol(format!("bad chunk: {e}")))?;
    if let Some(error) = value.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("upstream error")
            .to_string();
        return Err(UpstreamError::Status {
            status: 502,
            message,
            code: None,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_forwarded() {
        let body: Body = serde_json::from_value(json!({
            "model": "openai:gpt-4o-mini", "messages": [], "stop": ["x"], "n": 2,
            "seed": 7, "logprobs": true, "some_future_field": {"a": 1}
        }))
        .unwrap();
        let out = upstream_body(&body, "gpt-4o-mini");
        assert_eq!(out["model"], "gpt-4o-mini");
        for key in ["stop", "n", "seed", "logprobs", "some_future_field"] {
            assert_eq!(out[key], body[key], "{key}");
        }
    }

    #[test]
    fn error_chunks_become_errors() {
        assert!(parse_chunk(r#"{"error":{"message":"overloaded"}}"#).is_err());
        assert!(parse_chunk("{not json").is_err());
        assert!(parse_chunk(r#"{"choices":[]}"#).is_ok());
    }
}

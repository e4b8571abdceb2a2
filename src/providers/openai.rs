//! OpenAI and every OpenAI-compatible upstream (Groq, Together, DeepSeek,
//! Mistral, OpenRouter, vLLM, Ollama, …). The request body is forwarded as the
//! client sent it, unknown fields included; only `model` is rewritten.

use async_trait::async_trait;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use super::error::in_band_error;
use super::sse::{self, SseEvent, Step};
use super::wire::{send, upstream_json};
use super::{Body, ChunkStream, Completion, Provider, UpstreamError};

const DEFAULT_BASE: &str = "https://api.openai.com/v1";

/// A client for one OpenAI-compatible base URL.
pub struct OpenAi {
    http: reqwest::Client,
    /// `…/chat/completions`, parsed once (or why the base is unusable).
    chat_url: Result<reqwest::Url, String>,
    /// `…/embeddings`, likewise.
    embeddings_url: Result<reqwest::Url, String>,
    api_key: String,
}

/// `base` + `path` as a URL, or why not.
fn endpoint(base: &str, path: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|err| format!("the provider's api_base is not a valid URL: {err}"))
}

impl OpenAi {
    pub fn new(http: reqwest::Client, base: Option<String>, api_key: String) -> Self {
        let base = base.unwrap_or_else(|| DEFAULT_BASE.into());
        let base = base.trim_end_matches('/');
        Self {
            http,
            chat_url: endpoint(base, "/chat/completions"),
            embeddings_url: endpoint(base, "/embeddings"),
            api_key,
        }
    }

    fn post(
        &self,
        url: &Result<reqwest::Url, String>,
        body: &Forwarded<'_>,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let url = url.clone().map_err(UpstreamError::Connect)?;
        let mut request = self.http.post(url).json(body);
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        Ok(request)
    }
}

/// The client's body as sent upstream, serialized straight from the
/// client's (no copy of the messages): every field as it came, except
/// `model` (the provider's own name), the fields in `skip`, and the fields
/// in `set`, which replace the client's.
struct Forwarded<'a> {
    body: &'a Body,
    model: &'a str,
    skip: &'a [&'a str],
    set: &'a [(&'a str, Value)],
}

impl<'a> Forwarded<'a> {
    fn new(body: &'a Body, model: &'a str) -> Self {
        Self {
            body,
            model,
            skip: &[],
            set: &[],
        }
    }
}

impl Serialize for Forwarded<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let replaced = |key: &str| {
            key == "model" || self.skip.contains(&key) || self.set.iter().any(|(k, _)| *k == key)
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", self.model)?;
        for (key, value) in self.body.iter().filter(|(key, _)| !replaced(key)) {
            map.serialize_entry(key, value)?;
        }
        for (key, value) in self.set {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[async_trait]
impl Provider for OpenAi {
    async fn chat(&self, body: &Body, model: &str) -> Result<Completion, UpstreamError> {
        let body = Forwarded {
            skip: &["stream", "stream_options"],
            ..Forwarded::new(body, model)
        };
        let response = send(self.post(&self.chat_url, &body)?).await?;
        Ok(Completion::Upstream(upstream_json(response).await?))
    }

    async fn chat_stream(&self, body: &Body, model: &str) -> Result<ChunkStream, UpstreamError> {
        // Always ask for usage; the proxy strips it if the client did not.
        let mut options = body
            .get("stream_options")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        options.insert("include_usage".into(), json!(true));
        let set = [
            ("stream", Value::Bool(true)),
            ("stream_options", Value::Object(options)),
        ];
        let body = Forwarded {
            set: &set,
            ..Forwarded::new(body, model)
        };
        let response = send(self.post(&self.chat_url, &body)?).await?;
        Ok(openai_sse_chunks(response))
    }

    async fn embeddings(&self, body: &Body, model: &str) -> Result<Completion, UpstreamError> {
        let body = Forwarded::new(body, model);
        let response = send(self.post(&self.embeddings_url, &body)?).await?;
        Ok(Completion::Upstream(upstream_json(response).await?))
    }
}

/// Turns an OpenAI SSE response into chunk values, ending at `[DONE]`.
fn openai_sse_chunks(response: reqwest::Response) -> ChunkStream {
    sse::translate(response, Finished::default(), on_event, on_end)
}

/// Whether a stream's answer finished: some choice had a `finish_reason`.
#[derive(Default)]
struct Finished(bool);

fn on_event(finished: &mut Finished, event: &SseEvent) -> Step {
    if event.data == "[DONE]" {
        return Step::Finish(Vec::new());
    }
    match parse_chunk(&event.data) {
        Ok(chunk) => {
            finished.0 |= has_finish_reason(&chunk);
            Step::Continue(vec![chunk])
        }
        Err(err) => Step::Fail(err),
    }
}

/// A body that ends without `[DONE]` is complete only if its answer finished
/// (some servers leave `[DONE]` out); otherwise it was cut short.
fn on_end(finished: &mut Finished) -> Result<Vec<Value>, UpstreamError> {
    if finished.0 {
        Ok(Vec::new())
    } else {
        Err(UpstreamError::Truncated)
    }
}

fn has_finish_reason(chunk: &Value) -> bool {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|choices| {
            choices
                .iter()
                .any(|c| c.get("finish_reason").is_some_and(|r| !r.is_null()))
        })
}

fn parse_chunk(data: &str) -> Result<Value, UpstreamError> {
    let value: Value = serde_json::from_str(data)
        .map_err(|e| UpstreamError::Protocol(format!("bad chunk: {e}")))?;
    if value.get("error").is_some_and(|e| !e.is_null()) {
        return Err(in_band_error(&value));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_body() -> Body {
        serde_json::from_value(json!({
            "model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "stop": ["x"], "n": 2, "seed": 7, "logprobs": true, "some_future_field": {"a": 1},
            "stream": true, "stream_options": {"include_usage": false, "other": 1}
        }))
        .unwrap()
    }

    #[test]
    fn unknown_fields_are_forwarded() {
        let body = client_body();
        let out = serde_json::to_value(Forwarded::new(&body, "gpt-4o-mini")).unwrap();
        assert_eq!(out["model"], "gpt-4o-mini");
        for key in [
            "messages",
            "stop",
            "n",
            "seed",
            "logprobs",
            "some_future_field",
            "stream",
        ] {
            assert_eq!(out[key], body[key], "{key}");
        }
        assert_eq!(out.as_object().unwrap().len(), body.len());
    }

    #[test]
    fn skipped_and_set_fields_replace_the_clients() {
        let body = client_body();
        let set = [("stream_options", json!({"include_usage": true}))];
        let out = serde_json::to_value(Forwarded {
            skip: &["stream"],
            set: &set,
            ..Forwarded::new(&body, "gpt-4o-mini")
        })
        .unwrap();
        assert!(out.get("stream").is_none());
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        assert_eq!(out["seed"], 7);
        // Each key once, even the replaced ones.
        let text = serde_json::to_string(&Forwarded {
            set: &set,
            ..Forwarded::new(&body, "m")
        })
        .unwrap();
        assert_eq!(text.matches("\"stream_options\"").count(), 1);
        assert_eq!(text.matches("\"model\"").count(), 1);
    }

    #[test]
    fn a_bad_api_base_is_reported_not_panicked_on() {
        let client = OpenAi::new(
            reqwest::Client::new(),
            Some("not a url".into()),
            String::new(),
        );
        assert!(client.chat_url.is_err());
        let ok = OpenAi::new(
            reqwest::Client::new(),
            Some("http://127.0.0.1:9/v1/".into()),
            String::new(),
        );
        assert_eq!(
            ok.chat_url.unwrap().as_str(),
            "http://127.0.0.1:9/v1/chat/completions"
        );
    }

    #[test]
    fn a_stream_that_stops_before_its_answer_finished_is_truncated() {
        let mut finished = Finished::default();
        let event = |data: &str| SseEvent {
            event: None,
            data: data.into(),
        };
        let partial = r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#;
        assert!(matches!(
            on_event(&mut finished, &event(partial)),
            Step::Continue(_)
        ));
        assert!(matches!(
            on_end(&mut finished),
            Err(UpstreamError::Truncated)
        ));
        let last = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert!(matches!(
            on_event(&mut finished, &event(last)),
            Step::Continue(_)
        ));
        assert!(matches!(on_end(&mut finished), Ok(chunks) if chunks.is_empty()));
    }

    #[test]
    fn error_chunks_become_errors() {
        assert!(parse_chunk(r#"{"error":{"message":"overloaded"}}"#).is_err());
        assert!(parse_chunk("{not json").is_err());
        assert!(parse_chunk(r#"{"choices":[]}"#).is_ok());
    }
}

//! Streaming responses: upstream items relayed as server-sent events the
//! moment they arrive, in the caller's API shape ([`Frames`]), with usage
//! captured however the stream ends.

use axum::body::{Body as HttpBody, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::watch;

use crate::billing::meter::{Counted, Meter, CLIENT_CLOSED};
use crate::billing::money::nanos_to_usd_f64;
use crate::billing::TokensSource;
use crate::error::AppError;
use crate::providers::{generated_chars, ChunkStream, Usage};

/// How a stream's items reach the client, in its API's shape: OpenAI's
/// chunks as they came, or translated to another door's events.
pub trait Frames: Send + 'static {
    /// The bytes for one upstream item, if any; `tally` keeps what it
    /// reports (usage, generated characters).
    fn item(&mut self, item: Value, tally: &mut Tally, meter: Option<&Meter>) -> Option<Bytes>;
    /// The bytes that end a complete stream, billed as `billed`; a future
    /// to finish before they are sent (storing the answer), if any.
    fn end(&mut self, billed: Usage) -> (Option<Bytes>, Option<BoxFuture<'static, ()>>);
    /// The bytes that end a failed stream.
    fn failed(&mut self, err: &AppError) -> Bytes;
}

/// Set once a stream has completed (not failed, not cut short), in the
/// response's extensions: how a copy kept for its idempotency key knows it
/// is whole, whatever its API's last event.
#[derive(Debug, Clone, Default)]
pub struct Completed(Arc<AtomicBool>);

impl Completed {
    /// Whether the stream has completed.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Marks a made-up stream completed.
    #[cfg(test)]
    pub fn set_for_test(&self) {
        self.set();
    }
}

/// What a stream reported so far.
#[derive(Debug, Default)]
pub struct Tally {
    /// The usage the upstream reported, if it did.
    pub usage: Option<Usage>,
    /// The characters generated, for a local count if it did not.
    pub generated_chars: usize,
}

impl Tally {
    /// Reads a chat chunk: the usage it reports, if any (also returned),
    /// and the characters its deltas generated.
    pub fn read_chunk(&mut self, chunk: &Value) -> Option<Usage> {
        let usage = chunk.get("usage").and_then(Usage::from_openai);
        if usage.is_some() {
            self.usage = usage;
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if let Some(delta) = choice.get("delta") {
                self.generated_chars += generated_chars(delta);
            }
        }
        usage
    }
}

/// OpenAI's chunks as server-sent events, ending with `[DONE]`: the
/// `usage` chunk (with its `cost`) only if the client asked for it.
pub struct ChatChunks {
    pub include_usage: bool,
}

impl Frames for ChatChunks {
    fn item(
        &mut self,
        mut chunk: Value,
        tally: &mut Tally,
        meter: Option<&Meter>,
    ) -> Option<Bytes> {
        if let Some(usage) = tally.read_chunk(&chunk) {
            if let (Some(meter), Some(object)) = (meter, chunk["usage"].as_object_mut()) {
                object.insert("cost".into(), nanos_to_usd_f64(meter.cost_of(usage)).into());
            }
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        let usage_only = choices.is_some_and(|c| c.is_empty())
            && chunk.get("usage").is_some_and(|u| !u.is_null());
        if !self.include_usage {
            if usage_only {
                return None; // The gateway asked for it; the client did not.
            }
            if let Some(object) = chunk.as_object_mut() {
                object.remove("usage");
            }
        }
        Some(sse_data(&chunk.to_string()))
    }

    fn end(&mut self, _billed: Usage) -> (Option<Bytes>, Option<BoxFuture<'static, ()>>) {
        (Some(Bytes::from_static(b"data: [DONE]\n\n")), None)
    }

    fn failed(&mut self, err: &AppError) -> Bytes {
        sse_data(&err.to_openai_json().to_string())
    }
}

/// The SSE response for a chunk stream, metered, in `frames`' shape.
pub fn sse_response(
    chunks: ChunkStream,
    mut meter: Meter,
    frames: Box<dyn Frames>,
    prompt_estimate: i64,
    mut cut_off: watch::Receiver<bool>,
) -> Response {
    meter.stream_opened();
    let cut_off = async move {
        let _ = cut_off.wait_for(|cut| *cut).await;
    };
    let completed = Completed::default();
    let body = MeteredStream {
        completed: completed.clone(),
        inner: chunks,
        cut_off: Box::pin(cut_off),
        meter: Some(meter),
        frames,
        tally: Tally::default(),
        prompt_estimate,
        closing: None,
        finished: false,
    };
    let mut response = Response::new(HttpBody::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response.extensions_mut().insert(completed);
    response
}

struct MeteredStream {
    completed: Completed,
    inner: ChunkStream,
    /// Resolves when a shutdown's grace period is over.
    cut_off: Pin<Box<dyn Future<Output = ()> + Send>>,
    meter: Option<Meter>,
    frames: Box<dyn Frames>,
    tally: Tally,
    prompt_estimate: i64,
    /// The last bytes of a complete stream, sent once their future is done.
    closing: Option<(BoxFuture<'static, ()>, Option<Bytes>)>,
    finished: bool,
}

impl MeteredStream {
    /// The usage to bill: the upstream's, or else a local count, known
    /// for the reason `unreported` gives.
    fn counted(&self, unreported: TokensSource) -> Counted {
        match self.tally.usage {
            Some(usage) => Counted::upstream(usage),
            None => Counted {
                usage: Usage::estimated(self.prompt_estimate, self.tally.generated_chars),
                source: unreported,
            },
        }
    }

    /// Submits the record; `unreported` says why the tokens were counted
    /// locally, should the upstream not have reported them.
    fn end(
        &mut self,
        status: i32,
        error_code: Option<String>,
        aborted: bool,
        unreported: TokensSource,
    ) {
        let counted = self.counted(unreported);
        if let Some(meter) = self.meter.take() {
            meter.stream_closed();
            meter.finish(status, error_code, counted, aborted);
        }
    }

    /// The stream failed: its record, and the frame that says so.
    fn fail(&mut self, err: &AppError, code: &str, unreported: TokensSource) -> Bytes {
        self.finished = true;
        self.end(err.status() as i32, Some(code.into()), true, unreported);
        self.frames.failed(err)
    }

    /// The stream is complete: its record, and its last frames (after the
    /// future that must finish first, if any).
    fn complete(&mut self) -> Option<Bytes> {
        let billed = self.counted(TokensSource::LocalCount).usage;
        let (bytes, before) = self.frames.end(billed);
        self.end(200, None, false, TokensSource::LocalCount);
        self.completed.set();
        match before {
            Some(future) => {
                self.closing = Some((future, bytes));
                None
            }
            None => {
                self.finished = true;
                bytes
            }
        }
    }
}

fn sse_data(data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 8);
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// Events as server-sent events, one after another; none for no events.
pub fn events_bytes(events: Vec<Value>) -> Option<Bytes> {
    if events.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for event in &events {
        out.extend_from_slice(&sse_event(event));
    }
    Some(Bytes::from(out))
}

/// A named server-sent event (`event:` and `data:`), as Anthropic's and
/// the Responses API's streams send them: named by the object's `type`.
pub fn sse_event(value: &Value) -> Bytes {
    let name = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

impl Stream for MeteredStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some((future, _)) = self.closing.as_mut() {
                if future.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.finished = true;
                let bytes = self.closing.take().and_then(|(_, bytes)| bytes);
                return Poll::Ready(bytes.map(Ok));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            if self.cut_off.as_mut().poll(cx).is_ready() {
                let err = AppError::Unavailable(
                    "The gateway is shutting down; the stream was cut short.".into(),
                );
                let bytes = self.fail(&err, "shutdown", TokensSource::Shutdown);
                return Poll::Ready(Some(Ok(bytes)));
            }
            match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(item))) => {
                    let this = &mut *self;
                    let bytes = this.frames.item(item, &mut this.tally, this.meter.as_ref());
                    if let Some(bytes) = bytes {
                        if let Some(meter) = self.meter.as_mut() {
                            meter.mark_first_byte();
                        }
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    if let Some(meter) = &self.meter {
                        meter.upstream_failed(&err);
                    }
                    let err = AppError::from(err);
                    tracing::warn!(error = %err, "stream failed mid-way");
                    let code = err.code().to_string();
                    let bytes = self.fail(&err, &code, TokensSource::UpstreamCut);
                    return Poll::Ready(Some(Ok(bytes)));
                }
                Poll::Ready(None) => {
                    if let Some(bytes) = self.complete() {
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                }
            }
        }
    }
}

impl Drop for MeteredStream {
    /// The body was dropped before the end: the client went away.
    fn drop(&mut self) {
        if self.meter.is_some() {
            self.end(
                CLIENT_CLOSED,
                Some("client_closed".into()),
                true,
                TokensSource::ClientAborted,
            );
        }
    }
}

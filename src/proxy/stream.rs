//! Streaming responses: OpenAI chunks relayed as server-sent events the moment
//! they arrive, with usage captured however the stream ends.

use axum::body::{Body as HttpBody, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::watch;

use crate::billing::meter::{Counted, Meter, CLIENT_CLOSED};
use crate::billing::money::nanos_to_usd_f64;
use crate::billing::TokensSource;
use crate::error::AppError;
use crate::providers::{generated_chars, ChunkStream, Usage};

/// The SSE response for a chunk stream.
pub fn sse_response(
    chunks: ChunkStream,
    mut meter: Meter,
    include_usage: bool,
    prompt_estimate: i64,
    mut cut_off: watch::Receiver<bool>,
) -> Response {
    meter.stream_opened();
    let cut_off = async move {
        let _ = cut_off.wait_for(|cut| *cut).await;
    };
    let body = MeteredStream {
        inner: chunks,
        cut_off: Box::pin(cut_off),
        meter: Some(meter),
        include_usage,
        usage: None,
        generated_chars: 0,
        prompt_estimate,
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
    response
}

struct MeteredStream {
    inner: ChunkStream,
    /// Resolves when a shutdown's grace period is over.
    cut_off: Pin<Box<dyn Future<Output = ()> + Send>>,
    meter: Option<Meter>,
    include_usage: bool,
    usage: Option<Usage>,
    generated_chars: usize,
    prompt_estimate: i64,
    finished: bool,
}

impl MeteredStream {
    /// The usage to bill: the upstream's, or else a local count, known
    /// for the reason `unreported` gives.
    fn counted(&self, unreported: TokensSource) -> Counted {
        match self.usage {
            Some(usage) => Counted::upstream(usage),
            None => Counted {
                usage: Usage::estimated(self.prompt_estimate, self.generated_chars),
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

    /// Inspects a chunk; returns the bytes to send, if any.
    fn on_chunk(&mut self, mut chunk: Value) -> Option<Bytes> {
        if let Some(usage) = chunk.get("usage").and_then(Usage::from_openai) {
            self.usage = Some(usage);
            if let (Some(meter), Some(object)) = (&self.meter, chunk["usage"].as_object_mut()) {
                object.insert("cost".into(), nanos_to_usd_f64(meter.cost_of(usage)).into());
            }
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if let Some(delta) = choice.get("delta") {
                self.generated_chars += generated_chars(delta);
            }
        }
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
        if let Some(meter) = self.meter.as_mut() {
            meter.mark_first_byte();
        }
        Some(sse_data(&chunk.to_string()))
    }
}

fn sse_data(data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 8);
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

impl Stream for MeteredStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            if self.cut_off.as_mut().poll(cx).is_ready() {
                self.finished = true;
                let err = AppError::Unavailable(
                    "The gateway is shutting down; the stream was cut short.".into(),
                );
                self.end(
                    err.status() as i32,
                    Some("shutdown".into()),
                    true,
                    TokensSource::Shutdown,
                );
                return Poll::Ready(Some(Ok(sse_data(&err.to_openai_json().to_string()))));
            }
            match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(bytes) = self.on_chunk(chunk) {
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    self.finished = true;
                    if let Some(meter) = &self.meter {
                        meter.upstream_failed(&err);
                    }
                    let err = AppError::from(err);
                    tracing::warn!(error = %err, "stream failed mid-way");
                    let code = Some(err.code().to_string());
                    self.end(err.status() as i32, code, true, TokensSource::UpstreamCut);
                    return Poll::Ready(Some(Ok(sse_data(&err.to_openai_json().to_string()))));
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    self.end(200, None, false, TokensSource::LocalCount);
                    return Poll::Ready(Some(Ok(Bytes::from_static(b"data: [DONE]\n\n"))));
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

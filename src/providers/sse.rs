//! An incremental parser for server-sent events (`text/event-stream`).

/// One event: its `event:` name (if any) and its joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Feeds bytes in as they arrive and yields complete events.
#[derive(Default)]
pub struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    /// Adds bytes and returns every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, sep_len)) = find_event_end(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end + sep_len).collect();
            if let Some(event) = parse_event(&raw[..end]) {
                events.push(event);
            }
        }
        events
    }
}

fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_event(raw: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(raw);
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        } else if let Some(value) = line.strip_prefix("event:") {
            event = Some(value.trim().to_string());
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(SseEvent {
        event,
        data: data.join("\n"),
    })
}

/// What an adapter makes of one upstream event.
pub enum Step {
    /// These chunks, then keep reading.
    Continue(Vec<serde_json::Value>),
    /// These chunks, then the stream is complete.
    Finish(Vec<serde_json::Value>),
    /// The stream failed.
    Fail(super::UpstreamError),
}

/// What an adapter makes of a body that ended without a [`Step::Finish`]:
/// the last chunks of a complete answer, or [`super::UpstreamError::Truncated`].
pub type OnEnd<S> = fn(&mut S) -> Result<Vec<serde_json::Value>, super::UpstreamError>;

/// Translates an upstream SSE response into OpenAI chunks: `on_event`
/// handles each event; `on_end` decides what a body that ends without a
/// [`Step::Finish`] means.
pub fn translate<S: Send + 'static>(
    response: reqwest::Response,
    state: S,
    on_event: fn(&mut S, &SseEvent) -> Step,
    on_end: OnEnd<S>,
) -> super::ChunkStream {
    use futures::StreamExt;
    use std::collections::VecDeque;

    struct Reader<S> {
        bytes: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
        parser: SseParser,
        pending: VecDeque<Result<serde_json::Value, super::UpstreamError>>,
        state: S,
        done: bool,
    }

    let reader = Reader {
        bytes: response.bytes_stream().boxed(),
        parser: SseParser::default(),
        pending: VecDeque::new(),
        state,
        done: false,
    };
    futures::stream::unfold(reader, move |mut r| async move {
        loop {
            if let Some(item) = r.pending.pop_front() {
                return Some((item, r));
            }
            if r.done {
                return None;
            }
            match r.bytes.next().await {
                Some(Ok(data)) => {
                    for event in r.parser.push(&data) {
                        match on_event(&mut r.state, &event) {
                            Step::Continue(chunks) => r.pending.extend(chunks.into_iter().map(Ok)),
                            Step::Finish(chunks) => {
                                r.pending.extend(chunks.into_iter().map(Ok));
                                r.done = true;
                                break;
                            }
                            Step::Fail(err) => {
                                r.pending.push_back(Err(err));
                                r.done = true;
                                break;
                            }
                        }
                    }
                }
                Some(Err(err)) => {
                    r.pending
                        .push_back(Err(super::UpstreamError::from_reqwest(err)));
                    r.done = true;
                }
                None => {
                    match on_end(&mut r.state) {
                        Ok(chunks) => r.pending.extend(chunks.into_iter().map(Ok)),
                        Err(err) => r.pending.push_back(Err(err)),
                    }
                    r.done = true;
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_reads() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"event: message_start\nda").is_empty());
        let events = parser.push(b"ta: {\"a\":1}\n\ndata: [DONE]\n\n: comment\n\n");
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn handles_crlf() {
        let mut parser = SseParser::default();
        let events = parser.push(b"data: x\r\n\r\ndata: y\r\n\r\n");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data, "y");
    }
}

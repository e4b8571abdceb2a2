//! `Idempotency-Key` on the spending routes. The first request with a key
//! claims it (in the database, so every replica sees the claim) and is
//! answered as usual; a repeat from the same API key with the same body,
//! within a day, gets the first answer again, and is neither billed nor
//! sent upstream. A streamed answer is replayed as a stream once the first
//! has completed; meanwhile a repeat gets 409. The same key with another
//! body gets 422.
//!
//! Only a complete, successful answer is kept. A request that fails, or
//! whose client leaves, frees its key, so that a retry is sent anew (and
//! billed for what it uses, like any request).

use axum::body::{Body as HttpBody, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::stream::Completed;
use super::Caller;
use crate::db::idempotency::{self, Claim, Claimed, Stored};
use crate::db::Db;
use crate::error::AppError;
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on a replayed answer (Stripe's name).
pub const REPLAYED: &str = "idempotent-replayed";
/// How long a key and its answer are kept.
pub const KEEP_MS: i64 = 24 * 60 * 60 * 1000;
/// The longest key accepted.
const KEY_MAX: usize = 255;
/// The largest answer kept for replay; a longer one frees its key.
const STORED_MAX: usize = 16 * 1024 * 1024;

/// What to do with a request, given its key.
pub enum Begin {
    /// Answer it; `Some` holds its key until the answer is kept or dropped.
    Proceed(Option<Held>),
    /// An earlier request with this key and body was answered: this.
    Replay(Response),
}

/// The request's idempotency key, if it sent a usable one: 1 to 255
/// visible ASCII characters (anything else is a 400).
fn requested_key(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value.as_bytes();
    if (1..=KEY_MAX).contains(&key.len()) && key.iter().all(u8::is_ascii_graphic) {
        Ok(value.to_str().ok())
    } else {
        Err(AppError::invalid(
            "Idempotency-Key",
            format!("`Idempotency-Key` must be 1 to {KEY_MAX} visible ASCII characters."),
        ))
    }
}

/// Whose keys a caller's are: one API key's, or the master key's. The
/// dashboard's playground sends none.
fn scope(caller: &Caller) -> Option<String> {
    match caller {
        Caller::Key { key_id, .. } => Some(format!("key:{key_id}")),
        Caller::Master => Some("master".into()),
        Caller::Session { .. } => None,
    }
}

/// A digest of the route and the body, byte for byte.
fn body_hash(endpoint: &str, body: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(endpoint.as_bytes());
    digest.update([0]);
    digest.update(body);
    hex::encode(digest.finalize())
}

/// Claims the request's idempotency key, if it has one, or finds the
/// answer to replay; 409 while an earlier request with the key is in
/// flight, 422 if the key came with another body.
pub async fn begin(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    endpoint: &str,
    body: &[u8],
    user_id: &str,
    request_id: &str,
) -> Result<Begin, AppError> {
    let (Some(key), Some(scope)) = (requested_key(headers)?, scope(caller)) else {
        return Ok(Begin::Proceed(None));
    };
    let hash = body_hash(endpoint, body);
    let now = state.clock.now_ms();
    let claim = Claim {
        scope: &scope,
        idem_key: key,
        user_id,
        endpoint,
        body_hash: &hash,
        request_id,
        replica_id: state.recorder.replica_id(),
        now,
        expires_at: now + KEEP_MS,
    };
    let reused = || {
        AppError::IdempotencyMismatch(
            "This Idempotency-Key was already used with a different request body.".into(),
        )
    };
    match idempotency::claim(&state.db, &claim).await? {
        Claimed::Fresh => Ok(Begin::Proceed(Some(Held {
            db: state.db.clone(),
            scope,
            key: key.to_string(),
            request_id: request_id.to_string(),
            settled: false,
        }))),
        Claimed::InFlight { body_hash } if body_hash != hash => Err(reused()),
        Claimed::InFlight { .. } => Err(AppError::IdempotencyInFlight(
            "A request with this Idempotency-Key is still in progress; retry once it has completed."
                .into(),
        )),
        Claimed::Done(stored) if stored.body_hash != hash => Err(reused()),
        Claimed::Done(stored) => Ok(Begin::Replay(replay(stored))),
    }
}

/// The kept answer, as it was first sent.
fn replay(stored: Stored) -> Response {
    let status = StatusCode::from_u16(stored.status as u16).unwrap_or(StatusCode::OK);
    let content_type = if stored.streamed == 1 {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut response = (status, stored.response).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    if let Ok(id) = HeaderValue::from_str(&stored.request_id) {
        headers.insert("x-generation-id", id);
    }
    response
}

/// A request's hold on its idempotency key: kept with the answer, or
/// freed if there is none worth keeping (also when dropped unsettled).
pub struct Held {
    db: Db,
    scope: String,
    key: String,
    request_id: String,
    settled: bool,
}

impl Held {
    /// Keeps a successful answer for replay, and passes it on; frees the
    /// key for anything else. A stream is kept once it completes.
    pub async fn finish(
        mut self,
        result: Result<Response, AppError>,
    ) -> Result<Response, AppError> {
        let response = match result {
            Ok(response) if response.status().is_success() => response,
            other => {
                self.release().await;
                return other;
            }
        };
        let streamed = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
        let (parts, body) = response.into_parts();
        if streamed {
            let completed = parts.extensions.get::<Completed>().cloned();
            let body = self.keep_stream(body, completed.unwrap_or_default());
            return Ok(Response::from_parts(parts, body));
        }
        // The answer is already whole in memory (the gateway built it).
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::error!(%err, "reading an answer to keep failed");
                self.release().await;
                return Err(AppError::Internal);
            }
        };
        if bytes.len() <= STORED_MAX {
            self.keep(parts.status.as_u16(), false, &bytes).await;
        } else {
            tracing::warn!(
                bytes = bytes.len(),
                "an answer too large to keep; its key is freed"
            );
            self.release().await;
        }
        Ok(Response::from_parts(parts, HttpBody::from(bytes)))
    }

    /// Keeps an answer (it must be UTF-8, as every JSON and SSE body is).
    async fn keep(&mut self, status: u16, streamed: bool, answer: &[u8]) {
        let Ok(text) = std::str::from_utf8(answer) else {
            return self.release().await;
        };
        let kept = idempotency::complete(
            &self.db,
            &self.scope,
            &self.key,
            &self.request_id,
            i32::from(status),
            streamed,
            text,
        )
        .await;
        match kept {
            Ok(()) => self.settled = true,
            Err(err) => {
                tracing::error!(%err, "keeping an answer for its idempotency key failed");
                self.release().await;
            }
        }
    }

    async fn release(&mut self) {
        self.settled = true;
        if let Err(err) =
            idempotency::release(&self.db, &self.scope, &self.key, &self.request_id).await
        {
            tracing::error!(%err, "freeing an idempotency key failed; it expires in a day");
        }
    }

    /// Passes a stream on while copying it; once it has `completed` (as its
    /// last events come, before they go to the client), the copy is kept.
    fn keep_stream(self, body: HttpBody, completed: Completed) -> HttpBody {
        // The copy, or `None` once the stream outgrew what is kept (or was kept).
        let copy = Some((body.into_data_stream(), self, Some(Vec::new())));
        let stream = futures::stream::unfold(copy, move |state| {
            let completed = completed.clone();
            async move {
                let (mut chunks, mut held, mut copy) = state?;
                match chunks.next().await {
                    Some(Ok(chunk)) => {
                        let fits = copy
                            .as_ref()
                            .is_some_and(|c: &Vec<u8>| c.len() + chunk.len() <= STORED_MAX);
                        match &mut copy {
                            Some(kept) if fits => kept.extend_from_slice(&chunk),
                            _ => copy = None,
                        }
                        if completed.is_set() {
                            if let Some(kept) = copy.take() {
                                held.keep(200, true, &kept).await;
                            }
                        }
                        Some((Ok::<Bytes, axum::Error>(chunk), Some((chunks, held, copy))))
                    }
                    Some(Err(err)) => Some((Err(err), None)),
                    None => {
                        // Completed by its last item, with nothing after it.
                        if let (true, Some(kept)) = (completed.is_set(), copy.take()) {
                            held.keep(200, true, &kept).await;
                        }
                        None
                    }
                }
            }
        });
        HttpBody::from_stream(stream)
    }
}

impl Drop for Held {
    /// Dropped unsettled: the client left before the answer was complete.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (db, scope, key, request_id) = (
            self.db.clone(),
            std::mem::take(&mut self.scope),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.request_id),
        );
        runtime.spawn(async move {
            if let Err(err) = idempotency::release(&db, &scope, &key, &request_id).await {
                tracing::error!(%err, "freeing an idempotency key failed; it expires in a day");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert_eq!(requested_key(&with("order-42")).unwrap(), Some("order-42"));
        assert_eq!(requested_key(&HeaderMap::new()).unwrap(), None);
        assert!(requested_key(&with(&"k".repeat(KEY_MAX))).is_ok());
        for bad in ["", "has space", &"k".repeat(KEY_MAX + 1)] {
            let err = requested_key(&with(bad)).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
        }
    }

    /// A key claimed on a fresh SQLite database, as a request holds it.
    async fn held_key(dir: &tempfile::TempDir, key: &str) -> (Db, Held) {
        let db = Db::connect(&format!("sqlite://{}/idem.db", dir.path().display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let claim = Claim {
            scope: "master",
            idem_key: key,
            user_id: "u",
            endpoint: "chat.completions",
            body_hash: "h",
            request_id: "r",
            replica_id: "rep",
            now: 0,
            expires_at: i64::MAX,
        };
        assert_eq!(
            idempotency::claim(&db, &claim).await.unwrap(),
            Claimed::Fresh
        );
        let held = Held {
            db: db.clone(),
            scope: "master".into(),
            key: key.into(),
            request_id: "r".into(),
            settled: false,
        };
        (db, held)
    }

    /// The event that ends a complete chat stream.
    const STREAM_DONE: &[u8] = b"data: [DONE]\n\n";

    /// An answer streamed as server-sent events, in `chunks`, marked
    /// completed as its last chunk is read.
    fn event_stream(chunks: Vec<Bytes>) -> Response {
        let completed = Completed::default();
        let marker = completed.clone();
        let last = chunks.len();
        let chunks = chunks.into_iter().enumerate().map(move |(i, chunk)| {
            if i + 1 == last {
                marker.set_for_test();
            }
            Ok::<_, std::io::Error>(chunk)
        });
        let mut response = Response::new(HttpBody::from_stream(futures::stream::iter(chunks)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        response.extensions_mut().insert(completed);
        response
    }

    async fn state_of(db: &Db, key: &str) -> Option<String> {
        let Db::Sqlite(pool) = db else { unreachable!() };
        sqlx::query_scalar("SELECT state FROM idempotent_requests WHERE idem_key = ?")
            .bind(key)
            .fetch_optional(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn answers_too_large_to_keep_pass_through_and_free_their_key() {
        let dir = tempfile::tempdir().unwrap();
        // Not streamed: the whole answer reaches the client; the key is freed.
        let (db, held) = held_key(&dir, "big").await;
        let big = "x".repeat(STORED_MAX + 1);
        let response = (StatusCode::OK, big.clone()).into_response();
        let passed = held.finish(Ok(response)).await.unwrap();
        let body = axum::body::to_bytes(passed.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body.len(), big.len());
        assert_eq!(state_of(&db, "big").await, None);

        // Streamed past the limit, then finished: never kept, so no replay
        // of a copy that lost its middle.
        let (db, held) = held_key(&dir, "long").await;
        let response = event_stream(vec![
            Bytes::from_static(b"data: {}\n\n"),
            Bytes::from(vec![b'x'; STORED_MAX]),
            Bytes::from_static(STREAM_DONE),
        ]);
        let passed = held.finish(Ok(response)).await.unwrap();
        let body = axum::body::to_bytes(passed.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(body.ends_with(STREAM_DONE));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(state_of(&db, "long").await, None, "freed, not kept");

        // A short stream is kept whole, once its last event has come.
        let (db, held) = held_key(&dir, "short").await;
        let response = event_stream(vec![
            Bytes::from_static(b"data: {}\n\n"),
            Bytes::from_static(STREAM_DONE),
        ]);
        let passed = held.finish(Ok(response)).await.unwrap();
        axum::body::to_bytes(passed.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(state_of(&db, "short").await.as_deref(), Some("done"));
    }

    #[test]
    fn the_digest_covers_the_route_and_every_byte() {
        let a = body_hash("chat.completions", b"{\"a\":1}");
        assert_eq!(a, body_hash("chat.completions", b"{\"a\":1}"));
        assert_ne!(a, body_hash("chat.completions", b"{\"a\": 1}"));
        assert_ne!(a, body_hash("embeddings", b"{\"a\":1}"));
    }
}

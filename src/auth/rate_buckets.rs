//! A key's rate limits (requests and prompt tokens per minute), counted in
//! memory against slices of the key's shared window.
//!
//! Every replica counts in the same window row (`db::rate_limits`), but not
//! once per request: a replica claims a slice of the window (some requests
//! and tokens) in one conditional update, and admits requests out of it in
//! memory. A slice covers about [`SLICE_OF`] of the key's recent traffic,
//! and at most a twentieth of its limit ([`SLICE_SHARE`]). A busy key's
//! slice is refilled in the background once less than half of it is left;
//! a quiet key's (under about eight requests a second, a slice of one)
//! when a request finds it empty.
//!
//! Worst-case error, per key and window, with `N` replicas serving it:
//! - a claim only succeeds within the limit, so the requests (and prompt
//!   tokens) admitted never exceed `rpm` (`tpm`), whatever `N`;
//! - a replica may be refused while the others still hold unused slices:
//!   up to `(N − 1) × max(1, rpm / 20)` requests (and `(N − 1) × max(1,
//!   tpm / 20)` tokens) of the limit can go unused in a window;
//! - completion tokens are counted once the call ends (in the writer's
//!   batch), so a window can pass `tpm` by the completions of the calls
//!   admitted before it filled, as with any limit on tokens not yet written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::db::{rate_limits, Db};

/// How much of a key's recent traffic a slice covers.
const SLICE_OF: Duration = Duration::from_millis(250);
/// The largest slice, as a share of the limit: `limit / SLICE_SHARE`.
pub const SLICE_SHARE: i64 = 20;
/// How fast past requests stop counting in the traffic estimate.
const HALF_LIFE_MS: f64 = 1000.0;
/// How many times a request waits (a millisecond each) for another
/// request's claim before claiming alone.
const CLAIM_WAITS: usize = 500;

/// Requests and prompt tokens, claimed or counted together.
type Slice = (i64, i64);

/// A key's limits per window; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
}

/// What [`RateBuckets::admit`] decided, with the window's counts as this
/// replica knows them (what it last saw of the shared window, less what it
/// holds unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub admitted: bool,
    pub requests: i64,
    pub tokens: i64,
}

/// One key's slice of its current window.
#[derive(Debug, Default)]
struct Bucket {
    window: i64,
    /// Claimed in this window and not used yet.
    requests: i64,
    tokens: i64,
    /// The shared window's counts after this replica's last claim.
    seen_requests: i64,
    seen_tokens: i64,
    /// Recent requests and their prompt tokens, decaying by [`HALF_LIFE_MS`].
    recent_requests: f64,
    recent_tokens: f64,
    last_ms: i64,
    /// A request is claiming a slice: the others wait for it.
    claiming: bool,
    /// The window has no request left to claim: once this replica's slice
    /// is used, requests are refused without asking the database.
    full: bool,
}

impl Bucket {
    fn note(&mut self, tokens: i64, now_ms: i64) {
        let decay = 0.5f64.powf((now_ms - self.last_ms).max(0) as f64 / HALF_LIFE_MS);
        self.recent_requests = self.recent_requests * decay + 1.0;
        self.recent_tokens = self.recent_tokens * decay + tokens as f64;
        self.last_ms = now_ms;
    }

    fn take(&mut self, tokens: i64) -> Option<Admission> {
        if self.requests < 1 || self.tokens < tokens {
            return None;
        }
        self.requests -= 1;
        self.tokens -= tokens;
        Some(Admission {
            admitted: true,
            requests: self.seen_requests - self.requests,
            tokens: self.seen_tokens - self.tokens,
        })
    }

    /// What a full slice holds: a quarter second of the key's recent
    /// requests and their prompt tokens, within a twentieth of each limit,
    /// and room for a request of `tokens`.
    fn level(&self, tokens: i64, limits: RateLimits) -> Slice {
        let per_request = self.recent_tokens / self.recent_requests.max(1.0);
        // `recent` holds about `rate · HALF_LIFE / ln 2` requests.
        let rate = self.recent_requests * std::f64::consts::LN_2 / (HALF_LIFE_MS / 1000.0);
        let cap = |limit: Option<i64>| limit.map_or(i64::MAX, |l| (l / SLICE_SHARE).max(1));
        let level_requests = ((rate * SLICE_OF.as_secs_f64()) as i64).clamp(1, cap(limits.rpm));
        let level_tokens = if limits.tpm.is_some() {
            ((per_request * level_requests as f64) as i64)
                .min(cap(limits.tpm))
                .max(tokens)
        } else {
            0
        };
        (level_requests, level_tokens)
    }

    /// The slice to claim so that a request of `tokens` fits: `(requests,
    /// tokens)` wanted, and the least that lets this request through.
    fn slice(&self, tokens: i64, limits: RateLimits) -> (Slice, Slice) {
        let (level_requests, level_tokens) = self.level(tokens, limits);
        let least = ((1 - self.requests).max(0), (tokens - self.tokens).max(0));
        let wanted = (
            (level_requests - self.requests).max(least.0),
            (level_tokens - self.tokens).max(least.1),
        );
        (wanted, least)
    }

    /// What to claim in the background, before the slice runs out: for a
    /// busy key (a slice of several requests) less than half of whose
    /// slice is left. A quiet key claims when it needs to.
    fn refill(&self, limits: RateLimits) -> Option<Slice> {
        let (level_requests, level_tokens) = self.level(0, limits);
        if self.claiming || self.full || level_requests < 2 || self.requests * 2 >= level_requests {
            return None;
        }
        Some((
            level_requests - self.requests,
            (level_tokens - self.tokens).max(0),
        ))
    }
}

/// Every key's slice of its window, on this replica.
#[derive(Debug, Default)]
pub struct RateBuckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateBuckets {
    /// Counts a request of `tokens` prompt tokens against the key's limits
    /// in the window holding `now_ms`: from this replica's slice, or from a
    /// slice it claims of the shared window.
    pub async fn admit(
        self: &Arc<Self>,
        db: &Db,
        key_id: &str,
        limits: RateLimits,
        tokens: i64,
        now_ms: i64,
    ) -> Result<Admission, sqlx::Error> {
        let window = rate_limits::window_start(now_ms);
        let tokens = if limits.tpm.is_some() { tokens } else { 0 };
        if limits.tpm.is_some_and(|tpm| tokens > tpm) {
            // Larger than the whole window: it can never pass.
            let (requests, tokens) = rate_limits::counts(db, key_id, window).await?;
            return Ok(refused(requests, tokens));
        }
        let mut waits = 0;
        let (wanted, least) = loop {
            match self.take_or_claim(key_id, window, limits, tokens, now_ms, waits) {
                Step::Decided(admission) => return Ok(admission),
                Step::Refill(admission, slice) => {
                    self.refill_in_background(db, key_id, window, limits, slice);
                    return Ok(admission);
                }
                Step::Claim(wanted, least) => break (wanted, least),
                Step::Wait => {
                    waits += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        let claimed = self.claim(db, key_id, window, limits, wanted, least).await;
        self.claimed(key_id, window, limits, claimed, tokens)
    }

    /// Takes the request out of the key's slice, or says to claim one (or
    /// to wait for the request claiming one).
    fn take_or_claim(
        &self,
        key_id: &str,
        window: i64,
        limits: RateLimits,
        tokens: i64,
        now_ms: i64,
        waits: usize,
    ) -> Step {
        let mut buckets = self.lock();
        if !buckets.contains_key(key_id) {
            buckets.insert(key_id.to_string(), Bucket::default());
        }
        let Some(bucket) = buckets.get_mut(key_id) else {
            unreachable!("inserted above");
        };
        if bucket.window != window {
            // A new window: what was left of the last one is gone.
            bucket.window = window;
            (bucket.requests, bucket.tokens) = (0, 0);
            (bucket.seen_requests, bucket.seen_tokens) = (0, 0);
            bucket.claiming = false;
            bucket.full = false;
        }
        if waits == 0 {
            bucket.note(tokens, now_ms);
        }
        if let Some(admitted) = bucket.take(tokens) {
            return match bucket.refill(limits) {
                Some(slice) => {
                    bucket.claiming = true;
                    Step::Refill(admitted, slice)
                }
                None => Step::Decided(admitted),
            };
        }
        if bucket.full && bucket.requests == 0 {
            return Step::Decided(refused(bucket.seen_requests, bucket.seen_tokens));
        }
        if bucket.claiming && waits < CLAIM_WAITS {
            return Step::Wait;
        }
        bucket.claiming = true;
        let (wanted, least) = bucket.slice(tokens, limits);
        Step::Claim(wanted, least)
    }

    /// Claims `slice` of the key's window for its bucket, in the background.
    fn refill_in_background(
        self: &Arc<Self>,
        db: &Db,
        key_id: &str,
        window: i64,
        limits: RateLimits,
        slice: Slice,
    ) {
        let (buckets, db, key_id) = (self.clone(), db.clone(), key_id.to_string());
        tokio::spawn(async move {
            let rpm = limits.rpm.unwrap_or(i64::MAX);
            let tpm = limits.tpm.unwrap_or(i64::MAX);
            let claimed =
                rate_limits::claim(&db, &key_id, window, slice.0, slice.1, rpm, tpm).await;
            if let Err(err) = &claimed {
                tracing::warn!(%err, "claiming a rate-limit slice failed");
            }
            buckets.refilled(
                &key_id,
                window,
                claimed.ok().flatten().map(|seen| (slice, seen)),
            );
        });
    }

    /// Adds what a claim in the background gave (`None`: nothing) to the
    /// key's bucket.
    fn refilled(&self, key_id: &str, window: i64, claimed: Option<(Slice, Slice)>) {
        let mut buckets = self.lock();
        let Some(bucket) = buckets.get_mut(key_id) else {
            return;
        };
        bucket.claiming = false;
        if let (Some(((requests, tokens), seen)), true) = (claimed, bucket.window == window) {
            bucket.requests += requests;
            bucket.tokens += tokens;
            (bucket.seen_requests, bucket.seen_tokens) = seen;
        }
    }

    /// Adds what a claim gave to the key's bucket and takes the request out
    /// of it; refused, notes whether the window has any request left.
    fn claimed(
        &self,
        key_id: &str,
        window: i64,
        limits: RateLimits,
        claimed: Result<Result<(Slice, Slice), Slice>, sqlx::Error>,
        tokens: i64,
    ) -> Result<Admission, sqlx::Error> {
        let mut buckets = self.lock();
        let bucket = buckets.entry(key_id.to_string()).or_default();
        bucket.claiming = false;
        let current = bucket.window == window;
        let ((requests, claimed_tokens), seen) = match claimed? {
            Ok(claimed) => claimed,
            Err(counts) => {
                if current {
                    (bucket.seen_requests, bucket.seen_tokens) = counts;
                    bucket.full = limits.rpm.is_some_and(|rpm| counts.0 >= rpm);
                }
                return Ok(refused(counts.0, counts.1));
            }
        };
        let admitted = Admission {
            admitted: true,
            requests: seen.0,
            tokens: seen.1,
        };
        if !current {
            return Ok(admitted); // claimed for it in a window now past
        }
        bucket.requests += requests;
        bucket.tokens += claimed_tokens;
        (bucket.seen_requests, bucket.seen_tokens) = seen;
        // What was claimed covers at least this request.
        Ok(bucket.take(tokens).unwrap_or(admitted))
    }

    /// Claims `wanted` of the shared window, or at least `least`: what was
    /// claimed and the window's counts after it, or, refused, its counts.
    async fn claim(
        &self,
        db: &Db,
        key_id: &str,
        window: i64,
        limits: RateLimits,
        wanted: Slice,
        least: Slice,
    ) -> Result<Result<(Slice, Slice), Slice>, sqlx::Error> {
        let rpm = limits.rpm.unwrap_or(i64::MAX);
        let tpm = limits.tpm.unwrap_or(i64::MAX);
        for slice in [wanted, least] {
            let (requests, tokens) = slice;
            if let Some(seen) =
                rate_limits::claim(db, key_id, window, requests, tokens, rpm, tpm).await?
            {
                return Ok(Ok((slice, seen)));
            }
            if wanted == least {
                break;
            }
        }
        Ok(Err(rate_limits::counts(db, key_id, window).await?))
    }

    /// Forgets the buckets of windows before `window`.
    pub fn forget_before(&self, window: i64) {
        self.lock()
            .retain(|_, bucket| bucket.window >= window || bucket.claiming);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a request does next with its key's bucket.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Admitted from the slice, or refused: the window is full.
    Decided(Admission),
    /// Admitted from the slice, which a claim in the background refills.
    Refill(Admission, Slice),
    Claim(Slice, Slice),
    Wait,
}

fn refused(requests: i64, tokens: i64) -> Admission {
    Admission {
        admitted: false,
        requests,
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: i64, tpm: Option<i64>) -> RateLimits {
        RateLimits {
            rpm: Some(rpm),
            tpm,
        }
    }

    #[test]
    fn a_quiet_key_claims_one_request_at_a_time() {
        let mut bucket = Bucket::default();
        bucket.note(10, 0);
        assert_eq!(
            bucket.slice(10, limits(1000, Some(10_000))),
            ((1, 10), (1, 10))
        );
    }

    #[test]
    fn a_busy_key_claims_a_quarter_second_within_a_twentieth_of_its_limit() {
        let mut bucket = Bucket::default();
        // 400 requests a second of 10 tokens each.
        for i in 0..2_000 {
            bucket.note(10, i * 5 / 2);
        }
        let ((requests, tokens), least) = bucket.slice(0, limits(1_000_000, None));
        assert!((90..=110).contains(&requests), "{requests}");
        assert_eq!(tokens, 0, "no token limit: nothing to claim");
        assert_eq!(least, (1, 0));
        let ((requests, tokens), _) = bucket.slice(10, limits(600, Some(1_000)));
        assert_eq!((requests, tokens), (30, 50), "a twentieth of each limit");
    }

    #[test]
    fn a_slice_is_used_before_another_is_claimed() {
        let mut bucket = Bucket {
            requests: 2,
            tokens: 15,
            seen_requests: 10,
            seen_tokens: 100,
            ..Bucket::default()
        };
        let first = bucket.take(10).unwrap();
        assert_eq!((first.requests, first.tokens), (9, 95));
        assert!(bucket.take(10).is_none(), "5 tokens left");
        assert_eq!(bucket.slice(10, limits(1000, Some(10_000))).1, (0, 5));
    }

    #[test]
    fn a_full_window_refuses_without_asking_again() {
        let buckets = RateBuckets::default();
        let limits = limits(10, None);
        let Step::Claim(wanted, least) = buckets.take_or_claim("k", 0, limits, 0, 0, 0) else {
            panic!("nothing claimed yet");
        };
        assert_eq!((wanted, least), ((1, 0), (1, 0)));
        // Refused: the other replicas counted all ten.
        let refused = buckets
            .claimed("k", 0, limits, Ok(Err((10, 0))), 0)
            .unwrap();
        assert!(!refused.admitted);
        assert_eq!(
            buckets.take_or_claim("k", 0, limits, 0, 1, 0),
            Step::Decided(Admission {
                admitted: false,
                requests: 10,
                tokens: 0
            })
        );
        // The next window claims again.
        assert!(matches!(
            buckets.take_or_claim("k", 60_000, limits, 0, 60_000, 0),
            Step::Claim(..)
        ));
    }

    #[test]
    fn a_busy_keys_slice_is_refilled_before_it_runs_out() {
        let mut bucket = Bucket::default();
        bucket.note(10, 0);
        bucket.requests = 0;
        assert_eq!(bucket.refill(limits(1000, None)), None, "a quiet key");
        // 400 requests a second: a slice of a hundred requests.
        for i in 0..2_000 {
            bucket.note(10, i * 5 / 2);
        }
        bucket.requests = 60;
        assert_eq!(
            bucket.refill(limits(1_000_000, None)),
            None,
            "over half left"
        );
        bucket.requests = 40;
        let Some((requests, tokens)) = bucket.refill(limits(1_000_000, None)) else {
            panic!("under half left");
        };
        assert!((50..=70).contains(&requests), "{requests}");
        assert_eq!(tokens, 0);
        bucket.claiming = true;
        assert_eq!(
            bucket.refill(limits(1_000_000, None)),
            None,
            "one claim at a time"
        );
    }
}

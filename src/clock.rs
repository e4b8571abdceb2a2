//! The gateway's clock: every read of the time of day goes through it. It
//! reads the system time, shifted by an offset that tests advance to see
//! budgets reset and keys expire without waiting. (Durations, such as a
//! request's latency, are measured with `Instant`.)

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Epoch milliseconds, as every time column stores them; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The current time in Unix epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        let system = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        system as i64 + self.offset_ms.load(Ordering::Relaxed)
    }

    /// The current time in Unix epoch seconds (OpenAI's `created`).
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the clock forward by `ms` (tests only; production never calls it).
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

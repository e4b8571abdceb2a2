//! Credit leases, in memory (PostgreSQL, shared by replicas).
//!
//! A replica reserves a call against the lease it holds on the user's
//! credit (`db::leases`), under one lock, without a database round trip.
//! When a lease runs low it grows by about [`LeaseSizing::window`] of the
//! user's spending, within [`LeaseSizing::min`] and [`LeaseSizing::max`];
//! the database grants it only out of the available balance, so leases
//! never add up to more than the balance, whatever the number of replicas.
//!
//! When the balance is too small for a useful lease, calls fall back to a
//! reservation each, decided by the database. A replica refused a lease
//! asks the others to give theirs back ([`Leases::recall`]), so no credit
//! stays stranded in another replica's lease while a call is refused.
//!
//! A settlement takes the call's whole cost out of the lease here and, in
//! the same batch that writes the ledger entry, out of the lease's row.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How large leases are.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSizing {
    /// The smallest lease worth taking; below it, a reservation per call.
    pub min: i64,
    /// The largest lease, whatever the spending.
    pub max: i64,
    /// How much spending a lease should cover.
    pub window: Duration,
}

impl From<&crate::config::LeaseConfig> for LeaseSizing {
    fn from(config: &crate::config::LeaseConfig) -> Self {
        let min = super::money::usd_to_nanos(config.min_usd).max(1);
        Self {
            min,
            max: super::money::usd_to_nanos(config.max_usd).max(min),
            window: Duration::from_secs_f64(config.seconds.clamp(0.0, 3600.0)),
        }
    }
}

impl Default for LeaseSizing {
    /// Between 5 cents and $5, about a second of calls.
    fn default() -> Self {
        Self::from(&crate::config::LeaseConfig::default())
    }
}

/// How fast past spending stops counting in a lease's size.
const HALF_LIFE: Duration = Duration::from_secs(1);

/// How long a user whose leases were recalled is served a reservation per
/// call, before a lease is tried again.
pub const PER_CALL_FOR: Duration = Duration::from_secs(5);

/// A lease this replica holds, and what its calls in flight hold of it.
#[derive(Debug)]
struct Lease {
    /// What the lease's row holds once the settlements queued are written.
    granted: i64,
    /// Held by calls in flight.
    held: i64,
    /// Recent spending, each amount decaying by half a second
    /// ([`HALF_LIFE`]); a steady rate `r` keeps it at `r·HALF_LIFE/ln 2`.
    recent: f64,
    last_hold: Instant,
    /// Recalled: a reservation per call until then.
    per_call_until: Option<Instant>,
    /// A call is growing the lease: the others wait for it rather than
    /// all asking the database at once.
    growing: bool,
}

impl Lease {
    fn new(now: Instant) -> Self {
        Self {
            granted: 0,
            held: 0,
            recent: 0.0,
            last_hold: now,
            per_call_until: None,
            growing: false,
        }
    }

    fn free(&self) -> i64 {
        (self.granted - self.held).max(0)
    }

    /// Counts `amount` into the recent spending.
    fn note_spend(&mut self, amount: i64, now: Instant) {
        let elapsed = now.duration_since(self.last_hold).as_secs_f64();
        self.recent = self.recent * 0.5f64.powf(elapsed / HALF_LIFE.as_secs_f64()) + amount as f64;
        self.last_hold = now;
    }

    /// Spending per second, lately.
    fn rate(&self) -> f64 {
        self.recent * std::f64::consts::LN_2 / HALF_LIFE.as_secs_f64()
    }
}

/// What [`Leases::try_hold`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Hold {
    /// Held from the lease.
    Held,
    /// Grow the lease by `by` (at least what the call lacks), then say
    /// [`Leases::grown`] or [`Leases::not_grown`], and try again.
    Grow { by: i64, lacking: i64 },
    /// Another call is growing the lease: try again in a moment.
    Wait,
    /// Ask the database for this call alone.
    PerCall,
}

/// The leases this replica holds, by user.
#[derive(Debug, Default)]
pub struct Leases {
    sizing: LeaseSizing,
    leases: Mutex<HashMap<String, Lease>>,
}

impl Leases {
    pub fn new(sizing: LeaseSizing) -> Self {
        Self {
            sizing,
            leases: Mutex::default(),
        }
    }

    /// Holds `amount` of the user's lease, or says what to do instead.
    pub fn try_hold(&self, user_id: &str, amount: i64, now: Instant) -> Hold {
        let mut leases = self.lock();
        if !leases.contains_key(user_id) {
            leases.insert(user_id.to_string(), Lease::new(now));
        }
        let Some(lease) = leases.get_mut(user_id) else {
            unreachable!("inserted above");
        };
        if lease.per_call_until.is_some_and(|until| now < until) {
            return Hold::PerCall;
        }
        lease.per_call_until = None;
        if lease.free() >= amount {
            lease.held += amount;
            lease.note_spend(amount, now);
            return Hold::Held;
        }
        if lease.growing {
            return Hold::Wait;
        }
        lease.growing = true;
        let lacking = amount - lease.free();
        let wanted = (lease.rate() * self.sizing.window.as_secs_f64()) as i64;
        let by = wanted.clamp(self.sizing.min, self.sizing.max).max(lacking);
        Hold::Grow { by, lacking }
    }

    /// The database refused to grow the user's lease.
    pub fn not_grown(&self, user_id: &str) {
        if let Some(lease) = self.lock().get_mut(user_id) {
            lease.growing = false;
        }
    }

    /// The database granted `amount` more to the user's lease.
    pub fn grown(&self, user_id: &str, amount: i64, now: Instant) {
        let mut leases = self.lock();
        let lease = leases
            .entry(user_id.to_string())
            .or_insert_with(|| Lease::new(now));
        lease.granted += amount;
        lease.growing = false;
    }

    /// Releases a call's hold of `held` and takes its whole `cost` from the
    /// lease (which the writer then takes from the lease's row, down to
    /// nothing); `false` when the call held nothing of a lease.
    pub fn settle(&self, user_id: &str, held: i64, cost: i64) -> bool {
        let mut leases = self.lock();
        let Some(lease) = leases.get_mut(user_id) else {
            return false;
        };
        lease.held = (lease.held - held).max(0);
        // The row cannot go below nothing; nor does its mirror.
        lease.granted = (lease.granted - cost.max(0)).max(0);
        true
    }

    /// Stops leasing the user's credit for [`PER_CALL_FOR`]; returns what
    /// of the lease is free to give back now (the calls in flight keep
    /// theirs, and give it back as they settle).
    pub fn recall(&self, user_id: &str, now: Instant) -> i64 {
        let mut leases = self.lock();
        let Some(lease) = leases.get_mut(user_id) else {
            return 0;
        };
        lease.per_call_until = Some(now + PER_CALL_FOR);
        let free = lease.free();
        lease.granted -= free;
        free
    }

    /// Forgets every lease (their rows were released: this replica was
    /// given up for dead).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    /// What the user's calls in flight hold of the lease.
    pub fn held(&self, user_id: &str) -> i64 {
        self.lock().get(user_id).map_or(0, |lease| lease.held)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing() -> LeaseSizing {
        LeaseSizing {
            min: 100,
            max: 10_000,
            window: Duration::from_secs(1),
        }
    }

    #[test]
    fn holds_come_from_the_lease_and_never_exceed_it() {
        let leases = Leases::new(sizing());
        let now = Instant::now();
        let Hold::Grow { by, lacking } = leases.try_hold("u", 60, now) else {
            panic!("a first call has no lease yet");
        };
        assert_eq!(lacking, 60);
        assert!(by >= 100, "at least the smallest lease: {by}");
        assert_eq!(
            leases.try_hold("u", 60, now),
            Hold::Wait,
            "one call grows it"
        );
        leases.grown("u", 100, now);
        assert_eq!(leases.try_hold("u", 60, now), Hold::Held);
        assert_eq!(leases.try_hold("u", 40, now), Hold::Held);
        assert!(matches!(
            leases.try_hold("u", 1, now),
            Hold::Grow { lacking: 1, .. }
        ));
        assert_eq!(leases.held("u"), 100);
    }

    #[test]
    fn a_settlement_takes_the_whole_cost_from_the_lease() {
        let leases = Leases::new(sizing());
        let now = Instant::now();
        leases.grown("u", 100, now);
        assert_eq!(leases.try_hold("u", 60, now), Hold::Held);
        assert!(leases.settle("u", 60, 25));
        assert_eq!(leases.held("u"), 0);
        assert_eq!(leases.try_hold("u", 75, now), Hold::Held);
        assert!(matches!(leases.try_hold("u", 1, now), Hold::Grow { .. }));
        leases.not_grown("u");
        // A cost beyond the lease empties it, no further.
        assert!(leases.settle("u", 75, 500));
        assert!(matches!(
            leases.try_hold("u", 1, now),
            Hold::Grow { lacking: 1, .. }
        ));
        assert!(!leases.settle("nobody", 1, 1));
    }

    #[test]
    fn the_lease_grows_with_the_spending_rate_within_bounds() {
        let leases = Leases::new(sizing());
        let mut now = Instant::now();
        leases.grown("u", 1_000_000, now);
        for _ in 0..200 {
            now += Duration::from_millis(5);
            assert_eq!(leases.try_hold("u", 50, now), Hold::Held);
            leases.settle("u", 50, 50);
        }
        // 50 every 5 ms is 10,000 a second: the largest lease.
        leases.recall("u", now);
        now += PER_CALL_FOR;
        let Hold::Grow { by, .. } = leases.try_hold("u", 50, now) else {
            panic!("the lease was given back");
        };
        assert!(
            by > 2_000 && by <= 10_000,
            "about a second of spending: {by}"
        );
    }

    #[test]
    fn a_recalled_lease_gives_back_its_free_part_and_serves_per_call() {
        let leases = Leases::new(sizing());
        let now = Instant::now();
        leases.grown("u", 100, now);
        assert_eq!(leases.try_hold("u", 30, now), Hold::Held);
        assert_eq!(
            leases.recall("u", now),
            70,
            "the call in flight keeps its 30"
        );
        assert_eq!(leases.try_hold("u", 1, now), Hold::PerCall);
        // Its settlement still comes out of what is left of the lease.
        assert!(leases.settle("u", 30, 30));
        assert_eq!(
            leases.try_hold("u", 1, now + PER_CALL_FOR),
            Hold::Grow {
                by: 100,
                lacking: 1
            }
        );
    }
}

//! Leases, in memory: on a user's credit (PostgreSQL, shared by replicas)
//! and on budgets (either backend).
//!
//! A replica reserves a call against the lease it holds on the user's
//! credit or on a budget (`db::leases`), under one lock, without a database
//! round trip. When a lease runs low it grows, in the background, by about
//! [`LeaseSizing::window`] of the spending, within [`LeaseSizing::min`] and
//! [`LeaseSizing::max`]; the database grants it only out of what is
//! available, so leases never add up to more than the balance (or the
//! budget), whatever the number of replicas. A lease idle for
//! [`LeaseSizing::idle`] is given back and forgotten.
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
    /// How long a lease stays unused before it is given back.
    pub idle: Duration,
}

impl From<&crate::config::LeaseConfig> for LeaseSizing {
    fn from(config: &crate::config::LeaseConfig) -> Self {
        let min = super::money::usd_to_nanos(config.min_usd).max(1);
        Self {
            min,
            max: super::money::usd_to_nanos(config.max_usd).max(min),
            window: Duration::from_secs_f64(config.seconds.clamp(0.0, 3600.0)),
            idle: Duration::from_secs_f64(config.idle_seconds.clamp(0.1, 86_400.0)),
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
    /// The user whose credit or budget it is.
    owner: String,
    /// What the last growth asked for: the lease is topped up once less
    /// than half of it is free.
    step: i64,
    /// What the lease's row holds once the settlements queued are written.
    granted: i64,
    /// Held by calls in flight.
    held: i64,
    /// Recent spending, each amount halving every [`HALF_LIFE`]; a steady
    /// rate `r` keeps it at `r·HALF_LIFE/ln 2`.
    recent: f64,
    last_hold: Instant,
    /// Recalled: a reservation per call until then.
    per_call_until: Option<Instant>,
    /// A call is growing the lease: the others wait for it rather than
    /// all asking the database at once.
    growing: bool,
    /// When the budget's period ends (epoch ms): the next call grows the
    /// lease first, which opens the new period's window.
    until_ms: Option<i64>,
    /// The terms it was last grown under (a budget's limit): a call under
    /// other terms grows it first, which the database checks against them.
    terms: u64,
}

impl Lease {
    fn new(owner: &str, now: Instant) -> Self {
        Self {
            owner: owner.to_string(),
            step: 0,
            granted: 0,
            held: 0,
            recent: 0.0,
            last_hold: now,
            per_call_until: None,
            growing: false,
            until_ms: None,
            terms: 0,
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

    /// How much to grow by: about a window of the recent spending, within
    /// bounds, and at least `lacking`.
    fn growth(&mut self, sizing: &LeaseSizing, lacking: i64) -> i64 {
        let wanted = (self.rate() * sizing.window.as_secs_f64()) as i64;
        self.step = wanted.clamp(sizing.min, sizing.max).max(lacking);
        self.step
    }
}

/// What [`Leases::try_hold`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Hold {
    /// Held from the lease.
    Held,
    /// Held from the lease, which runs low: grow it by `by` in the
    /// background, then say [`Leases::grown`] or [`Leases::not_grown`].
    TopUp { by: i64 },
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

    /// Holds `amount` of the lease `key` (of `owner`'s credit or budget,
    /// under `terms`) at `now` (`now_ms` by the clock periods are judged
    /// by), or says what to do instead.
    pub fn try_hold(
        &self,
        key: &str,
        (owner, terms): (&str, u64),
        amount: i64,
        now: Instant,
        now_ms: i64,
    ) -> Hold {
        let mut leases = self.lock();
        if !leases.contains_key(key) {
            leases.insert(key.to_string(), Lease::new(owner, now));
        }
        let Some(lease) = leases.get_mut(key) else {
            unreachable!("inserted above");
        };
        if lease.per_call_until.is_some_and(|until| now < until) {
            return Hold::PerCall;
        }
        lease.per_call_until = None;
        let renew = lease.until_ms.is_some_and(|until| now_ms >= until)
            || (lease.granted > 0 && lease.terms != terms);
        if renew {
            // A new period, whose window the growth opens, or a changed
            // limit, which the growth checks.
            if lease.growing {
                return Hold::Wait;
            }
            lease.growing = true;
            return Hold::Grow {
                by: lease.growth(&self.sizing, amount),
                lacking: amount,
            };
        }
        if lease.free() >= amount {
            lease.held += amount;
            lease.note_spend(amount, now);
            if lease.growing || lease.free() * 2 >= lease.step {
                return Hold::Held;
            }
            lease.growing = true;
            return Hold::TopUp {
                by: lease.growth(&self.sizing, 0),
            };
        }
        if lease.growing {
            return Hold::Wait;
        }
        lease.growing = true;
        let lacking = amount - lease.free();
        let by = lease.growth(&self.sizing, lacking);
        Hold::Grow { by, lacking }
    }

    /// The database did not grow the lease `key`.
    pub fn not_grown(&self, key: &str) {
        if let Some(lease) = self.lock().get_mut(key) {
            lease.growing = false;
        }
    }

    /// The database granted `amount` more to the lease `key` (which a
    /// call growing it keeps in the book: see [`Leases::idle`]) under
    /// `terms`, good until `until_ms` (a budget's period end).
    pub fn grown(&self, key: &str, amount: i64, terms: u64, until_ms: Option<i64>) {
        if let Some(lease) = self.lock().get_mut(key) {
            lease.granted += amount;
            lease.growing = false;
            lease.terms = terms;
            lease.until_ms = until_ms;
        }
    }

    /// Releases a call's hold of `held` on lease `key` and takes its whole
    /// `cost` from it (which the writer then takes from the lease's row,
    /// down to nothing); `false` when this replica holds no such lease.
    pub fn settle(&self, key: &str, held: i64, cost: i64) -> bool {
        let mut leases = self.lock();
        let Some(lease) = leases.get_mut(key) else {
            return false;
        };
        lease.held = (lease.held - held).max(0);
        // The row cannot go below nothing; nor does its mirror.
        lease.granted = (lease.granted - cost.max(0)).max(0);
        true
    }

    /// Stops leasing `key` for [`PER_CALL_FOR`]; returns whose it is and
    /// what of the lease is free to give back now (the calls in flight
    /// keep theirs, and give it back as they settle).
    pub fn recall(&self, key: &str, now: Instant) -> Option<(String, i64)> {
        let mut leases = self.lock();
        let lease = leases.get_mut(key)?;
        lease.per_call_until = Some(now + PER_CALL_FOR);
        let free = lease.free();
        lease.granted -= free;
        Some((lease.owner.clone(), free))
    }

    /// Forgets the leases no call has held for [`LeaseSizing::idle`] and
    /// that no call holds or grows now; returns each one's key, owner and
    /// what it had left, for the caller to give back.
    pub fn idle(&self, now: Instant) -> Vec<(String, String, i64)> {
        self.lock()
            .extract_if(|_, lease| {
                lease.held == 0
                    && !lease.growing
                    && now.saturating_duration_since(lease.last_hold) >= self.sizing.idle
                    && lease.per_call_until.is_none_or(|until| now >= until)
            })
            .map(|(key, lease)| (key, lease.owner, lease.granted))
            .collect()
    }

    /// Whether the book keeps no lease.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets every lease (their rows were released: this replica was
    /// given up for dead).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    /// What calls in flight hold of lease `key`.
    pub fn held(&self, key: &str) -> i64 {
        self.lock().get(key).map_or(0, |lease| lease.held)
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
            idle: Duration::from_secs(30),
        }
    }

    /// A book holding a lease of `amount` on "u", as a first call grows it.
    fn leased(amount: i64, now: Instant) -> Leases {
        let leases = Leases::new(sizing());
        assert!(matches!(
            leases.try_hold("u", ("o", 0), amount, now, 0),
            Hold::Grow { .. }
        ));
        leases.grown("u", amount, 0, None);
        leases
    }

    #[test]
    fn holds_come_from_the_lease_and_never_exceed_it() {
        let leases = Leases::new(sizing());
        let now = Instant::now();
        let Hold::Grow { by, lacking } = leases.try_hold("u", ("o", 0), 60, now, 0) else {
            panic!("a first call has no lease yet");
        };
        assert_eq!(lacking, 60);
        assert!(by >= 100, "at least the smallest lease: {by}");
        assert_eq!(
            leases.try_hold("u", ("o", 0), 60, now, 0),
            Hold::Wait,
            "one call grows it"
        );
        leases.grown("u", 100, 0, None);
        assert_eq!(leases.try_hold("u", ("o", 0), 40, now, 0), Hold::Held);
        assert!(matches!(
            leases.try_hold("u", ("o", 0), 60, now, 0),
            Hold::TopUp { .. }
        ));
        assert_eq!(leases.try_hold("u", ("o", 0), 1, now, 0), Hold::Wait);
        leases.not_grown("u");
        assert!(matches!(
            leases.try_hold("u", ("o", 0), 1, now, 0),
            Hold::Grow { lacking: 1, .. }
        ));
        assert_eq!(leases.held("u"), 100);
    }

    #[test]
    fn a_lease_less_than_half_free_is_topped_up_once() {
        let now = Instant::now();
        let leases = leased(100, now);
        assert_eq!(leases.try_hold("u", ("o", 0), 50, now, 0), Hold::Held);
        let Hold::TopUp { by } = leases.try_hold("u", ("o", 0), 10, now, 0) else {
            panic!("40 of 100 left: top it up");
        };
        assert!(by >= 100);
        assert_eq!(
            leases.try_hold("u", ("o", 0), 10, now, 0),
            Hold::Held,
            "one top-up at a time"
        );
        leases.grown("u", by, 0, None);
        assert!(matches!(
            leases.try_hold("u", ("o", 0), 100, now, 0),
            Hold::Held | Hold::TopUp { .. }
        ));
        assert_eq!(leases.held("u"), 170);
    }

    #[test]
    fn a_settlement_takes_the_whole_cost_from_the_lease() {
        let now = Instant::now();
        let leases = leased(100, now);
        assert_eq!(leases.try_hold("u", ("o", 0), 40, now, 0), Hold::Held);
        assert!(leases.settle("u", 40, 25));
        assert_eq!(leases.held("u"), 0);
        assert!(matches!(
            leases.try_hold("u", ("o", 0), 75, now, 0),
            Hold::TopUp { .. }
        ));
        leases.not_grown("u");
        assert!(matches!(
            leases.try_hold("u", ("o", 0), 1, now, 0),
            Hold::Grow { lacking: 1, .. }
        ));
        leases.not_grown("u");
        // A cost beyond the lease empties it, no further.
        assert!(leases.settle("u", 75, 500));
        assert!(matches!(
            leases.try_hold("u", ("o", 0), 1, now, 0),
            Hold::Grow { lacking: 1, .. }
        ));
        assert!(!leases.settle("nobody", 1, 1));
    }

    #[test]
    fn the_lease_grows_with_the_spending_rate_within_bounds() {
        let mut now = Instant::now();
        let leases = leased(1_000_000, now);
        for _ in 0..200 {
            now += Duration::from_millis(5);
            assert_eq!(leases.try_hold("u", ("o", 0), 50, now, 0), Hold::Held);
            leases.settle("u", 50, 50);
        }
        // 50 every 5 ms is 10,000 a second: the largest lease.
        leases.recall("u", now);
        now += PER_CALL_FOR;
        let Hold::Grow { by, .. } = leases.try_hold("u", ("o", 0), 50, now, 0) else {
            panic!("the lease was given back");
        };
        assert!(
            by > 2_000 && by <= 10_000,
            "about a second of spending: {by}"
        );
    }

    #[test]
    fn a_recalled_lease_gives_back_its_free_part_and_serves_per_call() {
        let now = Instant::now();
        let leases = leased(100, now);
        assert_eq!(leases.try_hold("u", ("o", 0), 30, now, 0), Hold::Held);
        assert_eq!(
            leases.recall("u", now),
            Some(("o".into(), 70)),
            "the call in flight keeps its 30"
        );
        assert_eq!(leases.try_hold("u", ("o", 0), 1, now, 0), Hold::PerCall);
        // Its settlement still comes out of what is left of the lease.
        assert!(leases.settle("u", 30, 30));
        assert_eq!(
            leases.try_hold("u", ("o", 0), 1, now + PER_CALL_FOR, 0),
            Hold::Grow {
                by: 100,
                lacking: 1
            }
        );
        assert_eq!(leases.recall("nobody", now), None);
    }

    #[test]
    fn idle_leases_are_given_back_and_forgotten() {
        let now = Instant::now();
        let leases = leased(100, now);
        assert_eq!(leases.try_hold("u", ("o", 0), 30, now, 0), Hold::Held);
        let later = now + sizing().idle;
        assert!(leases.idle(later).is_empty(), "a call holds part of it");
        leases.settle("u", 30, 10);
        assert!(leases.idle(later - Duration::from_secs(1)).is_empty());
        assert_eq!(leases.idle(later), [("u".into(), "o".into(), 90)]);
        assert!(leases.is_empty());
        // A growing lease stays, whatever its age.
        assert!(matches!(
            leases.try_hold("u", ("o", 0), 1, now, 0),
            Hold::Grow { .. }
        ));
        assert!(leases.idle(later).is_empty());
    }

    #[test]
    fn a_budget_lease_grows_first_once_its_period_ends() {
        let now = Instant::now();
        let leases = Leases::new(sizing());
        assert!(matches!(
            leases.try_hold("b", ("o", 0), 10, now, 0),
            Hold::Grow { .. }
        ));
        leases.grown("b", 1_000, 0, Some(60_000));
        assert_eq!(leases.try_hold("b", ("o", 0), 10, now, 59_999), Hold::Held);
        assert_eq!(
            leases.try_hold("b", ("o", 0), 10, now, 60_000),
            Hold::Grow {
                by: 100,
                lacking: 10
            },
            "plenty left, but the window must turn first"
        );
        assert_eq!(leases.try_hold("b", ("o", 0), 10, now, 60_000), Hold::Wait);
        leases.grown("b", 100, 0, Some(120_000));
        assert_eq!(leases.try_hold("b", ("o", 0), 10, now, 60_001), Hold::Held);
        // A changed limit: grow first, which checks it.
        assert!(matches!(
            leases.try_hold("b", ("o", 7), 10, now, 60_001),
            Hold::Grow { lacking: 10, .. }
        ));
        leases.grown("b", 100, 7, Some(120_000));
        assert_eq!(leases.try_hold("b", ("o", 7), 10, now, 60_001), Hold::Held);
    }
}

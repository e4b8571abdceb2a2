//! Polling for I/O for a short while after work, instead of sleeping at once.
//!
//! When a runtime worker runs out of tasks it blocks in `epoll_wait`, and
//! its CPU goes idle. On a virtual machine, waking an idle vCPU for the next
//! packet is costly: tens of microseconds at the median and hundreds at the
//! tail, more than the gateway spends on a request. So, like HAProxy's
//! `busy-polling` and the kernel's `haltpoll` idle driver, the gateway can
//! keep its workers polling for a window after each request (`idle_poll_us`;
//! off by default, since it spends CPU) and let them sleep once traffic
//! pauses.
//!
//! A poller is a task that yields back to the runtime in a loop: a worker
//! whose only runnable task has yielded polls the I/O driver without
//! blocking, then runs it again. Each round also yields the CPU to any other
//! thread waiting for it (SQLite's connection threads share the cores).

use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A handle on the pollers; cloning it is cheap. A disabled one does nothing.
/// The pollers end when the last handle is dropped.
#[derive(Clone, Default)]
pub struct IdlePoll {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    epoch: Instant,
    window: Duration,
    /// When work was last marked, in nanoseconds since `epoch` (0: never).
    last_busy: AtomicU64,
    /// Pollers waiting to be woken, and pollers polling.
    asleep: AtomicUsize,
    polling: AtomicUsize,
    /// Open [`StepAside`] guards: while any is, the pollers sleep.
    stepped_aside: AtomicUsize,
    wake: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: wake the pollers so that they see it and end.
        self.wake.notify_waiters();
    }
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a whole window has passed since work was last marked.
    fn idle_for_a_window(&self) -> bool {
        if self.stepped_aside.load(SeqCst) > 0 {
            return true;
        }
        let last_busy = self.last_busy.load(SeqCst);
        let window = u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX);
        last_busy == 0 || self.now().saturating_sub(last_busy) >= window
    }
}

impl IdlePoll {
    /// Spawns one poller per runtime worker, so that the workers poll rather
    /// than one of them blocking in the I/O driver while another polls (tasks
    /// can still move between workers; the bench runs one). A zero window
    /// disables polling.
    pub fn start(window: Duration) -> Self {
        if window.is_zero() {
            return Self::default();
        }
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            window,
            last_busy: AtomicU64::new(0),
            asleep: AtomicUsize::new(0),
            polling: AtomicUsize::new(0),
            stepped_aside: AtomicUsize::new(0),
            wake: wake.clone(),
        });
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        for _ in 0..workers.max(1) {
            tokio::spawn(run(Arc::downgrade(&shared), wake.clone()));
        }
        Self {
            shared: Some(shared),
        }
    }

    /// Records work: the pollers poll (on) for at least another window.
    pub fn mark_busy(&self) {
        let Some(shared) = &self.shared else { return };
        shared.last_busy.store(shared.now().max(1), SeqCst);
        // While someone has stepped aside the pollers would only go back to
        // sleep; the last guard to drop wakes them if work came meanwhile.
        if shared.asleep.load(SeqCst) > 0 && shared.stepped_aside.load(SeqCst) == 0 {
            shared.wake.notify_waiters();
        }
    }

    /// Lets the workers sleep until the guard is dropped. For work that
    /// shares the CPU in long bursts (the usage writer's SQLite commits): a
    /// polling worker is never woken, so the kernel would let it wait for the
    /// whole burst, where a sleeping one is woken by the next packet and
    /// preempts the burst.
    pub fn step_aside(&self) -> StepAside {
        if let Some(shared) = &self.shared {
            shared.stepped_aside.fetch_add(1, SeqCst);
        }
        StepAside {
            shared: self.shared.clone(),
        }
    }

    /// Whether polling is on at all (a non-zero window).
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Whether any poller is polling right now.
    pub fn is_polling(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|shared| shared.polling.load(SeqCst) > 0)
    }
}

/// See [`IdlePoll::step_aside`]; dropping it lets the pollers poll again.
#[must_use = "the pollers sleep only while the guard lives"]
pub struct StepAside {
    shared: Option<Arc<Shared>>,
}

impl Drop for StepAside {
    fn drop(&mut self) {
        let Some(shared) = &self.shared else { return };
        shared.stepped_aside.fetch_sub(1, SeqCst);
        if shared.asleep.load(SeqCst) > 0 && !shared.idle_for_a_window() {
            shared.wake.notify_waiters();
        }
    }
}

/// Middleware: marks the start of each request and the moment its response
/// (for a stream, its head) is ready as work.
pub async fn keep_polling(
    axum::extract::State(poll): axum::extract::State<IdlePoll>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    poll.mark_busy();
    let response = next.run(request).await;
    poll.mark_busy();
    response
}

/// Sleeps until work is marked, then polls until a whole window passes
/// without any; again, until the handles are gone.
async fn run(shared: Weak<Shared>, wake: Arc<Notify>) {
    while sleep_until_busy(&shared, &wake).await {
        if !poll_until_idle(&shared).await {
            return;
        }
    }
}

/// Waits for work to be marked; false once the handles are gone.
async fn sleep_until_busy(shared: &Weak<Shared>, wake: &Notify) -> bool {
    loop {
        // Arm the wake-up before saying we sleep, then look for work once
        // more: a request either sees us asleep and wakes us, or is seen.
        let mut woken = pin!(wake.notified());
        woken.as_mut().enable();
        let Some(state) = shared.upgrade() else {
            return false;
        };
        if !state.idle_for_a_window() {
            return true;
        }
        state.asleep.fetch_add(1, SeqCst);
        if !state.idle_for_a_window() {
            state.asleep.fetch_sub(1, SeqCst);
            return true;
        }
        drop(state);
        woken.await;
        let Some(state) = shared.upgrade() else {
            return false;
        };
        state.asleep.fetch_sub(1, SeqCst);
    }
}

/// Yields to the runtime until a whole window passes without work; false
/// once the handles are gone.
async fn poll_until_idle(shared: &Weak<Shared>) -> bool {
    let Some(state) = shared.upgrade() else {
        return false;
    };
    state.polling.fetch_add(1, SeqCst);
    drop(state);
    loop {
        // A worker whose only runnable task yielded polls its I/O driver
        // without blocking before it runs that task again; meanwhile any
        // thread waiting for this CPU gets it.
        tokio::task::yield_now().await;
        std::thread::yield_now();
        let Some(state) = shared.upgrade() else {
            return false;
        };
        if state.idle_for_a_window() {
            state.polling.fetch_sub(1, SeqCst);
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::runtime::Handle;
    use tokio::time::sleep;

    /// Parks of the (current-thread) runtime's one worker so far.
    fn parks() -> u64 {
        Handle::current().metrics().worker_park_count(0)
    }

    #[tokio::test]
    async fn a_zero_window_spawns_nothing() {
        let tasks = Handle::current().metrics().num_alive_tasks();
        let poll = IdlePoll::start(Duration::ZERO);
        poll.mark_busy();
        assert!(!poll.is_enabled() && !poll.is_polling());
        assert_eq!(Handle::current().metrics().num_alive_tasks(), tasks);
    }

    #[tokio::test]
    async fn work_keeps_the_worker_polling_until_a_window_passes_without_any() {
        let poll = IdlePoll::start(Duration::from_millis(1000));
        sleep(Duration::from_millis(5)).await;
        assert!(!poll.is_polling(), "polls before any work");

        poll.mark_busy();
        tokio::task::yield_now().await;
        assert!(poll.is_polling());
        // While it polls, waiting for a timer never puts the worker to sleep.
        let before = parks();
        sleep(Duration::from_millis(30)).await;
        assert_eq!(parks(), before, "the worker slept while polling");

        sleep(Duration::from_millis(1100)).await;
        assert!(!poll.is_polling(), "still polling after an idle window");
        let before = parks();
        sleep(Duration::from_millis(30)).await;
        assert!(parks() > before, "an idle worker should sleep");
    }

    #[tokio::test]
    async fn marked_work_extends_the_window() {
        let poll = IdlePoll::start(Duration::from_millis(400));
        for _ in 0..6 {
            poll.mark_busy();
            sleep(Duration::from_millis(100)).await;
            assert!(poll.is_polling());
        }
    }

    #[tokio::test]
    async fn pollers_sleep_while_someone_steps_aside() {
        let poll = IdlePoll::start(Duration::from_millis(300));
        poll.mark_busy();
        sleep(Duration::from_millis(5)).await;
        assert!(poll.is_polling());

        let aside = poll.step_aside();
        poll.mark_busy();
        sleep(Duration::from_millis(5)).await;
        assert!(!poll.is_polling(), "polls while stepped aside");
        let before = parks();
        sleep(Duration::from_millis(30)).await;
        assert!(parks() > before, "the worker should sleep");

        drop(aside);
        sleep(Duration::from_millis(5)).await;
        assert!(
            poll.is_polling(),
            "work marked meanwhile is polled for again"
        );
    }

    #[tokio::test]
    async fn the_poller_ends_with_its_last_handle() {
        let tasks = Handle::current().metrics().num_alive_tasks();
        let poll = IdlePoll::start(Duration::from_millis(50));
        let copy = poll.clone();
        poll.mark_busy();
        tokio::task::yield_now().await;
        assert_eq!(Handle::current().metrics().num_alive_tasks(), tasks + 1);
        drop(poll);
        sleep(Duration::from_millis(5)).await;
        assert_eq!(Handle::current().metrics().num_alive_tasks(), tasks + 1);
        drop(copy);
        sleep(Duration::from_millis(5)).await;
        assert_eq!(Handle::current().metrics().num_alive_tasks(), tasks);
    }
}

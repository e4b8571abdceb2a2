//! The lanes a billing batch reaches the database by. On SQLite, which
//! commits in this process on the cores that serve requests, most batches
//! go through a connection whose threads run at idle CPU priority
//! (`idle_thread`), so that a commit never holds up a request; urgent and
//! full batches, and every batch while that thread gets no CPU, take the
//! writer's ordinary pool. Measured with `bench/run.sh` (bench/README.md),
//! the idle lane keeps the p99 at one connection about 400 µs lower.
//!
//! All of it sits behind the `idle-lane` cargo feature (on by default):
//! without it every batch takes the normal lane. Elsewhere than Linux the
//! lane's threads keep the normal priority.

mod idle_thread;

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use super::batch::{apply_retrying_conflicts, WriteOp};
use crate::db::Db;
use idle_thread::BackgroundWriter;

/// How a batch reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The ordinary pool.
    Normal,
    /// SQLite's background connection, whose threads get the CPU when
    /// nothing else wants it (`idle_thread`).
    Background,
}

/// How long the background thread may take to answer a ping before the
/// writer concludes that the CPU is busy and takes the normal lane.
const PING_WAIT: Duration = Duration::from_millis(2);
/// How long a batch may wait for the background thread to start on it
/// before it goes through the normal lane instead.
const START_WAIT: Duration = Duration::from_millis(5);
/// How long a background batch may take before the writer concludes that
/// the machine has no idle CPU for it (a full batch takes a few
/// milliseconds at normal priority).
const SLOW_BACKGROUND: Duration = Duration::from_millis(50);
/// How long the writer keeps to the normal lane after a slow background
/// batch: at first, and at most, as the interval doubles while the batches
/// that probe the background lane again stay slow.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(32);

/// Chooses each batch's lane, and applies it there. On SQLite, batches go
/// in the background, so that a commit never holds up a request, except
/// those someone waits on, a full batch (the writer may be behind), a batch
/// while the background thread gets no CPU (it does not answer a ping in
/// time), and, for a while, every batch after a background one that was
/// slow: a busy machine leaves background work no CPU, and the writer must
/// keep up.
pub struct Lanes {
    /// The writer's own pool ([`Db::writer`]).
    normal: Db,
    background: Option<BackgroundWriter>,
    /// Until when batches keep to the normal lane.
    normal_until: Option<Instant>,
    backoff: Duration,
    /// A ping the background thread has not answered yet.
    unanswered: Option<oneshot::Receiver<()>>,
}

impl Lanes {
    pub fn new(db: Db) -> Self {
        Self {
            background: idle_thread::start(&db),
            normal: db.writer(),
            normal_until: None,
            backoff: FIRST_BACKOFF,
            unanswered: None,
        }
    }

    /// The lane for a batch, as [`Lanes::choose`] has it, but normal while
    /// the background thread cannot get the CPU within [`PING_WAIT`]: a
    /// batch sent there would then hold SQLite's write lock for as long as
    /// the CPU stays busy.
    pub async fn pick(&mut self, urgent: bool) -> Lane {
        match self.choose(urgent, Instant::now()) {
            Lane::Background if !self.background_gets_cpu().await => Lane::Normal,
            lane => lane,
        }
    }

    /// Whether the background thread answers a ping within [`PING_WAIT`]
    /// (the last one, if it is still unanswered: then the CPU has been busy
    /// since).
    async fn background_gets_cpu(&mut self) -> bool {
        let Some(background) = &self.background else {
            return false;
        };
        let mut ping = match self.unanswered.take() {
            Some(mut old) => match old.try_recv() {
                // Still waiting since an earlier batch: the CPU is still busy.
                Err(TryRecvError::Empty) => old,
                // Answered meanwhile, which says nothing about now: ask again.
                _ => background.ping(),
            },
            None => background.ping(),
        };
        match tokio::time::timeout(PING_WAIT, &mut ping).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                tracing::error!("the background writer stopped; writing in the normal lane");
                self.background = None;
                false
            }
            Err(_) => {
                self.unanswered = Some(ping);
                false
            }
        }
    }

    /// The lane for a batch: `urgent` when someone waits on it or it is full.
    fn choose(&self, urgent: bool, now: Instant) -> Lane {
        let backing_off = self.normal_until.is_some_and(|until| now < until);
        if self.background.is_some() && !urgent && !backing_off {
            Lane::Background
        } else {
            Lane::Normal
        }
    }

    /// Applies `ops` in `lane`, or in the normal one should the background
    /// thread not start on them within [`START_WAIT`] (the CPU got busy) or
    /// have stopped (a batch is one transaction, and a record already
    /// written is skipped). Returns the lane the batch went through.
    pub async fn apply(
        &mut self,
        lane: Lane,
        ops: &Arc<Vec<WriteOp>>,
        now: i64,
    ) -> (Lane, Result<Vec<bool>, sqlx::Error>) {
        if let (Lane::Background, Some(background)) = (lane, &self.background) {
            let queued = Instant::now();
            let batch = Arc::clone(ops);
            let ran = background
                .run(move |db| async move {
                    // Starting late would mean holding SQLite's write lock
                    // on a CPU that has no time for this thread.
                    if queued.elapsed() > START_WAIT {
                        return None;
                    }
                    Some(apply_retrying_conflicts(&db, &batch, now).await)
                })
                .await;
            match ran {
                Some(Some(applied)) => {
                    self.background_took(queued.elapsed(), Instant::now());
                    return (Lane::Background, applied);
                }
                Some(None) => self.background_took(Duration::MAX, Instant::now()),
                None => {
                    tracing::error!("the background writer stopped; writing in the normal lane");
                    self.background = None;
                }
            }
        }
        (
            Lane::Normal,
            apply_retrying_conflicts(&self.normal, ops, now).await,
        )
    }

    /// Learns from how long a background batch took.
    fn background_took(&mut self, elapsed: Duration, now: Instant) {
        if elapsed <= SLOW_BACKGROUND {
            self.backoff = FIRST_BACKOFF;
            return;
        }
        tracing::debug!(
            ?elapsed,
            backoff = ?self.backoff,
            "a background batch was slow; writing at normal priority for a while"
        );
        self.normal_until = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    pub async fn close(self) {
        if let Some(background) = self.background {
            background.close().await;
        }
        // SQLite's writer has a connection of its own; PostgreSQL's is the
        // shared pool, which its owner closes.
        if matches!(self.normal, Db::Sqlite(_)) {
            self.normal.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::batch::settle_op;

    async fn sqlite_lanes() -> Lanes {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_lazy("sqlite::memory:")
            .unwrap();
        Lanes::new(Db::Sqlite(pool))
    }

    #[cfg(feature = "idle-lane")]
    #[tokio::test]
    async fn batches_go_in_the_background_unless_urgent() {
        let lanes = sqlite_lanes().await;
        let now = Instant::now();
        assert_eq!(lanes.choose(false, now), Lane::Background);
        assert_eq!(lanes.choose(true, now), Lane::Normal);
    }

    #[cfg(feature = "idle-lane")]
    #[tokio::test]
    async fn a_slow_background_batch_sends_batches_to_the_normal_lane_for_a_while() {
        let mut lanes = sqlite_lanes().await;
        let start = Instant::now();
        lanes.background_took(SLOW_BACKGROUND, start);
        assert_eq!(lanes.choose(false, start), Lane::Background, "not slow yet");

        let slow = SLOW_BACKGROUND + Duration::from_millis(1);
        lanes.background_took(slow, start);
        assert_eq!(lanes.choose(false, start), Lane::Normal);
        let probe = start + FIRST_BACKOFF;
        assert_eq!(lanes.choose(false, probe), Lane::Background, "probes again");

        // The probe is slow too: the back-off doubles, up to its cap.
        lanes.background_took(slow, probe);
        assert_eq!(lanes.choose(false, probe + FIRST_BACKOFF), Lane::Normal);
        assert_eq!(
            lanes.choose(false, probe + 2 * FIRST_BACKOFF),
            Lane::Background
        );
        let mut at = probe;
        for _ in 0..10 {
            lanes.background_took(slow, at);
            at += lanes.backoff;
        }
        assert_eq!(lanes.backoff, MAX_BACKOFF);

        // A quick one resets it.
        lanes.background_took(Duration::from_millis(1), at);
        assert_eq!(lanes.backoff, FIRST_BACKOFF);
    }

    #[cfg(feature = "idle-lane")]
    #[tokio::test]
    async fn the_background_lane_writes_and_the_normal_one_takes_over_if_it_stops() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/lanes.db", dir.path().display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        crate::db::users::find_or_create(&db, "u1", 0)
            .await
            .unwrap();
        let mut lanes = Lanes::new(db.clone());
        let count = || async {
            let Db::Sqlite(pool) = &db else {
                unreachable!()
            };
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM usage_records")
                .fetch_one(pool)
                .await
                .unwrap()
        };

        let first = Arc::new(vec![settle_op("r1", "u1")]);
        // (Retried: on a loaded machine the thread may start it late.)
        let mut lane = Lane::Normal;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let (went, applied) = lanes.apply(Lane::Background, &first, 1).await;
            applied.unwrap();
            lane = went;
            if lane == Lane::Background {
                break;
            }
        }
        assert_eq!(lane, Lane::Background);
        assert_eq!(count().await, 1);

        let background = lanes.background.as_ref().unwrap();
        let died = background.run::<_, _, ()>(|_| async { panic!("the background thread dies") });
        assert!(died.await.is_none());
        let second = Arc::new(vec![settle_op("r2", "u1")]);
        let (lane, applied) = lanes.apply(Lane::Background, &second, 1).await;
        applied.unwrap();
        assert_eq!(lane, Lane::Normal);
        assert_eq!(count().await, 2, "written in the normal lane");
        assert_eq!(lanes.choose(false, Instant::now()), Lane::Normal);
    }

    #[cfg(feature = "idle-lane")]
    #[tokio::test]
    async fn the_normal_lane_is_picked_while_the_background_thread_gets_no_cpu() {
        let mut lanes = sqlite_lanes().await;
        assert_eq!(lanes.pick(true).await, Lane::Normal, "urgent");

        // A job that holds the thread stands for a CPU that never frees up.
        let (release, released) = oneshot::channel::<()>();
        let background = lanes.background.as_ref().unwrap();
        let busy = tokio::spawn(background.run(|_| async move {
            let _ = released.await;
        }));
        for _ in 0..3 {
            assert_eq!(lanes.pick(false).await, Lane::Normal);
            assert!(
                lanes.unanswered.is_some(),
                "one ping waits, not one per batch"
            );
        }
        release.send(()).unwrap();
        busy.await.unwrap();
        let mut picked = Lane::Normal;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            picked = lanes.pick(false).await;
            if picked == Lane::Background {
                break;
            }
        }
        assert_eq!(picked, Lane::Background, "the thread answers once it runs");
    }

    #[cfg(feature = "idle-lane")]
    #[tokio::test]
    async fn a_stopped_background_thread_leaves_the_normal_lane() {
        let mut lanes = sqlite_lanes().await;
        let background = lanes.background.as_ref().unwrap();
        let died = background.run::<_, _, ()>(|_| async { panic!("the background thread dies") });
        assert!(died.await.is_none());
        // Until the thread has unwound, a ping may go unanswered instead.
        let deadline = Instant::now() + Duration::from_secs(30);
        while lanes.background.is_some() && Instant::now() < deadline {
            assert_eq!(lanes.pick(false).await, Lane::Normal);
        }
        assert!(lanes.background.is_none(), "the stopped thread is let go");
    }

    #[tokio::test]
    async fn postgres_writes_in_the_normal_lane_only() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let lanes = Lanes::new(Db::Postgres(pool));
        assert_eq!(lanes.choose(false, Instant::now()), Lane::Normal);
    }
}

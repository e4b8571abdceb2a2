//! The one writer of money and usage: reservations, usage records and their
//! settlement all go through a single task per process, which applies them
//! in group-committed batches. Handlers never wait on a database lock.
//!
//! On SQLite, which one process owns, reservations and charges are decided
//! in memory ([`LocalAccounts`]) and cost no database round trip; the writer
//! then records them. On PostgreSQL, shared by replicas, a reservation is a
//! conditional update that waits for the next batch.
//!
//! On SQLite the commits run in this process, on the cores that serve
//! requests, so most batches go through a connection at idle CPU priority
//! that any request preempts ([`Lanes`]).

use futures::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::billing::accounts::LocalAccounts;
use crate::billing::budget::BudgetLimit;
use crate::db::ledger::{self, apply_batch, WriteOp};
use crate::db::usage::UsageRecord;
use crate::db::{BackgroundWriter, Db};
use crate::error::AppError;
use crate::idle_poll::IdlePoll;
use crate::metrics::Metrics;

/// The most ops one transaction applies. A full batch goes through the
/// normal lane: the writer may be falling behind.
const BATCH: usize = 1024;
/// How long the writer waits to gather more usage records into a
/// transaction, when nobody is waiting on the batch and it is not full (it
/// stops waiting as soon as either changes: see [`next_batch`]). Each
/// commit rewrites the pages it touched at the right edge of every index
/// (about a millisecond of SQLite's CPU), so a longer linger costs each
/// record less (at 5,000 requests a second, 50 ms took SQLite's CPU per
/// request from 18 to 11 µs), but a record shows on the dashboard only
/// once written, and a user who looks right after a call expects it there.
const LINGER: Duration = Duration::from_millis(10);

/// What the writer needs to know to end a linger early.
#[derive(Default)]
struct Queue {
    /// Ops sent and not yet taken into a batch.
    pending: AtomicUsize,
    /// Rung when someone waits on an op, or a full batch is queued.
    wake: Notify,
}

impl Queue {
    /// Sends `message` to the writer through `sender`, counting it, and
    /// rings the writer if someone waits on it or it makes a full batch
    /// (after the send, so that whatever takes the bell finds it queued).
    fn send(
        &self,
        sender: &mpsc::UnboundedSender<Message>,
        message: Message,
    ) -> Result<(), Box<mpsc::error::SendError<Message>>> {
        let waited_on = message.reply.is_some();
        let full = self.pending.fetch_add(1, Ordering::Relaxed) + 1 == BATCH;
        sender.send(message).map_err(Box::new)?;
        if waited_on || full {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Takes `ops` off the count, once the writer has them.
    fn took(&self, ops: usize) {
        self.pending.fetch_sub(ops, Ordering::Relaxed);
    }
}

struct Message {
    op: WriteOp,
    /// Where to say whether the op took effect (reservations only).
    reply: Option<oneshot::Sender<Result<bool, ()>>>,
}

/// What a request holds, released when its record is settled.
#[derive(Debug, Clone, Default)]
pub struct Holds {
    /// Reserved of the user's balance, in nano-USD.
    pub balance: i64,
    /// The budget scopes it holds the same amount of, and charges in full.
    pub budgets: Option<Arc<[String]>>,
    /// The key's rate-limit window its tokens count in, if the key has a
    /// token limit.
    pub rate_window: Option<i64>,
}

/// A cheap handle to the writer task.
#[derive(Clone)]
pub struct UsageRecorder {
    sender: mpsc::UnboundedSender<Message>,
    queue: Arc<Queue>,
    db: Db,
    metrics: Arc<Metrics>,
    /// In-memory accounts, when this process owns its database (SQLite).
    local: Option<Arc<LocalAccounts>>,
    /// This process's replica id, which its holds carry.
    replica_id: Arc<str>,
}

impl UsageRecorder {
    /// Starts the writer task; it ends, having written everything, once every
    /// handle is dropped.
    /// While it writes a batch to SQLite, the runtime's pollers step aside
    /// (see [`IdlePoll::step_aside`]). Counts its batches by lane in `metrics`.
    pub fn start(
        db: Db,
        metrics: Arc<Metrics>,
        idle_poll: IdlePoll,
        replica_id: Arc<str>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue::default());
        let local = matches!(db, Db::Sqlite(_)).then(|| Arc::new(LocalAccounts::default()));
        let task = tokio::spawn(write_loop(
            db.clone(),
            receiver,
            queue.clone(),
            local.clone(),
            idle_poll,
            metrics.clone(),
        ));
        let recorder = Self {
            sender,
            queue,
            db,
            metrics,
            local,
            replica_id,
        };
        (recorder, task)
    }

    /// The counters every finished request updates.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Queues a usage record, to be written and settled, releasing what its
    /// request holds; never blocks.
    pub fn record(&self, record: UsageRecord, holds: Holds) {
        log_request(&record);
        self.metrics.observe(&record);
        if holds.balance > 0 {
            self.metrics.reservations(-1);
        }
        let in_memory = self
            .local
            .as_ref()
            .filter(|_| holds.balance > 0 || record.cost > 0)
            .is_some_and(|local| local.settle(&record.user_id, holds.balance, record.cost));
        let message = Message {
            op: WriteOp::Settle {
                record,
                in_memory,
                budgets: holds.budgets,
                rate_window: holds.rate_window,
            },
            reply: None,
        };
        if let Err(err) = self.queue.send(&self.sender, message) {
            tracing::error!(op = ?err.0.op, "usage writer stopped; record lost");
        }
    }

    /// Holds `amount` of the user's available balance for a request; `false`
    /// when the available balance cannot cover it.
    pub async fn reserve(
        &self,
        request_id: &str,
        user_id: &str,
        amount: i64,
        ttl_ms: i64,
    ) -> Result<bool, AppError> {
        let unavailable = || AppError::Unavailable("Billing is unavailable; try again.".into());
        if let Some(local) = &self.local {
            return local
                .reserve(&self.db, user_id, amount)
                .await
                .map_err(|err| {
                    tracing::error!(%err, "reading a balance failed");
                    unavailable()
                });
        }
        self.ask(WriteOp::Reserve {
            request_id: request_id.to_string(),
            user_id: user_id.to_string(),
            amount,
            expires_at: crate::db::now_ms() + ttl_ms,
            replica_id: self.replica_id.clone(),
        })
        .await
    }

    /// Holds `amount` of every budget in `limits` for a request, or none of
    /// them; `false` when one of them cannot cover it.
    pub async fn reserve_budgets(
        &self,
        request_id: &str,
        user_id: &str,
        limits: &[BudgetLimit],
        amount: i64,
        now: i64,
        ttl_ms: i64,
    ) -> Result<bool, AppError> {
        let op = WriteOp::ReserveBudget {
            request_id: request_id.to_string(),
            user_id: user_id.to_string(),
            limits: limits.to_vec(),
            amount,
            now,
            expires_at: crate::db::now_ms() + ttl_ms,
            replica_id: self.replica_id.clone(),
        };
        self.ask(op).await
    }

    async fn ask(&self, op: WriteOp) -> Result<bool, AppError> {
        let unavailable = || AppError::Unavailable("Billing is unavailable; try again.".into());
        let (reply, answer) = oneshot::channel();
        let message = Message {
            op,
            reply: Some(reply),
        };
        self.queue
            .send(&self.sender, message)
            .map_err(|_| unavailable())?;
        answer
            .await
            .map_err(|_| unavailable())?
            .map_err(|_| unavailable())
    }

    /// A user's balance (below zero when they owe) and what is available of
    /// it (less what requests in flight hold, never below zero), in nano-USD.
    pub async fn balance(&self, user_id: &str) -> Result<(i64, i64), sqlx::Error> {
        let (balance, reserved) = ledger::balance(&self.db, user_id).await?.unwrap_or((0, 0));
        let held = self.local.as_ref().map_or(0, |local| local.held(user_id));
        Ok((balance, (balance - reserved.max(held)).max(0)))
    }

    /// This process's replica id.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Tells the in-memory accounts about a credit committed to the database.
    pub fn credited(&self, user_id: &str, amount: i64) {
        if let Some(local) = &self.local {
            local.credited(user_id, amount);
        }
    }
}

/// The one log line of every request. The key appears by id only.
fn log_request(record: &UsageRecord) {
    tracing::info!(
        target: "llm_gateway::request",
        request_id = %record.id,
        client_request_id = record.client_request_id.as_deref().unwrap_or("-"),
        user_id = %record.user_id,
        key_id = record.key_id.as_deref().unwrap_or("-"),
        endpoint = %record.endpoint,
        provider = record.provider.as_deref().unwrap_or("-"),
        model = record.model.as_deref().unwrap_or("-"),
        status = record.status,
        error_code = record.error_code.as_deref().unwrap_or("-"),
        prompt_tokens = record.prompt_tokens,
        completion_tokens = record.completion_tokens,
        cost_nanos = record.cost,
        latency_ms = record.latency_ms,
        ttft_ms = record.ttft_ms.unwrap_or(-1),
        streamed = record.streamed == 1,
        aborted = record.aborted == 1,
        "request"
    );
}

async fn write_loop(
    db: Db,
    mut receiver: mpsc::UnboundedReceiver<Message>,
    queue: Arc<Queue>,
    local: Option<Arc<LocalAccounts>>,
    idle_poll: IdlePoll,
    metrics: Arc<Metrics>,
) {
    let mut lanes = Lanes::new(db.clone());
    let mut batch = Vec::with_capacity(BATCH);
    while next_batch(&mut receiver, &queue, &mut batch).await {
        let urgent = batch.len() == BATCH || batch.iter().any(|m| m.reply.is_some());
        let (ops, replies): (Vec<WriteOp>, Vec<_>) =
            batch.drain(..).map(|m| (m.op, m.reply)).unzip();
        let ops = Arc::new(ops);
        let applied = {
            // SQLite commits in this process, on the workers' cores.
            let _aside = matches!(db, Db::Sqlite(_)).then(|| idle_poll.step_aside());
            let lane = lanes.pick(urgent).await;
            let (lane, applied) = lanes.apply(lane, &ops).await;
            metrics.usage_batch(lane);
            applied
        };
        match applied {
            Ok(results) => {
                for (reply, taken) in replies.into_iter().zip(results) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(taken));
                    }
                }
            }
            Err(err) => {
                tracing::error!(%err, ops = ops.len(), "writing a billing batch failed");
                // Refuse the waiting reservations now; keep trying the records.
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(()));
                }
                let records: Vec<WriteOp> = ops
                    .iter()
                    .filter(|op| matches!(op, WriteOp::Settle { .. }))
                    .cloned()
                    .collect();
                retry_records(&db, &records).await;
            }
        }
        // Written, or given up on: either way the in-memory accounts may
        // trust the database again.
        if let Some(local) = &local {
            local.written(ops.iter().filter_map(|op| match op {
                WriteOp::Settle {
                    record,
                    in_memory: true,
                    ..
                } => Some(record.user_id.as_str()),
                _ => None,
            }));
        }
    }
    lanes.close().await;
}

/// Takes the next batch into `batch`: the ops queued and, unless that is a
/// full batch or someone waits on one of them, those that come within
/// [`LINGER`], or until someone waits on one or a full batch is queued.
/// `false` once every handle is gone and nothing is left.
async fn next_batch(
    receiver: &mut mpsc::UnboundedReceiver<Message>,
    queue: &Queue,
    batch: &mut Vec<Message>,
) -> bool {
    if receiver.recv_many(batch, BATCH).await == 0 {
        return false;
    }
    if lingers(batch) {
        tokio::select! {
            () = tokio::time::sleep(LINGER) => {}
            () = queue.wake.notified() => {}
        }
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
    }
    // What rang meanwhile is in hand (or is the next full batch): a permit
    // left now would cut the next linger short for nothing.
    let _ = queue.wake.notified().now_or_never();
    queue.took(batch.len());
    true
}

/// Whether the writer should wait for more ops before applying `batch`:
/// not when it is full (the writer may be behind) or someone waits on it.
fn lingers(batch: &[Message]) -> bool {
    batch.len() < BATCH && batch.iter().all(|m| m.reply.is_none())
}

/// How a batch reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The ordinary pool.
    Normal,
    /// SQLite's background connection, whose threads get the CPU when
    /// nothing else wants it ([`Db::background_writer`]).
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
struct Lanes {
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
    fn new(db: Db) -> Self {
        Self {
            background: db.background_writer(),
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
    async fn pick(&mut self, urgent: bool) -> Lane {
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
    async fn apply(
        &mut self,
        lane: Lane,
        ops: &Arc<Vec<WriteOp>>,
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
                    Some(apply_retrying_conflicts(&db, &batch).await)
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
            apply_retrying_conflicts(&self.normal, ops).await,
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

    async fn close(self) {
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

/// Applies a batch, again if the database rolled it back for a conflict
/// with another process (a deadlock or a serialization failure): nothing
/// of it was written, and the next try usually goes through.
async fn apply_retrying_conflicts(db: &Db, ops: &[WriteOp]) -> Result<Vec<bool>, sqlx::Error> {
    const TRIES: u32 = 4;
    let mut attempt = 1;
    loop {
        match apply_batch(db, ops).await {
            Err(err) if attempt < TRIES && is_conflict(&err) => {
                tracing::warn!(%err, attempt, ops = ops.len(), "billing batch conflicted; trying again");
                tokio::time::sleep(Duration::from_millis(5 << (2 * attempt))).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Whether the database refused a transaction for a conflict with another
/// (PostgreSQL's `deadlock_detected` or `serialization_failure`).
fn is_conflict(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

async fn retry_records(db: &Db, records: &[WriteOp]) {
    for attempt in 1..=5u32 {
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        match apply_batch(db, records).await {
            Ok(_) => return,
            Err(err) => {
                tracing::error!(%err, attempt, records = records.len(), "retrying usage records failed")
            }
        }
    }
    tracing::error!(
        records = records.len(),
        "usage records lost after retries; their reservations expire"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite_lanes() -> Lanes {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_lazy("sqlite::memory:")
            .unwrap();
        Lanes::new(Db::Sqlite(pool))
    }

    #[tokio::test]
    async fn batches_go_in_the_background_unless_urgent() {
        let lanes = sqlite_lanes().await;
        let now = Instant::now();
        assert_eq!(lanes.choose(false, now), Lane::Background);
        assert_eq!(lanes.choose(true, now), Lane::Normal);
    }

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

    fn settle_op(id: &str, user_id: &str) -> WriteOp {
        WriteOp::Settle {
            record: UsageRecord {
                id: id.into(),
                user_id: user_id.into(),
                status: 200,
                created_at: crate::db::now_ms(),
                ..UsageRecord::default()
            },
            in_memory: false,
            budgets: None,
            rate_window: None,
        }
    }

    #[test]
    fn only_a_partial_batch_nobody_waits_on_lingers() {
        let record = || Message {
            op: settle_op("r", "u"),
            reply: None,
        };
        let mut batch: Vec<Message> = (0..BATCH - 1).map(|_| record()).collect();
        assert!(lingers(&batch));
        batch.push(record());
        assert!(!lingers(&batch), "a full batch goes at once");

        let (reply, _answer) = oneshot::channel();
        let waited_on = vec![
            record(),
            Message {
                op: settle_op("r2", "u"),
                reply: Some(reply),
            },
        ];
        assert!(!lingers(&waited_on));
    }

    /// Sends a settlement through `queue` and `sender`, as the recorder
    /// does; `reply` when someone waits on it.
    fn send(
        queue: &Queue,
        sender: &mpsc::UnboundedSender<Message>,
        reply: Option<oneshot::Sender<Result<bool, ()>>>,
    ) {
        let op = settle_op("r", "u");
        assert!(queue.send(sender, Message { op, reply }).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_linger_ends_early_once_someone_waits_or_a_batch_is_full() {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let queue = Queue::default();
        let mut batch = Vec::new();
        let taken = |batch: &mut Vec<Message>| batch.drain(..).count();

        // Records alone: the whole linger.
        send(&queue, &sender, None);
        let start = tokio::time::Instant::now();
        assert!(next_batch(&mut receiver, &queue, &mut batch).await);
        assert!(start.elapsed() >= LINGER);
        assert_eq!(taken(&mut batch), 1);

        // Someone waits on an op sent during the linger: it ends then.
        send(&queue, &sender, None);
        let start = tokio::time::Instant::now();
        let (reply, _answer) = oneshot::channel();
        let (gathered, ()) = tokio::join!(next_batch(&mut receiver, &queue, &mut batch), async {
            tokio::task::yield_now().await;
            send(&queue, &sender, Some(reply));
        });
        assert!(gathered);
        assert!(start.elapsed() < LINGER, "{:?}", start.elapsed());
        assert_eq!(taken(&mut batch), 2);

        // A batch fills during the linger: it ends then.
        send(&queue, &sender, None);
        let start = tokio::time::Instant::now();
        let (gathered, ()) = tokio::join!(next_batch(&mut receiver, &queue, &mut batch), async {
            tokio::task::yield_now().await;
            for _ in 1..BATCH {
                send(&queue, &sender, None);
            }
        });
        assert!(gathered);
        assert!(start.elapsed() < LINGER, "{:?}", start.elapsed());
        assert_eq!(taken(&mut batch), BATCH);

        // An op someone waits on, taken without a linger, leaves no bell
        // ringing for the next batch's.
        let (reply, _answer) = oneshot::channel();
        send(&queue, &sender, Some(reply));
        assert!(next_batch(&mut receiver, &queue, &mut batch).await);
        assert_eq!(taken(&mut batch), 1);
        send(&queue, &sender, None);
        let start = tokio::time::Instant::now();
        assert!(next_batch(&mut receiver, &queue, &mut batch).await);
        assert!(start.elapsed() >= LINGER);
        assert_eq!(taken(&mut batch), 1);

        assert_eq!(queue.pending.load(Ordering::Relaxed), 0);
        drop(sender);
        assert!(!next_batch(&mut receiver, &queue, &mut batch).await);
    }

    #[tokio::test]
    async fn the_background_lane_writes_and_the_normal_one_takes_over_if_it_stops() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/lanes.db", dir.path().display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        crate::db::users::find_or_create(&db, "u1").await.unwrap();
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
            let (went, applied) = lanes.apply(Lane::Background, &first).await;
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
        let (lane, applied) = lanes.apply(Lane::Background, &second).await;
        applied.unwrap();
        assert_eq!(lane, Lane::Normal);
        assert_eq!(count().await, 2, "written in the normal lane");
        assert_eq!(lanes.choose(false, Instant::now()), Lane::Normal);
    }

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

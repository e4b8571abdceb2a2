//! The one writer of money and usage: reservations, usage records and their
//! settlement all go through a single task per process, which applies them
//! in group-committed batches. Handlers never wait on a database lock.
//!
//! On SQLite, which one process owns, reservations and charges are decided
//! in memory ([`LocalAccounts`]) and cost no database round trip; the writer
//! then records them. On PostgreSQL, shared by replicas, a reservation is a
//! conditional update that waits for the next batch.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::billing::accounts::LocalAccounts;
use crate::billing::budget::BudgetLimit;
use crate::db::ledger::{self, apply_batch, WriteOp};
use crate::db::usage::UsageRecord;
use crate::db::Db;
use crate::error::AppError;
use crate::idle_poll::IdlePoll;
use crate::metrics::Metrics;

const BATCH: usize = 256;
/// How long the writer waits to gather more usage records into a
/// transaction, when nobody is waiting on the batch.
const LINGER: Duration = Duration::from_millis(10);

struct Message {
    op: WriteOp,
    /// Where to say whether the op took effect (reservations only).
    reply: Option<oneshot::Sender<Result<bool, ()>>>,
}

/// What a request holds, released when its record is settled.
#[derive(Debug, Clone, Copy, Default)]
pub struct Holds {
    /// Reserved of the user's balance, in nano-USD.
    pub balance: i64,
    /// Whether it holds budgets (the same amount of each).
    pub budgeted: bool,
    /// The key's rate-limit window its tokens count in, if the key has a
    /// token limit.
    pub rate_window: Option<i64>,
}

/// A cheap handle to the writer task.
#[derive(Clone)]
pub struct UsageRecorder {
    sender: mpsc::UnboundedSender<Message>,
    db: Db,
    metrics: Arc<Metrics>,
    /// In-memory accounts, when this process owns its database (SQLite).
    local: Option<Arc<LocalAccounts>>,
}

impl UsageRecorder {
    /// Starts the writer task; it ends, having written everything, once every
    /// handle is dropped.
    /// While it writes a batch to SQLite, the runtime's pollers step aside
    /// (see [`IdlePoll::step_aside`]).
    pub fn start(
        db: Db,
        metrics: Arc<Metrics>,
        idle_poll: IdlePoll,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let local = matches!(db, Db::Sqlite(_)).then(|| Arc::new(LocalAccounts::default()));
        let task = tokio::spawn(write_loop(db.clone(), receiver, local.clone(), idle_poll));
        let recorder = Self {
            sender,
            db,
            metrics,
            local,
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
        let charged = self
            .local
            .as_ref()
            .filter(|_| holds.balance > 0 || record.cost > 0)
            .and_then(|local| local.settle(&record.user_id, holds.balance, record.cost))
            .map(|charge| charge.charged);
        let message = Message {
            op: WriteOp::Settle {
                record,
                charged,
                budgeted: holds.budgeted,
                rate_window: holds.rate_window,
            },
            reply: None,
        };
        if let Err(err) = self.sender.send(message) {
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
        };
        self.ask(op).await
    }

    async fn ask(&self, op: WriteOp) -> Result<bool, AppError> {
        let unavailable = || AppError::Unavailable("Billing is unavailable; try again.".into());
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Message {
                op,
                reply: Some(reply),
            })
            .map_err(|_| unavailable())?;
        answer
            .await
            .map_err(|_| unavailable())?
            .map_err(|_| unavailable())
    }

    /// A user's balance and what is available of it (less what requests in
    /// flight hold), in nano-USD.
    pub async fn balance(&self, user_id: &str) -> Result<(i64, i64), sqlx::Error> {
        let (balance, reserved) = ledger::balance(&self.db, user_id).await?.unwrap_or((0, 0));
        let held = self.local.as_ref().map_or(0, |local| local.held(user_id));
        Ok((balance, (balance - reserved.max(held)).max(0)))
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
    local: Option<Arc<LocalAccounts>>,
    idle_poll: IdlePoll,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        if batch.iter().all(|m| m.reply.is_none()) {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
        }
        let (ops, replies): (Vec<WriteOp>, Vec<_>) =
            batch.drain(..).map(|m| (m.op, m.reply)).unzip();
        let applied = {
            // SQLite commits in this process, on the workers' cores.
            let _aside = matches!(db, Db::Sqlite(_)).then(|| idle_poll.step_aside());
            apply_retrying_conflicts(&db, &ops).await
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
                    charged: Some(_),
                    ..
                } => Some(record.user_id.as_str()),
                _ => None,
            }));
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

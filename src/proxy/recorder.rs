//! The one writer of money and usage: reservations, usage records and their
//! settlement all go through a single task per process, which applies them
//! in group-committed batches. Handlers never wait on a database lock; a
//! reservation waits only for the next batch, and a usage record not at all.

use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::db::ledger::{apply_batch, WriteOp};
use crate::db::usage::UsageRecord;
use crate::db::Db;
use crate::error::AppError;

const BATCH: usize = 256;

struct Message {
    op: WriteOp,
    /// Where to say whether the op took effect (reservations only).
    reply: Option<oneshot::Sender<Result<bool, ()>>>,
}

/// A cheap handle to the writer task.
#[derive(Clone)]
pub struct UsageRecorder {
    sender: mpsc::UnboundedSender<Message>,
}

impl UsageRecorder {
    /// Starts the writer task; it ends, having written everything, once every
    /// handle is dropped.
    pub fn start(db: Db) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(db, receiver));
        (Self { sender }, task)
    }

    /// Queues a usage record, to be written and settled; never blocks.
    pub fn record(&self, record: UsageRecord) {
        let message = Message {
            op: WriteOp::Settle(record),
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
        let (reply, answer) = oneshot::channel();
        let op = WriteOp::Reserve {
            request_id: request_id.to_string(),
            user_id: user_id.to_string(),
            amount,
            expires_at: crate::db::now_ms() + ttl_ms,
        };
        let unavailable = || AppError::Unavailable("Billing is unavailable; try again.".into());
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
}

async fn write_loop(db: Db, mut receiver: mpsc::UnboundedReceiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let (ops, replies): (Vec<WriteOp>, Vec<_>) =
            batch.drain(..).map(|m| (m.op, m.reply)).unzip();
        match apply_batch(&db, &ops).await {
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
                    .into_iter()
                    .filter(|op| matches!(op, WriteOp::Settle(_)))
                    .collect();
                retry_records(&db, &records).await;
            }
        }
    }
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

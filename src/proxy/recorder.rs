//! Writes usage records and settles their billing off the response path:
//! handlers hand records to a channel, and one task writes them in batches.

use std::time::Duration;
use tokio::sync::mpsc;

use crate::db::usage::{self, UsageRecord};
use crate::db::Db;

const BATCH: usize = 256;

/// A cheap handle for submitting usage records.
#[derive(Clone)]
pub struct UsageRecorder {
    sender: mpsc::UnboundedSender<UsageRecord>,
}

impl UsageRecorder {
    /// Starts the writer task; it ends, having written everything, once every
    /// handle is dropped.
    pub fn start(db: Db) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(db, receiver));
        (Self { sender }, task)
    }

    /// Queues a record; never blocks.
    pub fn record(&self, record: UsageRecord) {
        if let Err(err) = self.sender.send(record) {
            tracing::error!(request_id = %err.0.id, "usage writer stopped; record lost");
        }
    }
}

async fn write_loop(db: Db, mut receiver: mpsc::UnboundedReceiver<UsageRecord>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let mut attempt = 0;
        while let Err(err) = usage::settle_batch(&db, &batch).await {
            attempt += 1;
            tracing::error!(%err, attempt, records = batch.len(), "writing usage records failed");
            if attempt >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        batch.clear();
    }
}

//! The one writer of money and usage: reservations, usage records and their
//! settlement all go through a single task per process, which applies them
//! in group-committed batches. Handlers never wait on a database lock.
//!
//! On SQLite, which one process owns, reservations and charges are decided
//! in memory ([`LocalAccounts`]) and cost no database round trip; the writer
//! then records them. On PostgreSQL, shared by replicas, they are decided
//! in memory too, against the lease this replica holds on the user's credit
//! ([`Leases`]); only growing a lease asks the database. Budgets are held
//! the same way on either backend, against leases on the budgets. A
//! balance or budget too small for a lease gets a reservation per call: a
//! conditional update that waits for the next batch.
//!
//! On SQLite the commits run in this process, on the cores that serve
//! requests, so most batches go through a connection at idle CPU priority
//! that any request preempts ([`Lanes`]).

use futures::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

use super::accounts::LocalAccounts;
use super::batch::{self, apply_batch, WriteOp};
use super::budget::{BudgetLimit, HeldBudget};
use super::lanes::Lanes;
use super::leases::{Hold, LeaseSizing, Leases};
use crate::clock::Clock;
use crate::db::batch_tx::BalanceHold;
use crate::db::usage::UsageRecord;
use crate::db::Db;
use crate::db::{budgets, changes, leases as lease_rows, ledger};
use crate::error::AppError;
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

/// Where a request's hold on the balance came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HeldBy {
    /// The in-memory accounts (SQLite) or a reservation row of its own.
    #[default]
    Account,
    /// This replica's lease on the user's credit (PostgreSQL).
    Lease,
}

/// What a request holds, released when its record is settled.
#[derive(Debug, Clone, Default)]
pub struct Holds {
    /// Reserved of the user's balance, in nano-USD.
    pub balance: i64,
    /// Where the balance hold came from.
    pub held_by: HeldBy,
    /// Reserved of each budget in `budgets`, in nano-USD.
    pub budget_amount: i64,
    /// The budget scopes it holds `budget_amount` of, and charges in full.
    pub budgets: Option<Arc<[HeldBudget]>>,
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
    /// This replica's leases on its users' credit (PostgreSQL).
    leases: Option<Arc<Leases>>,
    /// This replica's leases on budgets, by scope (either backend).
    budget_leases: Arc<Leases>,
    /// This process's replica id, which its holds carry.
    replica_id: Arc<str>,
    /// When holds expire and records are made.
    clock: Clock,
}

impl UsageRecorder {
    /// Starts the writer task; it ends, having written everything, once every
    /// handle is dropped.
    /// Counts its batches by lane in `metrics`.
    pub fn start(
        db: Db,
        metrics: Arc<Metrics>,
        replica_id: Arc<str>,
        clock: Clock,
        sizing: LeaseSizing,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue::default());
        let local = matches!(db, Db::Sqlite(_)).then(|| Arc::new(LocalAccounts::default()));
        let leases = matches!(db, Db::Postgres(_)).then(|| Arc::new(Leases::new(sizing)));
        let budget_leases = Arc::new(Leases::new(sizing));
        let task = tokio::spawn(write_loop(
            db.clone(),
            receiver,
            queue.clone(),
            local.clone(),
            metrics.clone(),
            clock.clone(),
        ));
        let recorder = Self {
            sender,
            queue,
            db,
            metrics,
            local,
            leases,
            budget_leases,
            replica_id,
            clock,
        };
        (recorder, task)
    }

    /// The clock records and holds are dated by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The database the writer writes to.
    pub fn db(&self) -> &Db {
        &self.db
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
        let charged = holds.balance > 0 || record.cost > 0;
        let (in_memory, lease) = match (&self.local, &self.leases) {
            (Some(local), _) if charged => (
                local.settle(&record.user_id, holds.balance, record.cost),
                None,
            ),
            (_, Some(leases))
                if holds.held_by == HeldBy::Lease
                    && leases.settle(&record.user_id, holds.balance, record.cost) =>
            {
                let lease = lease_rows::lease_id(&self.replica_id, &record.user_id);
                (true, Some(Arc::from(lease)))
            }
            _ => (false, None),
        };
        for held in holds.budgets.iter().flat_map(|budgets| budgets.iter()) {
            if held.lease.is_some() {
                self.budget_leases
                    .settle(&held.scope, holds.budget_amount, record.cost);
            }
        }
        let message = Message {
            op: WriteOp::Settle {
                record,
                in_memory,
                lease,
                budgets: holds.budgets,
                rate_window: holds.rate_window,
            },
            reply: None,
        };
        if let Err(err) = self.queue.send(&self.sender, message) {
            tracing::error!(op = ?err.0.op, "usage writer stopped; record lost");
        }
    }

    /// Holds `amount` of the user's available balance for a request: where
    /// the hold came from, or `None` when the available balance cannot
    /// cover it.
    pub async fn reserve(
        &self,
        request_id: &str,
        user_id: &str,
        amount: i64,
        ttl_ms: i64,
    ) -> Result<Option<HeldBy>, AppError> {
        if let Some(local) = &self.local {
            let held = local
                .reserve(&self.db, user_id, amount)
                .await
                .map_err(|err| {
                    tracing::error!(%err, "reading a balance failed");
                    unavailable()
                })?;
            return Ok(held.then_some(HeldBy::Account));
        }
        if let Some(leases) = &self.leases {
            if self
                .hold_from_lease(leases, Leased::Credit { user_id }, amount)
                .await?
            {
                return Ok(Some(HeldBy::Lease));
            }
        }
        // A reservation for this call alone. Leases other replicas are
        // giving back (a recall), and the holds of calls that ended and
        // are being settled, come back within milliseconds.
        for wait_ms in RECALL_WAITS_MS {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            // Looked at before the try: a hold given back between a refused
            // try and the look must still get a try of its own. Holds of
            // calls in flight count: each frees what it did not spend.
            let held_elsewhere = match &self.leases {
                Some(leases) => leases.held(user_id) > 0 || self.held_elsewhere(user_id).await,
                None => false,
            };
            if self
                .reserve_row(request_id, user_id, amount, ttl_ms)
                .await?
            {
                return Ok(Some(HeldBy::Account));
            }
            if !held_elsewhere {
                break;
            }
        }
        Ok(None)
    }

    /// Holds `amount` from this replica's lease on `leased`, growing it if
    /// need be; `false` when what is left is too small for a lease (the
    /// others' leases are then recalled, and calls get a reservation each).
    async fn hold_from_lease(
        &self,
        leases: &Arc<Leases>,
        leased: Leased<'_>,
        amount: i64,
    ) -> Result<bool, AppError> {
        let key = leased.key();
        let mut grows = 0;
        for _ in 0..LEASE_TRIES {
            let now = std::time::Instant::now();
            let now_ms = self.clock.now_ms();
            match leases.try_hold(key, (leased.owner(), leased.terms()), amount, now, now_ms) {
                Hold::Held => return Ok(true),
                Hold::TopUp { by } => {
                    self.top_up(leases.clone(), leased.to_owned(), by);
                    return Ok(true);
                }
                Hold::PerCall => return Ok(false),
                Hold::Wait => tokio::time::sleep(Duration::from_millis(1)).await,
                // Other calls kept taking what was granted.
                Hold::Grow { .. } if grows == 3 => {
                    leases.not_grown(key);
                    return Ok(false);
                }
                Hold::Grow { by, lacking } => {
                    grows += 1;
                    let grown = match self.grow_lease(&leased, by).await {
                        Ok(false) if lacking < by => self
                            .grow_lease(&leased, lacking)
                            .await
                            .map(|grown| grown.then_some(lacking)),
                        other => other.map(|grown| grown.then_some(by)),
                    };
                    match grown {
                        Ok(Some(amount)) => {
                            let until = self.lease_until(&leased).await;
                            leases.grown(key, amount, leased.terms(), until);
                        }
                        Ok(None) => {
                            leases.not_grown(key);
                            self.recall_leases(&leased).await;
                            return Ok(false);
                        }
                        Err(err) => {
                            leases.not_grown(key);
                            return Err(err);
                        }
                    }
                }
            }
        }
        // Waited long on another call's growing: ask for this one alone.
        Ok(false)
    }

    /// Grows the lease on `leased` by `by` in the background, before it
    /// runs out; a refusal changes nothing (the call that finds the lease
    /// short grows it, or falls back to a reservation).
    fn top_up(&self, leases: Arc<Leases>, leased: LeasedOwned, by: i64) {
        let recorder = self.clone();
        tokio::spawn(async move {
            let leased = leased.borrow();
            match recorder.grow_lease(&leased, by).await {
                Ok(true) => {
                    let until = recorder.lease_until(&leased).await;
                    leases.grown(leased.key(), by, leased.terms(), until);
                }
                _ => leases.not_grown(leased.key()),
            }
        });
    }

    /// Asks the database to add `amount` to this replica's lease on
    /// `leased`; `false` when what is available cannot cover it.
    async fn grow_lease(&self, leased: &Leased<'_>, amount: i64) -> Result<bool, AppError> {
        match *leased {
            Leased::Credit { user_id } => lease_rows::grow(
                &self.db,
                &self.replica_id,
                user_id,
                amount,
                self.clock.now_ms(),
            )
            .await
            .map_err(|err| {
                tracing::error!(%err, "growing a lease failed");
                unavailable()
            }),
            Leased::Budget { user_id, limit } => {
                let now = self.clock.now_ms();
                let hold = BalanceHold {
                    request_id: &lease_rows::lease_id(&self.replica_id, &limit.scope),
                    user_id,
                    amount,
                    created_at: now,
                    expires_at: lease_rows::NEVER,
                    replica_id: &self.replica_id,
                };
                batch::grow_budget_lease(&self.db, &hold, limit, now)
                    .await
                    .map_err(|err| {
                        tracing::error!(%err, "growing a lease on a budget failed");
                        unavailable()
                    })
            }
        }
    }

    /// Until when a lease just grown holds: a budget's, until its period
    /// ends (past that, the lease grows before it is spent from, and that
    /// opens the new period's window); a lease on credit, for good.
    async fn lease_until(&self, leased: &Leased<'_>) -> Option<i64> {
        let Leased::Budget { limit, .. } = leased else {
            return None;
        };
        match budgets::window(&self.db, &limit.scope).await {
            Ok(Some((start, _))) => limit.period.reset_at(start),
            // Unknown: grow again on the next call.
            _ => Some(self.clock.now_ms()),
        }
    }

    /// Stops leasing `leased` here and gives back the free part of this
    /// replica's lease; asks every other replica to do the same.
    async fn recall_leases(&self, leased: &Leased<'_>) {
        let keeper = self.lease_keeper();
        let change = match *leased {
            Leased::Credit { user_id } => {
                keeper.give_back(user_id).await;
                changes::Change::LeaseRecall(user_id.to_string())
            }
            Leased::Budget { limit, .. } => {
                keeper.give_back_budget(&limit.scope).await;
                changes::Change::BudgetLeaseRecall(limit.scope.clone())
            }
        };
        changes::announce(&self.db, change).await;
    }

    /// A handle on this replica's leases for the tasks that answer recalls
    /// and liveness (PostgreSQL); unlike the recorder, it does not keep the
    /// writer running.
    pub fn lease_keeper(&self) -> LeaseKeeper {
        LeaseKeeper {
            leases: self.leases.clone(),
            budget_leases: self.budget_leases.clone(),
            db: self.db.clone(),
            replica_id: self.replica_id.clone(),
        }
    }

    /// Whether anything but this replica's lease holds the user's credit:
    /// other replicas' leases, or calls' reservations.
    async fn held_elsewhere(&self, user_id: &str) -> bool {
        let own = lease_rows::lease_id(&self.replica_id, user_id);
        lease_rows::held_besides(&self.db, user_id, &own)
            .await
            .unwrap_or(false)
    }

    async fn reserve_row(
        &self,
        request_id: &str,
        user_id: &str,
        amount: i64,
        ttl_ms: i64,
    ) -> Result<bool, AppError> {
        self.ask(WriteOp::Reserve {
            request_id: request_id.to_string(),
            user_id: user_id.to_string(),
            amount,
            expires_at: self.clock.now_ms() + ttl_ms,
            replica_id: self.replica_id.clone(),
        })
        .await
    }

    /// Holds `amount` of every budget in `limits` for a request, or none of
    /// them: what it holds of each, or `None` when one cannot cover it.
    /// Each is held from this replica's lease on it, or, when what is
    /// left of it is too small for a lease, by a hold of the request's own.
    pub async fn reserve_budgets(
        &self,
        request_id: &str,
        user_id: &str,
        limits: &[BudgetLimit],
        amount: i64,
        ttl_ms: i64,
    ) -> Result<Option<Vec<HeldBudget>>, AppError> {
        let mut held = Vec::with_capacity(limits.len());
        let mut per_call = Vec::new();
        for limit in limits {
            let leased = Leased::Budget { user_id, limit };
            match self
                .hold_from_lease(&self.budget_leases, leased, amount)
                .await
            {
                Ok(true) => held.push(HeldBudget {
                    scope: limit.scope.clone(),
                    lease: Some(lease_rows::lease_id(&self.replica_id, &limit.scope).into()),
                }),
                Ok(false) => per_call.push(limit.clone()),
                Err(err) => {
                    self.unhold_budget_leases(&held, amount);
                    return Err(err);
                }
            }
        }
        if per_call.is_empty() {
            return Ok(Some(held));
        }
        match self
            .reserve_budget_rows(request_id, user_id, &per_call, amount, ttl_ms)
            .await
        {
            Ok(true) => {
                held.extend(per_call.into_iter().map(|limit| HeldBudget {
                    scope: limit.scope,
                    lease: None,
                }));
                Ok(Some(held))
            }
            other => {
                self.unhold_budget_leases(&held, amount);
                other.map(|_| None)
            }
        }
    }

    /// Releases what a request held of budget leases, charging nothing.
    fn unhold_budget_leases(&self, held: &[HeldBudget], amount: i64) {
        for held in held {
            self.budget_leases.settle(&held.scope, amount, 0);
        }
    }

    /// Holds `amount` of every budget in `limits` by a hold of the
    /// request's own, or of none of them; waits, as [`Self::reserve`] does,
    /// while anything else holds part of them.
    async fn reserve_budget_rows(
        &self,
        request_id: &str,
        user_id: &str,
        limits: &[BudgetLimit],
        amount: i64,
        ttl_ms: i64,
    ) -> Result<bool, AppError> {
        for wait_ms in RECALL_WAITS_MS {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            let held_elsewhere = self.budgets_held_elsewhere(limits).await;
            let op = WriteOp::ReserveBudget {
                request_id: request_id.to_string(),
                user_id: user_id.to_string(),
                limits: limits.to_vec(),
                amount,
                now: self.clock.now_ms(),
                expires_at: self.clock.now_ms() + ttl_ms,
                replica_id: self.replica_id.clone(),
            };
            if self.ask(op).await? {
                return Ok(true);
            }
            if !held_elsewhere {
                break;
            }
        }
        Ok(false)
    }

    /// Whether anything holds part of these budgets: calls in flight here,
    /// or holds and leases in the database.
    async fn budgets_held_elsewhere(&self, limits: &[BudgetLimit]) -> bool {
        for limit in limits {
            if self.budget_leases.held(&limit.scope) > 0
                || lease_rows::budget_held(&self.db, &limit.scope)
                    .await
                    .unwrap_or(false)
            {
                return true;
            }
        }
        false
    }

    async fn ask(&self, op: WriteOp) -> Result<bool, AppError> {
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
        let (balance, reserved) = match &self.leases {
            // A lease is the user's to spend, less what its calls hold.
            Some(leases) => lease_rows::balance_and_leases(&self.db, user_id)
                .await?
                .map_or((0, 0), |(balance, reserved, leased)| {
                    (balance, reserved - leased + leases.held(user_id))
                }),
            None => ledger::balance(&self.db, user_id).await?.unwrap_or((0, 0)),
        };
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

/// What a lease is on: a user's credit, or one of their budgets.
#[derive(Debug, Clone, Copy)]
enum Leased<'a> {
    Credit {
        user_id: &'a str,
    },
    Budget {
        user_id: &'a str,
        limit: &'a BudgetLimit,
    },
}

impl Leased<'_> {
    /// The lease's key in its book: the user, or the budget's scope.
    fn key(&self) -> &str {
        match self {
            Self::Credit { user_id } => user_id,
            Self::Budget { limit, .. } => &limit.scope,
        }
    }

    /// The terms the lease is granted under: a budget's limit.
    fn terms(&self) -> u64 {
        match self {
            Self::Credit { .. } => 0,
            Self::Budget { limit, .. } => limit.terms(),
        }
    }

    fn owner(&self) -> &str {
        match self {
            Self::Credit { user_id } | Self::Budget { user_id, .. } => user_id,
        }
    }

    fn to_owned(self) -> LeasedOwned {
        LeasedOwned {
            user_id: self.owner().to_string(),
            limit: match self {
                Self::Credit { .. } => None,
                Self::Budget { limit, .. } => Some(limit.clone()),
            },
        }
    }
}

/// A [`Leased`] that a background task can keep.
struct LeasedOwned {
    user_id: String,
    limit: Option<BudgetLimit>,
}

impl LeasedOwned {
    fn borrow(&self) -> Leased<'_> {
        match &self.limit {
            None => Leased::Credit {
                user_id: &self.user_id,
            },
            Some(limit) => Leased::Budget {
                user_id: &self.user_id,
                limit,
            },
        }
    }
}

/// This replica's leases, for the tasks beside the writer: it answers
/// recalls, gives back idle leases and forgets them all when the replica
/// was given up for dead. Unlike the recorder, it does not keep the
/// writer running.
#[derive(Clone)]
pub struct LeaseKeeper {
    leases: Option<Arc<Leases>>,
    budget_leases: Arc<Leases>,
    db: Db,
    replica_id: Arc<str>,
}

impl LeaseKeeper {
    /// Gives back the free part of this replica's lease on the user's
    /// credit, and serves them a reservation per call for a while (a
    /// replica was refused a lease).
    pub async fn give_back(&self, user_id: &str) {
        let Some(leases) = &self.leases else {
            return;
        };
        let Some((_, free)) = leases.recall(user_id, std::time::Instant::now()) else {
            return;
        };
        if let Err(err) = lease_rows::shrink(&self.db, &self.replica_id, user_id, free).await {
            tracing::warn!(%err, "giving back a lease failed; it returns when this replica stops");
        }
    }

    /// The same for this replica's lease on a budget.
    pub async fn give_back_budget(&self, scope: &str) {
        let now = std::time::Instant::now();
        if let Some((user_id, free)) = self.budget_leases.recall(scope, now) {
            self.shrink_budget_lease(&user_id, scope, free).await;
        }
    }

    async fn shrink_budget_lease(&self, user_id: &str, scope: &str, amount: i64) {
        if amount <= 0 {
            return;
        }
        let lease = lease_rows::lease_id(&self.replica_id, scope);
        let given = batch::shrink_budget_lease(&self.db, user_id, &lease, scope, amount).await;
        if let Err(err) = given {
            tracing::warn!(%err, "giving back a lease on a budget failed; it returns when this replica stops");
        }
    }

    /// Gives back every lease no call has used for a while, and forgets
    /// it; returns how many. (What the book says is left: a call may grow
    /// a new lease meanwhile, which stays.)
    pub async fn return_idle(&self) -> usize {
        let now = std::time::Instant::now();
        let idle_budgets = self.budget_leases.idle(now);
        let returned = idle_budgets.len();
        for (scope, user_id, left) in idle_budgets {
            self.shrink_budget_lease(&user_id, &scope, left).await;
        }
        let Some(leases) = &self.leases else {
            return returned;
        };
        let idle = leases.idle(now);
        for (user_id, _, left) in &idle {
            let given = lease_rows::shrink(&self.db, &self.replica_id, user_id, *left).await;
            if let Err(err) = given {
                tracing::warn!(%err, "giving back an idle lease failed; it returns when this replica stops");
            }
        }
        returned + idle.len()
    }

    /// Forgets every lease: the rows are gone (this replica was given up
    /// for dead, and its holds released).
    pub fn forget_all(&self) {
        if let Some(leases) = &self.leases {
            leases.forget_all();
        }
        self.budget_leases.forget_all();
    }
}

/// How many times a call looks at its lease: enough to wait a while for
/// another call growing it (a millisecond a look).
const LEASE_TRIES: usize = 200;

/// How long a call refused a reservation waits before each try: leases
/// recalled from other replicas come back within a few milliseconds.
const RECALL_WAITS_MS: [u64; 5] = [0, 10, 30, 80, 200];

fn unavailable() -> AppError {
    AppError::Unavailable("Billing is unavailable; try again.".into())
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
    metrics: Arc<Metrics>,
    clock: Clock,
) {
    let mut lanes = Lanes::new(db.clone());
    let mut batch = Vec::with_capacity(BATCH);
    while next_batch(&mut receiver, &queue, &mut batch).await {
        let urgent = batch.len() == BATCH || batch.iter().any(|m| m.reply.is_some());
        let (ops, replies): (Vec<WriteOp>, Vec<_>) =
            batch.drain(..).map(|m| (m.op, m.reply)).unzip();
        let ops = Arc::new(ops);
        let applied = {
            let lane = lanes.pick(urgent).await;
            let (lane, applied) = lanes.apply(lane, &ops, clock.now_ms()).await;
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
                retry_records(&db, &records, &clock).await;
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

async fn retry_records(db: &Db, records: &[WriteOp], clock: &Clock) {
    for attempt in 1..=5u32 {
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        match apply_batch(db, records, clock.now_ms()).await {
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
    use crate::billing::batch::settle_op;

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
}

//! A SQLite connection, and a thread to drive it, at idle CPU priority.
//!
//! SQLite commits in this process, on the same cores that serve requests.
//! Under the default policy a request that becomes ready while a commit is
//! on the CPU can wait out the committing thread's time slice (a millisecond
//! or more). The [`BackgroundWriter`]'s threads run under Linux's
//! `SCHED_IDLE` policy instead: they get the CPU when nothing else wants
//! it (and only a sliver of it otherwise), and any request-serving thread
//! that wakes up preempts them at once. Both run idle: the connection's own
//! thread, which runs SQLite, and the one whose async runtime builds the
//! statements, binds their arguments and reads the rows back.
//!
//! A thread, once idle, can only go back to the normal policy with
//! `CAP_SYS_NICE`, so the caller keeps its ordinary pool for when the
//! machine is too busy for background work to make progress (see
//! [`super::Lanes`]).

use futures::future::BoxFuture;
use sqlx::sqlite::SqlitePoolOptions;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::db::{writer_options, Db};

/// The name of the connection's thread: how it is found among the
/// process's threads. Fifteen bytes, Linux's limit.
const CONNECTION_THREAD: &str = "llm-gw-bg-write";
/// The name of the thread that drives the connection.
const DRIVER_THREAD: &str = "llm-gw-bg-drive";

/// Work for the background thread, given its pool.
type Job = Box<dyn FnOnce(Db) -> BoxFuture<'static, ()> + Send>;

/// A thread at idle priority that runs database work, one job at a time,
/// on its own connection to the same SQLite file.
pub struct BackgroundWriter {
    jobs: mpsc::UnboundedSender<Job>,
    thread: std::thread::JoinHandle<()>,
}

/// A [`BackgroundWriter`] on `db`'s SQLite file; `None` on PostgreSQL,
/// whose commits run in the server, not in this process, without the
/// `idle-lane` feature, or when the thread cannot be started. The
/// connection opens on first use.
pub fn start(db: &Db) -> Option<BackgroundWriter> {
    let Db::Sqlite(pool) = db else {
        return None;
    };
    if !cfg!(feature = "idle-lane") {
        return None;
    }
    let options = writer_options(pool).thread_name(|_| CONNECTION_THREAD.to_string());
    let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
    let drive = move || {
        lower_priority(idle_priority::apply_to_current);
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => return tracing::error!(%err, "cannot start the background writer"),
        };
        runtime.block_on(async move {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(|_, _| {
                    Box::pin(async {
                        lower_priority(|| idle_priority::apply_to_named(CONNECTION_THREAD));
                        Ok(())
                    })
                })
                .connect_lazy_with(options);
            let db = Db::Sqlite(pool);
            while let Some(job) = queue.recv().await {
                job(db.clone()).await;
            }
            db.close().await;
        });
    };
    let thread = std::thread::Builder::new()
        .name(DRIVER_THREAD.into())
        .spawn(drive)
        .map_err(|err| tracing::warn!(%err, "cannot start the background writer"))
        .ok()?;
    Some(BackgroundWriter { jobs, thread })
}

impl BackgroundWriter {
    /// Queues `work` to run on the background thread with its pool; the
    /// future resolves to what it returns, or `None` if the thread has
    /// stopped.
    pub fn run<F, Fut, T>(&self, work: F) -> impl Future<Output = Option<T>> + Send + 'static
    where
        F: FnOnce(Db) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            Box::pin(async move {
                let _ = answer.send(work(db).await);
            })
        });
        // A stopped thread drops the job, and with it `answer`.
        let _ = self.jobs.send(job);
        async move { answered.await.ok() }
    }

    /// Asks the thread for a sign of life: the receiver resolves once the
    /// thread has had the CPU to answer, or fails if it has stopped. Under
    /// `SCHED_IDLE` that happens only when the CPU has nothing else to do.
    pub fn ping(&self) -> oneshot::Receiver<()> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |_| {
            Box::pin(async move {
                let _ = answer.send(());
            })
        });
        // A stopped thread drops the job, and with it `answer`.
        let _ = self.jobs.send(job);
        answered
    }

    /// Lets the thread finish its jobs, close the connection and end.
    pub async fn close(self) {
        drop(self.jobs);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Moves threads to `SCHED_IDLE` with `apply`; logs a failure, after which
/// they simply run at normal priority.
fn lower_priority(apply: impl FnOnce() -> std::io::Result<usize>) {
    match apply() {
        Ok(0) => tracing::warn!("no background writer thread to lower the priority of"),
        Ok(_) => tracing::debug!("a background writer thread runs at idle priority"),
        Err(err) => tracing::warn!(%err, "cannot lower the background writer's priority"),
    }
}

#[cfg(target_os = "linux")]
mod idle_priority {
    use std::io;

    /// Moves the calling thread to `SCHED_IDLE`.
    pub fn apply_to_current() -> io::Result<usize> {
        // Thread id 0 is the calling thread.
        set_idle(0).map(|()| 1)
    }

    /// Moves this process's threads named `name` to `SCHED_IDLE`; returns
    /// how many it moved.
    pub fn apply_to_named(name: &str) -> io::Result<usize> {
        let mut moved = 0;
        for entry in std::fs::read_dir("/proc/self/task")? {
            let entry = entry?;
            // A thread that ended meanwhile has no comm to read: skip it.
            let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            let tid = entry.file_name().to_str().and_then(|s| s.parse().ok());
            if let (true, Some(tid)) = (comm.trim_end() == name, tid) {
                match set_idle(tid) {
                    Ok(()) => moved += 1,
                    // It ended meanwhile.
                    Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(moved)
    }

    /// Whether thread `tid` runs under `SCHED_IDLE`.
    #[cfg(test)]
    pub fn is_idle(tid: libc::pid_t) -> io::Result<bool> {
        // SAFETY: sched_getscheduler only reads the policy of a thread id.
        match unsafe { libc::sched_getscheduler(tid) } {
            -1 => Err(io::Error::last_os_error()),
            policy => Ok(policy == libc::SCHED_IDLE),
        }
    }

    fn set_idle(tid: libc::pid_t) -> io::Result<()> {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` outlives the call, which only reads it; a stale
        // tid fails with ESRCH.
        match unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod idle_priority {
    //! Elsewhere the threads keep the normal priority.
    use std::io;

    pub fn apply_to_current() -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn apply_to_named(_name: &str) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(all(test, target_os = "linux", feature = "idle-lane"))]
mod tests {
    use super::*;

    /// The ids of this process's threads named `name` (as Linux truncates it).
    fn threads_named(name: &str) -> Vec<libc::pid_t> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
                name.starts_with(comm.trim_end()).then_some(())?;
                entry.file_name().to_str()?.parse().ok()
            })
            .collect()
    }

    #[tokio::test]
    async fn the_writer_runs_at_idle_priority_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/background.db", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        let writer = start(&db).expect("SQLite has a background writer");
        let written = writer
            .run(|background| async move {
                let Db::Sqlite(pool) = background else {
                    unreachable!()
                };
                sqlx::query("CREATE TABLE t (x INTEGER)")
                    .execute(&pool)
                    .await?;
                sqlx::query("INSERT INTO t VALUES (1)")
                    .execute(&pool)
                    .await?;
                // This thread (0: the caller) and every connection thread of
                // a background writer (those that ended meanwhile aside).
                let connections = threads_named(CONNECTION_THREAD);
                Ok::<_, sqlx::Error>([
                    idle_priority::is_idle(0).unwrap(),
                    !connections.is_empty()
                        && connections
                            .iter()
                            .all(|&tid| idle_priority::is_idle(tid).unwrap_or(true)),
                ])
            })
            .await
            .expect("the thread runs jobs");
        assert_eq!(
            written.unwrap(),
            [true, true],
            "driver and connection threads are idle"
        );

        let Db::Sqlite(main) = &db else {
            unreachable!()
        };
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(main)
            .await
            .unwrap();
        assert_eq!(count, 1, "the main pool sees what the background one wrote");
        let main_threads = threads_named("sqlx-sqlite-worker");
        assert!(!main_threads.is_empty(), "the main pool has a connection");
        for tid in main_threads {
            // (Another test's pool may close a thread meanwhile.)
            assert!(
                !idle_priority::is_idle(tid).unwrap_or(false),
                "thread {tid}"
            );
        }
        writer.close().await;
    }

    #[tokio::test]
    async fn postgres_has_no_background_writer() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        assert!(start(&Db::Postgres(pool)).is_none());
    }
}

//! The billing writer's own SQLite connection, whose worker thread runs at
//! idle priority: usage records are written while the process has nothing
//! else to do, so a batch commit never preempts a request being served.

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::time::Duration;

/// The name prefix of the writer connection's worker thread (at most 15
/// bytes with its number: Linux truncates thread names there).
const THREAD_PREFIX: &str = "gw-writer-";

/// A one-connection pool on the same file as `options`, whose worker thread
/// is moved to idle priority as soon as it connects.
pub fn writer_pool(options: &SqliteConnectOptions) -> SqlitePool {
    let options = options
        .clone()
        .thread_name(|id| format!("{THREAD_PREFIX}{id}"));
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|_, _| {
            Box::pin(async {
                idle_priority(THREAD_PREFIX);
                Ok(())
            })
        })
        .connect_lazy_with(options)
}

/// Puts every thread of this process whose name starts with `prefix` in
/// Linux's `SCHED_IDLE` class: it runs only on an otherwise idle core.
/// Elsewhere, or if the kernel refuses, the threads keep their priority.
fn idle_priority(prefix: &str) {
    #[cfg(target_os = "linux")]
    {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        for task in tasks.flatten() {
            let named = std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix));
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if named {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: `param` is a valid sched_param; `tid` names a thread
                // of this process (or one just gone, which only fails).
                let result = unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) };
                if result != 0 {
                    tracing::debug!(tid, "could not lower the billing writer's priority");
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = prefix;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The scheduling policy of each of this process's threads named `prefix…`.
    fn policies(prefix: &str) -> Vec<i32> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|name| name.starts_with(prefix))
            })
            .filter_map(|task| task.file_name().to_str()?.parse::<i32>().ok())
            // SAFETY: only reads the policy of a thread of this process.
            .map(|tid| unsafe { libc::sched_getscheduler(tid) })
            .collect()
    }

    #[tokio::test]
    async fn the_writer_connection_runs_at_idle_priority() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("writer.db"))
            .create_if_missing(true);
        let pool = writer_pool(&options);
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        let policies = policies(THREAD_PREFIX);
        assert!(!policies.is_empty(), "the worker thread is named");
        assert!(
            policies.iter().all(|&p| p == libc::SCHED_IDLE),
            "{policies:?}"
        );
        pool.close().await;
    }
}

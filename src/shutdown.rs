//! Who owns the background tasks: every long-lived task of a running hub (the writer, the
//! cluster feed, heartbeat, token expiry, the `--demo` clock, the subscription-events writer,
//! the JWKS refreshers, the `/metrics` listener) is spawned through one [`Tasks`], which tells
//! them when shutdown begins and waits for them, within a deadline.
//!
//! Per-connection tasks are not here: they end with their connection, and the accept loop
//! ([`crate::http::serve`]) waits for those itself.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The background tasks of one hub, and the signal that ends them. Dropping it signals
/// shutdown too, so a hub that fails half-way through start-up leaves nothing running.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

/// A read-only view of a [`Tasks`], kept after the hub it watches was consumed (tests, logs).
#[derive(Debug, Clone)]
pub struct TaskWatch {
    tracker: TaskTracker,
}

impl Tasks {
    /// No tasks yet.
    pub(crate) fn new() -> Tasks {
        Tasks::default()
    }

    /// Runs `task` until it ends or shutdown begins; then it is dropped at its next `.await`.
    /// For loops with nothing to finish (tickers, refreshers, listeners).
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            let _ = stop.run_until_cancelled(task).await;
        });
    }

    /// Runs the task that `start` makes from the shutdown signal; the task watches the signal
    /// and finishes its work on its own (the writer commits what is queued, then stops).
    pub(crate) fn spawn_graceful<F>(&self, start: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(start(self.stop.clone()));
    }

    /// Takes charge of a task spawned elsewhere: aborted when shutdown begins, waited for.
    pub(crate) fn adopt(&self, mut handle: JoinHandle<()>) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = &mut handle => {}
                () = stop.cancelled() => {
                    handle.abort();
                    let _ = handle.await;
                }
            }
        });
    }

    /// A view that outlives this value.
    pub(crate) fn watch(&self) -> TaskWatch {
        TaskWatch {
            tracker: self.tracker.clone(),
        }
    }

    /// Tasks still running.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tracker.len()
    }

    /// True when no task is running.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Signals shutdown, refuses new tasks and waits for the running ones, at most `deadline`.
    /// True when every task ended in time.
    pub(crate) async fn shutdown(&self, deadline: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        let finished = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                running = self.tracker.len(),
                "background tasks did not stop within {deadline:?}"
            );
        }
        finished
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tracker.close();
    }
}

impl TaskWatch {
    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// True once shutdown began and every task has ended.
    pub fn is_finished(&self) -> bool {
        self.tracker.is_closed() && self.tracker.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_loops_lets_graceful_tasks_finish_and_aborts_adopted_ones() {
        let tasks = Tasks::new();
        tasks.spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let finished_its_work = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&finished_its_work);
        tasks.spawn_graceful(|stop| async move {
            stop.cancelled().await;
            // Work after the signal: e.g. the writer committing what is queued.
            tokio::time::sleep(Duration::from_millis(300)).await;
            flag.store(true, Ordering::Release);
        });
        tasks.adopt(tokio::spawn(std::future::pending::<()>()));
        let watch = tasks.watch();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(watch.running(), 3);
        assert!(!watch.is_finished());

        let started = tokio::time::Instant::now();
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert!(finished_its_work.load(Ordering::Acquire));
        assert!(watch.is_finished());
        assert_eq!(watch.running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_signal_is_given_up_on_at_the_deadline() {
        let tasks = Tasks::new();
        tasks.spawn_graceful(|_stop| std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        assert!(!tasks.shutdown(Duration::from_secs(2)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(tasks.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_owner_signals_shutdown() {
        let tasks = Tasks::new();
        tasks.spawn(std::future::pending::<()>());
        let watch = tasks.watch();
        drop(tasks);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(watch.is_finished());
    }
}

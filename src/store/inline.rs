//! The inline writer: appends and fans out on the publisher's own task, for a store whose append
//! is synchronous and cheap (`memory:`).
//!
//! The group-commit [`super::writer`] exists to share one durable commit among concurrent
//! publishes; a store with nothing to make durable gains nothing from it and pays two task hops
//! per publish (to the writer task and back through the acknowledgement). Here each publisher
//! takes a turn (one async mutex), appends, hands the stored update to `on_commit` (the hub's
//! fan-out) and is answered, with no await between the append and the fan-out. The writer's
//! guarantees hold: an update is fanned out only after it is appended, and updates are fanned
//! out in sequence order (the turn covers both), so every subscriber sees the same order.
//! When shutdown begins, later submits are refused ([`StoreError::Closed`]) and the ones already
//! taking their turn finish first.
//!
//! This module owns only that turn-taking; it knows no subscribers (the wiring passes
//! `on_commit`) and touches no other store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::StoreError;
use super::memory::MemoryStore;
use super::writer::{CommitMetrics, OnCommit};
use crate::shutdown::Tasks;
use crate::update::Update;

/// Appends and fans out on the caller's task, one publisher at a time.
pub(crate) struct InlineWriter {
    store: Arc<MemoryStore>,
    on_commit: OnCommit,
    metrics: CommitMetrics,
    /// Held from the append through the fan-out: the fan-out order is the sequence order.
    turn: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

impl InlineWriter {
    /// An inline writer over `store`, closed when shutdown begins among `tasks`.
    pub(crate) fn start_in(
        tasks: &Tasks,
        store: Arc<MemoryStore>,
        on_commit: OnCommit,
        metrics: CommitMetrics,
    ) -> Arc<InlineWriter> {
        let writer = Arc::new(InlineWriter {
            store,
            on_commit,
            metrics,
            turn: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        });
        let closing = Arc::clone(&writer);
        tasks.spawn_graceful(|stop| async move {
            stop.cancelled().await;
            closing.close().await;
        });
        writer
    }

    /// Refuses later submits, and returns once every submit that got its turn before has
    /// finished.
    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        drop(self.turn.lock().await);
    }

    /// Appends one update and fans it out; returns it stored.
    pub(crate) async fn submit(&self, update: Update) -> Result<Arc<Update>, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let _turn = self.turn.lock().await;
        // Waited behind the shutdown's own turn: refused like a submit after it.
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        // From here to the return nothing awaits: a publisher that goes away cannot leave an
        // update appended and not fanned out.
        let started = Instant::now();
        let stored = self.store.append_now(update);
        self.metrics
            .commit_seconds
            .record(started.elapsed().as_secs_f64());
        self.metrics.publishes.increment(1);
        (self.on_commit)(std::slice::from_ref(&stored));
        Ok(stored)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use parking_lot::Mutex;

    use super::*;
    use crate::store::writer::Writer;
    use crate::store::writer::tests::{self as writer_tests, draft};

    fn memory() -> Arc<MemoryStore> {
        Arc::new(writer_tests::memory())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submits_are_fanned_out_in_sequence_order_before_the_answer() {
        let tasks = Tasks::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_in_callback = Arc::clone(&seen);
        let writer = Writer::inline_in(
            &tasks,
            memory(),
            Arc::new(move |batch: &[Arc<Update>]| {
                seen_in_callback.lock().extend(batch.iter().map(|u| u.seq));
            }),
            CommitMetrics::none(),
        );
        let handles: Vec<_> = (0..400)
            .map(|n| {
                let writer = writer.clone();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let stored = writer.submit(draft(n)).await.unwrap();
                    assert!(seen.lock().contains(&stored.seq), "answered before fan-out");
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(*seen.lock(), (1..=400).collect::<Vec<u64>>());
        assert!(tasks.shutdown(std::time::Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn after_shutdown_begins_submits_are_refused_and_nothing_is_half_done() {
        let tasks = Tasks::new();
        let store = memory();
        let fanned = Arc::new(Mutex::new(0_u64));
        let counter = Arc::clone(&fanned);
        let writer = Writer::inline_in(
            &tasks,
            Arc::clone(&store),
            Arc::new(move |batch: &[Arc<Update>]| *counter.lock() += batch.len() as u64),
            CommitMetrics::none(),
        );
        let submits: Vec<_> = (0..100)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.submit(draft(n)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(tasks.shutdown(std::time::Duration::from_secs(10)).await);
        let mut accepted = 0_u64;
        for submit in submits {
            if submit.await.unwrap().is_ok() {
                accepted += 1;
            }
        }
        assert!(matches!(
            writer.submit(draft(100)).await,
            Err(StoreError::Closed)
        ));
        // Every answered update was appended and fanned out; no refused one was.
        let appended = crate::store::Store::bounds(&*store).await.unwrap().last_seq;
        assert_eq!(appended, accepted);
        assert_eq!(*fanned.lock(), accepted);
        assert!(tasks.is_empty());
    }
}

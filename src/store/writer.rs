//! The group-commit writer: the one task that appends to the store.
//!
//! Publishers submit updates through a bounded channel. The writer takes everything waiting (up
//! to a batch limit), appends it in one call (one commit, one fsync on a durable backend), hands
//! the committed batch to `on_commit` (the hub's fan-out) in sequence order, and only then
//! acknowledges each publisher. So a subscriber never sees an update that could vanish in a
//! crash, every subscriber sees updates in the same order, and the store's speed is set by
//! commits per second, not events per second.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Store, StoreError};
use crate::update::Update;

/// Called with every committed batch, in order, before publishers are acknowledged.
pub type OnCommit = Arc<dyn Fn(&[Arc<Update>]) + Send + Sync>;

/// Where the writer counts its work. The wiring names the metrics (the store knows no telemetry).
#[derive(Clone)]
pub struct CommitMetrics {
    /// Observes each append's duration, failed ones included.
    pub commit_seconds: metrics::Histogram,
    /// Counts the updates committed.
    pub publishes: metrics::Counter,
}

impl CommitMetrics {
    /// Counts nothing.
    pub fn none() -> CommitMetrics {
        CommitMetrics {
            commit_seconds: metrics::Histogram::noop(),
            publishes: metrics::Counter::noop(),
        }
    }
}

/// Publishes waiting for the writer beyond this many are refused rather than queued forever.
const SUBMIT_QUEUE: usize = 16 * 1024;

struct Pending {
    update: Update,
    ack: oneshot::Sender<Result<Arc<Update>, StoreError>>,
}

/// A handle to submit updates; cheap to clone. When every handle is dropped the writer drains
/// what is queued and stops.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts the writer task.
    pub fn spawn(
        store: Arc<dyn Store>,
        on_commit: OnCommit,
        metrics: CommitMetrics,
        max_batch: usize,
    ) -> (Writer, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(SUBMIT_QUEUE);
        let task = tokio::spawn(run(store, on_commit, metrics, receiver, max_batch.max(1)));
        (Writer { queue }, task)
    }

    /// Appends one update and waits until it is committed and fanned out.
    pub async fn submit(&self, update: Update) -> Result<Arc<Update>, StoreError> {
        let (ack, answer) = oneshot::channel();
        self.queue
            .send(Pending { update, ack })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(
    store: Arc<dyn Store>,
    on_commit: OnCommit,
    metrics: CommitMetrics,
    mut receiver: mpsc::Receiver<Pending>,
    max_batch: usize,
) {
    let mut waiting = Vec::with_capacity(max_batch);
    while receiver.recv_many(&mut waiting, max_batch).await > 0 {
        // Publishers woken at the same moment are about to submit: let them join this commit.
        tokio::task::yield_now().await;
        while waiting.len() < max_batch {
            match receiver.try_recv() {
                Ok(pending) => waiting.push(pending),
                Err(_) => break,
            }
        }
        let (updates, acks): (Vec<Update>, Vec<_>) =
            waiting.drain(..).map(|p| (p.update, p.ack)).unzip();
        let started = Instant::now();
        let result = store.append(updates).await;
        metrics
            .commit_seconds
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(stored) => {
                metrics.publishes.increment(stored.len() as u64);
                on_commit(&stored);
                for (ack, update) in acks.into_iter().zip(stored) {
                    // A publisher that went away still had its update committed and delivered.
                    let _ = ack.send(Ok(update));
                }
            }
            Err(error) => {
                tracing::error!(%error, "store append failed; publishers get 503");
                let message = error.to_string();
                for ack in acks {
                    let _ = ack.send(Err(StoreError::Backend(message.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use parking_lot::Mutex;

    use super::*;
    use crate::store::Retention;
    use crate::store::memory::MemoryStore;
    use crate::update::Draft;

    #[tokio::test]
    async fn concurrent_submits_are_committed_in_one_order_and_fanned_out_before_the_ack() {
        let store = Arc::new(MemoryStore::new(Retention {
            max_events: 1000,
            max_age: None,
            per_topic: 0,
        }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_in_callback = Arc::clone(&seen);
        let (writer, task) = Writer::spawn(
            store,
            Arc::new(move |batch: &[Arc<Update>]| {
                seen_in_callback.lock().extend(batch.iter().map(|u| u.seq));
            }),
            CommitMetrics::none(),
            64,
        );
        let mut handles = Vec::new();
        for n in 0..200 {
            let writer = writer.clone();
            let seen = Arc::clone(&seen);
            handles.push(tokio::spawn(async move {
                let update = Update::from_draft(Draft {
                    topics: vec!["t".into()],
                    data: n.to_string(),
                    ..Draft::default()
                })
                .unwrap();
                let stored = writer.submit(update).await.unwrap();
                (stored.seq, seen)
            }));
        }
        for handle in handles {
            let (seq, seen) = handle.await.unwrap();
            assert!(seen.lock().contains(&seq), "acknowledged before fan-out");
        }
        drop(writer);
        task.await.unwrap();
        let seen = seen.lock();
        assert_eq!(*seen, (1..=200).collect::<Vec<u64>>());
    }
}

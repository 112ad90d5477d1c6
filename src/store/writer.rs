//! The group-commit writer: the one task that appends to the store.
//!
//! Publishers submit updates through a bounded channel. The writer takes everything waiting (up
//! to a batch limit), appends it in one call (one commit, one fsync on a durable backend), hands
//! the committed batch to `on_commit` (the hub's fan-out) in sequence order, and only then
//! acknowledges each publisher. So a subscriber never sees an update that could vanish in a
//! crash, every subscriber sees updates in the same order, and the store's speed is set by
//! commits per second, not events per second. A store whose commit has a high fixed cost (redb's
//! fsync) asks for a short linger ([`Store::commit_linger`]): when the previous batch held
//! several publishes, the writer waits up to that long for more before it commits, so the
//! publishers that commit just acknowledged join the next commit instead of forming one of
//! their own.
//!
//! For the memory store, whose append is synchronous and has nothing to make durable, the same
//! handle appends and fans out on the submitter's task instead ([`Writer::inline_in`],
//! [`super::inline`]), with the same ordering guarantees and no task hop.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::inline::InlineWriter;
use super::memory::MemoryStore;
use super::{Store, StoreError};
use crate::shutdown::Tasks;
use crate::update::Update;

/// Called with every committed batch, in order, before publishers are acknowledged.
pub(crate) type OnCommit = Arc<dyn Fn(&[Arc<Update>]) + Send + Sync>;

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
    path: Path,
}

/// Where a submit goes.
#[derive(Clone)]
enum Path {
    /// To the group-commit task.
    Queued(mpsc::Sender<Pending>),
    /// Nowhere: appended and fanned out on the submitter's task ([`super::inline`]).
    Inline(Arc<InlineWriter>),
}

impl Writer {
    /// Starts the writer task, detached: it stops when every [`Writer`] is dropped (benches and
    /// tests; the server uses [`Writer::spawn_in`]).
    pub fn spawn(
        store: Arc<dyn Store>,
        on_commit: OnCommit,
        metrics: CommitMetrics,
        max_batch: usize,
    ) -> (Writer, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(SUBMIT_QUEUE);
        let never = CancellationToken::new();
        let task = tokio::spawn(run(
            store,
            on_commit,
            metrics,
            receiver,
            max_batch.max(1),
            never,
        ));
        (
            Writer {
                path: Path::Queued(queue),
            },
            task,
        )
    }

    /// Starts the writer task among `tasks`: when shutdown begins it refuses new submits
    /// ([`StoreError::Closed`]), commits what is already queued, and stops.
    pub(crate) fn spawn_in(
        tasks: &Tasks,
        store: Arc<dyn Store>,
        on_commit: OnCommit,
        metrics: CommitMetrics,
        max_batch: usize,
    ) -> Writer {
        let (queue, receiver) = mpsc::channel(SUBMIT_QUEUE);
        tasks.spawn_graceful(|stop| {
            run(store, on_commit, metrics, receiver, max_batch.max(1), stop)
        });
        Writer {
            path: Path::Queued(queue),
        }
    }

    /// A writer without a task, for the memory store ([`super::inline`]): each submit appends
    /// and fans out on its own task, in sequence order. When shutdown begins among `tasks` it
    /// refuses new submits ([`StoreError::Closed`]).
    pub(crate) fn inline_in(
        tasks: &Tasks,
        store: Arc<MemoryStore>,
        on_commit: OnCommit,
        metrics: CommitMetrics,
    ) -> Writer {
        Writer {
            path: Path::Inline(InlineWriter::start_in(tasks, store, on_commit, metrics)),
        }
    }

    /// Appends one update and waits until it is committed and fanned out.
    pub async fn submit(&self, update: Update) -> Result<Arc<Update>, StoreError> {
        let queue = match &self.path {
            Path::Queued(queue) => queue,
            Path::Inline(inline) => return inline.submit(update).await,
        };
        let (ack, answer) = oneshot::channel();
        queue
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
    stop: CancellationToken,
) {
    let mut waiting = Vec::with_capacity(max_batch);
    let mut stopping = false;
    let linger = store.commit_linger();
    let mut previous_batch = 0;
    loop {
        let received = tokio::select! {
            biased;
            () = stop.cancelled(), if !stopping => {
                // No new submits; what is queued is still committed below.
                receiver.close();
                stopping = true;
                continue;
            }
            received = receiver.recv_many(&mut waiting, max_batch) => received,
        };
        if received == 0 {
            break;
        }
        // Publishers woken at the same moment are about to submit: let them join this commit.
        tokio::task::yield_now().await;
        while waiting.len() < max_batch {
            match receiver.try_recv() {
                Ok(pending) => waiting.push(pending),
                Err(_) => break,
            }
        }
        // Concurrent publishers acknowledged by the previous commit are on their way back:
        // where a commit costs an fsync, let them join this one rather than wait for the next.
        if !linger.is_zero() && previous_batch > 1 && waiting.len() < max_batch && !stopping {
            let deadline = tokio::time::Instant::now() + linger;
            while waiting.len() < max_batch {
                let room = max_batch - waiting.len();
                match tokio::time::timeout_at(deadline, receiver.recv_many(&mut waiting, room))
                    .await
                {
                    Ok(received) if received > 0 => {}
                    _ => break,
                }
            }
        }
        previous_batch = waiting.len();
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
pub(super) mod tests {
    use parking_lot::Mutex;

    use super::*;
    use crate::store::Retention;
    use crate::store::memory::MemoryStore;
    use crate::update::Draft;

    /// A memory store keeping 1,000 updates.
    pub(in crate::store) fn memory() -> MemoryStore {
        MemoryStore::new(Retention {
            max_events: 1000,
            max_age: None,
            per_topic: 0,
        })
    }

    /// An update to topic `t` whose data is `n`.
    pub(in crate::store) fn draft(n: usize) -> Update {
        Update::from_draft(Draft {
            topics: vec!["t".into()],
            data: n.to_string(),
            ..Draft::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn concurrent_submits_are_committed_in_one_order_and_fanned_out_before_the_ack() {
        let store = Arc::new(memory());
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
                let stored = writer.submit(draft(n)).await.unwrap();
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

    /// A memory store that asks for a linger and records the size of each batch.
    struct Lingering {
        inner: MemoryStore,
        batches: Mutex<Vec<usize>>,
    }

    #[async_trait::async_trait]
    impl Store for Lingering {
        async fn append(&self, batch: Vec<Update>) -> Result<Vec<Arc<Update>>, StoreError> {
            self.batches.lock().push(batch.len());
            self.inner.append(batch).await
        }
        async fn read_after(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<Arc<Update>>, StoreError> {
            self.inner.read_after(after, limit).await
        }
        async fn resolve(&self, id: &str) -> Result<crate::store::ReplayFrom, StoreError> {
            self.inner.resolve(id).await
        }
        async fn resolve_earliest(
            &self,
            id: &str,
            after: u64,
        ) -> Result<crate::store::ReplayFrom, StoreError> {
            self.inner.resolve_earliest(id, after).await
        }
        async fn bounds(&self) -> Result<crate::store::Bounds, StoreError> {
            self.inner.bounds().await
        }
        async fn topics(&self) -> Result<Vec<crate::store::TopicHistory>, StoreError> {
            self.inner.topics().await
        }
        async fn topic_events(
            &self,
            topic: &str,
            after: u64,
            limit: usize,
        ) -> Result<Vec<Arc<Update>>, StoreError> {
            self.inner.topic_events(topic, after, limit).await
        }
        fn commit_linger(&self) -> std::time::Duration {
            std::time::Duration::from_millis(100)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_concurrent_batch_the_writer_lingers_for_more_and_alone_it_does_not() {
        let store = Arc::new(Lingering {
            inner: memory(),
            batches: Mutex::new(Vec::new()),
        });
        let (writer, task) = Writer::spawn(
            store.clone(),
            Arc::new(|_: &[Arc<Update>]| {}),
            CommitMetrics::none(),
            64,
        );
        // One publisher at a time: each commit at once, however long the linger.
        let started = tokio::time::Instant::now();
        writer.submit(draft(0)).await.unwrap();
        writer.submit(draft(1)).await.unwrap();
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
        // Two at once: one batch, then the next publish waits for a later one to join it.
        let (a, b) = tokio::join!(writer.submit(draft(2)), writer.submit(draft(3)));
        assert!(a.is_ok() && b.is_ok());
        let early = tokio::spawn({
            let writer = writer.clone();
            let update = draft(4);
            async move { writer.submit(update).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        writer.submit(draft(5)).await.unwrap();
        assert!(early.await.unwrap().is_ok());
        assert_eq!(*store.batches.lock(), [1, 1, 2, 2]);
        drop(writer);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn at_shutdown_what_is_queued_is_committed_and_later_submits_are_refused() {
        let store = Arc::new(memory());
        let tasks = crate::shutdown::Tasks::new();
        let writer = Writer::spawn_in(
            &tasks,
            store.clone(),
            Arc::new(|_: &[Arc<Update>]| {}),
            CommitMetrics::none(),
            8,
        );
        let submits: Vec<_> = (0..100)
            .map(|n| {
                let writer = writer.clone();
                let update = draft(n);
                tokio::spawn(async move { writer.submit(update).await })
            })
            .collect();
        // Let every submitter queue its update (or have it committed already).
        tokio::task::yield_now().await;
        assert!(tasks.shutdown(std::time::Duration::from_secs(10)).await);
        for submit in submits {
            assert!(submit.await.unwrap().is_ok(), "a queued update was lost");
        }
        assert!(matches!(
            writer.submit(draft(100)).await,
            Err(StoreError::Closed)
        ));
        assert!(tasks.is_empty());
    }
}

//! History: the [`Store`] trait, its backends, and the group-commit [`writer`].
//!
//! The store is a global append-only log of updates keyed by a monotonic sequence number, with an
//! index from event id to sequence. It decides the order of updates (it assigns `seq`) and keeps
//! history bounded by count and age. It knows nothing of subscribers: the writer hands each
//! committed batch to a callback, which the wiring connects to the hub's fan-out. With a store
//! shared by several nodes (Redis, NATS) every node, the publishing one included, is fed instead
//! from the shared log by [`crate::cluster`], so that each node sees the same order; the Redis
//! and NATS stores hand it what it needs to follow their log.

/// Scenarios every backend must pass: run by the unit tests of the memory and redb stores, and
/// by `tests/cluster.rs` against real Redis and NATS servers (hence public, but hidden).
#[doc(hidden)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod conformance;
pub(crate) mod inline;
pub(crate) mod memory;
pub mod nats;
pub(crate) mod record;
pub mod redb;
pub mod redis;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::update::Update;

/// Every call to a shared engine (Redis, NATS) gives up after this long: publishes during an
/// outage fail fast.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// A shared engine's log keeps at least this many updates, whatever `--history-size` says, so a
/// node's reader a little behind still finds what it has not read.
pub(crate) const BUS_FLOOR: usize = 10_000;
/// How long start-up keeps trying to reach a shared engine (Redis, NATS).
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
/// After a failure, a connection to a shared engine (and a cluster feed) waits about this long
/// before it tries again, at first ...
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// ... doubling up to this.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long a shared engine's connection waits before its `attempt`th consecutive reconnection
/// (counting from 0): [`BACKOFF_MIN`] doubled per attempt, up to [`BACKOFF_MAX`], jittered by
/// [`herald_client::Backoff`] (in the upper half of that ceiling).
pub(crate) fn reconnect_delay(attempt: usize) -> Duration {
    let doublings = u32::try_from(attempt.min(6)).unwrap_or(6);
    let ceiling = BACKOFF_MIN.saturating_mul(1 << doublings).min(BACKOFF_MAX);
    herald_client::Backoff::new(ceiling, BACKOFF_MAX).next_delay()
}

/// A store failure. Every variant means "not durable": the publisher is answered 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is closed")]
    Closed,
    #[error("storage failure: {0}")]
    Backend(String),
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// After this sequence number (0 = from the oldest kept).
    After(u64),
    /// The id asked for is not in history (never seen, or trimmed by retention).
    Unknown,
}

/// The edges of what the store keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The oldest update still kept: (seq, id).
    pub oldest: Option<(u64, String)>,
    /// The newest update still kept: (seq, id).
    pub newest: Option<(u64, String)>,
    /// The sequence of the newest update ever appended, kept or not (0: none yet).
    pub last_seq: u64,
    /// The highest sequence retention ever removed (0: none). History holds every update with a
    /// higher sequence; below it, only what [`Retention::per_topic`] protected (so history may
    /// have holes there). A reader resuming after `seq` missed nothing iff
    /// `trimmed_through <= seq`.
    pub trimmed_through: u64,
}

impl Bounds {
    /// The bounds of a store whose history is one contiguous run of the log (no per-topic
    /// protection): everything below the oldest kept was trimmed.
    pub(crate) fn contiguous(
        oldest: Option<(u64, String)>,
        newest: Option<(u64, String)>,
        last_seq: u64,
    ) -> Bounds {
        let trimmed_through = oldest
            .as_ref()
            .map_or(last_seq, |(seq, _)| seq.saturating_sub(1));
        Bounds {
            oldest,
            newest,
            last_seq,
            trimmed_through,
        }
    }

    /// These bounds where retention may also have removed updates above the oldest kept
    /// (per-topic protection leaves holes): `trimmed` is the highest seq it removed.
    pub(crate) fn trimmed_at_least(mut self, trimmed: u64) -> Bounds {
        self.trimmed_through = self.trimmed_through.max(trimmed);
        self
    }
}

/// Per-topic summary of what is stored: one tally of every update kept for the topic, and one
/// of its public (non-private) updates only, so that a caller who may not see the private ones
/// can be shown the second alone. Each topic of an update counts once, however often the update
/// names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicHistory {
    pub topic: String,
    /// Updates kept for this topic, private and public (at least 1).
    pub events: u64,
    /// Id of the newest update kept for this topic, private or public.
    pub last_event_id: String,
    /// Non-private updates kept for this topic (0 when only private updates used it).
    pub public_events: u64,
    /// Id of the newest non-private update kept for this topic: `None` exactly when
    /// `public_events` is 0.
    pub last_public_event_id: Option<String>,
}

/// Retention limits, applied inside the same commits as appends.
///
/// The rule, the same in every backend that supports `per_topic`:
/// 1. Age: every update older than `max_age` goes, protected or not.
/// 2. Count: the newest `max_events` updates appended (the ring) stay. An older update stays only
///    while it is *protected*: among the newest `per_topic` kept updates of at least one of its
///    topics. When history then holds more than `2 × max_events` updates, the oldest go
///    (protection is released oldest first).
///
/// So `max_events` keeps its meaning (the last that many updates, whatever their topics), a
/// quiet topic keeps its newest `per_topic` beside it, and history never holds more than twice
/// `max_events`, however many topics a publisher creates. With `per_topic` 0 this is the plain
/// ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many updates (0: keep none).
    pub max_events: usize,
    /// Drop updates older than this.
    pub max_age: Option<Duration>,
    /// Trim a topic's newest this-many updates last (0: off).
    pub per_topic: usize,
}

/// A consistent copy of everything a store keeps, taken while the hub runs (`POST /admin/backup`):
/// a complete redb file of the same schema, opened for reading and already unlinked from the
/// disk, so nothing is left behind once it has been sent.
#[derive(Debug)]
pub struct Snapshot {
    /// The copy, positioned at its start.
    pub file: std::fs::File,
    /// Its size.
    pub bytes: u64,
    /// Updates it holds.
    pub records: u64,
    /// The newest sequence ever assigned when it was taken.
    pub last_seq: u64,
    /// The id of the newest update it holds.
    pub newest_id: Option<String>,
}

/// Why no snapshot was made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// This backend keeps no file of its own (memory) or lives in another engine (Redis, NATS),
    /// which has its own backup tools.
    #[error("this store cannot be snapshotted by herald")]
    Unsupported,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The history backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends a batch in order, assigns each its `seq`, and returns only once the batch is as
    /// durable as this backend gets.
    async fn append(&self, batch: Vec<Update>) -> Result<Vec<Arc<Update>>, StoreError>;

    /// Up to `limit` updates with `seq > after`, oldest first.
    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Arc<Update>>, StoreError>;

    /// Where to resume for a client whose last event id is `id`. A publisher may use an id more
    /// than once: this is its newest kept occurrence (what Mercure 0.x clients have always got
    /// from Herald).
    async fn resolve(&self, id: &str) -> Result<ReplayFrom, StoreError>;

    /// The oldest kept occurrence of event id `id` with a sequence above `after` (0: the oldest
    /// kept of all), or `Unknown` when history holds none. Mercure 1.0 resolves a duplicated id
    /// to its earliest occurrence; `after` lets the caller step past occurrences it may not see.
    async fn resolve_earliest(&self, id: &str, after: u64) -> Result<ReplayFrom, StoreError>;

    /// The oldest and newest updates kept.
    async fn bounds(&self) -> Result<Bounds, StoreError>;

    /// One summary per topic that has history (private or public), in no particular order.
    async fn topics(&self) -> Result<Vec<TopicHistory>, StoreError>;

    /// Up to `limit` updates with `seq > after` that carry `topic` (canonical or alternate).
    async fn topic_events(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Update>>, StoreError>;

    /// Writes a consistent copy of everything kept (one read transaction) into a new file and
    /// hands it over. Only the redb store can; the others answer [`SnapshotError::Unsupported`].
    async fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        Err(SnapshotError::Unsupported)
    }

    /// How long the group-commit writer may hold a batch open for more publishes when the
    /// previous batch showed concurrent publishers ([`writer`]): worth it where each commit
    /// has a high fixed cost (an fsync). Zero (the default): commit at once.
    fn commit_linger(&self) -> Duration {
        Duration::ZERO
    }
}

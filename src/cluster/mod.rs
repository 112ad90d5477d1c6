//! The cluster layer: on a node whose store is shared (Redis Streams, NATS JetStream), the task
//! that follows the shared log and hands every update to the hub.
//!
//! In a cluster the shared log *is* the bus. Every node, the publishing one included, reads the
//! log and hands each update, in log order, to a [`FeedSink`] (the wiring connects it to the
//! hub's fan-out), so every node sees the same order and each update once. The writer's commit
//! callback then does nothing. This module owns the reading and the reconnecting; the stores
//! ([`crate::store::redis`], [`crate::store::nats`]) own the log itself and hand a feed what it
//! needs to follow it. It never writes to subscribers: it hands updates to the hub like a local
//! publisher's commit does, and tells it when updates were lost to this node.
//!
//! - [`redis`]: `XREAD BLOCK` on a dedicated connection.
//! - [`nats`]: a JetStream ordered push consumer.
//!
//! Both run in `follow_forever`: one session after another, with capped, jittered backoff
//! ([`herald_client::Backoff`]) between them, which starts over once a session has read well.

pub(crate) mod nats;
pub(crate) mod redis;

use std::future::Future;
use std::sync::Arc;

use herald_client::Backoff;
use tokio::task::JoinHandle;

use crate::store::nats::NatsStore;
use crate::store::redis::RedisStore;
use crate::store::{BACKOFF_MAX, BACKOFF_MIN};
use crate::update::Update;

/// Where a cluster feed hands what it reads (the wiring connects it to the hub).
pub(crate) trait FeedSink: Send + Sync + 'static {
    /// Updates appended by any node, in the global order, each once.
    fn deliver(&self, updates: &[Arc<Update>]);
    /// Updates were lost to this node (removed from the shared log before it could read them):
    /// the streams that may have missed them must end, so their clients reconnect with
    /// `Last-Event-ID` and learn of the gap.
    fn gap(&self);
}

/// The feed of one shared store, ready to start.
pub(crate) enum Feed {
    // Boxed: a tail holds a connection handle (Redis) or a stream's whole description (NATS).
    Redis(Box<crate::store::redis::StreamTail>),
    Nats(Box<crate::store::nats::StreamTail>),
}

impl Feed {
    /// The feed of a Redis store, from where its stream stood at start-up.
    pub(crate) fn redis(store: &RedisStore) -> Feed {
        Feed::Redis(Box::new(store.tail()))
    }

    /// The feed of a NATS store, from where its stream stood at start-up.
    pub(crate) fn nats(store: &NatsStore) -> Feed {
        Feed::Nats(Box::new(store.tail()))
    }

    /// Starts the task that hands `sink` every update appended by any node (this one included),
    /// in the global order, each once; and makes the feed's metrics appear at zero.
    pub(crate) fn spawn(self, sink: Arc<dyn FeedSink>) -> JoinHandle<()> {
        crate::telemetry::describe_bus_metrics();
        match self {
            Feed::Redis(tail) => tokio::spawn(follow_forever(
                redis::RedisFeed::new(*tail, sink),
                backoff(),
            )),
            Feed::Nats(tail) => {
                tokio::spawn(follow_forever(nats::NatsFeed::new(*tail, sink), backoff()))
            }
        }
    }
}

/// The wait between two sessions: [`BACKOFF_MIN`] at first, doubling up to [`BACKOFF_MAX`].
fn backoff() -> Backoff {
    Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
}

/// One connection's worth of following a shared log.
pub(crate) trait Session: Send {
    /// Connects, then reads and delivers until something breaks (and logs why). Marks
    /// `progress` after every good read.
    fn run(&mut self, progress: &mut Progress) -> impl Future<Output = ()> + Send;
}

/// Whether a session read well at least once: the engine answered a read.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    read: bool,
}

impl Progress {
    /// A read succeeded.
    pub(crate) fn read_well(&mut self) {
        self.read = true;
    }
}

/// The one reconnect loop: runs `session` again and again, waiting `backoff` between two runs.
/// A session that read well starts the backoff over, so a feed that ran for hours reconnects
/// at once after an outage; one that keeps failing waits longer each time, up to the cap.
pub(crate) async fn follow_forever(mut session: impl Session, mut backoff: Backoff) {
    loop {
        let mut progress = Progress::default();
        session.run(&mut progress).await;
        if progress.read {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;

    /// Tokio's timers round a deadline up to the next millisecond.
    const TIMER_TICK: Duration = Duration::from_millis(1);

    /// A session that reports when it starts and then fails, having read well or not as the
    /// script says.
    struct Scripted {
        reads: VecDeque<bool>,
        starts: mpsc::UnboundedSender<Instant>,
    }

    impl Session for Scripted {
        async fn run(&mut self, progress: &mut Progress) {
            let _ = self.starts.send(Instant::now());
            if self.reads.pop_front().unwrap_or(false) {
                progress.read_well();
            }
        }
    }

    /// The waits between the sessions of `script`, on paused time (so they are exact and cost
    /// nothing).
    async fn waits(script: &[bool]) -> Vec<Duration> {
        let (starts, mut started) = mpsc::unbounded_channel();
        let session = Scripted {
            reads: script.iter().copied().collect(),
            starts,
        };
        let task = tokio::spawn(follow_forever(session, backoff()));
        let mut at = Vec::new();
        for _ in 0..=script.len() {
            at.push(started.recv().await.unwrap());
        }
        task.abort();
        at.windows(2).map(|pair| pair[1] - pair[0]).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_a_good_read_starts_the_backoff_over() {
        // Four sessions that fail without reading, one that reads and then fails, two more that
        // fail without reading.
        let waits = waits(&[false, false, false, false, true, false, false]).await;
        let ceilings = [50, 100, 200, 400, 50, 100, 200].map(Duration::from_millis);
        for (wait, ceiling) in waits.iter().zip(ceilings) {
            assert!(
                *wait >= ceiling / 2 && *wait <= ceiling + TIMER_TICK,
                "waits {waits:?}, expected each in the upper half of {ceilings:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_stops_growing_at_the_cap() {
        let waits = waits(&[false; 12]).await;
        assert!(
            waits.iter().all(|wait| *wait <= BACKOFF_MAX + TIMER_TICK),
            "{waits:?}"
        );
        assert!(waits[11] >= BACKOFF_MAX / 2, "{waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_that_always_reads_well_retries_after_the_shortest_wait() {
        let waits = waits(&[true; 8]).await;
        assert!(
            waits.iter().all(|wait| *wait <= BACKOFF_MIN + TIMER_TICK),
            "{waits:?}"
        );
    }
}

//! The Redis Streams feed: follows `{prefix}:log` with `XREAD BLOCK` and hands every entry to the
//! hub, in stream order.
//!
//! Every node, the publishing one included, runs one feed on a dedicated connection (a blocking
//! read would stall the store's), from the newest stream id at start-up (read by
//! [`RedisStore::connect`](crate::store::redis::RedisStore::connect) before the server accepts
//! subscribers): the same global order on every node, each update once per node. After a broken
//! connection it reconnects (in `follow_forever`) and resumes after the last id it
//! delivered. Each read also fetches the newest entry ever deleted (`meta` field `trimmed`): if
//! what the feed had not read yet was trimmed meanwhile, it logs it, counts
//! `herald_bus_gaps_total`, and tells the sink, so the streams that may have missed updates end
//! (their clients reconnect with `Last-Event-ID` and get a `herald-gap` notice).
//! `herald_bus_lag_seconds` is now minus the time of the newest entry delivered (0 when a read
//! finds nothing new).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

use super::{FeedSink, Progress, Session};
use crate::store::OP_TIMEOUT;
use crate::store::StoreError;
use crate::store::redis::{Entry, StreamTail, array, entries, malformed, seq_of};
use crate::telemetry::names;
use crate::update::now_ms;

/// How long one `XREAD` blocks before it is sent again.
const BLOCK: Duration = Duration::from_secs(5);
/// Most entries one `XREAD` returns.
const READ_COUNT: usize = 1024;

/// One node's reader of the stream.
pub(crate) struct RedisFeed {
    tail: StreamTail,
    /// The newest stream id delivered (or the start).
    last: String,
    sink: Arc<dyn FeedSink>,
    /// The last session could not connect or broke: the next one that connects says so.
    failing: bool,
}

/// Why a feed connection ended.
enum Broken {
    Redis(redis::RedisError),
    Reply(StoreError),
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Redis(error) => error.fmt(f),
            Broken::Reply(error) => error.fmt(f),
        }
    }
}

impl Session for RedisFeed {
    async fn run(&mut self, progress: &mut Progress) {
        let connection = self
            .tail
            .client
            .get_multiplexed_async_connection_with_config(
                &AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(OP_TIMEOUT))
                    .set_response_timeout(Some(BLOCK + OP_TIMEOUT)),
            )
            .await;
        match connection {
            Ok(mut connection) => {
                if self.failing {
                    tracing::info!(url = %self.tail.url, from = %self.last, "cluster feed reconnected; resuming");
                    self.wake_manager().await;
                }
                let broken = self.follow(&mut connection, progress).await;
                tracing::warn!(url = %self.tail.url, error = %broken, last = %self.last, "cluster feed lost its connection; reconnecting");
                self.failing = true;
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(url = %self.tail.url, %error, "cluster feed cannot connect; retrying");
                    self.failing = true;
                }
            }
        }
    }
}

impl RedisFeed {
    /// A feed of `tail` into `sink`, from where the stream stood at start-up.
    pub(crate) fn new(tail: StreamTail, sink: Arc<dyn FeedSink>) -> RedisFeed {
        RedisFeed {
            last: tail.start_id.clone(),
            tail,
            sink,
            failing: false,
        }
    }

    /// Redis is back: make the store's connection notice now if it went stale, rather than
    /// failing the next publish (the manager reconnects after a command fails).
    async fn wake_manager(&self) {
        let mut manager = self.tail.manager.clone();
        for _ in 0..2 {
            let ping = redis::cmd("PING");
            let pong = ping.query_async::<()>(&mut manager);
            if let Ok(Ok(())) = tokio::time::timeout(OP_TIMEOUT, pong).await {
                return;
            }
        }
    }

    /// Reads and delivers until the connection breaks.
    async fn follow(
        &mut self,
        connection: &mut MultiplexedConnection,
        progress: &mut Progress,
    ) -> Broken {
        loop {
            let reply: redis::RedisResult<(Value, Option<String>)> = redis::pipe()
                .cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(5000))
                .arg("STREAMS")
                .arg(&self.tail.log_key)
                .arg(&self.last)
                .cmd("HGET")
                .arg(&self.tail.meta_key)
                .arg("trimmed")
                .query_async(connection)
                .await;
            let (value, trimmed) = match reply {
                Ok(reply) => reply,
                Err(error) => return Broken::Redis(error),
            };
            let batch = match read_reply(value) {
                Ok(batch) => batch,
                Err(error) => return Broken::Reply(error),
            };
            progress.read_well();
            self.check_gap(trimmed.as_deref(), batch.first());
            let Some(newest) = batch.last() else {
                metrics::gauge!(names::BUS_LAG_SECONDS).set(0.0);
                continue;
            };
            let lag_ms = now_ms().saturating_sub(newest.ms());
            let mut updates = Vec::with_capacity(batch.len());
            for entry in &batch {
                match entry.decode() {
                    Ok(update) => updates.push(Arc::new(update)),
                    Err(error) => {
                        tracing::error!(%error, "cluster feed skipped an entry it cannot decode");
                    }
                }
            }
            self.last.clone_from(&newest.id);
            self.sink.deliver(&updates);
            metrics::gauge!(names::BUS_LAG_SECONDS).set(lag_ms as f64 / 1000.0);
        }
    }

    /// Was something after `self.last` deleted before this node read it?
    fn check_gap(&self, trimmed: Option<&str>, first: Option<&Entry>) {
        let (Some(trimmed), Ok(last)) = (trimmed, seq_of(&self.last)) else {
            return;
        };
        let Ok(trimmed_seq) = seq_of(trimmed) else {
            return;
        };
        let first_seq = first.and_then(|entry| seq_of(&entry.id).ok());
        if lost(last, trimmed_seq, first_seq) {
            metrics::counter!(names::BUS_GAPS_TOTAL).increment(1);
            tracing::error!(
                url = %self.tail.url,
                last_read = %self.last,
                trimmed_up_to = %trimmed,
                "cluster feed: updates were trimmed before this node read them; ending the streams that may have missed them"
            );
            self.sink.gap();
        }
    }
}

/// An XREAD reply for one stream: `[[key, [entries]]]`, or nil on timeout.
fn read_reply(value: Value) -> Result<Vec<Entry>, StoreError> {
    let streams = array(value).ok_or_else(|| malformed("XREAD"))?;
    let Some(stream) = streams.into_iter().next() else {
        return Ok(Vec::new());
    };
    let mut pair = array(stream)
        .ok_or_else(|| malformed("XREAD stream"))?
        .into_iter();
    let _key = pair.next();
    entries(pair.next().unwrap_or(Value::Nil))
}

/// After delivering up to `last`, a read returned entries from `first` on (or none), and the
/// newest entry ever deleted is `trimmed`. Deletion only takes the oldest entries, so something
/// this node had not read was deleted exactly when `trimmed` lies after `last` and before
/// `first`. (A `trimmed` at or past `first` was deleted after the read; if the read was behind
/// by a whole stream, the next read tells.)
fn lost(last: u64, trimmed: u64, first: Option<u64>) -> bool {
    trimmed > last && first.is_none_or(|first| trimmed < first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_a_deletion_between_the_last_read_and_the_next() {
        // Nothing deleted after what was read.
        assert!(!lost(10, 5, Some(11)));
        assert!(!lost(10, 10, Some(11)));
        assert!(!lost(10, 0, None));
        // Deleted before this node read them.
        assert!(lost(10, 12, Some(20)));
        assert!(lost(10, 12, None));
        // Deleted after this read returned them.
        assert!(!lost(10, 20, Some(15)));
    }
}

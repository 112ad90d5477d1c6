//! The NATS JetStream feed: follows the stream with an ordered push consumer and hands every
//! message to the hub, in stream order.
//!
//! Every node runs one feed from the newest sequence at start-up (read by
//! [`NatsStore::connect`](crate::store::nats::NatsStore::connect)). The client recreates the
//! consumer after a reconnect from the last sequence delivered; when the consumer fails
//! altogether, `follow_forever` starts a new session from there. Sequences are
//! contiguous, so a jump means messages were removed before this node read them: it is logged,
//! counted in `herald_bus_gaps_total`, and reported to the sink. `herald_bus_lag_seconds` is now
//! minus the server time of the newest message delivered.

use std::convert::Infallible;
use std::sync::Arc;

use async_nats::jetstream::consumer;
use futures_util::{FutureExt, StreamExt};

use super::{FeedSink, Progress, Session};
use crate::store::nats::{StreamTail, unix_ms};
use crate::store::record::parse;
use crate::telemetry::names;
use crate::update::{Update, now_ms};

/// Most messages handed to the hub at once.
const FEED_BATCH: usize = 1024;

/// One node's reader of the stream.
pub(crate) struct NatsFeed {
    tail: StreamTail,
    /// The newest sequence delivered (or the start).
    last: u64,
    sink: Arc<dyn FeedSink>,
}

impl Session for NatsFeed {
    async fn run(&mut self, progress: &mut Progress) {
        let Err(error) = self.follow(progress).await;
        tracing::warn!(url = %self.tail.url, %error, last = self.last, "cluster feed interrupted; restarting it");
    }
}

impl NatsFeed {
    /// A feed of `tail` into `sink`, from where the stream stood at start-up.
    pub(crate) fn new(tail: StreamTail, sink: Arc<dyn FeedSink>) -> NatsFeed {
        NatsFeed {
            last: tail.start_seq,
            tail,
            sink,
        }
    }

    /// Follows the stream from `self.last` until the consumer fails. The server answering the
    /// consumer's creation, and every message received, count as good reads.
    async fn follow(&mut self, progress: &mut Progress) -> Result<Infallible, String> {
        let consumer = self
            .tail
            .stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: format!("_INBOX.herald.{}", uuid::Uuid::now_v7().simple()),
                filter_subject: self.tail.filter.clone(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: self.last + 1,
                },
                ..consumer::push::OrderedConfig::default()
            })
            .await
            .map_err(|error| error.to_string())?;
        // Only a message counts as a good read: a consumer that is created but whose messages
        // fail at once must back off, not come back every 50 ms.
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        let mut batch = Vec::new();
        loop {
            let Some(first) = messages.next().await else {
                return Err("the consumer ended".into());
            };
            let mut next = Some(first);
            // Everything already received goes to the hub in one call.
            while let Some(message) = next.take() {
                let message = message.map_err(|error| error.to_string())?;
                progress.read_well();
                let (seq, time_ms) = {
                    let info = message.info().map_err(|error| error.to_string())?;
                    (
                        info.stream_sequence,
                        unix_ms(info.published.unix_timestamp_nanos()),
                    )
                };
                if seq <= self.last {
                    continue;
                }
                if seq > self.last + 1 {
                    // What came before the gap reaches the hub before the gap closes streams.
                    self.deliver(&mut batch);
                    self.gap(seq);
                }
                self.last = seq;
                match parse(&message.payload) {
                    Some(record) => batch.push((Arc::new(record.to_update(seq)), time_ms)),
                    None => {
                        tracing::error!(seq, "cluster feed skipped a message it cannot decode");
                    }
                }
                if batch.len() < FEED_BATCH {
                    next = messages.next().now_or_never().flatten();
                }
            }
            self.deliver(&mut batch);
        }
    }

    /// Hands `batch` (updates with their publish time) to the hub in one call, and records the
    /// feed's lag from the newest.
    fn deliver(&self, batch: &mut Vec<(Arc<Update>, u64)>) {
        if let Some((_, time_ms)) = batch.last() {
            let lag = now_ms().saturating_sub(*time_ms) as f64 / 1000.0;
            let updates: Vec<Arc<Update>> = batch.drain(..).map(|(update, _)| update).collect();
            self.sink.deliver(&updates);
            metrics::gauge!(names::BUS_LAG_SECONDS).set(lag);
        }
    }

    fn gap(&self, seq: u64) {
        metrics::counter!(names::BUS_GAPS_TOTAL).increment(1);
        tracing::error!(
            url = %self.tail.url,
            last_read = self.last,
            next = seq,
            "cluster feed: updates were removed before this node read them; ending the streams that may have missed them"
        );
        self.sink.gap();
    }
}

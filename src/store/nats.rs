//! `--store nats://host:port/`: history and fan-out shared by several nodes through a NATS
//! JetStream stream.
//!
//! This module owns one JetStream stream (named after `--nats-prefix` in upper case, default
//! `HERALD`) and history reads. It knows nothing of HTTP or subscribers. The task that follows
//! the stream for the hub is the cluster layer's ([`crate::cluster::nats`]);
//! `NatsStore::tail` hands it what it needs.
//!
//! # Layout
//! - Each update is one message on the subject `{prefix}.updates.{key}`, its payload the record
//!   in the shared [`super::record`] encoding. `key` stands for the event id (`i` + the id in
//!   base64url when short, `h` + a hash of it otherwise), so JetStream's own per-subject index
//!   resolves an id: the last message on the id's subject (its record is checked to carry that
//!   very id). One publish per update, no second write to keep in step. The earliest occurrence
//!   of a duplicated id (Mercure 1.0) is the first message on that subject from history's
//!   oldest sequence on (`direct_get_next_for_subject`), read the same way.
//! - `seq` is the JetStream stream sequence: assigned by the server, contiguous, the same on
//!   every node.
//! - The stream keeps `max(--history-size, 10,000)` messages and drops messages older than
//!   `--history-max-age`; history (replay, `/topics`) is the newest `--history-size` of them. The
//!   extra messages are for the feed: a node a little behind must still find what it has not
//!   read, even with `--history-size 0`.
//!
//! # Appends
//! One [`Store::append`] publishes every update of the batch (pipelined on one connection, so
//! their sequences follow the batch order), then waits for every JetStream acknowledgement: the
//! server has stored them. While the connection is down, `append` fails at once (503) rather
//! than buffering; every call gives up after [`OP_TIMEOUT`]. A publish whose acknowledgement was
//! lost may still be stored: a 503 means "maybe", never "acknowledged and then lost".
//! Durability on disk is the server's: JetStream acknowledges once the message is in its store
//! and fsyncs periodically (`sync_interval`), unless the stream is replicated.
//!
//! # The feed
//! Every node follows the stream from the newest sequence at start-up (read here): see
//! [`crate::cluster::nats`].
//!
//! `/topics` scans the messages history holds (fine up to ~100,000; it is an operator's view).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_trait::async_trait;
use base64::Engine;

use super::record::{encode, parse};
use super::{
    BUS_FLOOR, Bounds, CONNECT_PATIENCE, OP_TIMEOUT, ReplayFrom, Retention, Store, StoreError,
    TopicHistory, reconnect_delay,
};
use crate::update::{Update, now_ms};

/// How many messages on an id's subject [`NatsStore::resolve_earliest`] reads at most before it
/// gives up: only hash collisions of long ids and aged-out messages not yet removed are skipped.
const OCCURRENCE_PROBES: usize = 64;
/// Messages read from the stream per page (pipelined gets).
const PAGE: u64 = 256;

/// Why the store could not start. Each message is one line naming the URL.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach NATS at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("NATS at {url}: cannot set up the JetStream stream {stream}: {reason}")]
    Stream {
        url: String,
        stream: String,
        reason: String,
    },
}

/// The stream as a cluster feed follows it.
pub(crate) struct StreamTail {
    pub(crate) stream: stream::Stream,
    /// The subjects of every update.
    pub(crate) filter: String,
    /// The newest sequence at start-up: where the feed starts.
    pub(crate) start_seq: u64,
    pub(crate) url: String,
}

/// The NATS JetStream store. Cheap to share behind an `Arc`.
pub struct NatsStore {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: stream::Stream,
    prefix: String,
    retention: Retention,
    /// The newest sequence at start-up: where the feed starts.
    start_seq: u64,
    url: String,
}

impl NatsStore {
    /// Connects (retrying for a few seconds), creates or adjusts the stream, and reads where the
    /// feed starts.
    pub async fn connect(
        url: &str,
        prefix: &str,
        retention: Retention,
    ) -> Result<NatsStore, ConnectError> {
        let shown = url.to_owned();
        let address = url.trim_end_matches('/');
        let unreachable = |reason: String| ConnectError::Unreachable {
            url: shown.clone(),
            reason,
        };
        let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
        let mut delay = Duration::from_millis(100);
        let client = loop {
            let options = async_nats::ConnectOptions::new()
                .connection_timeout(OP_TIMEOUT)
                .request_timeout(Some(OP_TIMEOUT))
                .ping_interval(Duration::from_secs(5))
                .reconnect_delay_callback(reconnect_delay);
            let error = match tokio::time::timeout(CONNECT_PATIENCE, options.connect(address)).await
            {
                Ok(Ok(client)) => break client,
                Ok(Err(error)) => error.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            if tokio::time::Instant::now() + delay > deadline {
                return Err(unreachable(error));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        };
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(OP_TIMEOUT);
        let name = prefix.to_uppercase();
        let stream_error = |reason: String| ConnectError::Stream {
            url: shown.clone(),
            stream: name.clone(),
            reason,
        };
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.updates.>")],
            max_messages: i64::try_from(retention.max_events.max(BUS_FLOOR)).unwrap_or(i64::MAX),
            max_age: retention.max_age.unwrap_or(Duration::ZERO),
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            allow_direct: true,
            ..stream::Config::default()
        };
        let mut stream = tokio::time::timeout(
            CONNECT_PATIENCE,
            jetstream.get_or_create_stream(config.clone()),
        )
        .await
        .map_err(|_| stream_error("timed out".into()))?
        .map_err(|error| stream_error(error.to_string()))?;
        let info = stream
            .info()
            .await
            .map_err(|error| stream_error(error.to_string()))?
            .clone();
        if info.config.max_messages != config.max_messages
            || info.config.max_age != config.max_age
            || info.config.subjects != config.subjects
            || !info.config.allow_direct
        {
            tracing::warn!(
                stream = %name,
                "the stream's limits differ from this node's --history-size/--history-max-age; updating them (give every node the same)"
            );
            let updated = stream::Config {
                max_messages: config.max_messages,
                max_age: config.max_age,
                subjects: config.subjects.clone(),
                allow_direct: true,
                ..info.config.clone()
            };
            jetstream
                .update_stream(updated)
                .await
                .map_err(|error| stream_error(error.to_string()))?;
        }
        Ok(NatsStore {
            client,
            jetstream,
            stream,
            prefix: prefix.to_owned(),
            retention,
            start_seq: info.state.last_sequence,
            url: shown,
        })
    }

    /// What a cluster feed needs to follow this stream from where it stood at start-up.
    pub(crate) fn tail(&self) -> StreamTail {
        StreamTail {
            stream: self.stream.clone(),
            filter: format!("{}.updates.>", self.prefix),
            start_seq: self.start_seq,
            url: self.url.clone(),
        }
    }

    fn subject(&self, id: &str) -> String {
        format!("{}.updates.{}", self.prefix, id_token(id))
    }

    /// The stream's first and last sequence now.
    async fn edges(&self) -> Result<(u64, u64), StoreError> {
        let info = bounded(self.stream.get_info()).await?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// The oldest sequence history holds by count (it may still be aged out), and the last.
    async fn window(&self) -> Result<(u64, u64), StoreError> {
        let (first, last) = self.edges().await?;
        let by_count = last
            .saturating_add(1)
            .saturating_sub(u64::try_from(self.retention.max_events).unwrap_or(u64::MAX));
        Ok((first.max(by_count).max(1), last))
    }

    /// Updates published before this instant (server time, ms) have aged out.
    fn cutoff_ms(&self) -> Option<u64> {
        self.retention
            .max_age
            .map(|age| now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
    }

    /// The message at `seq`, if the stream has it.
    async fn get(&self, seq: u64) -> Result<Option<Stored>, StoreError> {
        match bounded(self.stream.direct_get(seq)).await {
            Ok(message) => Stored::from_message(message).map(Some),
            Err(StoreError::Backend(reason)) if reason.contains(NOT_FOUND_MARK) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The messages at `from..=to` that the stream has, in order, fetched concurrently.
    async fn get_range(&self, from: u64, to: u64) -> Result<Vec<Stored>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let gets = (from..=to).map(|seq| self.get(seq));
        let found = futures_util::future::join_all(gets).await;
        let mut out = Vec::with_capacity(found.len());
        for result in found {
            if let Some(stored) = result? {
                out.push(stored);
            }
        }
        Ok(out)
    }

    /// Up to `limit` updates of history after `after` for which `wanted` holds.
    async fn scan(
        &self,
        after: u64,
        limit: usize,
        wanted: impl Fn(&Update) -> bool,
    ) -> Result<Vec<Arc<Update>>, StoreError> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let (oldest, last) = self.window().await?;
        let cutoff = self.cutoff_ms();
        let mut next = oldest.max(after.saturating_add(1));
        let mut leading = true;
        while next <= last && found.len() < limit {
            let to = last.min(next + PAGE - 1);
            for stored in self.get_range(next, to).await? {
                if leading && cutoff.is_some_and(|limit| stored.time_ms < limit) {
                    continue;
                }
                leading = false;
                let update = stored.decode()?;
                if wanted(&update) {
                    found.push(Arc::new(update));
                    if found.len() >= limit {
                        break;
                    }
                }
            }
            next = to + 1;
        }
        Ok(found)
    }

    /// The first sequence in `from..=last` that has not aged out, if any.
    async fn first_fresh(&self, from: u64, last: u64) -> Result<Option<Stored>, StoreError> {
        let Some(cutoff) = self.cutoff_ms() else {
            return self.first_present(from, last).await;
        };
        // Times grow with sequences: binary search for the first fresh message.
        let (mut low, mut high) = (from, last.saturating_add(1));
        while low < high {
            let middle = low + (high - low) / 2;
            match self.get(middle).await? {
                Some(stored) if stored.time_ms >= cutoff => high = middle,
                _ => low = middle + 1,
            }
        }
        if low > last {
            return Ok(None);
        }
        self.first_present(low, last).await
    }

    async fn first_present(&self, from: u64, last: u64) -> Result<Option<Stored>, StoreError> {
        let mut seq = from;
        while seq <= last {
            if let Some(stored) = self.get(seq).await? {
                return Ok(Some(stored));
            }
            seq += 1;
        }
        Ok(None)
    }
}

/// Marks a "no such message" answer in [`bounded`]'s error text.
const NOT_FOUND_MARK: &str = "[not found]";

/// Runs one NATS call with the store's time limit.
async fn bounded<T, E: std::fmt::Display + NotFound>(
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) if error.not_found() => Err(StoreError::Backend(format!(
            "nats: {error} {NOT_FOUND_MARK}"
        ))),
        Ok(Err(error)) => Err(StoreError::Backend(format!("nats: {error}"))),
        Err(_) => Err(StoreError::Backend(format!(
            "nats: no answer within {}s",
            OP_TIMEOUT.as_secs()
        ))),
    }
}

/// Errors that can mean "no such message".
trait NotFound {
    fn not_found(&self) -> bool {
        false
    }
}

impl NotFound for stream::DirectGetError {
    fn not_found(&self) -> bool {
        matches!(self.kind(), stream::DirectGetErrorKind::NotFound)
    }
}

impl NotFound for stream::InfoError {}
impl NotFound for jetstream::context::PublishError {}

/// A message read back: its sequence, server time and record.
struct Stored {
    seq: u64,
    time_ms: u64,
    payload: bytes::Bytes,
}

impl Stored {
    fn from_message(message: jetstream::message::StreamMessage) -> Result<Stored, StoreError> {
        Ok(Stored {
            seq: message.sequence,
            time_ms: unix_ms(message.time.unix_timestamp_nanos()),
            payload: message.payload,
        })
    }

    fn decode(&self) -> Result<Update, StoreError> {
        parse(&self.payload)
            .map(|record| record.to_update(self.seq))
            .ok_or_else(|| {
                StoreError::Backend(format!("nats: undecodable record at seq {}", self.seq))
            })
    }

    fn id(&self) -> Option<&str> {
        parse(&self.payload).map(|record| record.id)
    }
}

/// Nanoseconds since the Unix epoch -> milliseconds.
pub(crate) fn unix_ms(nanos: i128) -> u64 {
    u64::try_from(nanos / 1_000_000).unwrap_or(0)
}

/// A subject token standing for an event id: `i` + base64url of a short id, or `h` + an FNV-1a
/// hash and the length of a long one (the record is checked on resolve, so a collision only
/// makes an id unknown).
fn id_token(id: &str) -> String {
    if id.len() <= 96 {
        format!(
            "i{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
        )
    } else {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in id.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("h{hash:016x}{:x}", id.len())
    }
}

#[async_trait]
impl Store for NatsStore {
    async fn append(&self, batch: Vec<Update>) -> Result<Vec<Arc<Update>>, StoreError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(StoreError::Backend(format!(
                "nats: not connected to {}",
                self.url
            )));
        }
        let publish_all = async {
            let mut acks = Vec::with_capacity(batch.len());
            for update in &batch {
                let mut record = Vec::with_capacity(update.frame.len() * 2 + 64);
                encode(update, &mut record)?;
                let ack = bounded(
                    self.jetstream
                        .publish(self.subject(&update.id), bytes::Bytes::from(record)),
                )
                .await?;
                acks.push(ack);
            }
            let mut seqs = Vec::with_capacity(acks.len());
            for ack in acks {
                seqs.push(bounded(ack.into_future()).await?.sequence);
            }
            Ok::<_, StoreError>(seqs)
        };
        let seqs = match tokio::time::timeout(OP_TIMEOUT, publish_all).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(StoreError::Backend(format!(
                    "nats: no acknowledgement within {}s",
                    OP_TIMEOUT.as_secs()
                )));
            }
        };
        Ok(batch
            .into_iter()
            .zip(seqs)
            .map(|(mut update, seq)| {
                update.seq = seq;
                Arc::new(update)
            })
            .collect())
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Arc<Update>>, StoreError> {
        self.scan(after, limit, |_| true).await
    }

    async fn resolve(&self, id: &str) -> Result<ReplayFrom, StoreError> {
        let subject = self.subject(id);
        let message = match bounded(self.stream.direct_get_last_for_subject(subject)).await {
            Ok(message) => Stored::from_message(message)?,
            Err(StoreError::Backend(reason)) if reason.contains(NOT_FOUND_MARK) => {
                return Ok(ReplayFrom::Unknown);
            }
            Err(error) => return Err(error),
        };
        let (oldest, _) = self.window().await?;
        let fresh = self
            .cutoff_ms()
            .is_none_or(|cutoff| message.time_ms >= cutoff);
        Ok(
            if message.id() == Some(id) && message.seq >= oldest && fresh {
                ReplayFrom::After(message.seq)
            } else {
                ReplayFrom::Unknown
            },
        )
    }

    async fn resolve_earliest(&self, id: &str, after: u64) -> Result<ReplayFrom, StoreError> {
        let subject = self.subject(id);
        let (oldest, _) = self.window().await?;
        let cutoff = self.cutoff_ms();
        let mut from = oldest.max(after.saturating_add(1));
        for _ in 0..OCCURRENCE_PROBES {
            let next = self
                .stream
                .direct_get_next_for_subject(subject.clone(), Some(from));
            let message = match bounded(next).await {
                Ok(message) => Stored::from_message(message)?,
                Err(StoreError::Backend(reason)) if reason.contains(NOT_FOUND_MARK) => {
                    return Ok(ReplayFrom::Unknown);
                }
                Err(error) => return Err(error),
            };
            let fresh = cutoff.is_none_or(|cutoff| message.time_ms >= cutoff);
            if message.id() == Some(id) && fresh {
                return Ok(ReplayFrom::After(message.seq));
            }
            from = message.seq.saturating_add(1);
        }
        Ok(ReplayFrom::Unknown)
    }

    async fn bounds(&self) -> Result<Bounds, StoreError> {
        let (oldest, last) = self.window().await?;
        let bounds = Bounds::contiguous(None, None, last);
        if self.retention.max_events == 0 || oldest > last {
            return Ok(bounds);
        }
        let Some(first) = self.first_fresh(oldest, last).await? else {
            return Ok(bounds);
        };
        let newest = match self.get(last).await? {
            Some(newest) => newest,
            None => return Ok(bounds),
        };
        Ok(Bounds::contiguous(
            Some((first.seq, first.decode()?.id)),
            Some((newest.seq, newest.decode()?.id)),
            last,
        ))
    }

    /// One pass over history, counting every update and the public ones per topic.
    async fn topics(&self) -> Result<Vec<TopicHistory>, StoreError> {
        let mut tallies: HashMap<String, TopicHistory> = HashMap::new();
        for update in self.scan(0, usize::MAX, |_| true).await? {
            let topics = &update.topics;
            for (index, topic) in topics.iter().enumerate() {
                if topics[..index].contains(topic) {
                    continue;
                }
                let tally = tallies
                    .entry(topic.clone())
                    .or_insert_with(|| TopicHistory {
                        topic: topic.clone(),
                        events: 0,
                        last_event_id: String::new(),
                        public_events: 0,
                        last_public_event_id: None,
                    });
                tally.events += 1;
                tally.last_event_id.clone_from(&update.id);
                if !update.private {
                    tally.public_events += 1;
                    tally.last_public_event_id = Some(update.id.clone());
                }
            }
        }
        Ok(tallies.into_values().collect())
    }

    async fn topic_events(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Update>>, StoreError> {
        self.scan(after, limit, |update| {
            update.topics.iter().any(|t| t == topic)
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn id_tokens_are_valid_subject_tokens_and_distinct() {
        let ids = [
            "urn:uuid:0190b7c4-0000-7000-8000-000000000000",
            "a.b*c>d e",
            "a.b*c>d e ",
            &"x".repeat(500),
            &"x".repeat(501),
        ];
        let tokens: Vec<String> = ids.iter().map(|id| id_token(id)).collect();
        for token in &tokens {
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{token}"
            );
            assert!(token.len() <= 130);
        }
        let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
        assert_eq!(id_token("same"), id_token("same"));
    }
}

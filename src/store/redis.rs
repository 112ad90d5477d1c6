//! `--store redis://host:port/[db]`: history and fan-out shared by several nodes through Redis
//! Streams.
//!
//! This module owns the Redis keys under one prefix (`--redis-prefix`, default `herald`), the
//! Lua scripts that keep them (`redis/*.lua`), and history reads. It knows nothing of HTTP or
//! subscribers. The task that reads the stream for the hub is the cluster layer's
//! ([`crate::cluster::redis`]); `RedisStore::tail` hands it what it needs.
//!
//! # Keys
//! - `{prefix}:log`: the stream. One entry per update, fields `r` (the record, in the shared
//!   [`super::record`] encoding), `i` (the event id) and `t` (the update's distinct topics as a
//!   JSON array). Stream ids are assigned by the append script (`ms-n`, from Redis's clock, never
//!   going backwards, `n < 65536`), and `seq = ms << 16 | n`: increasing in the stream's order
//!   and the same on every node.
//! - `{prefix}:ids`: ZSET, event id -> the millisecond of its entry (exact in an f64). Resolving
//!   an id reads the score, then the entries of that millisecond, and takes the newest whose `i`
//!   matches (a later update with the same id takes it over).
//! - `{prefix}:duplicate-ids`: ZSET, every member scored 0: `event id NUL stream id` (the stream
//!   id zero-padded, so that members sort by id, then in stream order) for each kept occurrence
//!   of an id appended more than once. Written from the second occurrence on, removed as each
//!   occurrence leaves history, so the earliest occurrence of a duplicated id (Mercure 1.0) is
//!   one `ZRANGEBYLEX`. Event ids never contain NUL (publishing refuses it). A node of an earlier
//!   herald does not maintain it: occurrences it appends resolve as before, to the newest.
//! - `{prefix}:meta`: HASH. `last`: the newest stream id ever assigned (so sequences keep
//!   increasing when everything was trimmed); `floor`: the newest id that history no longer
//!   holds (history is every entry after it); `kept`: how many entries history holds;
//!   `trimmed`: the newest entry physically deleted from the stream (to detect gaps in the feed);
//!   `tallied`: `last` when the public tallies were last brought up to date (see below).
//! - `{prefix}:topic-count`, `{prefix}:topic-last`: HASHes, topic -> entries kept / newest id,
//!   for `GET /topics`.
//! - `{prefix}:topic-public-count`, `{prefix}:topic-public-last`: the same over public
//!   (non-private) entries only, so `GET /topics` can show a caller only what it may see. A Lua
//!   script knows an entry's privacy from the flags byte of its record.
//!
//! The public tallies came after the others: a node of an earlier herald appends without
//! maintaining them. Every script that uses them first compares `tallied` with `last`; if they
//! differ (keys written before this version, or a node of an earlier version appended since),
//! it recounts them from the entries history holds, inside the same atomic script.
//!
//! # Appends and retention
//! One [`Store::append`] is one Lua script call (EVALSHA): it adds every entry of the batch,
//! indexes the ids and counts the topics, applies retention, and returns the stream ids, all
//! atomically. Retention is logical first: the `floor` moves past what `--history-size` and
//! `--history-max-age` no longer allow, and every read starts after it (and hides what aged out
//! since the last append). The stream itself keeps at least [`BUS_FLOOR`] entries, and entries
//! up to [`BUS_GRACE`] older than the age limit, because it is also the bus: a node's reader
//! that is a little behind must still find the entries it has not read yet, even with
//! `--history-size 0`.
//!
//! # Durability
//! `append` returns once Redis has executed the script: the batch is in Redis's memory and, with
//! AOF on, in its log. What survives a Redis crash is Redis's persistence setting (AOF
//! `appendfsync always` loses nothing acknowledged; `everysec` may lose up to a second). Every
//! call gives up after [`OP_TIMEOUT`], so publishes during an outage fail fast (503); a call
//! that timed out may still have been applied, so a publisher can see a 503 for an update that
//! was stored: never the reverse.
//!
//! # The feed
//! Every node, the publishing one included, follows the stream from the newest id at start-up
//! (read here, before the server accepts subscribers) and hands the entries to the hub in stream
//! order: see [`crate::cluster::redis`]. The append script records in `meta` the newest entry it
//! deleted (`trimmed`), so the feed can tell that something it had not read yet was trimmed.
//!
//! Requires Redis 6.2 or newer (exclusive ranges, `XTRIM MINID`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, Value};

use super::record::{encode, parse};
use super::{
    BUS_FLOOR, Bounds, CONNECT_PATIENCE, OP_TIMEOUT, ReplayFrom, Retention, Store, StoreError,
    TopicHistory,
};
use crate::update::Update;

/// The stream keeps entries this much longer than `--history-max-age`, for the same reason.
pub(crate) const BUS_GRACE: Duration = Duration::from_secs(60);
/// Most entries one history read asks for.
const PAGE: usize = 512;

/// Why the store could not start. Each message is one line naming the URL (without password).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid Redis URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Redis at {url} is version {version}; herald needs Redis 6.2 or newer")]
    TooOld { url: String, version: String },
}

/// The key names under one prefix.
#[derive(Debug, Clone)]
struct Keys {
    log: String,
    ids: String,
    duplicates: String,
    meta: String,
    topic_count: String,
    topic_last: String,
    topic_public_count: String,
    topic_public_last: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            log: format!("{prefix}:log"),
            ids: format!("{prefix}:ids"),
            duplicates: format!("{prefix}:duplicate-ids"),
            meta: format!("{prefix}:meta"),
            topic_count: format!("{prefix}:topic-count"),
            topic_last: format!("{prefix}:topic-last"),
            topic_public_count: format!("{prefix}:topic-public-count"),
            topic_public_last: format!("{prefix}:topic-public-last"),
        }
    }
}

/// The Lua scripts, each sharing the helpers.
struct Scripts {
    append: Script,
    read: Script,
    resolve: Script,
    resolve_earliest: Script,
    bounds: Script,
    topics: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let with_helpers = |body: &str| Script::new(&format!("{LUA_HELPERS}\n{body}"));
        Scripts {
            append: with_helpers(LUA_APPEND),
            read: with_helpers(LUA_READ),
            resolve: with_helpers(LUA_RESOLVE),
            resolve_earliest: with_helpers(LUA_RESOLVE_EARLIEST),
            bounds: with_helpers(LUA_BOUNDS),
            topics: with_helpers(LUA_TOPICS),
        }
    }
}

/// The Redis-backed store. Cheap to share behind an `Arc`.
pub struct RedisStore {
    client: Client,
    manager: ConnectionManager,
    keys: Keys,
    scripts: Arc<Scripts>,
    retention: Retention,
    /// The newest stream id at start-up: where the feed starts.
    start_id: String,
    url: String,
}

/// The stream as a cluster feed follows it: its keys, a client to open the feed's own
/// connection with, and the store's connection (the feed wakes it after an outage).
pub(crate) struct StreamTail {
    pub(crate) client: Client,
    pub(crate) manager: ConnectionManager,
    /// `{prefix}:log`.
    pub(crate) log_key: String,
    /// `{prefix}:meta` (its `trimmed` field).
    pub(crate) meta_key: String,
    /// The newest stream id at start-up: where the feed starts.
    pub(crate) start_id: String,
    /// The URL, without password.
    pub(crate) url: String,
}

/// Runs a read with `$manager` (a clone of the store's connection), once more if the
/// connection turned out to be broken (the manager has reconnected meanwhile): reads are
/// idempotent, and a connection left stale by a Redis restart should not fail a subscriber.
/// Both tries fit in [`OP_TIMEOUT`].
macro_rules! read {
    ($store:expr, |$manager:ident| $call:expr) => {{
        let mut $manager = $store.manager.clone();
        bounded(async {
            match $call.await {
                Err(error) if error.is_io_error() || error.is_connection_dropped() => $call.await,
                other => other,
            }
        })
        .await
    }};
}

impl RedisStore {
    /// Connects (retrying for a few seconds), checks the server, and reads where the feed
    /// starts.
    pub async fn connect(
        url: &str,
        prefix: &str,
        retention: Retention,
    ) -> Result<RedisStore, ConnectError> {
        let shown = redact(url);
        let client = Client::open(url).map_err(|error| ConnectError::Url {
            url: shown.clone(),
            reason: error.to_string(),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let keys = Keys::new(prefix);
        let unreachable = |reason: String| ConnectError::Unreachable {
            url: shown.clone(),
            reason,
        };
        let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = async {
                let mut manager =
                    ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
                let info: String = redis::cmd("INFO")
                    .arg("server")
                    .query_async(&mut manager)
                    .await?;
                let last: Option<String> = redis::cmd("HGET")
                    .arg(&keys.meta)
                    .arg("last")
                    .query_async(&mut manager)
                    .await?;
                Ok::<_, redis::RedisError>((manager, info, last))
            };
            let last_error = match tokio::time::timeout(CONNECT_PATIENCE, attempt).await {
                Ok(Ok((manager, info, last))) => {
                    let version = server_version(&info);
                    if !version_at_least(&version, (6, 2)) {
                        return Err(ConnectError::TooOld {
                            url: shown,
                            version,
                        });
                    }
                    let start_id = last.unwrap_or_else(|| "0-0".to_owned());
                    seq_of(&start_id).map_err(|error| unreachable(error.to_string()))?;
                    return Ok(RedisStore {
                        client,
                        manager,
                        keys,
                        scripts: Arc::new(Scripts::new()),
                        retention,
                        start_id,
                        url: shown,
                    });
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            if tokio::time::Instant::now() + delay > deadline {
                return Err(unreachable(last_error));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// The URL, without password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What a cluster feed needs to follow this store's stream from where it stood at start-up.
    pub(crate) fn tail(&self) -> StreamTail {
        StreamTail {
            client: self.client.clone(),
            manager: self.manager.clone(),
            log_key: self.keys.log.clone(),
            meta_key: self.keys.meta.clone(),
            start_id: self.start_id.clone(),
            url: self.url.clone(),
        }
    }

    fn max_age_ms(&self) -> u64 {
        self.retention
            .max_age
            .map_or(0, |age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
    }

    /// Entries after stream id `after` that history holds, oldest first.
    async fn read_page(&self, after: u64, limit: usize) -> Result<Vec<Arc<Update>>, StoreError> {
        let after = id_of(after);
        let max_age = self.max_age_ms();
        let value: Value = read!(self, |manager| self
            .scripts
            .read
            .key(&self.keys.log)
            .key(&self.keys.meta)
            .arg(&after)
            .arg(limit)
            .arg(max_age)
            .invoke_async(&mut manager))?;
        entries(value)?
            .into_iter()
            .map(|entry| entry.decode().map(Arc::new))
            .collect()
    }
}

/// Runs one Redis call with the store's time limit.
async fn bounded<T>(call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Ok(result) => result.map_err(backend),
        Err(_) => Err(StoreError::Backend(format!(
            "redis: no answer within {}s",
            OP_TIMEOUT.as_secs()
        ))),
    }
}

fn backend(error: redis::RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {error}"))
}

pub(crate) fn malformed(what: &str) -> StoreError {
    StoreError::Backend(format!("redis: unexpected reply ({what})"))
}

/// `redis://user:secret@host/` -> `redis://user:***@host/`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// `redis_version:7.0.15` from `INFO server`.
fn server_version(info: &str) -> String {
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned()
}

fn version_at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = version.split('.').map(|part| part.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(have_major), Some(have_minor)) => (have_major, have_minor) >= (major, minor),
        // Something Redis-compatible that does not say: let the first command tell.
        _ => true,
    }
}

// ---------------------------------------------------------------------------------------------
// Sequence numbers <-> stream ids

/// `ms-n` -> `ms << 16 | n`.
pub(crate) fn seq_of(id: &str) -> Result<u64, StoreError> {
    let bad = || StoreError::Backend(format!("redis: stream id {id:?} cannot be a sequence"));
    let (ms, n) = id.split_once('-').ok_or_else(bad)?;
    let ms: u64 = ms.parse().map_err(|_| bad())?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    if n >= 1 << 16 || ms >= 1 << 48 {
        return Err(bad());
    }
    Ok(ms << 16 | n)
}

/// `ms << 16 | n` -> `ms-n`.
fn id_of(seq: u64) -> String {
    format!("{}-{}", seq >> 16, seq & 0xffff)
}

// ---------------------------------------------------------------------------------------------
// Replies

/// One stream entry as read: its id and fields.
pub(crate) struct Entry {
    pub(crate) id: String,
    record: Vec<u8>,
}

impl Entry {
    pub(crate) fn decode(&self) -> Result<Update, StoreError> {
        let seq = seq_of(&self.id)?;
        parse(&self.record)
            .map(|record| record.to_update(seq))
            .ok_or_else(|| StoreError::Backend(format!("redis: undecodable record at {}", self.id)))
    }

    /// The entry's millisecond.
    pub(crate) fn ms(&self) -> u64 {
        seq_of(&self.id).map_or(0, |seq| seq >> 16)
    }
}

/// The topics script's reply: `topic, events, last id, public events, last public id (or "")`
/// per topic.
fn topic_histories(reply: Vec<String>) -> Result<Vec<TopicHistory>, StoreError> {
    if !reply.len().is_multiple_of(5) {
        return Err(malformed("topics"));
    }
    let count = |text: &str| text.parse::<u64>().map_err(|_| malformed("topic count"));
    reply
        .chunks_exact(5)
        .map(|row| {
            let public_events = count(&row[3])?;
            Ok(TopicHistory {
                topic: row[0].clone(),
                events: count(&row[1])?,
                last_event_id: row[2].clone(),
                public_events,
                last_public_event_id: (public_events > 0).then(|| row[4].clone()),
            })
        })
        .collect()
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

pub(crate) fn array(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

/// `[[id, [field, value, ...]], ...]` (an XRANGE reply) -> entries.
pub(crate) fn entries(value: Value) -> Result<Vec<Entry>, StoreError> {
    let items = array(value).ok_or_else(|| malformed("entries"))?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut pair = array(item).ok_or_else(|| malformed("entry"))?.into_iter();
        let id = pair
            .next()
            .and_then(text)
            .ok_or_else(|| malformed("entry id"))?;
        let fields = pair
            .next()
            .and_then(array)
            .ok_or_else(|| malformed("entry fields"))?;
        let mut record = None;
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            if text(name).as_deref() == Some("r")
                && let Value::BulkString(bytes) = value
            {
                record = Some(bytes);
            }
        }
        let record = record.ok_or_else(|| malformed("entry without a record"))?;
        out.push(Entry { id, record });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The store

#[async_trait]
impl Store for RedisStore {
    async fn append(&self, batch: Vec<Update>) -> Result<Vec<Arc<Update>>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.scripts.append.prepare_invoke();
        invocation
            .key(&self.keys.log)
            .key(&self.keys.ids)
            .key(&self.keys.meta)
            .key(&self.keys.topic_count)
            .key(&self.keys.topic_last)
            .key(&self.keys.topic_public_count)
            .key(&self.keys.topic_public_last)
            .key(&self.keys.duplicates)
            .arg(self.retention.max_events)
            .arg(self.retention.max_events.max(BUS_FLOOR))
            .arg(self.max_age_ms())
            .arg(u64::try_from(BUS_GRACE.as_millis()).unwrap_or(u64::MAX));
        for update in &batch {
            let mut record = Vec::with_capacity(update.frame.len() * 2 + 64);
            encode(update, &mut record)?;
            let mut topics: Vec<&str> = Vec::with_capacity(update.topics.len());
            for topic in &update.topics {
                if !topics.contains(&topic.as_str()) {
                    topics.push(topic);
                }
            }
            let topics = serde_json::to_string(&topics)
                .map_err(|error| StoreError::Backend(error.to_string()))?;
            invocation.arg(record).arg(&update.id).arg(topics);
        }
        let mut manager = self.manager.clone();
        let ids: Vec<String> = bounded(invocation.invoke_async(&mut manager)).await?;
        if ids.len() != batch.len() {
            return Err(malformed("append returned a different number of ids"));
        }
        batch
            .into_iter()
            .zip(ids)
            .map(|(mut update, id)| {
                update.seq = seq_of(&id)?;
                Ok(Arc::new(update))
            })
            .collect()
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Arc<Update>>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read_page(after, limit.min(PAGE * 8)).await
    }

    async fn resolve(&self, id: &str) -> Result<ReplayFrom, StoreError> {
        let max_age = self.max_age_ms();
        let found: Option<String> = read!(self, |manager| self
            .scripts
            .resolve
            .key(&self.keys.log)
            .key(&self.keys.ids)
            .key(&self.keys.meta)
            .arg(id)
            .arg(max_age)
            .invoke_async(&mut manager))?;
        Ok(match found {
            Some(stream_id) => ReplayFrom::After(seq_of(&stream_id)?),
            None => ReplayFrom::Unknown,
        })
    }

    async fn resolve_earliest(&self, id: &str, after: u64) -> Result<ReplayFrom, StoreError> {
        let max_age = self.max_age_ms();
        let after = id_of(after);
        let found: Option<String> = read!(self, |manager| self
            .scripts
            .resolve_earliest
            .key(&self.keys.log)
            .key(&self.keys.ids)
            .key(&self.keys.meta)
            .key(&self.keys.duplicates)
            .arg(id)
            .arg(&after)
            .arg(max_age)
            .invoke_async(&mut manager))?;
        Ok(match found {
            Some(stream_id) => ReplayFrom::After(seq_of(&stream_id)?),
            None => ReplayFrom::Unknown,
        })
    }

    async fn bounds(&self) -> Result<Bounds, StoreError> {
        let max_age = self.max_age_ms();
        let reply: Vec<String> = read!(self, |manager| self
            .scripts
            .bounds
            .key(&self.keys.log)
            .key(&self.keys.meta)
            .arg(max_age)
            .invoke_async(&mut manager))?;
        let mut reply = reply.into_iter();
        let last = reply.next().ok_or_else(|| malformed("bounds"))?;
        let mut edge = || -> Result<Option<(u64, String)>, StoreError> {
            match (reply.next(), reply.next()) {
                (Some(stream_id), Some(event_id)) => Ok(Some((seq_of(&stream_id)?, event_id))),
                _ => Ok(None),
            }
        };
        let oldest = edge()?;
        let newest = edge()?;
        Ok(Bounds::contiguous(oldest, newest, seq_of(&last)?))
    }

    /// The tallies, less what aged out since the last append (as the other backends do).
    async fn topics(&self) -> Result<Vec<TopicHistory>, StoreError> {
        let max_age = self.max_age_ms();
        let reply: Vec<String> = read!(self, |manager| self
            .scripts
            .topics
            .key(&self.keys.log)
            .key(&self.keys.meta)
            .key(&self.keys.topic_count)
            .key(&self.keys.topic_last)
            .key(&self.keys.topic_public_count)
            .key(&self.keys.topic_public_last)
            .arg(max_age)
            .invoke_async(&mut manager))?;
        topic_histories(reply)
    }

    async fn topic_events(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Update>>, StoreError> {
        let mut found = Vec::new();
        let mut cursor = after;
        while found.len() < limit {
            let page = self.read_page(cursor, PAGE).await?;
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            let full = page.len() == PAGE;
            found.extend(
                page.into_iter()
                    .filter(|update| update.topics.iter().any(|t| t == topic))
                    .take(limit - found.len()),
            );
            if !full {
                break;
            }
        }
        Ok(found)
    }
}

// ---------------------------------------------------------------------------------------------
// Lua

/// Shared helpers: stream ids as (ms, n) numbers, exact below 2^53.
const LUA_HELPERS: &str = include_str!("redis/helpers.lua");

/// KEYS: log, ids, meta, topic-count, topic-last, topic-public-count, topic-public-last,
/// duplicate-ids. ARGV:
/// history size, stream size, max age ms (0: none), grace ms, then (record, id, topics JSON) per
/// update. Returns the stream ids.
const LUA_APPEND: &str = include_str!("redis/append.lua");

/// KEYS: log, meta. ARGV: after (stream id), count, max age ms. Returns XRANGE entries.
const LUA_READ: &str = include_str!("redis/read.lua");

/// KEYS: log, ids, meta. ARGV: event id, max age ms. Returns the stream id, or nil.
const LUA_RESOLVE: &str = include_str!("redis/resolve.lua");

/// KEYS: log, ids, meta, duplicate-ids. ARGV: event id, after (stream id), max age ms. Returns
/// the stream id of the oldest occurrence of the id that history holds after `after`, or nil:
/// the first `duplicate-ids` member from there, or the newest occurrence when it is older (or
/// the id was appended once).
const LUA_RESOLVE_EARLIEST: &str = include_str!("redis/resolve_earliest.lua");

/// KEYS: log, meta. ARGV: max age ms. Returns {last, [oldest id, oldest event id, newest id,
/// newest event id]}.
const LUA_BOUNDS: &str = include_str!("redis/bounds.lua");

/// KEYS: log, meta, topic-count, topic-last, topic-public-count, topic-public-last. ARGV: max
/// age ms. Brings the public tallies up to date if needed, subtracts what aged out since the
/// last append, and returns `topic, events, last id, public events, last public id or ""` per
/// topic left.
const LUA_TOPICS: &str = include_str!("redis/topics.lua");

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sequences_follow_stream_ids() {
        assert_eq!(seq_of("0-0").unwrap(), 0);
        assert_eq!(seq_of("1-0").unwrap(), 1 << 16);
        assert_eq!(
            seq_of("1700000000000-7").unwrap(),
            1_700_000_000_000 << 16 | 7
        );
        assert!(seq_of("1-65535").unwrap() < seq_of("2-0").unwrap());
        assert!(seq_of("1-65536").is_err());
        assert!(seq_of("nope").is_err());
        for id in ["0-0", "1-65535", "1700000000000-42"] {
            assert_eq!(id_of(seq_of(id).unwrap()), id);
        }
    }

    #[test]
    fn urls_are_shown_without_password() {
        assert_eq!(
            redact("redis://user:secret@10.0.0.1:6379/2"),
            "redis://user:***@10.0.0.1:6379/2"
        );
        assert_eq!(redact("redis://:secret@host/"), "redis://:***@host/");
        assert_eq!(redact("redis://host:6379/"), "redis://host:6379/");
    }

    #[test]
    fn versions_compare() {
        assert!(version_at_least("7.0.15", (6, 2)));
        assert!(version_at_least("6.2.0", (6, 2)));
        assert!(!version_at_least("6.0.16", (6, 2)));
        assert_eq!(
            server_version("# Server\r\nredis_version:7.0.15\r\n"),
            "7.0.15"
        );
    }
}

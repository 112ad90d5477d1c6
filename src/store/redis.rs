//! `--store redis://host:port/[db]`: history and fan-out shared by several nodes through Redis
//! Streams.
//!
//! This module owns the Redis keys under one prefix (`--redis-prefix`, default `herald`) and the
//! task that reads the stream for the hub. It knows nothing of HTTP or subscribers: the feed
//! hands each update to a [`FeedSink`].
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
//! Every node, the publishing one included, runs one task doing `XREAD BLOCK` on a dedicated
//! connection from the last id it delivered, and hands the entries to the hub in stream order:
//! the same global order on every node, each update once per node. It starts from the newest
//! id at start-up (read before the server accepts subscribers), and after a broken connection
//! reconnects with capped, jittered backoff and resumes where it stopped. If what it had not read
//! yet was trimmed meanwhile, it logs it, counts `herald_bus_gaps_total`, and tells the sink so
//! the streams that may have missed updates end (their clients reconnect with `Last-Event-ID`
//! and get a `herald-gap` notice). `herald_bus_lag_seconds` is now minus the time of the newest
//! entry delivered.
//!
//! Requires Redis 6.2 or newer (exclusive ranges, `XTRIM MINID`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Script, Value};
use tokio::task::JoinHandle;

use super::record::{encode, parse};
use super::{
    BACKOFF_MAX, BACKOFF_MIN, BUS_FLOOR, Bounds, CONNECT_PATIENCE, FeedSink, OP_TIMEOUT,
    ReplayFrom, Retention, Store, StoreError, TopicHistory,
};
use crate::update::{Update, now_ms};

/// The stream keeps entries this much longer than `--history-max-age`, for the same reason.
pub const BUS_GRACE: Duration = Duration::from_secs(60);
/// How long one `XREAD` blocks before it is sent again.
const BLOCK: Duration = Duration::from_secs(5);
/// Most entries one `XREAD` returns.
const READ_COUNT: usize = 1024;
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

fn malformed(what: &str) -> StoreError {
    StoreError::Backend(format!("redis: unexpected reply ({what})"))
}

/// `redis://user:secret@host/` -> `redis://user:***@host/`.
pub fn redact(url: &str) -> String {
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
fn seq_of(id: &str) -> Result<u64, StoreError> {
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
struct Entry {
    id: String,
    record: Vec<u8>,
}

impl Entry {
    fn decode(&self) -> Result<Update, StoreError> {
        let seq = seq_of(&self.id)?;
        parse(&self.record)
            .map(|record| record.to_update(seq))
            .ok_or_else(|| StoreError::Backend(format!("redis: undecodable record at {}", self.id)))
    }

    /// The entry's millisecond.
    fn ms(&self) -> u64 {
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

fn array(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

/// `[[id, [field, value, ...]], ...]` (an XRANGE reply) -> entries.
fn entries(value: Value) -> Result<Vec<Entry>, StoreError> {
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

    fn spawn_feed(&self, sink: Arc<dyn FeedSink>) -> Option<JoinHandle<()>> {
        let feed = Feed {
            client: self.client.clone(),
            manager: self.manager.clone(),
            keys: self.keys.clone(),
            last: self.start_id.clone(),
            sink,
            url: self.url.clone(),
        };
        Some(tokio::spawn(feed.run()))
    }
}

// ---------------------------------------------------------------------------------------------
// The feed

struct Feed {
    client: Client,
    /// The store's connection, checked after an outage (see [`Feed::wake_manager`]).
    manager: ConnectionManager,
    keys: Keys,
    /// The newest stream id delivered (or the start).
    last: String,
    sink: Arc<dyn FeedSink>,
    url: String,
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

impl Feed {
    async fn run(mut self) {
        crate::telemetry::describe_bus_metrics();
        let mut delay = BACKOFF_MIN;
        let mut failing = false;
        loop {
            let connection = self
                .client
                .get_multiplexed_async_connection_with_config(
                    &AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(OP_TIMEOUT))
                        .set_response_timeout(Some(BLOCK + OP_TIMEOUT)),
                )
                .await;
            match connection {
                Ok(mut connection) => {
                    if failing {
                        tracing::info!(url = %self.url, from = %self.last, "cluster feed reconnected; resuming");
                        self.wake_manager().await;
                    }
                    delay = BACKOFF_MIN;
                    let broken = self.follow(&mut connection).await;
                    tracing::warn!(url = %self.url, error = %broken, last = %self.last, "cluster feed lost its connection; reconnecting");
                    failing = true;
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(url = %self.url, %error, "cluster feed cannot connect; retrying");
                        failing = true;
                    }
                }
            }
            tokio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    /// Redis is back: make the store's connection notice now if it went stale, rather than
    /// failing the next publish (the manager reconnects after a command fails).
    async fn wake_manager(&self) {
        let mut manager = self.manager.clone();
        for _ in 0..2 {
            let ping = redis::cmd("PING");
            let pong = ping.query_async::<()>(&mut manager);
            if let Ok(Ok(())) = tokio::time::timeout(OP_TIMEOUT, pong).await {
                return;
            }
        }
    }

    /// Reads and delivers until the connection breaks.
    async fn follow(&mut self, connection: &mut MultiplexedConnection) -> Broken {
        loop {
            let reply: redis::RedisResult<(Value, Option<String>)> = redis::pipe()
                .cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(5000))
                .arg("STREAMS")
                .arg(&self.keys.log)
                .arg(&self.last)
                .cmd("HGET")
                .arg(&self.keys.meta)
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
            self.check_gap(trimmed.as_deref(), batch.first());
            let Some(newest) = batch.last() else {
                metrics::gauge!("herald_bus_lag_seconds").set(0.0);
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
            metrics::gauge!("herald_bus_lag_seconds").set(lag_ms as f64 / 1000.0);
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
            metrics::counter!("herald_bus_gaps_total").increment(1);
            tracing::error!(
                url = %self.url,
                last_read = %self.last,
                trimmed_up_to = %trimmed,
                "cluster feed: updates were trimmed before this node read them; ending the streams that may have missed them"
            );
            self.sink.gap();
        }
    }
}

/// After delivering up to `last`, a read returned entries from `first` on (or none), and the
/// newest entry ever deleted is `trimmed`. Deletion only takes the oldest entries, so something
/// this node had not read was deleted exactly when `trimmed` lies after `last` and before
/// `first`. (A `trimmed` at or past `first` was deleted after the read; if the read was behind
/// by a whole stream, the next read tells.)
fn lost(last: u64, trimmed: u64, first: Option<u64>) -> bool {
    trimmed > last && first.is_none_or(|first| trimmed < first)
}

/// `delay` give or take a quarter.
fn jitter(delay: Duration) -> Duration {
    let quarter = delay / 4;
    let spread = u64::try_from(quarter.as_millis()).unwrap_or(0) * 2;
    let offset = if spread == 0 {
        0
    } else {
        rand::random::<u64>() % spread
    };
    delay - quarter + Duration::from_millis(offset)
}

// ---------------------------------------------------------------------------------------------
// Lua

/// Shared helpers: stream ids as (ms, n) numbers, exact below 2^53.
const LUA_HELPERS: &str = r#"
local function split(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function fmt(ms, n)
  return string.format('%.0f-%.0f', ms, n)
end
local function newer(a, b)
  local am, an = split(a)
  local bm, bn = split(b)
  return am > bm or (am == bm and an > bn)
end
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Is the entry private? The record's flags byte (after format u8 and published_at u64 LE) has
-- bit 1 set. An entry without a readable record counts as private: never shown to everyone.
local function private(fields)
  local record = field(fields, 'r')
  local flags = record and string.byte(record, 10)
  return (not flags) or flags % 2 == 1
end
-- Recounts the public tallies from the entries after `floor` (history), unless `tallied` says
-- they are up to date with `last`. Returns the new `tallied`.
local function retally(log, pcount, plast, floor, last, tallied)
  if (not last) or tallied == last then return tallied end
  redis.call('DEL', pcount, plast)
  local from = '(' .. floor
  while true do
    local page = redis.call('XRANGE', log, from, '+', 'COUNT', 1000)
    for _, e in ipairs(page) do
      local topics = field(e[2], 't')
      if topics and not private(e[2]) then
        local id = field(e[2], 'i') or ''
        for _, topic in ipairs(cjson.decode(topics)) do
          redis.call('HINCRBY', pcount, topic, 1)
          redis.call('HSET', plast, topic, id)
        end
      end
    end
    if #page < 1000 then break end
    from = '(' .. page[#page][1]
  end
  return last
end
-- The stream id of the newest entry carrying event id `wanted` (the `ids` score is its
-- millisecond), or false.
local function newest_with_id(log, ids, wanted)
  local score = redis.call('ZSCORE', ids, wanted)
  if not score then return false end
  local ms = tonumber(score)
  local found = false
  for _, e in ipairs(redis.call('XRANGE', log, fmt(ms, 0), fmt(ms, 65535))) do
    if field(e[2], 'i') == wanted then found = e[1] end
  end
  return found
end
-- The `duplicate-ids` member of the occurrence of event id `id` at stream id `entry`.
local function occurrence(id, entry)
  local ms, n = split(entry)
  return id .. '\0' .. string.format('%015.0f-%05.0f', ms, n)
end
-- The first id history holds: after `lower` (exclusive) and, with an age limit, not older
-- than it (inclusive). An XRANGE start.
local function window_start(lower, maxage, now)
  if maxage > 0 then
    local cutoff = now - maxage
    if cutoff > split(lower) then return fmt(cutoff, 0) end
  end
  return '(' .. lower
end
"#;

/// KEYS: log, ids, meta, topic-count, topic-last, topic-public-count, topic-public-last,
/// duplicate-ids. ARGV:
/// history size, stream size, max age ms (0: none), grace ms, then (record, id, topics JSON) per
/// update. Returns the stream ids.
const LUA_APPEND: &str = r#"
local log, ids, meta, tcount, tlast = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local pcount, plast, dups = KEYS[6], KEYS[7], KEYS[8]
local hs, physmax = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxage, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local state = redis.call('HMGET', meta, 'last', 'floor', 'kept', 'trimmed', 'tallied')
retally(log, pcount, plast, state[2] or '0-0', state[1], state[5])
local last = state[1]
if not last then
  -- No bookkeeping yet (a new stream, or it was lost): continue after what the stream says.
  last = '0-0'
  if redis.call('EXISTS', log) == 1 then
    local info = redis.call('XINFO', 'STREAM', log)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = info[i + 1] end
    end
  end
end
local floor = state[2] or '0-0'
local kept = tonumber(state[3] or '0')
local trimmed = state[4] or '0-0'

local lms, ln = split(last)
local out = {}
for i = 5, #ARGV, 3 do
  if now > lms then
    lms, ln = now, 0
  elseif ln < 65535 then
    ln = ln + 1
  else
    lms, ln = lms + 1, 0
  end
  local id = fmt(lms, ln)
  -- An id used before, whose previous occurrence history still holds: index both.
  local previous = newest_with_id(log, ids, ARGV[i + 1])
  if previous and newer(previous, floor) then
    redis.call('ZADD', dups, 0, occurrence(ARGV[i + 1], previous), 0, occurrence(ARGV[i + 1], id))
  end
  redis.call('XADD', log, id, 'r', ARGV[i], 'i', ARGV[i + 1], 't', ARGV[i + 2])
  redis.call('ZADD', ids, lms, ARGV[i + 1])
  local public = not private({'r', ARGV[i]})
  for _, topic in ipairs(cjson.decode(ARGV[i + 2])) do
    redis.call('HINCRBY', tcount, topic, 1)
    redis.call('HSET', tlast, topic, ARGV[i + 1])
    if public then
      redis.call('HINCRBY', pcount, topic, 1)
      redis.call('HSET', plast, topic, ARGV[i + 1])
    end
  end
  out[#out + 1] = id
  kept = kept + 1
end
last = fmt(lms, ln)

-- Logical retention: move the floor past what history no longer holds.
local function forget(entries)
  for _, e in ipairs(entries) do
    local event_id = field(e[2], 'i')
    if event_id then redis.call('ZREM', dups, occurrence(event_id, e[1])) end
    local topics = field(e[2], 't')
    if topics then
      local public = not private(e[2])
      for _, topic in ipairs(cjson.decode(topics)) do
        if redis.call('HINCRBY', tcount, topic, -1) <= 0 then
          redis.call('HDEL', tcount, topic)
          redis.call('HDEL', tlast, topic)
        end
        -- The newest public id stays until the last public entry goes (oldest go first).
        if public and redis.call('HINCRBY', pcount, topic, -1) <= 0 then
          redis.call('HDEL', pcount, topic)
          redis.call('HDEL', plast, topic)
        end
      end
    end
    floor = e[1]
    kept = kept - 1
  end
end
kept = math.min(kept, redis.call('XLEN', log))
if kept > hs then
  local wanted = kept - hs
  local gone = redis.call('XRANGE', log, '(' .. floor, '+', 'COUNT', wanted)
  forget(gone)
  if #gone < wanted then kept = 0 end
end
if maxage > 0 and now - maxage > 0 then
  forget(redis.call('XRANGE', log, '(' .. floor, '(' .. fmt(now - maxage, 0), 'COUNT', 10000))
end

-- Physical retention: the stream is also the bus, so it keeps more than history.
local len = redis.call('XLEN', log)
if len > physmax then
  local excess = len - physmax
  local newest_gone
  if excess <= 10000 then
    local gone = redis.call('XRANGE', log, '-', '+', 'COUNT', excess)
    newest_gone = gone[#gone][1]
  end
  redis.call('XTRIM', log, 'MAXLEN', physmax)
  if not newest_gone then
    -- Too many to list: just before the first entry left (at least as new as what went).
    local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
    local fms, fn = split(first[1][1])
    if fn > 0 then newest_gone = fmt(fms, fn - 1) else newest_gone = fmt(fms - 1, 65535) end
  end
  if newer(newest_gone, trimmed) then trimmed = newest_gone end
end
if maxage > 0 and now - maxage - grace > 0 then
  local minid = fmt(now - maxage - grace, 0)
  local gone = redis.call('XREVRANGE', log, '(' .. minid, '-', 'COUNT', 1)
  if #gone > 0 then
    if newer(gone[1][1], trimmed) then trimmed = gone[1][1] end
    redis.call('XTRIM', log, 'MINID', minid)
  end
end
if newer(trimmed, floor) then
  -- Never expected (the stream keeps more than history): history starts after what is gone.
  floor = trimmed
  kept = redis.call('XLEN', log)
end

redis.call('HSET', meta, 'last', last, 'floor', floor, 'kept', kept, 'trimmed', trimmed,
  'tallied', last)
redis.call('ZREMRANGEBYSCORE', ids, '-inf', '(' .. string.format('%.0f', split(floor)))
return out
"#;

/// KEYS: log, meta. ARGV: after (stream id), count, max age ms. Returns XRANGE entries.
const LUA_READ: &str = r#"
local log, meta = KEYS[1], KEYS[2]
local after, count, maxage = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local floor = redis.call('HGET', meta, 'floor') or '0-0'
local lower = floor
if newer(after, floor) then lower = after end
return redis.call('XRANGE', log, window_start(lower, maxage, now_ms()), '+', 'COUNT', count)
"#;

/// KEYS: log, ids, meta. ARGV: event id, max age ms. Returns the stream id, or nil.
const LUA_RESOLVE: &str = r#"
local log, ids, meta = KEYS[1], KEYS[2], KEYS[3]
local wanted, maxage = ARGV[1], tonumber(ARGV[2])
local found = newest_with_id(log, ids, wanted)
if not found then return false end
local floor = redis.call('HGET', meta, 'floor') or '0-0'
if not newer(found, floor) then return false end
if maxage > 0 and split(found) < now_ms() - maxage then return false end
return found
"#;

/// KEYS: log, ids, meta, duplicate-ids. ARGV: event id, after (stream id), max age ms. Returns
/// the stream id of the oldest occurrence of the id that history holds after `after`, or nil:
/// the first `duplicate-ids` member from there, or the newest occurrence when it is older (or
/// the id was appended once).
const LUA_RESOLVE_EARLIEST: &str = r#"
local log, ids, meta, dups = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local wanted, after, maxage = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lower = redis.call('HGET', meta, 'floor') or '0-0'
if newer(after, lower) then lower = after end
local cutoff = nil
if maxage > 0 then cutoff = now_ms() - maxage end
local function fresh(entry)
  return newer(entry, lower) and ((not cutoff) or split(entry) >= cutoff)
end
local found = false
local members = redis.call('ZRANGEBYLEX', dups, '(' .. occurrence(wanted, lower),
  '(' .. wanted .. '\1', 'LIMIT', 0, 64)
for _, member in ipairs(members) do
  local entry = string.sub(member, #wanted + 2)
  local ms, n = string.match(entry, '^0*(%d+)-0*(%d+)$')
  if ms then
    entry = ms .. '-' .. n
    if fresh(entry) then found = entry break end
  end
end
local newest = newest_with_id(log, ids, wanted)
if newest and fresh(newest) and ((not found) or newer(found, newest)) then found = newest end
return found
"#;

/// KEYS: log, meta. ARGV: max age ms. Returns {last, [oldest id, oldest event id, newest id,
/// newest event id]}.
const LUA_BOUNDS: &str = r#"
local log, meta = KEYS[1], KEYS[2]
local maxage = tonumber(ARGV[1])
local state = redis.call('HMGET', meta, 'last', 'floor')
local last = state[1] or '0-0'
local start = window_start(state[2] or '0-0', maxage, now_ms())
local out = {last}
local first = redis.call('XRANGE', log, start, '+', 'COUNT', 1)
if #first > 0 then
  local newest = redis.call('XREVRANGE', log, '+', start, 'COUNT', 1)
  out[2] = first[1][1]
  out[3] = field(first[1][2], 'i') or ''
  out[4] = newest[1][1]
  out[5] = field(newest[1][2], 'i') or ''
end
return out
"#;

/// KEYS: log, meta, topic-count, topic-last, topic-public-count, topic-public-last. ARGV: max
/// age ms. Brings the public tallies up to date if needed, subtracts what aged out since the
/// last append, and returns `topic, events, last id, public events, last public id or ""` per
/// topic left.
const LUA_TOPICS: &str = r#"
local log, meta, tcount, tlast, pcount, plast = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local maxage = tonumber(ARGV[1])
local state = redis.call('HMGET', meta, 'last', 'floor', 'tallied')
local floor = state[2] or '0-0'
local tallied = retally(log, pcount, plast, floor, state[1], state[3])
if tallied and tallied ~= state[3] then redis.call('HSET', meta, 'tallied', tallied) end
local aged, aged_public = {}, {}
if maxage > 0 then
  local cutoff = now_ms() - maxage
  if cutoff > split(floor) then
    local from, upto = '(' .. floor, '(' .. fmt(cutoff, 0)
    while true do
      local page = redis.call('XRANGE', log, from, upto, 'COUNT', 1000)
      for _, e in ipairs(page) do
        local topics = field(e[2], 't')
        if topics then
          local public = not private(e[2])
          for _, topic in ipairs(cjson.decode(topics)) do
            aged[topic] = (aged[topic] or 0) + 1
            if public then aged_public[topic] = (aged_public[topic] or 0) + 1 end
          end
        end
      end
      if #page < 1000 then break end
      from = '(' .. page[#page][1]
    end
  end
end
local out = {}
local counts = redis.call('HGETALL', tcount)
for i = 1, #counts, 2 do
  local topic = counts[i]
  local events = tonumber(counts[i + 1]) - (aged[topic] or 0)
  if events > 0 then
    local public = tonumber(redis.call('HGET', pcount, topic) or '0') - (aged_public[topic] or 0)
    local public_last = ''
    if public > 0 then
      public_last = redis.call('HGET', plast, topic) or ''
    else
      public = 0
    end
    out[#out + 1] = topic
    out[#out + 1] = string.format('%.0f', events)
    out[#out + 1] = redis.call('HGET', tlast, topic) or ''
    out[#out + 1] = string.format('%.0f', public)
    out[#out + 1] = public_last
  end
end
return out
"#;

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

    #[test]
    fn jitter_stays_near_the_delay() {
        for _ in 0..100 {
            let delay = jitter(Duration::from_millis(400));
            assert!(delay >= Duration::from_millis(300) && delay <= Duration::from_millis(500));
        }
    }
}

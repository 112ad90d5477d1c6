//! Limits that keep one client, or many, from exhausting the hub: open connections in total and
//! per client address, a deadline for a new connection's first request, topics per subscription,
//! the length of one topic, the complexity of a subscription's URI templates, and the publish
//! rate per token.
//!
//! This module counts and decides; it never chooses a status code: every refusal is a
//! [`LimitError`], which `problem.rs` maps to 503, 429 or 400 by kind, and each one is counted in
//! `herald_limit_rejections_total{limit}` where it is decided.
//!
//! The accept loop asks [`ConnectionLimits::try_admit`] for every new connection and keeps the
//! [`Permit`] for as long as the connection lives (dropping it frees the slot). A refused
//! connection goes to [`refuse`], which answers it with a problem+json response and closes it;
//! a small reserve of file descriptors below the open-file limit is kept for exactly that. An
//! HTTP/2 connection is also wrapped by [`first_request_deadline`]: one that sends no complete
//! request within the header timeout is cut off (hyper has no such deadline for HTTP/2, so a
//! client that trickles the preface would otherwise hold its descriptor forever; the HTTP/1.1
//! layer applies `--header-timeout` to every request head itself).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, ReadBuf};

use super::problem::ApiError;
use crate::config::{Config, PublishRate};
use crate::telemetry::names;
use crate::topic::SelectorSet;
use crate::update::Draft;

/// Seconds a client refused for the hub-wide connection limit is asked to wait.
pub(crate) const CONNECTIONS_RETRY_AFTER: u64 = 5;
/// Seconds a client refused for the per-address limit is asked to wait.
pub(crate) const PER_IP_RETRY_AFTER: u64 = 10;
/// Refusals answered at once; past this, refused connections are closed without an answer so
/// answering can never use up the descriptor reserve.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long answering a refused connection may take.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);
/// Most token buckets kept by the publish rate limit (one per subject or token).
const MAX_BUCKETS: usize = 10_000;

/// A request or connection over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the hub is at its limit of {limit} connections; retry in a few seconds")]
    Connections { limit: usize },
    #[error(
        "too many connections from this address (the limit is {limit}); close some or retry later"
    )]
    ConnectionsPerIp { limit: usize },
    #[error("a subscription may have at most {limit} topic selectors; this one has {count}")]
    TopicsPerSubscription { limit: usize, count: usize },
    #[error("a topic or selector may be at most {limit} bytes long; one has {length}")]
    TopicLength { limit: usize, length: usize },
    #[error("an event {field} may be at most {limit} bytes long; this one has {length}")]
    FieldLength {
        field: &'static str,
        limit: usize,
        length: usize,
    },
    #[error(
        "the URI templates of a subscription may have a total complexity of at most {limit} \
         (--max-template-complexity: one unit per literal byte after a template's first \
         expression, 3 to 8 per variable); these have {complexity}"
    )]
    TemplateComplexity { limit: usize, complexity: usize },
    #[error("this token publishes faster than {rate}; retry in {retry_after} s")]
    PublishRate { rate: String, retry_after: u64 },
}

impl LimitError {
    /// The `limit` label of `herald_limit_rejections_total`.
    pub fn label(&self) -> &'static str {
        match self {
            LimitError::Connections { .. } => "connections",
            LimitError::ConnectionsPerIp { .. } => "connections_per_ip",
            LimitError::TopicsPerSubscription { .. } => "topics_per_subscription",
            LimitError::TopicLength { .. } => "topic_length",
            LimitError::FieldLength { .. } => "id_length",
            LimitError::TemplateComplexity { .. } => "template_complexity",
            LimitError::PublishRate { .. } => "publish_rate",
        }
    }

    /// Seconds the client should wait before retrying, when waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            LimitError::Connections { .. } => Some(CONNECTIONS_RETRY_AFTER),
            LimitError::ConnectionsPerIp { .. } => Some(PER_IP_RETRY_AFTER),
            LimitError::PublishRate { retry_after, .. } => Some(*retry_after),
            LimitError::TopicsPerSubscription { .. }
            | LimitError::TopicLength { .. }
            | LimitError::FieldLength { .. } => None,
            LimitError::TemplateComplexity { .. } => None,
        }
    }

    /// Counts the refusal and returns it.
    fn counted(self) -> LimitError {
        count_rejection(self.label());
        self
    }
}

/// Counts one refusal by a limit (`herald_limit_rejections_total{limit}`).
pub(crate) fn count_rejection(limit: &'static str) {
    metrics::counter!(names::LIMIT_REJECTIONS_TOTAL, "limit" => limit).increment(1);
}

/// Every limit of one hub, built from its configuration.
pub(crate) struct Limits {
    /// Open connections.
    pub connections: Arc<ConnectionLimits>,
    /// The publish rate per token; `None` when unlimited.
    pub publish_rate: Option<RateLimiter>,
    max_topics: usize,
    max_topic_length: usize,
    max_id_length: usize,
    max_template_complexity: usize,
}

impl Limits {
    /// The limits `config` asks for.
    pub(crate) fn new(config: &Config) -> Limits {
        Limits {
            connections: ConnectionLimits::new(
                config.max_connections,
                config.max_connections_per_ip,
            ),
            publish_rate: config.publish_rate.map(RateLimiter::new),
            max_topics: config.max_topics_per_subscription,
            max_topic_length: config.max_topic_length,
            max_id_length: config.max_id_length,
            max_template_complexity: config.max_template_complexity,
        }
    }

    /// A subscription's selectors: not too many, none too long.
    pub(crate) fn check_subscription(&self, selectors: &[&str]) -> Result<(), LimitError> {
        if selectors.len() > self.max_topics {
            return Err(LimitError::TopicsPerSubscription {
                limit: self.max_topics,
                count: selectors.len(),
            }
            .counted());
        }
        self.check_topic_lengths(selectors)
    }

    /// A subscription's URI templates: their total complexity (the size of their matchers,
    /// which bounds the cost of matching one topic) within the limit.
    pub(crate) fn check_templates(&self, selectors: &SelectorSet) -> Result<(), LimitError> {
        let complexity = selectors.template_complexity();
        if complexity > self.max_template_complexity {
            return Err(LimitError::TemplateComplexity {
                limit: self.max_template_complexity,
                complexity,
            }
            .counted());
        }
        Ok(())
    }

    /// No topic (of an update, or a selector) longer than the limit.
    pub(crate) fn check_topic_lengths<S: AsRef<str>>(
        &self,
        topics: &[S],
    ) -> Result<(), LimitError> {
        match topics
            .iter()
            .map(|topic| topic.as_ref().len())
            .find(|length| *length > self.max_topic_length)
        {
            Some(length) => Err(LimitError::TopicLength {
                limit: self.max_topic_length,
                length,
            }
            .counted()),
            None => Ok(()),
        }
    }

    /// An update's `id` and `type`: neither longer than `--max-id-length`.
    pub(crate) fn check_event_fields(&self, draft: &Draft) -> Result<(), LimitError> {
        let fields = [("id", &draft.id), ("type", &draft.event_type)];
        for (field, value) in fields {
            let length = value.as_deref().map_or(0, str::len);
            if length > self.max_id_length {
                return Err(LimitError::FieldLength {
                    field,
                    limit: self.max_id_length,
                    length,
                }
                .counted());
            }
        }
        Ok(())
    }

    /// Takes one publish from the bucket of `key` (the token's subject, or the token itself).
    pub(crate) fn check_publish(&self, key: &str) -> Result<(), LimitError> {
        match &self.publish_rate {
            Some(limiter) => limiter.check(key, Instant::now()),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

/// Counts open connections, in total and per client address.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    max: usize,
    /// 0: no per-address limit.
    per_ip: usize,
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
    refusing: AtomicUsize,
}

/// A connection slot; the slot is freed when this is dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    limits: Arc<ConnectionLimits>,
    /// The address counted against the per-address limit, if that limit is on.
    ip: Option<IpAddr>,
}

impl ConnectionLimits {
    /// At most `max` connections, and at most `per_ip` from one address (0: no such limit).
    pub(crate) fn new(max: usize, per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max,
            per_ip,
            open: AtomicUsize::new(0),
            by_ip: Mutex::new(HashMap::new()),
            refusing: AtomicUsize::new(0),
        })
    }

    /// Admits a new connection from `peer`, or says which limit it is over. Keep the permit for
    /// as long as the connection lives.
    pub(crate) fn try_admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, LimitError> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitError::Connections { limit: self.max }.counted());
        }
        let ip = (self.per_ip > 0).then(|| address_key(peer));
        if let Some(ip) = ip {
            let mut by_ip = self.by_ip.lock();
            let count = by_ip.entry(ip).or_insert(0);
            if *count >= self.per_ip {
                drop(by_ip);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(LimitError::ConnectionsPerIp { limit: self.per_ip }.counted());
            }
            *count += 1;
        }
        Ok(Permit {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Connections admitted and not yet closed.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut by_ip = self.limits.by_ip.lock();
            if let Some(count) = by_ip.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    by_ip.remove(&ip);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The address a connection counts against: IPv4 as is, IPv6 by its /64 network (one host
/// usually owns a whole /64), IPv4-mapped IPv6 as IPv4.
pub(super) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
        },
    }
}

/// Answers a refused connection with its problem (503 or 429, problem+json, `Retry-After`,
/// `Connection: close`) on a task of its own, then closes it. Reads the request first, so the
/// client sees the answer rather than a reset. When too many refusals are already being
/// answered, closes the connection at once.
pub(crate) fn refuse<I>(io: I, refusal: LimitError, limits: &Arc<ConnectionLimits>)
where
    I: super::h1::Socket + 'static,
{
    if limits.refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSALS_IN_FLIGHT {
        limits.refusing.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let limits = Arc::clone(limits);
    tokio::spawn(async move {
        let response = ApiError::Limit(refusal).into_response();
        super::h1::answer_once(io, response, REFUSAL_DEADLINE).await;
        limits.refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

// ---------------------------------------------------------------------------------------------
// First-request deadline

/// Tells a [`FirstRequestDeadline`] that a request arrived: call [`RequestStarted::mark`] from
/// the service.
#[derive(Debug, Clone)]
pub(crate) struct RequestStarted(Arc<AtomicBool>);

impl RequestStarted {
    /// A request's head has been read: the deadline no longer applies.
    pub(crate) fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A connection that fails its reads with `TimedOut` once `timeout` has passed without a request
/// (see [`first_request_deadline`]). Reads and writes pass through otherwise.
pub(crate) struct FirstRequestDeadline<I> {
    io: I,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    started: Arc<AtomicBool>,
}

/// Wraps a new connection so that it is cut off when no request head has been read within
/// `timeout` (a client that connects and sends nothing, or trickles bytes). Mark the returned
/// handle from the service for each request.
pub(crate) fn first_request_deadline<I>(
    io: I,
    timeout: Duration,
) -> (FirstRequestDeadline<I>, RequestStarted) {
    let started = Arc::new(AtomicBool::new(false));
    let wrapped = FirstRequestDeadline {
        io,
        deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        started: Arc::clone(&started),
    };
    (wrapped, RequestStarted(started))
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstRequestDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.deadline.as_mut() {
            if this.started.load(Ordering::Relaxed) {
                this.deadline = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the header timeout",
                )));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

super::rewind::forward_async_write!(FirstRequestDeadline);

// ---------------------------------------------------------------------------------------------
// Publish rate

/// Token buckets, one per publisher (the token's `sub`, or the token itself): `burst` publishes
/// at once, refilled at the configured rate. At most `MAX_BUCKETS` are kept; past that, full
/// buckets are forgotten first (forgetting a full bucket changes nothing), then the least
/// recently used.
pub(crate) struct RateLimiter {
    rate: PublishRate,
    buckets: Mutex<HashMap<u64, Bucket>>,
    /// Keyed hashing: a client cannot choose keys that collide.
    hasher: RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter for `rate`.
    pub(crate) fn new(rate: PublishRate) -> RateLimiter {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }

    /// Takes one publish from `key`'s bucket at time `now`.
    pub(crate) fn check(&self, key: &str, now: Instant) -> Result<(), LimitError> {
        let per_second = self.rate.per_second;
        let burst = f64::from(self.rate.burst);
        let hash = self.hasher.hash_one(key);
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&hash) {
            evict(&mut buckets, now, per_second, burst);
        }
        let bucket = buckets.entry(hash).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / per_second;
        // Whole seconds for Retry-After, at least 1; a rate is at least 1 per hour.
        let retry_after = (wait.ceil() as u64).max(1);
        Err(LimitError::PublishRate {
            rate: self.rate.to_string(),
            retry_after,
        }
        .counted())
    }

    /// Buckets kept (for tests).
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.lock().len()
    }
}

fn evict(buckets: &mut HashMap<u64, Bucket>, now: Instant, per_second: f64, burst: f64) {
    buckets.retain(|_, bucket| {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens + elapsed * per_second < burst
    });
    if buckets.len() >= MAX_BUCKETS {
        let oldest = buckets
            .iter()
            .min_by_key(|(_, bucket)| bucket.at)
            .map(|(hash, _)| *hash);
        if let Some(hash) = oldest {
            buckets.remove(&hash);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn connections_are_capped_in_total_and_freed_on_drop() {
        let limits = ConnectionLimits::new(2, 0);
        let a = limits.try_admit(ip("127.0.0.1")).unwrap();
        let _b = limits.try_admit(ip("127.0.0.2")).unwrap();
        assert_eq!(
            limits.try_admit(ip("127.0.0.3")).unwrap_err(),
            LimitError::Connections { limit: 2 }
        );
        drop(a);
        assert_eq!(limits.open(), 1);
        let _c = limits.try_admit(ip("127.0.0.3")).unwrap();
    }

    #[test]
    fn the_per_address_cap_counts_ipv6_by_network_and_forgets_closed_addresses() {
        let limits = ConnectionLimits::new(100, 2);
        let a = limits.try_admit(ip("2001:db8::1")).unwrap();
        let b = limits.try_admit(ip("2001:db8::2")).unwrap();
        assert_eq!(
            limits.try_admit(ip("2001:db8::ffff")).unwrap_err(),
            LimitError::ConnectionsPerIp { limit: 2 }
        );
        // Another /64, and IPv4, are other addresses; a refusal frees its global slot.
        let _c = limits.try_admit(ip("2001:db8:0:1::1")).unwrap();
        let d = limits.try_admit(ip("::ffff:10.0.0.1")).unwrap();
        let e = limits.try_admit(ip("10.0.0.1")).unwrap();
        assert!(limits.try_admit(ip("10.0.0.1")).is_err());
        assert_eq!(limits.open(), 5);
        drop((a, b, d, e));
        assert_eq!(limits.by_ip.lock().len(), 1);
        let _f = limits.try_admit(ip("2001:db8::3")).unwrap();
    }

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(PublishRate { per_second, burst })
    }

    #[test]
    fn a_bucket_allows_the_burst_then_the_rate() {
        let limiter = limiter(2.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check("a", start).unwrap();
        }
        let error = limiter.check("a", start).unwrap_err();
        assert_eq!(error.retry_after(), Some(1));
        // Another key has its own bucket.
        limiter.check("b", start).unwrap();
        // Half a second later one more is allowed (2/s), then none.
        let later = start + Duration::from_millis(500);
        limiter.check("a", later).unwrap();
        assert!(limiter.check("a", later).is_err());
    }

    #[test]
    fn a_slow_rate_asks_for_a_longer_wait() {
        let limiter = limiter(1.0 / 60.0, 1);
        let now = Instant::now();
        limiter.check("a", now).unwrap();
        let error = limiter.check("a", now).unwrap_err();
        assert_eq!(error.retry_after(), Some(60));
    }

    #[test]
    fn buckets_stay_bounded() {
        let limiter = limiter(1.0, 1);
        let now = Instant::now();
        for n in 0..(MAX_BUCKETS + 50) {
            limiter.check(&format!("key-{n}"), now).unwrap();
        }
        assert!(limiter.buckets() <= MAX_BUCKETS);
        // Full buckets are forgotten first.
        let later = now + Duration::from_secs(5);
        limiter.check("fresh", later).unwrap();
        assert!(limiter.buckets() < 100, "{}", limiter.buckets());
    }

    #[tokio::test]
    async fn the_first_request_deadline_cuts_a_silent_connection() {
        use tokio::io::AsyncReadExt;
        let (client, server) = tokio::io::duplex(64);
        let (mut wrapped, _started) = first_request_deadline(server, Duration::from_millis(50));
        let mut buffer = [0u8; 8];
        let error = wrapped.read(&mut buffer).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test]
    async fn a_started_request_disarms_the_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64);
        let (mut wrapped, started) = first_request_deadline(server, Duration::from_millis(50));
        started.mark();
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"hi").await.unwrap();
        let mut buffer = [0u8; 2];
        wrapped.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"hi");
    }
}

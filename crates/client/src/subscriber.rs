//! The reconnecting subscriber: one `GET` on the hub, parsed with `herald-sse`, reopened with
//! `Last-Event-ID` whenever it breaks, until the hub says stop (204) or refuses (401/403).
//!
//! State lives in one [`State`] value driven by [`futures_util::stream::unfold`]; the only thing
//! shared with the [`Subscriber`] handle is the last event id, behind a mutex.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use herald_sse::Parser;
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName};
use reqwest::header::{HeaderValue, InvalidHeaderValue};

use crate::backoff::Backoff;
use crate::error::{ClientError, error_detail};
use crate::hub_endpoint;

/// The reconnection time before the hub sets one with `retry:`.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts, however many failed in a row.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The most of an error body read for its problem detail.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// One event from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The event id (Mercure hubs give every update one); empty if the stream never set one.
    pub id: String,
    /// The event type: `message` unless the publisher set one.
    pub event_type: String,
    /// The data lines, joined with `\n`.
    pub data: String,
    /// The reconnection time the hub set with this event's `retry:` field, if any.
    pub retry: Option<Duration>,
}

impl From<herald_sse::Event> for Event {
    fn from(event: herald_sse::Event) -> Self {
        Event {
            id: event.id,
            event_type: event.event,
            data: event.data,
            retry: event.retry.map(Duration::from_millis),
        }
    }
}

/// Configures a [`Subscriber`]. Made by [`Subscriber::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SubscriberBuilder {
    hub: String,
    topics: Vec<String>,
    /// Mercure 1.0 matchers: (`match` or `match_urlpattern`, value).
    matchers: Vec<(&'static str, String)>,
    token: Option<String>,
    headers: Vec<(String, String)>,
    last_event_id: Option<String>,
    retry: Duration,
    max_backoff: Duration,
    idle_timeout: Option<Duration>,
    connect_timeout: Duration,
    report_reconnects: bool,
    client: Option<reqwest::Client>,
}

impl SubscriberBuilder {
    /// A topic selector to subscribe to: an exact topic, `*`, or a URI template. Repeatable.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Several topic selectors at once.
    pub fn topics<I, T>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// A Mercure 1.0 exact matcher (`match=`): the topic byte for byte; `*` for every topic.
    /// Repeatable; cannot be mixed with [`SubscriberBuilder::topic`].
    pub fn match_exact(mut self, topic: impl Into<String>) -> Self {
        self.matchers.push(("match", topic.into()));
        self
    }

    /// A Mercure 1.0 URL Pattern matcher (`match_urlpattern=`), e.g. `/books/:id`; relative
    /// patterns resolve against the hub's URL. Repeatable.
    pub fn match_urlpattern(mut self, pattern: impl Into<String>) -> Self {
        self.matchers.push(("match_urlpattern", pattern.into()));
        self
    }

    /// A JWT sent as `Authorization: Bearer …` (needed for private updates, or when the hub
    /// does not allow anonymous subscribers).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// An extra request header sent on every connection (a cookie, a tenant id, …).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Resume after this id: the first connection sends it as `Last-Event-ID` (`earliest`
    /// asks a Herald hub for all the history it keeps).
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// The reconnection time until the hub sets one with `retry:` ([`DEFAULT_RETRY`]).
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// The cap on the exponential backoff between failed attempts ([`DEFAULT_MAX_BACKOFF`]).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Reconnect when nothing, not even a heartbeat comment, arrives for this long. Set it
    /// above the hub's heartbeat interval. Off by default.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How long one connection attempt may take (10 s by default). Ignored with
    /// [`client`](Self::client).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Also yield the non-fatal errors (connection refused, stream closed, 5xx, …) that precede
    /// each reconnection, so a caller can log them. Off by default: the stream then yields only
    /// events and, last, a fatal error.
    pub fn report_reconnects(mut self, report: bool) -> Self {
        self.report_reconnects = report;
        self
    }

    /// Uses this `reqwest` client (for TLS settings, proxies, a shared pool). Do not give it a
    /// total request timeout: a subscription is one long response.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Checks the configuration and returns the subscriber. Nothing is sent until the stream is
    /// first polled.
    pub fn build(self) -> Result<Subscriber, ClientError> {
        let mut url = hub_endpoint(&self.hub).map_err(ClientError::Config)?;
        match (self.topics.is_empty(), self.matchers.is_empty()) {
            (true, true) => {
                return Err(ClientError::Config(
                    "give at least one topic (or a Mercure 1.0 matcher)".into(),
                ));
            }
            (false, false) => {
                return Err(ClientError::Config(
                    "topics (Mercure 0.x) and matchers (Mercure 1.0) cannot be mixed".into(),
                ));
            }
            _ => {}
        }
        url.query_pairs_mut()
            .extend_pairs(self.topics.iter().map(|topic| ("topic", topic.as_str())))
            .extend_pairs(
                self.matchers
                    .iter()
                    .map(|(name, value)| (*name, value.as_str())),
            );

        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::Config("the token is not a valid header value".into()))?;
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in &self.headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| ClientError::Config(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value.trim()).map_err(|_: InvalidHeaderValue| {
                ClientError::Config(format!("invalid value for header {name:?}"))
            })?;
            headers.append(header, value);
        }
        if let Some(id) = &self.last_event_id
            && id.contains(['\r', '\n', '\0'])
        {
            return Err(ClientError::Config(
                "a last event id cannot contain CR, LF or NUL".into(),
            ));
        }
        let client = match self.client {
            Some(client) => client,
            None => crate::client_builder()
                .connect_timeout(self.connect_timeout)
                .build()
                .map_err(|error| {
                    ClientError::Config(format!("cannot build the client: {error}"))
                })?,
        };
        let last_event_id = Arc::new(Mutex::new(self.last_event_id.clone()));
        let connected = Arc::new(AtomicBool::new(false));
        let state = State {
            client,
            url,
            headers,
            parser: seeded_parser(self.last_event_id.as_deref()),
            body: None,
            backoff: Backoff::new(self.retry, self.max_backoff),
            idle_timeout: self.idle_timeout,
            report: self.report_reconnects,
            attempted: false,
            done: false,
            shared_id: Arc::clone(&last_event_id),
            connected: Arc::clone(&connected),
        };
        Ok(Subscriber {
            inner: futures_util::stream::unfold(state, State::next).boxed(),
            last_event_id,
            connected,
        })
    }
}

/// A subscription that survives disconnections: a [`Stream`] of [`Event`]s.
///
/// It connects when first polled; after a broken connection it waits (the hub's `retry:` time,
/// growing with jittered exponential backoff while attempts fail) and reconnects with
/// `Last-Event-ID`, so a hub with history replays exactly what was missed. The stream ends after
/// yielding a fatal [`ClientError`]: [`Ended`](ClientError::Ended) on 204,
/// [`Unauthorized`](ClientError::Unauthorized) on 401, [`Forbidden`](ClientError::Forbidden)
/// on 403.
///
/// ```no_run
/// use futures_util::StreamExt;
/// use herald_client::Subscriber;
///
/// # async fn run() -> Result<(), herald_client::ClientError> {
/// let mut updates = Subscriber::builder("http://127.0.0.1:8088")
///     .topic("https://example.com/books/{id}")
///     .token("eyJhbGciOiJIUzI1NiJ9…")
///     .build()?;
/// while let Some(update) = updates.next().await {
///     let event = update?; // only a fatal error: the stream ends after it
///     println!("{} {}: {}", event.id, event.event_type, event.data);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Subscriber {
    inner: BoxStream<'static, Result<Event, ClientError>>,
    last_event_id: Arc<Mutex<Option<String>>>,
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("last_event_id", &self.last_event_id())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// Starts configuring a subscription to `hub`: the server's base URL
    /// (`http://127.0.0.1:8088`, to which `/.well-known/mercure` is appended) or the full hub
    /// URL.
    pub fn builder(hub: impl Into<String>) -> SubscriberBuilder {
        SubscriberBuilder {
            hub: hub.into(),
            topics: Vec::new(),
            matchers: Vec::new(),
            token: None,
            headers: Vec::new(),
            last_event_id: None,
            retry: DEFAULT_RETRY,
            max_backoff: DEFAULT_MAX_BACKOFF,
            idle_timeout: None,
            connect_timeout: Duration::from_secs(10),
            report_reconnects: false,
            client: None,
        }
    }

    /// True once the hub has accepted a connection (answered 200 with an event stream), even if
    /// no event has arrived yet.
    pub fn has_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The id of the last event received (what the next reconnection sends as
    /// `Last-Event-ID`), or the one given to the builder before any arrived.
    pub fn last_event_id(&self) -> Option<String> {
        self.last_event_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Stream for Subscriber {
    type Item = Result<Event, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// A parser whose last event id starts as `id`: an `id:` line and a blank line set it without
/// dispatching anything, so the parser stays the one authority on what to resend.
fn seeded_parser(id: Option<&str>) -> Parser {
    let mut parser = Parser::new();
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        parser.feed(format!("id: {id}\n\n").as_bytes());
    }
    parser
}

/// Everything one subscription needs between two polls.
struct State {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    parser: Parser,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    backoff: Backoff,
    idle_timeout: Option<Duration>,
    report: bool,
    /// A connection was tried before: wait before the next one.
    attempted: bool,
    done: bool,
    shared_id: Arc<Mutex<Option<String>>>,
    /// Set on the first accepted connection ([`Subscriber::has_connected`]).
    connected: Arc<AtomicBool>,
}

type Step = Option<(Result<Event, ClientError>, State)>;

impl State {
    async fn next(mut self) -> Step {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.parser.next_event() {
                self.set_shared_id(Some(event.id.clone()));
                return Some((Ok(event.into()), self));
            }
            if self.body.is_some() {
                if let Some(error) = self.read().await
                    && self.report
                {
                    return Some((Err(error), self));
                }
                continue;
            }
            // Every queued event has been handed out: the parser's last id is what to resend.
            let last = self.parser.last_event_id().to_owned();
            self.set_shared_id((!last.is_empty()).then_some(last));
            if self.attempted {
                tokio::time::sleep(self.backoff.next_delay()).await;
            }
            self.attempted = true;
            match self.connect().await {
                Ok(body) => {
                    self.body = Some(body);
                    self.connected.store(true, Ordering::Relaxed);
                    self.backoff.reset();
                }
                Err(error) if error.is_fatal() => {
                    self.done = true;
                    return Some((Err(error), self));
                }
                Err(error) if self.report => return Some((Err(error), self)),
                Err(_) => {}
            }
        }
    }

    /// Reads one chunk into the parser; `Some(error)` when the connection is over.
    async fn read(&mut self) -> Option<ClientError> {
        let body = self.body.as_mut()?;
        let chunk = match self.idle_timeout {
            Some(limit) => match tokio::time::timeout(limit, body.next()).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    self.body = None;
                    return Some(ClientError::IdleTimeout(limit));
                }
            },
            None => body.next().await,
        };
        match chunk {
            Some(Ok(bytes)) => {
                self.parser.feed(&bytes);
                if let Some(retry) = self.parser.retry() {
                    self.backoff.set_base(Duration::from_millis(retry));
                }
                None
            }
            Some(Err(error)) => {
                self.body = None;
                Some(ClientError::Disconnected(error))
            }
            None => {
                self.body = None;
                Some(ClientError::Closed)
            }
        }
    }

    /// One attempt: the request, then the status decides.
    async fn connect(&mut self) -> Result<BoxStream<'static, reqwest::Result<Bytes>>, ClientError> {
        let last = self.parser.last_event_id().to_owned();
        let mut request = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone());
        if !last.is_empty()
            && let Ok(value) = HeaderValue::from_str(&last)
        {
            request = request.header("last-event-id", value);
        }
        let response = request.send().await.map_err(ClientError::Connect)?;
        let status = response.status().as_u16();
        if status == 200 {
            let content_type = header_text(response.headers(), CONTENT_TYPE);
            let media = content_type
                .as_deref()
                .and_then(|value| value.split(';').next())
                .map(str::trim)
                .unwrap_or("");
            if !media.eq_ignore_ascii_case("text/event-stream") {
                return Err(ClientError::NotEventStream(
                    content_type.unwrap_or_default(),
                ));
            }
            // A fresh parser per connection (a cut-off event must not leak into the next one),
            // seeded with the id to resume from.
            self.parser = seeded_parser(Some(&last));
            return Ok(response.bytes_stream().boxed());
        }
        if status == 204 {
            return Err(ClientError::Ended);
        }
        let detail = read_detail(response).await;
        Err(match status {
            401 => ClientError::Unauthorized { detail },
            403 => ClientError::Forbidden { detail },
            _ => ClientError::Status { status, detail },
        })
    }

    fn set_shared_id(&self, id: Option<String>) {
        let mut shared = self
            .shared_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if id.is_some() || shared.is_some() {
            *shared = id;
        }
    }
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The problem detail of an error response, reading at most [`MAX_ERROR_BODY`] bytes.
pub(crate) async fn read_detail(response: reqwest::Response) -> Option<String> {
    let content_type = header_text(response.headers(), CONTENT_TYPE);
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            return None;
        }
    }
    error_detail(content_type.as_deref(), &body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_seeded_parser_resends_the_id_and_dispatches_nothing() {
        let mut parser = seeded_parser(Some("urn:uuid:1"));
        assert_eq!(parser.last_event_id(), "urn:uuid:1");
        assert!(parser.next_event().is_none());
        parser.feed(b"data: x\n\n");
        let event = parser.next_event().unwrap();
        assert_eq!(event.id, "urn:uuid:1");
        assert_eq!(seeded_parser(None).last_event_id(), "");
    }

    #[test]
    fn bad_configuration_is_refused_before_any_request() {
        let error = Subscriber::builder("http://127.0.0.1:1")
            .build()
            .unwrap_err();
        assert!(matches!(error, ClientError::Config(_)), "{error}");
        let error = Subscriber::builder("ftp://127.0.0.1:1")
            .topic("a")
            .build()
            .unwrap_err();
        assert!(error.is_fatal());
        let error = Subscriber::builder("http://127.0.0.1:1")
            .topic("a")
            .header("bad name", "x")
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("header"), "{error}");
        let error = Subscriber::builder("http://127.0.0.1:1")
            .topic("a")
            .last_event_id("a\nb")
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("last event id"), "{error}");
    }

    #[test]
    fn the_builder_id_is_visible_before_connecting() {
        let subscriber = Subscriber::builder("http://127.0.0.1:1")
            .topic("a")
            .last_event_id("7")
            .build()
            .unwrap();
        assert_eq!(subscriber.last_event_id().as_deref(), Some("7"));
    }
}

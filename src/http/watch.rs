//! What one hyper (HTTP/2: h2c or TLS) connection is doing, watched from
//! its own task: how many requests are open on it, and whether a response body has data that
//! hyper has not come to take. It owns the two connection deadlines hyper has no setting for:
//!
//! - **write timeout** (`--write-timeout`): hyper asks a body for its next frame only when it can
//!   send it (HTTP/1.1: its write buffer has room, so the socket drained; HTTP/2: the stream has
//!   flow-control window and the socket drained). A [`WatchedBody`] runs a clock while hyper
//!   holds data of it that has not drained: it starts when the body hands hyper a frame, and
//!   when its stream is woken because more data is ready (the body wraps the waker its stream
//!   registers); it stops when hyper polls the body again. A clock left running for `--write-timeout` means the client
//!   stopped reading: the connection is dropped (closed) and `herald_write_timeouts_total`
//!   counted. A healthy idle stream is polled at once each time it is woken (a heartbeat), so it
//!   is never closed by this.
//! - **idle budget** (`--header-timeout`): a connection with no open request (no request being
//!   handled, no response body alive) for that long is shut down gracefully (HTTP/2: GOAWAY,
//!   then close), as hyper already does for an idle HTTP/1.1 keep-alive connection. A connection
//!   that carries a live stream stays open.
//!
//! Below hyper, [`WriteDeadline`] wraps the connection's I/O: a write or flush that the socket
//! has not taken (no progress at all) within `--write-timeout` fails, so hyper closes the
//! connection, also when no event stream is left to run a clock (a large response, or the end
//! of a stream, that the client never reads).
//!
//! It also carries the hub-wide shutdown signal to every connection ([`Shutdown`]). This module
//! decides when; `http::serve_h2` acts (graceful shutdown or drop).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::body::ResponseBody;

/// The hub-wide shutdown signal, and a wait for every connection that holds a [`ShutdownSignal`]
/// to end.
pub(crate) struct Shutdown {
    sender: watch::Sender<bool>,
}

/// A connection's end of [`Shutdown`]; shutdown waits until every one is dropped.
#[derive(Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl Shutdown {
    /// A signal not raised yet.
    pub(crate) fn new() -> Shutdown {
        Shutdown {
            sender: watch::channel(false).0,
        }
    }

    /// A handle for one connection.
    pub(crate) fn signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.sender.subscribe())
    }

    /// Raises the signal and waits until every connection has dropped its handle.
    pub(crate) async fn shutdown(self) {
        self.sender.send_replace(true);
        self.sender.closed().await;
    }
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::new()
    }
}

impl ShutdownSignal {
    /// Whether shutdown has started.
    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has started.
    pub async fn raised(&mut self) {
        // An error means the sender is gone: that is a shutdown too.
        let _ = self.0.wait_for(|raised| *raised).await;
    }
}

/// What the watchdog found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A body's data has waited for hyper longer than the write timeout.
    Stalled,
    /// No request has been open for the idle budget.
    Idle,
}

/// The state of one connection, shared by its task and its requests' bodies.
pub(crate) struct ConnectionWatch {
    epoch: Instant,
    /// Requests being handled plus response bodies alive.
    open: AtomicUsize,
    /// Milliseconds since `epoch` when `open` last fell to zero.
    idle_since: AtomicU64,
    clocks: Mutex<Vec<Weak<StallClock>>>,
    /// Wakes the watchdog.
    notify: Notify,
    /// True while the watchdog has no write-timeout timer set: a clock that starts must wake it.
    unwatched: AtomicBool,
}

impl ConnectionWatch {
    /// A new connection, idle since now.
    pub(crate) fn new() -> Arc<ConnectionWatch> {
        Arc::new(ConnectionWatch {
            epoch: Instant::now(),
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            clocks: Mutex::new(Vec::new()),
            notify: Notify::new(),
            unwatched: AtomicBool::new(true),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request arrived: the connection is busy until the returned guard (moved into the
    /// response body) is dropped.
    pub(crate) fn open(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenRequest(Arc::clone(self))
    }

    /// Requests open now.
    #[cfg(test)]
    pub(crate) fn open_requests(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The earliest start of a running clock, forgetting the clocks of dropped bodies.
    fn oldest_stall(&self) -> Option<u64> {
        let mut clocks = self.clocks.lock();
        clocks.retain(|clock| clock.strong_count() > 0);
        clocks
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|clock| clock.started())
            .min()
    }

    /// Waits until a body has stalled for `write_timeout`, or (when `idle` is given) no request
    /// has been open for that long.
    pub(crate) async fn verdict(&self, write_timeout: Duration, idle: Option<Duration>) -> Verdict {
        let write_timeout = millis(write_timeout);
        loop {
            // Set before looking, so that a clock started after the look wakes us.
            self.unwatched.store(true, Ordering::Release);
            let now = self.now_ms();
            let mut wake_at = None;
            if let Some(started) = self.oldest_stall() {
                let due = started.saturating_add(write_timeout);
                if now >= due {
                    return Verdict::Stalled;
                }
                self.unwatched.store(false, Ordering::Release);
                wake_at = Some(due);
            }
            if let Some(idle) = idle
                && self.open.load(Ordering::Acquire) == 0
            {
                let due = self
                    .idle_since
                    .load(Ordering::Acquire)
                    .saturating_add(millis(idle));
                if now >= due {
                    return Verdict::Idle;
                }
                wake_at = Some(wake_at.map_or(due, |at: u64| at.min(due)));
            }
            let notified = self.notify.notified();
            match wake_at {
                Some(at) => {
                    let at = self.epoch + Duration::from_millis(at);
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One open request; dropping it may start the connection's idle budget.
pub(crate) struct OpenRequest(Arc<ConnectionWatch>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let watch = &self.0;
        if watch.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            watch.idle_since.store(watch.now_ms(), Ordering::Release);
            watch.notify.notify_one();
        }
    }
}

/// Runs while a body's stream has been woken and hyper has not polled the body since.
struct StallClock {
    watch: Arc<ConnectionWatch>,
    /// Milliseconds since the connection's epoch, plus one; 0 while stopped.
    since: AtomicU64,
    /// The waker hyper gave the body last.
    waker: Mutex<Option<Waker>>,
}

impl StallClock {
    fn started(&self) -> Option<u64> {
        match self.since.load(Ordering::Acquire) {
            0 => None,
            since => Some(since - 1),
        }
    }

    fn start(&self) {
        let since = self.watch.now_ms().saturating_add(1);
        if self
            .since
            .compare_exchange(0, since, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && self.watch.unwatched.swap(false, Ordering::AcqRel)
        {
            self.watch.notify.notify_one();
        }
    }

    fn stop(&self) {
        self.since.store(0, Ordering::Release);
    }
}

impl Wake for StallClock {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.start();
        if let Some(waker) = self.waker.lock().as_ref() {
            waker.wake_by_ref();
        }
    }
}

/// A response body on a hyper connection: keeps the request open while alive, and runs a stall
/// clock for an event stream.
pub(crate) struct WatchedBody {
    inner: ResponseBody,
    clock: Option<Arc<StallClock>>,
    _open: OpenRequest,
}

impl WatchedBody {
    /// Watches `inner` for the request `open`.
    pub(crate) fn new(inner: ResponseBody, open: OpenRequest) -> WatchedBody {
        let clock = match inner {
            ResponseBody::Full(_) | ResponseBody::Chunks { .. } => None,
            ResponseBody::Stream(_) | ResponseBody::Streaming(_) => {
                let clock = Arc::new(StallClock {
                    watch: Arc::clone(&open.0),
                    since: AtomicU64::new(0),
                    waker: Mutex::new(None),
                });
                let mut clocks = open.0.clocks.lock();
                clocks.retain(|clock| clock.strong_count() > 0);
                clocks.push(Arc::downgrade(&clock));
                drop(clocks);
                Some(clock)
            }
        };
        WatchedBody {
            inner,
            clock,
            _open: open,
        }
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(clock) = &this.clock else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        // Hyper came for data: the connection is moving.
        clock.stop();
        {
            let mut waker = clock.waker.lock();
            match &*waker {
                Some(known) if known.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        let waker = Waker::from(Arc::clone(clock));
        let mut watched = Context::from_waker(&waker);
        let polled = Pin::new(&mut this.inner).poll_frame(&mut watched);
        if let Poll::Ready(Some(_)) = polled {
            // Until hyper comes back for more, this frame has not drained.
            clock.start();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail with `TimedOut` (counted in `herald_write_timeouts_total`)
/// once the socket has taken nothing for `timeout` while a write or flush was waiting. No timer
/// exists while writes go through.
pub(crate) struct WriteDeadline<I> {
    io: I,
    timeout: Duration,
    /// Set at the first write that had to wait since the last progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: bool,
}

impl<I> WriteDeadline<I> {
    /// Wraps `io`.
    pub(crate) fn new(io: I, timeout: Duration) -> WriteDeadline<I> {
        WriteDeadline {
            io,
            timeout,
            stalled: None,
            timed_out: false,
        }
    }

    /// What a write that returned `poll` means under the deadline.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stalled.as_mut().poll(cx).is_ready() {
                    self.timed_out = true;
                    return Poll::Ready(Err(super::body::write_timed_out()));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn failed<T>(&self) -> Option<Poll<io::Result<T>>> {
        self.timed_out.then(|| {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the write timeout already passed",
            )))
        })
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(failed) = this.failed() {
            return failed;
        }
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(failed) = this.failed() {
            return failed;
        }
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(failed) = this.failed() {
            return failed;
        }
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Ok(()));
        }
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.check(cx, poll)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_after_the_timeout() {
        use tokio::io::AsyncWriteExt;
        let (peer, io) = tokio::io::duplex(1024);
        let mut io = WriteDeadline::new(io, Duration::from_secs(2));
        // What the peer's buffer takes goes through.
        io.write_all(&[0; 1024]).await.unwrap();
        let started = Instant::now();
        let error = io.write_all(&[0; 10]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(io.flush().await.is_err(), "stays failed");
        drop(peer);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_is_idle_after_the_budget() {
        let watch = ConnectionWatch::new();
        let started = Instant::now();
        let verdict = watch
            .verdict(Duration::from_secs(30), Some(Duration::from_secs(10)))
            .await;
        assert_eq!(verdict, Verdict::Idle);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_keeps_the_connection_and_its_end_restarts_the_budget() {
        let watch = ConnectionWatch::new();
        let open = watch.open();
        let waiting = {
            let watch = Arc::clone(&watch);
            tokio::spawn(async move {
                watch
                    .verdict(Duration::from_secs(30), Some(Duration::from_secs(10)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished());
        let ended = Instant::now();
        drop(open);
        assert_eq!(waiting.await.unwrap(), Verdict::Idle);
        assert_eq!(ended.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_woken_body_that_is_not_polled_stalls_and_a_polled_one_does_not() {
        let watch = ConnectionWatch::new();
        let body = WatchedBody::new(ResponseBody::Streaming(None), watch.open());
        let clock = Arc::clone(body.clock.as_ref().unwrap());
        let waker = Waker::from(Arc::clone(&clock));
        // Woken and polled at once, again and again: healthy.
        for _ in 0..5 {
            waker.wake_by_ref();
            tokio::time::sleep(Duration::from_secs(1)).await;
            clock.stop();
        }
        let waiting = {
            let watch = Arc::clone(&watch);
            tokio::spawn(async move { watch.verdict(Duration::from_secs(2), None).await })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "an idle stream is never stalled");
        // Woken and never polled: stalled after the timeout.
        let woken = Instant::now();
        waker.wake_by_ref();
        assert_eq!(waiting.await.unwrap(), Verdict::Stalled);
        assert_eq!(woken.elapsed(), Duration::from_secs(2));
        drop((body, clock, waker));
        assert!(watch.oldest_stall().is_none());
        assert_eq!(watch.open_requests(), 0);
    }
}

//! The HTTP edge: our own accept loop (HTTP/1.1 and h2c on one port, or TLS with ALPN), routing,
//! and the handlers. Every HTTP/1.1 connection is served by [`h1`]; HTTP/2 by hyper.
//!
//! `http` owns no state beyond a request: everything shared lives in [`AppState`] (the hub, the
//! store, the writer, the keys). Errors become status codes in one place, [`problem`].

pub(crate) mod backup;
pub(crate) mod body;
pub(crate) mod cors;
pub(crate) mod cursor;
pub(crate) mod h1;
pub(crate) mod limits;
pub(crate) mod mercure1;
pub(crate) mod ops;
pub(crate) mod pages;
pub(crate) mod problem;
pub(crate) mod publish;
pub(crate) mod query;
pub(crate) mod rewind;
pub(crate) mod router;
pub(crate) mod subscribe;
pub(crate) mod subscriptions;
pub(crate) mod tls;
pub(crate) mod topics;
pub(crate) mod watch;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use self::rewind::Rewind;
use self::watch::{ConnectionWatch, Shutdown, ShutdownSignal, Verdict, WatchedBody, WriteDeadline};
use crate::auth::Authorizer;
use crate::config::Config;
use crate::hub::Hub;
use crate::store::Store;
use crate::store::writer::Writer;
use crate::telemetry::names;

/// Everything a request handler may use.
pub(crate) struct AppState {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub auth: Authorizer,
    pub metrics: PrometheusHandle,
    /// Connection, topic and publish-rate limits.
    pub limits: limits::Limits,
}

/// A TLS handshake that has not finished within this time is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle probes on accepted sockets: a peer that vanished (no FIN, no RST) is noticed after
/// about this long plus a few probes, even when nothing is written to it.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Between keepalive probes.
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Unanswered probes before the kernel drops the connection.
const TCP_KEEPALIVE_RETRIES: u32 = 4;

type ConnectionBuilder = http2::Builder<TokioExecutor>;

/// HTTP/2: response bytes one stream may queue inside hyper's h2 (written by its body, not yet
/// on the socket). hyper's default is 400 KiB, on top of the subscriber's `--queue-bytes`
/// mailbox: a stalled stream could hold both. 64 KiB is still hundreds of events per stream;
/// the h2c fan-out throughput did not change with it (docs/ARCHITECTURE.md, "HTTP/2").
const H2_STREAM_SEND_BUFFER: usize = 64 * 1024;
/// HTTP/2: streams open at once on one connection: hyper's default, named so that it cannot
/// change under us. Each idle stream costs about 4 KiB, so one connection holds at most about
/// 1 MiB of stream state; `--max-connections-per-ip` bounds the connections.
const H2_MAX_CONCURRENT_STREAMS: u32 = 200;

/// The HTTP/2 settings of every connection. The receive windows, frame size and header table
/// keep hyper's defaults: they bound what a client may send, and allocate nothing until it does;
/// an idle connection's cost is h2's own buffers (docs/ARCHITECTURE.md, "HTTP/2").
fn h2_builder() -> ConnectionBuilder {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_send_buf_size(H2_STREAM_SEND_BUFFER)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS);
    builder
}

/// The hub's routes, for one HTTP/1.1 connection.
struct HubRoutes {
    state: Arc<AppState>,
    peer: SocketAddr,
}

impl h1::Handler for HubRoutes {
    async fn handle(
        &self,
        request: http::Request<body::RequestBody>,
    ) -> http::Response<body::ResponseBody> {
        router::route(&self.state, request, self.peer).await
    }
}

/// The HTTP/1.1 settings of the hub's listener.
fn h1_settings(config: &Config) -> h1::Settings {
    h1::Settings {
        header_timeout: config.header_timeout,
        write_timeout: config.write_timeout,
        body_limit: config.max_body.max(pages::CHAT_MAX_BODY),
    }
}

/// TCP keepalive and no Nagle delay on an accepted socket.
fn tune_socket(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(TCP_KEEPALIVE_INTERVAL)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// Accepts connections until `shutdown` completes, then ends every stream and waits for
/// connections to close, at most nine tenths of `--shutdown-timeout` (the caller exits the
/// process at the full timeout whatever is still running). With `tls` every connection is TLS
/// (ALPN `h2` or `http/1.1`); without it HTTP/1.1 and h2c (prior knowledge) share the port.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(h2_builder());
    let graceful = Shutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = match state.limits.connections.try_admit(peer.ip()) {
                        Ok(permit) => permit,
                        Err(refusal) => {
                            tracing::debug!(%peer, %refusal, "connection refused");
                            // Over TLS the refusal would need a handshake first: just close.
                            if tls.is_none() {
                                limits::refuse(stream, refusal, &state.limits.connections);
                            }
                            continue;
                        }
                    };
                    tune_socket(&stream);
                    tokio::spawn(serve_connection(
                        stream,
                        permit,
                        peer,
                        Arc::clone(&state),
                        Arc::clone(&builder),
                        tls.clone(),
                        graceful.signal(),
                    ));
                }
                Err(error) => {
                    // Out of file descriptors, or a connection reset before accept: keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: ending every stream");
    state.hub.close();
    let grace = state.config.shutdown_timeout.mul_f64(0.9);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close within {grace:?}; dropping them");
    }
}

/// Serves one connection until it closes. Cleartext HTTP/1.1 is served in this task; HTTP/2 and
/// TLS connections move to a task of their own, sized for what they run: a task's memory is its
/// largest state, so an HTTP/2 connection served here would also hold room for an HTTP/1.1 one
/// (about 3 KB) for its whole life, and an HTTP/1.1 one room for hyper's HTTP/2 state.
async fn serve_connection(
    mut stream: TcpStream,
    permit: limits::Permit,
    peer: SocketAddr,
    state: Arc<AppState>,
    builder: Arc<ConnectionBuilder>,
    tls: Option<TlsAcceptor>,
    watcher: ShutdownSignal,
) {
    let open = OpenConnection::new(permit);
    let deadline = tokio::time::Instant::now() + state.config.header_timeout;
    let Some(tls) = tls else {
        match h1::sniff(&mut stream, deadline).await {
            h1::Protocol::Http1(input) => {
                let settings = h1_settings(&state.config);
                let routes = HubRoutes { state, peer };
                h1::serve(stream, input, &routes, &settings, Some(watcher)).await;
            }
            h1::Protocol::Http2(input) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let (stream, started) =
                    limits::first_request_deadline(Rewind::new(input.into(), stream), left);
                tokio::spawn(async move {
                    let _open = open;
                    let served = serve_h2(stream, started, peer, state, &builder, watcher).await;
                    report_end(peer, served);
                });
            }
            h1::Protocol::Gone => {}
        }
        return;
    };
    tokio::spawn(async move {
        let _open = open;
        let served = serve_tls(stream, tls, deadline, peer, state, &builder, watcher).await;
        report_end(peer, served);
    });
}

/// An open connection's slot and its count in the connections gauge, both given back when it is
/// dropped, by whichever task serves the connection last.
struct OpenConnection {
    _permit: limits::Permit,
}

impl OpenConnection {
    fn new(permit: limits::Permit) -> OpenConnection {
        metrics::gauge!(names::CONNECTIONS).increment(1.0);
        OpenConnection { _permit: permit }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(names::CONNECTIONS).decrement(1.0);
    }
}

/// Logs why an HTTP/2 or TLS connection ended, when it was an error.
fn report_end(peer: SocketAddr, served: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// The TLS handshake, then HTTP/2 when ALPN picked it (or the client sends its preface),
/// HTTP/1.1 otherwise.
async fn serve_tls(
    stream: TcpStream,
    tls: TlsAcceptor,
    deadline: tokio::time::Instant,
    peer: SocketAddr,
    state: Arc<AppState>,
    builder: &ConnectionBuilder,
    watcher: ShutdownSignal,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let handshake = tls.accept_with(stream, tls::limit_buffers);
    let mut stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(error.into()),
        Err(_) => return Err("the TLS handshake timed out".into()),
    };
    let alpn_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let input = if alpn_h2 {
        Vec::new()
    } else {
        match h1::sniff(&mut stream, deadline).await {
            h1::Protocol::Http1(input) => {
                let settings = h1_settings(&state.config);
                let routes = HubRoutes { state, peer };
                h1::serve(stream, input, &routes, &settings, Some(watcher)).await;
                return Ok(());
            }
            h1::Protocol::Http2(input) => input,
            h1::Protocol::Gone => return Ok(()),
        }
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let (stream, started) = limits::first_request_deadline(Rewind::new(input.into(), stream), left);
    serve_h2(stream, started, peer, state, builder, watcher).await
}

/// Serves an HTTP/2 connection with hyper until it closes: shut down gracefully (GOAWAY) when
/// the hub shuts down or when no request has been open for `--header-timeout`; dropped when a
/// response has waited `--write-timeout` for the client to read, or a write to the socket has
/// not gone through for that long (see [`watch`]). A HEAD request gets its GET response's head
/// only ([`body::strip_for_head`]).
async fn serve_h2<I>(
    io: I,
    started: limits::RequestStarted,
    peer: SocketAddr,
    state: Arc<AppState>,
    builder: &ConnectionBuilder,
    mut shutdown: ShutdownSignal,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let watch = ConnectionWatch::new();
    let write_timeout = state.config.write_timeout;
    let idle = state.config.header_timeout;
    let service = {
        let watch = Arc::clone(&watch);
        service_fn(move |request| {
            started.mark();
            let open = watch.open();
            let state = Arc::clone(&state);
            // Boxed: hyper keeps a slot the size of this future for the connection's whole
            // life, and a request's future is large; the box lives only while it is handled.
            Box::pin(async move {
                let head_only = request.method() == http::Method::HEAD;
                let request = request.map(body::RequestBody::Hyper);
                let mut response = router::route(&state, request, peer).await;
                if head_only {
                    body::strip_for_head(&mut response);
                }
                Ok::<_, Infallible>(response.map(|body| WatchedBody::new(body, open)))
            })
        })
    };
    let io = TokioIo::new(WriteDeadline::new(io, write_timeout));
    let mut connection = std::pin::pin!(builder.serve_connection(io, service));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => return result.map_err(Into::into),
            () = shutdown.raised(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            verdict = watch.verdict(write_timeout, (!closing).then_some(idle)) => match verdict {
                Verdict::Stalled => {
                    // Dropping the connection closes the socket and every stream on it.
                    return Err(body::write_timed_out().into());
                }
                Verdict::Idle => {
                    tracing::debug!(%peer, "idle connection closed");
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            },
        }
    }
}

/// The peer address of a request, for logs.
pub(crate) type Peer = SocketAddr;

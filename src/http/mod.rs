//! The HTTP edge: our own accept loop (HTTP/1.1 and h2c on one port), routing, and the handlers.
//!
//! `http` owns no state beyond a request: everything shared lives in [`AppState`] (the hub, the
//! store, the writer, the keys). Errors become status codes in one place, [`problem`].

pub mod backup;
pub mod body;
pub mod cors;
pub mod cursor;
pub mod event_path;
pub mod limits;
pub mod mercure1;
pub mod ops;
pub mod pages;
pub mod problem;
pub mod publish;
pub mod query;
pub mod rewind;
pub mod router;
pub mod subscribe;
pub mod subscriptions;
pub mod tls;
pub mod topics;
pub mod watch;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
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
pub struct AppState {
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

type ConnectionBuilder = auto::Builder<TokioExecutor>;

/// Accepts connections until `shutdown` completes, then ends every stream and waits for
/// connections to close, at most nine tenths of `--shutdown-timeout` (the caller exits the
/// process at the full timeout whatever is still running). With `tls` every connection is TLS (ALPN `h2` or `http/1.1`);
/// without it HTTP/1.1 and h2c (prior knowledge) share the port.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_timeout)
        .max_buf_size(event_path::MAX_HEAD);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
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
                    let _ = stream.set_nodelay(true);
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

/// Serves one connection (after the TLS handshake, if any) until it closes.
async fn serve_connection(
    stream: TcpStream,
    _permit: limits::Permit,
    peer: SocketAddr,
    state: Arc<AppState>,
    builder: Arc<ConnectionBuilder>,
    tls: Option<TlsAcceptor>,
    watcher: ShutdownSignal,
) {
    metrics::gauge!(names::CONNECTIONS).increment(1.0);
    let header_timeout = state.config.header_timeout;
    let result = match tls {
        None => {
            let deadline = tokio::time::Instant::now() + header_timeout;
            match event_path::read_first_request(&stream, deadline).await {
                event_path::FirstRequest::Subscribe(request) => {
                    // Held, not used: shutdown waits for this connection as for hyper's.
                    let _watched = watcher;
                    event_path::serve(stream, request, state, peer).await;
                    Ok(())
                }
                // Boxed: hyper's connection state would enlarge every connection's task.
                event_path::FirstRequest::Other(read) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let (stream, started) =
                        limits::first_request_deadline(Rewind::new(read, stream), left);
                    Box::pin(serve_http(stream, started, peer, state, &builder, watcher)).await
                }
                event_path::FirstRequest::Gone => Ok(()),
            }
        }
        // Boxed: inline, the TLS state would enlarge every connection's task, plain ones too.
        Some(tls) => {
            Box::pin(async move {
                let (stream, started) = limits::first_request_deadline(stream, header_timeout);
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        serve_http(stream, started, peer, state, &builder, watcher).await
                    }
                    Ok(Err(error)) => Err(error.into()),
                    Err(_) => Err("the TLS handshake timed out".into()),
                }
            })
            .await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
    metrics::gauge!(names::CONNECTIONS).decrement(1.0);
}

/// Serves a connection with hyper (HTTP/1.1 or HTTP/2) until it closes: shut down gracefully
/// (HTTP/2: GOAWAY) when the hub shuts down or when no request has been open for
/// `--header-timeout`; dropped when a response has waited `--write-timeout` for the client to
/// read, or a write to the socket has not gone through for that long (see [`watch`]).
async fn serve_http<I>(
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
                let response = router::route(&state, request, peer).await;
                Ok::<_, Infallible>(response.map(|body| WatchedBody::new(body, open)))
            })
        })
    };
    let io = TokioIo::new(WriteDeadline::new(io, write_timeout));
    let mut connection = std::pin::pin!(builder.serve_connection(io, service));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => return result,
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
pub type Peer = SocketAddr;

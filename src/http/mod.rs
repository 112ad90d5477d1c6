//! The HTTP edge: our own accept loop (HTTP/1.1 and h2c on one port), routing, and the handlers.
//!
//! `http` owns no state beyond a request: everything shared lives in [`AppState`] (the hub, the
//! store, the writer, the keys). Errors become status codes in one place, [`problem`].

pub mod body;
pub mod cors;
pub mod ops;
pub mod pages;
pub mod problem;
pub mod publish;
pub mod query;
pub mod router;
pub mod subscribe;
pub mod subscriptions;
pub mod topics;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::auth::Authorizer;
use crate::config::Config;
use crate::hub::Hub;
use crate::store::Store;
use crate::store::writer::Writer;

/// Everything a request handler may use.
pub struct AppState {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub auth: Authorizer,
    pub metrics: PrometheusHandle,
}

/// A client that has not sent its request headers within this time is cut off (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for connections to finish their responses.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts connections until `shutdown` completes, then ends every stream and waits (bounded)
/// for connections to close.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(16 * 1024);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(router::route(&state, request, peer).await) }
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        metrics::gauge!("herald_connections").increment(1.0);
                        if let Err(error) = connection.await {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                        metrics::gauge!("herald_connections").decrement(1.0);
                    });
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
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close within {SHUTDOWN_GRACE:?}; dropping them");
    }
}

/// The peer address of a request, for logs.
pub type Peer = SocketAddr;

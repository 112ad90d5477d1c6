//! Operations endpoints: `/healthz` and `/metrics` (Prometheus text), and the listener that
//! serves `/metrics` alone for `--metrics-listen`.

use http::{Response, StatusCode};

use super::AppState;
use super::body::ResponseBody;
use super::router::ok;

/// 200 while serving, 503 while shutting down.
pub(crate) fn health(state: &AppState) -> Response<ResponseBody> {
    let closing = state.hub.is_closing();
    let body = serde_json::json!({
        "status": if closing { "shutting down" } else { "ok" },
        "subscriptions": state.hub.subscriptions(),
    });
    let mut response = ok("application/json", body.to_string());
    if closing {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

/// The Prometheus exposition.
pub(crate) fn metrics(state: &AppState) -> Response<ResponseBody> {
    exposition(&state.metrics)
}

/// The Prometheus text of `handle`, as a 200.
fn exposition(handle: &metrics_exporter_prometheus::PrometheusHandle) -> Response<ResponseBody> {
    ok("text/plain; version=0.0.4; charset=utf-8", handle.render())
}

/// Serves `GET /metrics` (and nothing else: 404) on its own listener, for `--metrics-listen`,
/// until shutdown drops it, and its open connections with it. Plain HTTP/1.1; meant for a
/// loopback or private address.
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    header_timeout: std::time::Duration,
) {
    let settings = super::h1::Settings {
        header_timeout,
        write_timeout: header_timeout,
        body_limit: 0,
    };
    // Owned here: dropping this future ends every scrape connection (Prometheus keeps them
    // open between scrapes).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let exposition = MetricsOnly(metrics.clone());
        connections.spawn(async move {
            super::h1::serve(stream, Vec::new(), &exposition, &settings, None).await;
        });
    }
}

/// The `--metrics-listen` listener's one route.
struct MetricsOnly(metrics_exporter_prometheus::PrometheusHandle);

impl super::h1::Handler for MetricsOnly {
    async fn handle(
        &self,
        request: http::Request<super::body::RequestBody>,
    ) -> Response<ResponseBody> {
        if request.uri().path() == "/metrics"
            && matches!(*request.method(), http::Method::GET | http::Method::HEAD)
        {
            exposition(&self.0)
        } else {
            super::problem::ApiError::NotFound(format!(
                "this listener serves /metrics only, not {}",
                request.uri().path()
            ))
            .into_response()
        }
    }
}

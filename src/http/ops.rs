//! Operations endpoints: `/healthz` and `/metrics` (Prometheus text).

use http::{Response, StatusCode};

use super::AppState;
use super::body::ResponseBody;
use super::router::ok;

/// 200 while serving, 503 while shutting down.
pub fn health(state: &AppState) -> Response<ResponseBody> {
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
pub fn metrics(state: &AppState) -> Response<ResponseBody> {
    ok(
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render(),
    )
}

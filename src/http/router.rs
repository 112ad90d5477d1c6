//! Routing by method and path, plus CORS on every response.

use http::{HeaderValue, Method, Request, Response, header};

use super::body::{RequestBody, ResponseBody};
use super::problem::ApiError;
use super::{
    AppState, Peer, backup, cors, mercure1, ops, pages, publish, subscribe, subscriptions, topics,
};

/// The Mercure endpoint.
pub(crate) const MERCURE_PATH: &str = "/.well-known/mercure";

/// Answers one request.
pub(crate) async fn route(
    state: &AppState,
    request: Request<RequestBody>,
    peer: Peer,
) -> Response<ResponseBody> {
    if cors::is_preflight(request.method(), request.headers()) {
        return cors::preflight(&state.config.cors, request.headers());
    }
    // CORS needs only the request's `Origin`: kept alone, not a copy of every header.
    let origin = request.headers().get(header::ORIGIN).cloned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let result = dispatch(state, request, peer, &method, &path).await;
    respond(state, origin.as_ref(), result, peer, &method, &path)
}

/// The response for a handler's result: errors logged and turned into problems, CORS added.
fn respond(
    state: &AppState,
    origin: Option<&HeaderValue>,
    result: Result<Response<ResponseBody>, ApiError>,
    peer: Peer,
    method: &Method,
    path: &str,
) -> Response<ResponseBody> {
    let mut response = result.unwrap_or_else(|error| {
        if error.status().is_server_error() {
            tracing::warn!(%peer, %method, %path, %error, "request failed");
        } else {
            tracing::debug!(%peer, %method, %path, %error, "request refused");
        }
        error.into_response()
    });
    cors::decorate(&state.config.cors, origin, response.headers_mut());
    response
}

async fn dispatch(
    state: &AppState,
    request: Request<RequestBody>,
    peer: Peer,
    method: &Method,
    path: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    // HEAD is routed as GET: every connection layer sends the head of the GET response without
    // its body (RFC 9110 §9.3.2).
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    match (path, method) {
        (MERCURE_PATH | "/events", &Method::GET) => subscribe::subscribe(state, &request).await,
        (MERCURE_PATH, m) if m.as_str() == "QUERY" => {
            subscribe::subscribe_query(state, request).await
        }
        (mercure1::METADATA_PATH, &Method::GET) => {
            mercure1::metadata(state, request.headers(), request.uri())
        }
        (MERCURE_PATH | "/publish", &Method::POST) => publish::publish(state, request).await,
        (MERCURE_PATH, _) => Err(ApiError::MethodNotAllowed {
            allowed: "GET, HEAD, POST, QUERY",
        }),
        ("/events", _) => Err(ApiError::MethodNotAllowed {
            allowed: "GET, HEAD",
        }),
        ("/publish", _) => Err(ApiError::MethodNotAllowed { allowed: "POST" }),
        ("/chat/send", &Method::POST) => pages::chat_send(state, request, peer).await,
        ("/topics", &Method::GET) => topics::list(state, &request).await,
        (backup::PATH, &Method::POST) => backup::backup(state, &request).await,
        (backup::PATH, _) => Err(ApiError::MethodNotAllowed { allowed: "POST" }),
        ("/healthz", &Method::GET) => Ok(ops::health(state)),
        ("/herald.js" | "/herald.d.ts", &Method::GET) => pages::client_file(&request)
            .ok_or_else(|| ApiError::NotFound(format!("no such path: {path}"))),
        ("/metrics", &Method::GET) if state.config.metrics_listen.is_none() => {
            Ok(ops::metrics(state))
        }
        (_, &Method::GET) => {
            if path.starts_with(crate::subscriptions::BASE) {
                return subscriptions::subscriptions(state, &request).await;
            }
            if let Some(topic) = topics::events_path(path) {
                return topics::events(state, &request, &topic).await;
            }
            pages::page(state, path)
                .ok_or_else(|| ApiError::NotFound(format!("no such path: {path}")))
        }
        _ => Err(ApiError::NotFound(format!("no such path: {path}"))),
    }
}

/// A 200 response with a content type.
pub(crate) fn ok(
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

//! CORS: an allow-list of origins. An allowed origin is echoed with credentials; `*` allows any
//! origin without credentials (never `*` together with credentials); other origins get no CORS
//! headers at all.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::body::ResponseBody;
use crate::config::OriginPolicy;

const ALLOW_HEADERS: &str = "Authorization, Last-Event-ID, Cache-Control, Content-Type";
const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
const EXPOSE_HEADERS: &str = "Last-Event-ID, Mercure-Last-Event-ID, Link";

/// Is this a CORS preflight?
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight.
pub fn preflight(policy: &OriginPolicy, request: &HeaderMap) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    if decorate(policy, request, response.headers_mut()) {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}

/// Adds the CORS headers of an allowed origin to `response`; returns whether it was allowed.
pub fn decorate(policy: &OriginPolicy, request: &HeaderMap, response: &mut HeaderMap) -> bool {
    response.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = request.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin_text) = origin.to_str() else {
        return false;
    };
    if !policy.allows(origin_text) {
        return false;
    }
    if *policy == OriginPolicy::Any {
        response.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    true
}

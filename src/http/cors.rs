//! CORS: an allow-list of origins. An allowed origin is echoed with credentials; `*` allows any
//! origin without credentials (never `*` together with credentials); other origins get no CORS
//! headers at all. A preflight from an allowed origin is allowed the request headers it asks for
//! (`Access-Control-Request-Headers`), so a page can send its own headers to the hub (herald.js's
//! `headers` option); without that list, a fixed one.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::body::ResponseBody;
use crate::config::OriginPolicy;

const ALLOW_HEADERS: &str = "Authorization, Last-Event-ID, Cache-Control, Content-Type";
const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
const EXPOSE_HEADERS: &str = "Last-Event-ID, Mercure-Last-Event-ID, Link";

/// Is this a CORS preflight?
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight.
pub(crate) fn preflight(policy: &OriginPolicy, request: &HeaderMap) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Headers"),
    );
    if decorate(policy, request.get(header::ORIGIN), response.headers_mut()) {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            allowed_headers(request.get(header::ACCESS_CONTROL_REQUEST_HEADERS)),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}

/// The fixed list, plus every header name the preflight asks for that it lacks.
fn allowed_headers(asked: Option<&HeaderValue>) -> HeaderValue {
    let fixed = HeaderValue::from_static(ALLOW_HEADERS);
    let Some(asked) = asked.and_then(|value| value.to_str().ok()) else {
        return fixed;
    };
    let known: Vec<String> = ALLOW_HEADERS
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut list = ALLOW_HEADERS.to_owned();
    for name in asked.split(',').map(str::trim) {
        let valid = !name.is_empty() && http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        if valid && !known.contains(&name.to_ascii_lowercase()) {
            list.push_str(", ");
            list.push_str(name);
        }
    }
    HeaderValue::from_str(&list).unwrap_or(fixed)
}

/// Adds the CORS headers of an allowed origin (the request's `Origin`, if any) to `response`;
/// returns whether it was allowed. A response that already allows every origin (the browser
/// client's files) is left as is.
pub(crate) fn decorate(
    policy: &OriginPolicy,
    origin: Option<&HeaderValue>,
    response: &mut HeaderMap,
) -> bool {
    if response.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return true;
    }
    response.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else {
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

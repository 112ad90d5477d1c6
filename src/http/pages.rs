//! The pages embedded in the binary, and the chat's send endpoint.
//!
//! `/`, the favicon and the shared stylesheet and script are always served; the demo pages
//! (`/chat`, `/clock`, `/console`) and their scripts only with `--demo` (404 otherwise). Every
//! page is plain HTML, CSS and JS from `assets/`, needs no network, and is served with a strict
//! Content-Security-Policy (same-origin scripts, styles and connections only).
//!
//! `GET /herald.js` and `GET /herald.d.ts` (the browser client, from `clients/js/`) are served
//! to any origin (`Access-Control-Allow-Origin: *`), with an ETag made of the hub's version and
//! a hash of the file; a URL carrying the hub's version (`?v=VERSION`) is cached for a year.
//!
//! `POST /chat/send` (form or JSON `{"name", "message"}`) publishes a chat message to topic
//! `chat` through the publish pipeline (`publish::run`), like any publisher: the same limits,
//! checks and publish rate. Senders need no token with `--demo` (each client address then has
//! its own rate-limit bucket); without it they need a publisher token covering `chat` in the
//! `Authorization` header or the `authorization` query parameter (the cookie is not accepted
//! here, so a page on another site cannot post in a visitor's name).

use std::sync::Arc;

use super::body::RequestBody;
use http::{HeaderMap, HeaderValue, Request, Response, header, request};
use serde::Deserialize;

use super::body::ResponseBody;
use super::problem::ApiError;
use super::publish::{self, BodyFormat, Publisher};
use super::router::ok;
use super::{AppState, Peer, limits, query};
use crate::auth::{AuthError, Claims, TokenSource, extract_token};
use crate::demo::{CHAT_TOPIC, chat_draft};
use crate::topic::SelectorSet;
use crate::update::{Draft, now_ms};

const INDEX: &str = include_str!("../../assets/index.html");
const CHAT: &str = include_str!("../../assets/chat.html");
const CLOCK: &str = include_str!("../../assets/clock.html");
const CONSOLE: &str = include_str!("../../assets/console.html");
const FAVICON: &str = include_str!("../../assets/favicon.svg");
const STYLESHEET: &str = include_str!("../../assets/herald.css");
const COMMON_JS: &str = include_str!("../../assets/herald.js");
const CHAT_JS: &str = include_str!("../../assets/chat.js");
const CLOCK_JS: &str = include_str!("../../assets/clock.js");
const CONSOLE_JS: &str = include_str!("../../assets/console.js");
const CLIENT_JS: &str = include_str!("../../clients/js/herald.js");
const CLIENT_DTS: &str = include_str!("../../clients/js/herald.d.ts");

/// The hub's version: `?v=` of a client URL that may be cached for good.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The client files without a version in the URL: cached for an hour, then revalidated.
const CLIENT_CACHE: &str = "public, max-age=3600";
/// `?v=VERSION`: this URL's bytes never change.
const CLIENT_CACHE_VERSIONED: &str = "public, max-age=31536000, immutable";

/// Where the index lists the demo pages (or says how to turn them on).
const DEMO_MARKER: &str = "<!-- demo-pages -->";
const DEMO_ON: &str = r#"<ul class="cards">
    <li><a class="card link-card" href="/chat"><strong>Chat</strong><span>A chat room on topic <code>chat</code>: replayed history, live messages, connection state.</span></a></li>
    <li><a class="card link-card" href="/clock"><strong>Clock</strong><span>The hub publishes the time every 3 s; plus a live view of <code>GET /topics</code>.</span></a></li>
    <li><a class="card link-card" href="/console"><strong>Console</strong><span>Subscribe and publish by hand, with a token; every action as a <code>curl</code> command.</span></a></li>
  </ul>"#;
const DEMO_OFF: &str = r#"<p class="note" id="demo-off">The demo pages (<code>/chat</code>, <code>/clock</code>, <code>/console</code>) are off. Start the hub with <code>--demo</code> to enable them.</p>"#;

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
/// Same-origin everything; no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Largest body `POST /chat/send` reads (413 above).
pub(crate) const CHAT_MAX_BODY: usize = 16 * 1024;

/// Where the top bar's links to the demo pages start and end (the index drops them without
/// `--demo`; every page shares one top bar otherwise).
const DEMO_NAV: (&str, &str) = ("<!-- demo-nav -->", "<!-- /demo-nav -->");

/// `page` without the top bar's links to the demo pages.
fn without_demo_nav(page: &str) -> String {
    match (page.find(DEMO_NAV.0), page.find(DEMO_NAV.1)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{}", &page[..start], &page[end + DEMO_NAV.1.len()..])
        }
        _ => page.to_owned(),
    }
}

/// The page or asset at `path`, if there is one (the demo's only with `--demo`).
pub(crate) fn page(state: &AppState, path: &str) -> Option<Response<ResponseBody>> {
    let demo = state.config.demo;
    let mut response = match path {
        "/" | "/index.html" => {
            let links = if demo { DEMO_ON } else { DEMO_OFF };
            let page = INDEX.replacen(DEMO_MARKER, links, 1);
            ok(HTML, if demo { page } else { without_demo_nav(&page) })
        }
        "/favicon.ico" | "/favicon.svg" => ok("image/svg+xml", FAVICON),
        "/assets/herald.css" => ok(CSS, STYLESHEET),
        "/assets/herald.js" => ok(JS, COMMON_JS),
        "/chat" if demo => ok(HTML, CHAT),
        "/clock" if demo => ok(HTML, CLOCK),
        "/console" if demo => ok(HTML, CONSOLE),
        "/assets/chat.js" if demo => ok(JS, CHAT_JS),
        "/assets/clock.js" if demo => ok(JS, CLOCK_JS),
        "/assets/console.js" if demo => ok(JS, CONSOLE_JS),
        _ => return None,
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    Some(response)
}

/// `GET /herald.js` or `GET /herald.d.ts` (`None` for another path): the browser client, for
/// any origin, cacheable.
pub(crate) fn client_file<B>(request: &Request<B>) -> Option<Response<ResponseBody>> {
    let (content_type, body) = match request.uri().path() {
        "/herald.js" => (JS, CLIENT_JS),
        "/herald.d.ts" => ("application/typescript; charset=utf-8", CLIENT_DTS),
        _ => return None,
    };
    let etag = format!("\"{VERSION}-{:016x}\"", fnv1a(body.as_bytes()));
    let pairs = query::pairs(request.uri().query().unwrap_or("").as_bytes());
    let cache = if query::first(&pairs, "v") == Some(VERSION) {
        CLIENT_CACHE_VERSIONED
    } else {
        CLIENT_CACHE
    };
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if fresh {
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = http::StatusCode::NOT_MODIFIED;
        response
    } else {
        ok(content_type, body)
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Some(response)
}

/// 64-bit FNV-1a: a stable fingerprint of an embedded file for its ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Deserialize)]
struct ChatJson {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// `POST /chat/send`: publishes one chat message to topic `chat` through the publish pipeline
/// (so the publish rate limit applies, per token or, for anonymous senders, per address);
/// answers `{"id": …}`.
pub(crate) async fn chat_send(
    state: &AppState,
    request: Request<RequestBody>,
    peer: Peer,
) -> Result<Response<ResponseBody>, ApiError> {
    let authenticate = |state: &AppState, parts: &request::Parts| {
        chat_sender(state, &parts.headers, parts.uri.query(), peer)
    };
    let stored = publish::run(state, request, CHAT_MAX_BODY, authenticate, decode_chat).await?;
    let body = serde_json::json!({ "id": stored.id });
    Ok(ok("application/json", body.to_string()))
}

/// A chat message, form or JSON `{"name", "message"}`, as the update it publishes.
fn decode_chat(content_type: Option<&str>, bytes: &[u8]) -> Result<Draft, ApiError> {
    let (name, message) = match publish::body_format(content_type)? {
        BodyFormat::Json => {
            let chat: ChatJson = serde_json::from_slice(bytes).map_err(|error| {
                ApiError::BadRequest(format!("invalid JSON chat message: {error}"))
            })?;
            (
                chat.name.unwrap_or_default(),
                chat.message.unwrap_or_default(),
            )
        }
        BodyFormat::Form => {
            let pairs = query::pairs(bytes);
            (
                query::first(&pairs, "name").unwrap_or("").to_owned(),
                query::first(&pairs, "message").unwrap_or("").to_owned(),
            )
        }
    };
    chat_draft(&name, &message, now_ms()).map_err(|error| ApiError::BadRequest(error.to_string()))
}

/// With `--demo` anyone may chat (anonymous senders share a rate-limit bucket per address);
/// otherwise the sender needs a publisher token that covers `chat`. A token that is sent is
/// always verified; the cookie is ignored (CSRF).
fn chat_sender(
    state: &AppState,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    peer: Peer,
) -> Result<Publisher, ApiError> {
    let token = extract_token(headers, raw_query)
        .filter(|(_, source)| *source != TokenSource::Cookie)
        .map(|(token, _)| token);
    match token {
        Some(token) => {
            let claims = state.auth.verify_publisher(&token)?;
            let allowed = claims
                .publish
                .as_ref()
                .map(SelectorSet::parse)
                .unwrap_or_default();
            if !allowed.matches(CHAT_TOPIC) {
                return Err(ApiError::Forbidden(format!(
                    "the token's mercure.publish claim does not cover topic {CHAT_TOPIC}"
                )));
            }
            Ok(Publisher {
                rate_key: publish::rate_key(&claims, &token),
                claims: Arc::new(claims),
                v1: None,
            })
        }
        None if state.config.demo => Ok(Publisher {
            rate_key: format!("address:{}", limits::address_key(peer.ip())),
            claims: Arc::new(Claims {
                publish: Some(vec![CHAT_TOPIC.to_owned()]),
                ..Claims::default()
            }),
            v1: None,
        }),
        None => Err(AuthError::Missing.into()),
    }
}

//! `GET /.well-known/mercure` and `GET /events` (and, Mercure 1.0, `QUERY` with a form body):
//! open an event stream, for a 0.x (`topic=`) or a 1.0 (`match=`) subscriber.
//!
//! Order matters: the subscription is registered with the hub first, then the last event id is
//! resolved and history is replayed by the stream, so nothing published meanwhile is lost.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, header};

use super::AppState;
use super::body::ResponseBody;
use super::cursor::{self, Occurrence};
use super::mercure1;
use super::problem::ApiError;
use super::query;
use crate::auth::{AuthError, KeyRole, extract_token_with, is_access_token};
use crate::hub::{Identity, Payloads};
use crate::store::{Bounds, ReplayFrom, Store};
use crate::stream::{EventStream, Start};
use crate::topic::SelectorSet;

/// The special last event id meaning "everything history holds".
pub(crate) const EARLIEST: &str = "earliest";
/// The event type that announces a gap in history.
pub(crate) const GAP_EVENT: &str = "herald-gap";
/// The opt-in query parameter (`herald-topic=1`) that makes every event carry its canonical
/// topic as a `topic:` field line (herald.js routes a shared connection's events with it).
pub(crate) const TOPIC_FIELD_PARAM: &str = "herald-topic";

/// Opens a subscriber's stream.
pub(crate) async fn subscribe<B>(
    state: &AppState,
    request: &Request<B>,
) -> Result<Response<ResponseBody>, ApiError> {
    let head_only = request.method() == Method::HEAD;
    open(state, request.headers(), request.uri(), None, head_only).await
}

/// `QUERY /.well-known/mercure` with a form body: subscribe with the body's parameters added
/// to the query's (Mercure 1.0).
pub(crate) async fn subscribe_query(
    state: &AppState,
    request: Request<super::body::RequestBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    let (parts, body) = request.into_parts();
    match super::publish::media_type(&parts.headers).as_deref() {
        None | Some("application/x-www-form-urlencoded") => {}
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "send the QUERY parameters as application/x-www-form-urlencoded, not {other}"
            )));
        }
    }
    let body = super::publish::read_body(body, &parts.headers, state.config.max_body).await?;
    open(state, &parts.headers, &parts.uri, Some(&body), false).await
}

/// Subscribes with the parameters of the query and, for `QUERY`, of the body. `head_only` (a
/// HEAD request, whose response has no body): the subscription is checked and opened as for GET,
/// so the head is GET's, but it has no identity, so no subscription event tells anyone of it.
async fn open(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Option<&[u8]>,
    head_only: bool,
) -> Result<Response<ResponseBody>, ApiError> {
    let SubscribeRequest {
        v1,
        selectors,
        access,
        last_event_id,
        topic_field,
    } = read_request(state, headers, uri, body)?;

    let identity = (state.hub.tracks_identities() && !head_only).then(|| Identity {
        urn: crate::update::new_event_id().into_boxed_str(),
        payload: access.payloads(&selectors),
        mercure1: v1,
    });
    let private_access = access.private_topics;
    let subscription = state
        .hub
        .subscribe_as(selectors, private_access.clone(), identity)
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    if let Some(expires_at) = access.expires_at {
        subscription.expire_at(expires_at);
    }

    // Every id this subscriber is told, or may resume from, is one it may see.
    let store = &*state.store;
    // The opening comment, a lone `:` line (no blank line: see `herald_sse::encode_comment`).
    let mut prelude = Vec::new();
    herald_sse::encode_comment(&mut prelude, "");
    let bounds = store.bounds().await?;
    let (start, resumed_from) = starting_point(
        store,
        &bounds,
        last_event_id.as_deref(),
        v1,
        private_access.as_ref(),
        &mut prelude,
    )
    .await?;
    let cursor_id = if v1 {
        // Mercure 1.0: the id of the event before the first one sent (the visible id resumed
        // from), or `earliest`.
        last_event_id.as_ref().map(|_| {
            resumed_from
                .map(str::to_owned)
                .unwrap_or_else(|| EARLIEST.to_owned())
        })
    } else {
        cursor_v0(
            store,
            &bounds,
            last_event_id.is_some(),
            resumed_from,
            topic_field,
            private_access.as_ref(),
        )
        .await?
    };
    let stream = EventStream::new(
        subscription,
        Arc::clone(&state.store),
        Bytes::from(prelude),
        start,
    )
    .with_topic_field(topic_field);
    Ok(event_stream_response(stream, cursor_id, v1))
}

/// A subscribe request, read and checked: its selectors, the token's access, where to resume.
struct SubscribeRequest {
    v1: bool,
    selectors: SelectorSet,
    access: Access,
    last_event_id: Option<String>,
    topic_field: bool,
}

/// Reads the parameters (Mercure 1.0 `match`es or 0.x `topic`s, from the query and, for
/// `QUERY`, the body), the token, and the resume id, each within its limits.
fn read_request(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Option<&[u8]>,
) -> Result<SubscribeRequest, ApiError> {
    let raw_query = uri.query();
    let v1 = mercure1::is_v1(raw_query, body);
    let (selectors, access, last_event_id) = if v1 {
        let hub = mercure1::hub_url(state, headers, uri)?;
        let params = mercure1::parse_subscribe(raw_query, body, &hub)?;
        let sources: Vec<&str> = params.sources.iter().map(String::as_str).collect();
        state.limits.check_subscription(&sources)?;
        let access = access(state, headers, uri, true)?;
        let last_event_id = header_last_event_id(headers).or(params.last_event_id);
        (params.selectors, access, last_event_id)
    } else {
        let mut params = query::pairs(raw_query.unwrap_or("").as_bytes());
        if let Some(body) = body {
            params.extend(query::pairs(body));
        }
        let topics: Vec<&str> = query::all(&params, "topic").collect();
        if topics.is_empty() {
            return Err(ApiError::BadRequest(
                "at least one `topic` query parameter is required".into(),
            ));
        }
        state.limits.check_subscription(&topics)?;
        let access = access(state, headers, uri, false)?;
        let last_event_id = last_event_id(headers, &params);
        (SelectorSet::parse(topics), access, last_event_id)
    };
    state.limits.check_templates(&selectors)?;
    let topic_field = wants_topic_field(&query::pairs(raw_query.unwrap_or("").as_bytes()));
    Ok(SubscribeRequest {
        v1,
        selectors,
        access,
        last_event_id,
        topic_field,
    })
}

/// Where the stream starts for `last_event_id`, and the id it resumed from (one the subscriber
/// may see). A gap is told in `prelude`.
async fn starting_point<'a>(
    store: &dyn Store,
    bounds: &Bounds,
    last_event_id: Option<&'a str>,
    v1: bool,
    private_access: Option<&SelectorSet>,
    prelude: &mut Vec<u8>,
) -> Result<(Start, Option<&'a str>), ApiError> {
    // `earliest` and a gap notice both mean "whatever history still holds": what was trimmed
    // before now is no news to this client.
    let known_lost = Start::ReplayAfter {
        after: 0,
        announced: bounds.trimmed_through,
    };
    let id = match last_event_id {
        None => return Ok((Start::LiveAfter(bounds.last_seq), None)),
        Some(EARLIEST) => return Ok((known_lost, None)),
        Some(id) => id,
    };
    let occurrence = if v1 {
        Occurrence::Earliest
    } else {
        Occurrence::Newest
    };
    Ok(
        match cursor::resolve_visible(store, id, occurrence, private_access).await? {
            // History holds everything after the id.
            ReplayFrom::After(seq) if bounds.trimmed_through <= seq => (
                Start::ReplayAfter {
                    after: seq,
                    announced: seq,
                },
                Some(id),
            ),
            // History holds the id (a topic's newest updates are kept longer, with
            // --history-per-topic) but trimmed some of what came after it: the gap is told,
            // then what is kept after the id is replayed.
            ReplayFrom::After(seq) => {
                let oldest = cursor::oldest_visible(store, private_access).await?;
                encode_gap(prelude, id, oldest.as_deref());
                (
                    Start::ReplayAfter {
                        after: seq,
                        announced: bounds.trimmed_through,
                    },
                    Some(id),
                )
            }
            ReplayFrom::Unknown => {
                let oldest = cursor::oldest_visible(store, private_access).await?;
                encode_gap(prelude, id, oldest.as_deref());
                (known_lost, None)
            }
        },
    )
}

/// The 0.x `Last-Event-ID` response header. As the reference hub: the newest id in history when
/// the subscription started, if this subscriber may see it; otherwise the id it resumed from,
/// or `earliest`. Without a resume id, only herald.js (`topic_field`) is told one.
async fn cursor_v0(
    store: &dyn Store,
    bounds: &Bounds,
    resuming: bool,
    resumed_from: Option<&str>,
    topic_field: bool,
    private_access: Option<&SelectorSet>,
) -> Result<Option<String>, ApiError> {
    let newest_seq = bounds.newest.as_ref().map(|(seq, _)| *seq);
    if resuming {
        let newest = cursor::newest_if_visible(store, newest_seq, private_access).await?;
        return Ok(Some(
            newest
                .or_else(|| resumed_from.map(str::to_owned))
                .unwrap_or_else(|| EARLIEST.to_owned()),
        ));
    }
    if !topic_field {
        return Ok(None);
    }
    // herald.js resumes from here if the stream breaks before its first event: the newest id it
    // may see, or `earliest` when history was empty (never an id it may not see).
    Ok(match newest_seq {
        None => Some(EARLIEST.to_owned()),
        Some(seq) => cursor::newest_if_visible(store, Some(seq), private_access).await?,
    })
}

/// The `text/event-stream` response around `stream`, with the resume cursor in its header.
fn event_stream_response(
    stream: EventStream,
    cursor_id: Option<String>,
    v1: bool,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(value) = cursor_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        let name = if v1 {
            "mercure-last-event-id"
        } else {
            "last-event-id"
        };
        headers.insert(name, value);
    }
    response
}

/// What a subscriber's token allows.
#[derive(Debug, Default)]
pub(crate) struct Access {
    /// Topics whose private updates it may receive; `None` for public updates only.
    pub private_topics: Option<SelectorSet>,
    /// When the token expires (Unix seconds): the stream is closed then.
    pub expires_at: Option<u64>,
    /// A 0.x token's `mercure.payload`.
    pub payload: Option<serde_json::Value>,
    /// A 1.0 token's `subscribe` entries and their payloads (each subscription gets its own).
    pub payload_grants: Option<mercure1::PayloadGrants>,
}

impl Access {
    /// The payload of each of `selectors`' subscriptions.
    fn payloads(&self, selectors: &SelectorSet) -> Payloads {
        match &self.payload_grants {
            Some(grants) => Payloads::per_selector(
                selectors
                    .iter()
                    .map(|selector| grants.for_matcher(selector.source()).cloned())
                    .collect(),
            ),
            None => Payloads::Same(self.payload.clone()),
        }
    }
}

/// Verifies the subscriber's token, if any. Refuses a bad token, and a missing one unless
/// anonymous subscribers are allowed. A Mercure 1.0 request (a `match` parameter) or a 1.0
/// access token gets RFC 6750 answers; a 0.x request with a 0.x token gets what it always got.
pub(crate) fn subscriber_access(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Access, ApiError> {
    access(state, headers, uri, mercure1::is_v1(uri.query(), None))
}

fn access(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    v1_request: bool,
) -> Result<Access, ApiError> {
    let raw_query = uri.query();
    let found = extract_token_with(headers, raw_query, &state.config.cookie_name);
    let v1 = v1_request
        || found
            .as_ref()
            .is_some_and(|(token, _)| is_access_token(token));
    if !v1 {
        return match found {
            Some((token, _source)) => {
                let claims = state.auth.verify_subscriber(&token)?;
                Ok(Access {
                    private_topics: claims.subscribe.map(SelectorSet::parse),
                    expires_at: claims.expires_at,
                    payload: claims.payload,
                    payload_grants: None,
                })
            }
            None if state.config.anonymous => Ok(Access::default()),
            None => Err(AuthError::Missing.into()),
        };
    }
    let hub = mercure1::hub_url(state, headers, uri)?;
    match found {
        Some((token, source)) => {
            mercure1::check_presentation(&hub, &token, source)?;
            let claims = mercure1::verify(state, KeyRole::Subscriber, &token, &hub)
                .map_err(|error| mercure1::token_error(&hub, error))?;
            let private_topics = mercure1::private_access(&claims, &hub)
                .map_err(|error| mercure1::token_error(&hub, error))?;
            let payload_grants = match &claims.grants {
                Some(grants) => Some(
                    mercure1::PayloadGrants::compile(grants, &hub)
                        .map_err(|error| mercure1::token_error(&hub, error))?,
                ),
                None => None,
            };
            Ok(Access {
                private_topics,
                expires_at: claims.expires_at,
                payload: claims.payload,
                payload_grants,
            })
        }
        None if state.config.anonymous => Ok(Access::default()),
        None => Err(mercure1::token_error(&hub, AuthError::Missing)),
    }
}

/// The `Last-Event-ID` header, when present and not empty.
fn header_last_event_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// The last event id a subscriber resumes after. The `Last-Event-ID` header (what `EventSource`
/// sends) wins; then the query: `lastEventId`, the spelling `event-source-polyfill` appends on
/// every reconnection (its only way to send it), so it is fresher than an id written into the
/// URL; then `lastEventID` (Mercure), then the legacy `Last-Event-ID` and `last-event-id`.
fn last_event_id(headers: &HeaderMap, params: &[(String, String)]) -> Option<String> {
    header_last_event_id(headers).or_else(|| {
        [
            "lastEventId",
            "lastEventID",
            "Last-Event-ID",
            "last-event-id",
        ]
        .into_iter()
        .find_map(|name| query::first(params, name).filter(|value| !value.is_empty()))
        .map(str::to_owned)
    })
}

/// Whether the subscriber asked for the `topic:` field: `herald-topic` present and not `0` or
/// `false`.
fn wants_topic_field(params: &[(String, String)]) -> bool {
    query::first(params, TOPIC_FIELD_PARAM).is_some_and(|value| value != "0" && value != "false")
}

/// The `herald-gap` event: history no longer holds the id asked for, or trimmed updates that came
/// after it, so the client may refetch state.
fn encode_gap(out: &mut Vec<u8>, asked: &str, oldest: Option<&str>) {
    let data = serde_json::json!({ "lastEventID": asked, "oldestEventID": oldest }).to_string();
    herald_sse::encode_event(
        out,
        &herald_sse::EventFields {
            id: None,
            event_type: Some(GAP_EVENT),
            data: &data,
            retry: None,
        },
    );
}

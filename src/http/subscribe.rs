//! `GET /.well-known/mercure` and `GET /events`: open an event stream.
//!
//! Order matters: the subscription is registered with the hub first, then the last event id is
//! resolved and history is replayed by the stream, so nothing published meanwhile is lost.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};

use super::AppState;
use super::body::ResponseBody;
use super::problem::ApiError;
use super::query;
use crate::auth::{AuthError, extract_token};
use crate::hub::Identity;
use crate::store::ReplayFrom;
use crate::stream::{EventStream, Start};
use crate::topic::SelectorSet;

/// The special last event id meaning "everything history holds".
pub const EARLIEST: &str = "earliest";
/// The event type that announces a gap in history.
pub const GAP_EVENT: &str = "herald-gap";

/// Opens a subscriber's stream.
pub async fn subscribe<B>(
    state: &AppState,
    request: &Request<B>,
) -> Result<Response<ResponseBody>, ApiError> {
    let raw_query = request.uri().query();
    let params = query::pairs(raw_query.unwrap_or("").as_bytes());
    let topics: Vec<&str> = query::all(&params, "topic").collect();
    if topics.is_empty() {
        return Err(ApiError::BadRequest(
            "at least one `topic` query parameter is required".into(),
        ));
    }
    state.limits.check_subscription(&topics)?;
    let selectors = SelectorSet::parse(topics);
    state.limits.check_templates(&selectors)?;
    let access = subscriber_access(state, request.headers(), raw_query)?;
    let last_event_id = last_event_id(request.headers(), &params);

    let identity = state.hub.tracks_identities().then(|| Identity {
        urn: crate::update::new_event_id(),
        payload: access.payload,
    });
    let subscription = state
        .hub
        .subscribe_as(selectors, access.private_topics, identity)
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    if let Some(expires_at) = access.expires_at {
        subscription.expire_at(expires_at);
    }

    let mut prelude = b":\n\n".to_vec();
    let bounds = state.store.bounds().await?;
    let start = match last_event_id.as_deref() {
        None => Start::LiveAfter(bounds.last_seq),
        Some(EARLIEST) => Start::ReplayAfter(0),
        Some(id) => match state.store.resolve(id).await? {
            ReplayFrom::After(seq) => Start::ReplayAfter(seq),
            ReplayFrom::Unknown => {
                let oldest = bounds.oldest.as_ref().map(|(_, id)| id.as_str());
                encode_gap(&mut prelude, id, oldest);
                Start::ReplayAfter(0)
            }
        },
    };

    let mut response = Response::new(ResponseBody::stream(EventStream::new(
        subscription,
        Arc::clone(&state.store),
        Bytes::from(prelude),
        start,
    )));
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
    if last_event_id.is_some() {
        // As the reference hub: the newest id in history when the subscription started.
        let newest = bounds
            .newest
            .map_or_else(|| EARLIEST.to_owned(), |(_, id)| id);
        if let Ok(value) = HeaderValue::from_str(&newest) {
            headers.insert("last-event-id", value);
        }
    }
    Ok(response)
}

/// What a subscriber's token allows.
#[derive(Debug, Default)]
pub struct Access {
    /// Topics whose private updates it may receive; `None` for public updates only.
    pub private_topics: Option<SelectorSet>,
    /// When the token expires (Unix seconds): the stream is closed then.
    pub expires_at: Option<u64>,
    /// The token's `mercure.payload`.
    pub payload: Option<serde_json::Value>,
}

/// Verifies the subscriber's token, if any. Refuses a bad token, and a missing one unless
/// anonymous subscribers are allowed.
pub fn subscriber_access(
    state: &AppState,
    headers: &HeaderMap,
    raw_query: Option<&str>,
) -> Result<Access, ApiError> {
    match extract_token(headers, raw_query) {
        Some((token, _source)) => {
            let claims = state.auth.verify_subscriber(&token)?;
            Ok(Access {
                private_topics: claims.subscribe.map(SelectorSet::parse),
                expires_at: claims.expires_at,
                payload: claims.payload,
            })
        }
        None if state.config.anonymous => Ok(Access::default()),
        None => Err(AuthError::Missing.into()),
    }
}

/// The `Last-Event-ID` header wins over the `lastEventID` query parameter.
fn last_event_id(headers: &HeaderMap, params: &[(String, String)]) -> Option<String> {
    let from_header = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_owned);
    from_header.or_else(|| {
        query::first(params, "lastEventID")
            .or_else(|| query::first(params, "Last-Event-ID"))
            .or_else(|| query::first(params, "last-event-id"))
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    })
}

/// The `herald-gap` event: the id asked for is not in history, so the client may refetch state.
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

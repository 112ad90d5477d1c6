//! `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`: the Mercure subscriptions
//! API, JSON-LD, authorized by the subscriber token's `mercure.subscribe` against the request path.
//!
//! With a Mercure 1.0 access token, or on a three-segment path, it answers in the 1.0 shape:
//! `GET /.well-known/mercure/subscriptions[/{match_type}/{match}[/{subscriber}]]`, plain JSON,
//! the cursor in the `rel="mercure"` Link header's `last-event-id` attribute.

use super::body::RequestBody;
use http::{Request, Response};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::AppState;
use super::body::ResponseBody;
use super::mercure1;
use super::problem::{ApiError, BearerError};
use super::router::ok;
use crate::auth::{AuthError, KeyRole, TokenSource, extract_token_with, is_access_token};
use crate::subscriptions::{BASE, CONTEXT, subscription_json, subscription_json_v1};
use crate::topic::SelectorSet;

/// Answers the subscriptions API.
pub(crate) async fn subscriptions(
    state: &AppState,
    request: &Request<RequestBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    let path = request.uri().path();
    if !state.config.subscriptions {
        return Err(ApiError::NotFound(
            "the subscriptions API is off (start the hub with --subscriptions)".into(),
        ));
    }
    let found = extract_token_with(
        request.headers(),
        request.uri().query(),
        &state.config.cookie_name,
    );
    let three_segments = path
        .strip_prefix(BASE)
        .is_some_and(|rest| rest.split('/').filter(|s| !s.is_empty()).count() == 3);
    if three_segments
        || found
            .as_ref()
            .is_some_and(|(token, _)| is_access_token(token))
    {
        return subscriptions_v1(state, request, found).await;
    }
    let (token, _) = found.ok_or(AuthError::Missing)?;
    let claims = state.auth.verify_subscriber(&token)?;
    let allowed = claims.subscribe.map(SelectorSet::parse).unwrap_or_default();
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    if !(allowed.matches(path) || allowed.matches(&decoded)) {
        return Err(ApiError::Forbidden(
            "the token's mercure.subscribe claim does not cover this URL".into(),
        ));
    }
    let rest = path.strip_prefix(BASE).unwrap_or_default();
    let segments: Vec<String> = rest
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
        .collect();
    // The cursor names only an update this token may see.
    let newest = state.store.bounds().await?.newest.map(|(seq, _)| seq);
    let last_event_id = super::cursor::newest_if_visible(&*state.store, newest, Some(&allowed))
        .await?
        .unwrap_or_else(|| "earliest".to_owned());

    let mut found = Vec::new();
    state.hub.for_each_subscriber(|subscriber| {
        for (index, selector) in subscriber.selectors.iter().enumerate() {
            let topic_matches = segments
                .first()
                .is_none_or(|topic| topic == selector.source());
            let subscriber_matches = segments.get(1).is_none_or(|urn| {
                subscriber
                    .identity
                    .as_ref()
                    .is_some_and(|identity| *identity.urn == **urn)
            });
            if topic_matches && subscriber_matches {
                found.extend(subscription_json(
                    index,
                    selector.source(),
                    subscriber,
                    true,
                ));
            }
        }
    });

    let document = match segments.as_slice() {
        [] | [_] => json!({
            "@context": CONTEXT,
            "id": path,
            "type": "Subscriptions",
            "lastEventID": last_event_id,
            "subscriptions": found,
        }),
        [_, _] => {
            let Some(mut object) = found.into_iter().next() else {
                return Err(ApiError::NotFound("no such subscription".into()));
            };
            if let Some(map) = object.as_object_mut() {
                map.insert("@context".into(), Value::from(CONTEXT));
                map.insert("lastEventID".into(), Value::from(last_event_id));
            }
            object
        }
        _ => return Err(ApiError::NotFound(format!("no such path: {path}"))),
    };
    Ok(ok("application/ld+json", document.to_string()))
}

/// The Mercure 1.0 subscriptions API: access is a `subscribe` grant on the request path.
async fn subscriptions_v1(
    state: &AppState,
    request: &Request<RequestBody>,
    found: Option<(String, TokenSource)>,
) -> Result<Response<ResponseBody>, ApiError> {
    let path = request.uri().path();
    let hub = mercure1::hub_url(state, request.headers(), request.uri())?;
    let (token, source) = found.ok_or_else(|| mercure1::token_error(&hub, AuthError::Missing))?;
    mercure1::check_presentation(&hub, &token, source)?;
    let claims = mercure1::verify(state, KeyRole::Subscriber, &token, &hub)
        .map_err(|error| mercure1::token_error(&hub, error))?;
    let allowed = mercure1::private_access(&claims, &hub)
        .map_err(|error| mercure1::token_error(&hub, error))?
        .unwrap_or_default();
    if !allowed.matches(path) {
        return Err(mercure1::bearer(
            &hub,
            BearerError::InsufficientScope,
            "the access token does not grant `subscribe` on this URL",
        ));
    }
    let segments: Vec<String> = path
        .strip_prefix(BASE)
        .unwrap_or_default()
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
        .collect();
    if segments.len() == 1 || segments.len() > 3 {
        return Err(ApiError::NotFound(format!("no such path: {path}")));
    }
    let newest = state.store.bounds().await?.newest.map(|(seq, _)| seq);
    let last_event_id = super::cursor::newest_if_visible(&*state.store, newest, Some(&allowed))
        .await?
        .unwrap_or_else(|| "earliest".to_owned());

    let mut found = Vec::new();
    state.hub.for_each_subscriber(|subscriber| {
        for (index, selector) in subscriber.selectors.iter().enumerate() {
            let selected = segments.len() < 2
                || (segments[0] == selector.match_type() && segments[1] == selector.source());
            let this_subscriber = segments.get(2).is_none_or(|urn| {
                subscriber
                    .identity
                    .as_ref()
                    .is_some_and(|identity| *identity.urn == **urn)
            });
            if selected && this_subscriber {
                found.extend(subscription_json_v1(index, selector, subscriber, true));
            }
        }
    });
    let document = if segments.len() == 3 {
        found
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::NotFound("no such subscription".into()))?
    } else {
        json!({
            "id": path,
            "type": "subscriptions",
            "subscriptions": found,
        })
    };
    let mut response = ok("application/json", document.to_string());
    let link = format!(
        "<{hub}>; rel=\"mercure\"; last-event-id=\"{}\"; type=\"mercure\"; content-type=\"application/json\"",
        last_event_id.replace(['"', '\\'], "")
    );
    if let Ok(value) = http::HeaderValue::from_str(&link) {
        response.headers_mut().insert(http::header::LINK, value);
    }
    Ok(response)
}

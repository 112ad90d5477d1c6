//! `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`: the Mercure subscriptions
//! API, JSON-LD, authorized by the subscriber token's `mercure.subscribe` against the request path.

use http::{Request, Response};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::AppState;
use super::body::ResponseBody;
use super::problem::ApiError;
use super::router::ok;
use crate::auth::{AuthError, extract_token};
use crate::subscriptions::{BASE, CONTEXT, subscription_json};
use crate::topic::SelectorSet;

/// Answers the subscriptions API.
pub async fn subscriptions(
    state: &AppState,
    request: &Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let path = request.uri().path();
    if !state.config.subscriptions {
        return Err(ApiError::NotFound(
            "the subscriptions API is off (start the hub with --subscriptions)".into(),
        ));
    }
    let (token, _) =
        extract_token(request.headers(), request.uri().query()).ok_or(AuthError::Missing)?;
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
        for selector in subscriber.selectors.iter() {
            let topic_matches = segments
                .first()
                .is_none_or(|topic| topic == selector.source());
            let subscriber_matches = segments.get(1).is_none_or(|urn| {
                subscriber
                    .identity
                    .as_ref()
                    .is_some_and(|identity| &identity.urn == urn)
            });
            if topic_matches && subscriber_matches {
                found.extend(subscription_json(selector.source(), subscriber, true));
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

//! Mercure subscriptions: the events published when a subscriber joins or leaves
//! (`--subscriptions`), and the JSON-LD documents of the subscriptions API.
//!
//! A subscription is one (selector, subscriber) pair. Its IRI is
//! `/.well-known/mercure/subscriptions/{selector}/{subscriber}` with both parts percent-encoded;
//! its events are private updates on that IRI, stored in history like any other update.

use std::sync::Arc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::hub::{Lifecycle, Subscriber};
use crate::store::writer::Writer;
use crate::update::{Draft, Update};

/// The base path of subscription IRIs.
pub const BASE: &str = "/.well-known/mercure/subscriptions";
/// The JSON-LD context of every document.
pub const CONTEXT: &str = "https://mercure.rocks/";

/// Everything but unreserved characters is encoded in an IRI segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, percent-encoded.
pub fn encode_segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// The IRI of one subscription.
pub fn subscription_iri(selector: &str, subscriber_urn: &str) -> String {
    format!(
        "{BASE}/{}/{}",
        encode_segment(selector),
        encode_segment(subscriber_urn)
    )
}

/// The JSON-LD object of one subscription (without `@context`).
pub fn subscription_json(selector: &str, subscriber: &Subscriber, active: bool) -> Option<Value> {
    let identity = subscriber.identity.as_ref()?;
    let mut object = json!({
        "id": subscription_iri(selector, &identity.urn),
        "type": "Subscription",
        "topic": selector,
        "subscriber": identity.urn,
        "active": active,
    });
    if let (Some(payload), Some(map)) = (&identity.payload, object.as_object_mut()) {
        map.insert("payload".into(), payload.clone());
    }
    Some(object)
}

/// The hook that publishes a private update per selector when a subscriber joins or leaves.
pub fn lifecycle_publisher(writer: Writer) -> Lifecycle {
    Arc::new(move |subscriber: &Subscriber, active: bool| {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for selector in subscriber.selectors.iter() {
            let Some(mut object) = subscription_json(selector.source(), subscriber, active) else {
                continue;
            };
            let topic = object["id"].as_str().unwrap_or_default().to_owned();
            if let Some(map) = object.as_object_mut() {
                map.insert("@context".into(), Value::from(CONTEXT));
            }
            let draft = Draft {
                topics: vec![topic],
                data: object.to_string(),
                private: true,
                ..Draft::default()
            };
            let Ok(update) = Update::from_draft(draft) else {
                continue;
            };
            let writer = writer.clone();
            runtime.spawn(async move {
                if let Err(error) = writer.submit(update).await {
                    tracing::debug!(%error, "subscription event not published");
                }
            });
        }
    })
}

//! Mercure subscriptions: the events published when a subscriber joins or leaves
//! (`--subscriptions`), and the documents of the subscriptions API, in both protocols.
//!
//! A subscription is one (selector, subscriber) pair. Each join and leave is published twice,
//! so a 0.x watcher and a 1.0 watcher each see every subscription in their own format:
//! - 0.x: JSON-LD on `/.well-known/mercure/subscriptions/{selector}/{subscriber}`;
//! - 1.0: plain JSON on `/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}`,
//!   SSE type `mercure`.
//!
//! Every variable is percent-encoded once, as a whole. Both events are private updates, stored
//! in history like any other update.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::hub::{Lifecycle, Subscriber};
use crate::store::writer::Writer;
use crate::telemetry::names;
use crate::topic::Selector;
use crate::update::{Draft, Update};

/// The base path of subscription IRIs.
pub(crate) const BASE: &str = "/.well-known/mercure/subscriptions";
/// The JSON-LD context of every document.
pub(crate) const CONTEXT: &str = "https://mercure.rocks/";

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
pub(crate) fn subscription_iri(selector: &str, subscriber_urn: &str) -> String {
    format!(
        "{BASE}/{}/{}",
        encode_segment(selector),
        encode_segment(subscriber_urn)
    )
}

/// The JSON-LD object of one subscription (without `@context`): the selector at `index` of
/// `subscriber`'s selectors, written `selector`.
pub(crate) fn subscription_json(
    index: usize,
    selector: &str,
    subscriber: &Subscriber,
    active: bool,
) -> Option<Value> {
    let identity = subscriber.identity.as_ref()?;
    let mut object = json!({
        "id": subscription_iri(selector, &identity.urn),
        "type": "Subscription",
        "topic": selector,
        "subscriber": identity.urn,
        "active": active,
    });
    if let (Some(payload), Some(map)) =
        (identity.payload.of_selector(index), object.as_object_mut())
    {
        map.insert("payload".into(), payload.clone());
    }
    Some(object)
}

/// The Mercure 1.0 topic of one subscription.
pub(crate) fn subscription_topic_v1(
    match_type: &str,
    pattern: &str,
    subscriber_urn: &str,
) -> String {
    format!(
        "{BASE}/{}/{}/{}",
        encode_segment(match_type),
        encode_segment(pattern),
        encode_segment(subscriber_urn)
    )
}

/// The SSE type of Mercure 1.0 subscription events.
pub(crate) const EVENT_TYPE_V1: &str = "mercure";

/// The Mercure 1.0 document of one subscription (plain JSON): `selector`, at `index` of
/// `subscriber`'s selectors.
pub(crate) fn subscription_json_v1(
    index: usize,
    selector: &Selector,
    subscriber: &Subscriber,
    active: bool,
) -> Option<Value> {
    let identity = subscriber.identity.as_ref()?;
    let match_type = selector.match_type();
    let mut object = json!({
        "id": subscription_topic_v1(match_type, selector.source(), &identity.urn),
        "type": "subscription",
        "match_type": match_type,
        "match": selector.source(),
        "subscriber": identity.urn,
        "active": active,
    });
    if let (Some(payload), Some(map)) =
        (identity.payload.of_selector(index), object.as_object_mut())
    {
        map.insert("payload".into(), payload.clone());
    }
    Some(object)
}

/// Most subscription events waiting to be written; past it new ones are dropped and counted.
pub(crate) const MAX_PENDING_EVENTS: usize = 4096;
/// Most bytes of event data waiting to be written; past it new ones are dropped and counted.
pub(crate) const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;
/// Events handed to the writer at once (they join one group commit).
const WRITE_BATCH: usize = 256;

/// One selector of one subscriber in one format (`2 * index`: 0.x, `2 * index + 1`: 1.0):
/// what a join and its leave have in common.
type EventKey = (u64, usize);

/// A subscription event waiting to be written.
struct PendingEvent {
    key: EventKey,
    active: bool,
    topic: String,
    data: String,
    /// The SSE type (`mercure` for 1.0 events).
    event_type: Option<&'static str>,
}

impl PendingEvent {
    fn size(&self) -> usize {
        self.topic.len() + self.data.len()
    }
}

/// The bounded queue between the hub's lifecycle hook (called while a subscriber joins or
/// leaves, so it must not block or allocate much) and the one task that writes the events.
///
/// A leave whose join is still waiting cancels it, so a connect-disconnect storm costs nothing
/// to write; a leave whose join was dropped is dropped too, so no watcher sees a subscriber
/// leave that it never saw join.
#[derive(Default)]
struct Pending {
    /// The ticket of `queue[0]`; tickets count every event ever queued.
    front: u64,
    /// Events in order; a cancelled one leaves `None` behind.
    queue: std::collections::VecDeque<Option<PendingEvent>>,
    /// Joins still in `queue`, by key, with their ticket.
    joins: HashMap<EventKey, u64>,
    /// Joins that were dropped: their leaves are dropped too.
    dropped_joins: HashSet<EventKey>,
    /// Bytes of the events in `queue`.
    bytes: usize,
}

impl Pending {
    /// Queues `event` (or cancels its join). Returns false when it was dropped.
    fn offer(&mut self, event: PendingEvent) -> Offer {
        if !event.active {
            if self.dropped_joins.remove(&event.key) {
                return Offer::Dropped;
            }
            if let Some(ticket) = self.joins.remove(&event.key) {
                let index = usize::try_from(ticket - self.front).unwrap_or(usize::MAX);
                if let Some(slot) = self.queue.get_mut(index)
                    && let Some(join) = slot.take()
                {
                    self.bytes -= join.size();
                    return Offer::Coalesced;
                }
            }
        }
        if self.queue.len() >= MAX_PENDING_EVENTS || self.bytes + event.size() > MAX_PENDING_BYTES {
            if event.active {
                self.dropped_joins.insert(event.key);
            }
            return Offer::Dropped;
        }
        let ticket = self.front + self.queue.len() as u64;
        if event.active {
            self.joins.insert(event.key, ticket);
        }
        self.bytes += event.size();
        self.queue.push_back(Some(event));
        Offer::Queued
    }

    /// Takes up to `limit` events, oldest first.
    fn take(&mut self, limit: usize) -> Vec<PendingEvent> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            let ticket = self.front;
            self.front += 1;
            let Some(event) = slot else { continue };
            if event.active && self.joins.get(&event.key) == Some(&ticket) {
                self.joins.remove(&event.key);
            }
            self.bytes -= event.size();
            taken.push(event);
        }
        if self.queue.is_empty() && self.queue.capacity() > WRITE_BATCH {
            self.queue.shrink_to(WRITE_BATCH);
        }
        taken
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    Queued,
    Coalesced,
    Dropped,
}

/// The lifecycle hook that publishes a private update per selector when a subscriber joins or
/// leaves, and the one task that writes them. The hook never spawns a task and never blocks:
/// it queues into a bounded `Pending` (see there), and the task hands batches to the writer.
/// The task is for the caller to run ([`crate::shutdown::Tasks::spawn`]).
pub(crate) fn lifecycle_publisher(
    writer: Writer,
) -> (
    Lifecycle,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let pending = Arc::new(Mutex::new(Pending::default()));
    let wake = Arc::new(tokio::sync::Notify::new());
    let task = write_events(Arc::downgrade(&pending), Arc::clone(&wake), writer);
    let hook: Lifecycle = Arc::new(move |subscriber: &Subscriber, active: bool| {
        for (index, selector) in subscriber.selectors.iter().enumerate() {
            let Some(mut object) = subscription_json(index, selector.source(), subscriber, active)
            else {
                continue;
            };
            let topic = object["id"].as_str().unwrap_or_default().to_owned();
            if let Some(map) = object.as_object_mut() {
                map.insert("@context".into(), Value::from(CONTEXT));
            }
            let mut events = vec![PendingEvent {
                key: (subscriber.id, 2 * index),
                active,
                topic,
                data: object.to_string(),
                event_type: None,
            }];
            if let Some(object) = subscription_json_v1(index, selector, subscriber, active) {
                events.push(PendingEvent {
                    key: (subscriber.id, 2 * index + 1),
                    active,
                    topic: object["id"].as_str().unwrap_or_default().to_owned(),
                    data: object.to_string(),
                    event_type: Some(EVENT_TYPE_V1),
                });
            }
            for event in events {
                let offer = pending.lock().offer(event);
                match offer {
                    Offer::Queued => wake.notify_one(),
                    Offer::Coalesced => {
                        metrics::counter!(names::SUBSCRIPTION_EVENTS_COALESCED_TOTAL).increment(1);
                    }
                    Offer::Dropped => {
                        metrics::counter!(names::SUBSCRIPTION_EVENTS_DROPPED_TOTAL).increment(1);
                    }
                }
            }
        }
    });
    (hook, task)
}

/// Writes queued subscription events in batches until the hook is gone.
async fn write_events(
    pending: std::sync::Weak<Mutex<Pending>>,
    wake: Arc<tokio::sync::Notify>,
    writer: Writer,
) {
    loop {
        let batch = match pending.upgrade() {
            Some(pending) => pending.lock().take(WRITE_BATCH),
            None => return,
        };
        if batch.is_empty() {
            wake.notified().await;
            continue;
        }
        let submits = batch.into_iter().filter_map(|event| {
            let draft = Draft {
                topics: vec![event.topic],
                data: event.data,
                private: true,
                event_type: event.event_type.map(str::to_owned),
                ..Draft::default()
            };
            let update = Update::from_draft(draft).ok()?;
            let writer = writer.clone();
            Some(async move { writer.submit(update).await })
        });
        for result in futures_util::future::join_all(submits).await {
            if let Err(error) = result {
                tracing::debug!(%error, "subscription event not published");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn event(id: u64, active: bool) -> PendingEvent {
        PendingEvent {
            key: (id, 0),
            active,
            topic: format!("t{id}"),
            data: "{}".into(),
            event_type: None,
        }
    }

    #[test]
    fn a_leave_cancels_its_waiting_join() {
        let mut pending = Pending::default();
        assert_eq!(pending.offer(event(1, true)), Offer::Queued);
        assert_eq!(pending.offer(event(2, true)), Offer::Queued);
        assert_eq!(pending.offer(event(1, false)), Offer::Coalesced);
        let taken = pending.take(10);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].key, (2, 0));
        assert_eq!(pending.bytes, 0);
        // A written join's leave is written too.
        assert_eq!(pending.offer(event(2, false)), Offer::Queued);
        assert_eq!(pending.take(10).len(), 1);
    }

    #[test]
    fn past_the_bound_events_are_dropped_and_their_leaves_too() {
        let mut pending = Pending::default();
        for id in 0..MAX_PENDING_EVENTS as u64 {
            assert_eq!(pending.offer(event(id, true)), Offer::Queued);
        }
        let over = MAX_PENDING_EVENTS as u64;
        assert_eq!(pending.offer(event(over, true)), Offer::Dropped);
        assert_eq!(pending.offer(event(over, false)), Offer::Dropped);
        assert_eq!(pending.take(usize::MAX).len(), MAX_PENDING_EVENTS);
        assert!(pending.joins.is_empty() && pending.dropped_joins.is_empty());
        assert_eq!(pending.bytes, 0);
    }

    #[test]
    fn a_storm_leaves_nothing_behind() {
        let mut pending = Pending::default();
        for id in 0..100_000 {
            pending.offer(event(id, true));
            pending.offer(event(id, false));
            if id % 1000 == 0 {
                assert!(pending.take(WRITE_BATCH).is_empty());
            }
        }
        assert!(pending.take(usize::MAX).is_empty());
        assert!(pending.joins.is_empty());
        assert_eq!(pending.bytes, 0);
    }
}

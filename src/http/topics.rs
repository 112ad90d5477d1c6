//! `GET /topics` and `GET /topics/{topic}/events`: a JSON view of live topics and history.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use super::body::RequestBody;
use http::{Request, Response};
use percent_encoding::percent_decode_str;
use serde::Serialize;

use super::AppState;
use super::body::ResponseBody;
use super::cursor;
use super::problem::ApiError;
use super::query;
use super::router::ok;
use super::subscribe::subscriber_access;
use crate::hub::Subscriber;
use crate::store::ReplayFrom;
use crate::update::Update;
use crate::visibility::{may_see, may_see_private_topic};

/// Default and largest page of `/topics/{topic}/events`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Serialize, Default)]
struct TopicView {
    topic: String,
    subscribers: usize,
    events: u64,
    last_event_id: Option<String>,
}

/// Every topic the caller could subscribe to that has live subscribers (by exact selector) or
/// stored history, as the caller sees it ([`crate::visibility`]):
/// - a topic whose private updates the caller's token covers is shown whole;
/// - any other topic shows only its public updates, and only subscribers that do not receive
///   private updates on it (their interest may be private too);
/// - a topic left with nothing to show is not listed at all.
///
/// On a hub without `--anonymous` the listing needs a token, as subscribing does.
pub(crate) async fn list<B>(
    state: &AppState,
    request: &Request<B>,
) -> Result<Response<ResponseBody>, ApiError> {
    let access = subscriber_access(state, request.headers(), request.uri())?;
    let claim = access.private_topics.as_ref();
    let mut topics: BTreeMap<String, TopicView> = BTreeMap::new();
    for history in state.store.topics().await? {
        let (events, last_event_id) = if may_see_private_topic(claim, &history.topic) {
            (history.events, Some(history.last_event_id))
        } else {
            (history.public_events, history.last_public_event_id)
        };
        if events > 0 {
            topics.insert(
                history.topic.clone(),
                TopicView {
                    topic: history.topic,
                    events,
                    last_event_id,
                    ..TopicView::default()
                },
            );
        }
    }
    // A subscriber counts on a topic for this caller when the caller may see the topic's
    // private updates, or when the subscriber itself receives only public ones there.
    let counts_for = |subscriber: &Subscriber, topic: &str| {
        may_see_private_topic(claim, topic)
            || !may_see_private_topic(subscriber.private_access.as_ref(), topic)
    };
    state.hub.for_each_subscriber(|subscriber| {
        for topic in subscriber.selectors.exact_topics() {
            if !counts_for(subscriber, topic) {
                continue;
            }
            topics
                .entry(topic.to_string())
                .or_insert_with(|| TopicView {
                    topic: topic.to_string(),
                    ..TopicView::default()
                })
                .subscribers += 1;
        }
    });
    // `*` and template subscribers: counted per distinct template, off the runtime's threads,
    // on the topics already listed for this caller (a count there reveals no topic name).
    let patterns = state
        .hub
        .pattern_subscriber_counts(topics.keys().cloned().collect())
        .await;
    for (view, count) in topics.values_mut().zip(patterns.counts) {
        view.subscribers += count;
    }
    let body = serde_json::json!({
        "topics": topics.into_values().collect::<Vec<_>>(),
        "subscriptions": state.hub.subscriptions(),
        "subscriber_counts_complete": patterns.complete,
    });
    Ok(ok("application/json", body.to_string()))
}

/// The topic in `/topics/{topic}/events`, percent-decoded.
pub(crate) fn events_path(path: &str) -> Option<String> {
    let inner = path.strip_prefix("/topics/")?.strip_suffix("/events")?;
    if inner.is_empty() {
        return None;
    }
    Some(percent_decode_str(inner).decode_utf8_lossy().into_owned())
}

#[derive(Serialize)]
struct EventView<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: Option<&'a str>,
    data: &'a str,
    topics: &'a [String],
    private: bool,
    published_at: String,
}

impl<'a> EventView<'a> {
    fn new(update: &'a Update) -> Self {
        let at = UNIX_EPOCH + Duration::from_millis(update.published_at_ms);
        EventView {
            id: &update.id,
            event_type: update.event_type.as_deref(),
            data: &update.data,
            topics: &update.topics,
            private: update.private,
            published_at: humantime::format_rfc3339_millis(at).to_string(),
        }
    }
}

/// History of one topic after an id: `?after=ID&limit=N`. Private updates only with a token
/// that allows them.
pub(crate) async fn events(
    state: &AppState,
    request: &Request<RequestBody>,
    topic: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let raw_query = request.uri().query();
    let params = query::pairs(raw_query.unwrap_or("").as_bytes());
    let access = subscriber_access(state, request.headers(), request.uri())?;
    let limit = match query::first(&params, "limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}"))
            })?,
    };
    let after = match query::first(&params, "after").filter(|id| !id.is_empty()) {
        None => 0,
        // An id the caller may not see is answered exactly like one history never had.
        Some(id) => {
            match cursor::resolve_visible(
                &*state.store,
                id,
                cursor::Occurrence::Newest,
                access.private_topics.as_ref(),
            )
            .await?
            {
                ReplayFrom::After(seq) => seq,
                ReplayFrom::Unknown => {
                    return Err(ApiError::NotFound(format!(
                        "event {id} is not in history (never published, or trimmed by retention)"
                    )));
                }
            }
        }
    };
    let mut page = Vec::new();
    let mut cursor = after;
    // Private updates the caller may not see are skipped, so read until the page is full.
    loop {
        let batch = state.store.topic_events(topic, cursor, limit).await?;
        let exhausted = batch.len() < limit;
        for update in batch {
            cursor = update.seq;
            let visible = may_see(access.private_topics.as_ref(), &update);
            if visible && page.len() < limit {
                page.push(update);
            }
        }
        if exhausted || page.len() >= limit {
            break;
        }
    }
    let views: Vec<EventView<'_>> = page.iter().map(|update| EventView::new(update)).collect();
    let body = serde_json::json!({
        "topic": topic,
        "events": views,
        "last_event_id": page.last().map(|update| update.id.as_str()),
    });
    Ok(ok("application/json", body.to_string()))
}

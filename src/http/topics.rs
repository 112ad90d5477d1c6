//! `GET /topics` and `GET /topics/{topic}/events`: a JSON view of live topics and history.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use http::{Request, Response};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde::Serialize;

use super::AppState;
use super::body::ResponseBody;
use super::problem::ApiError;
use super::query;
use super::router::ok;
use super::subscribe::subscriber_access;
use crate::store::ReplayFrom;
use crate::update::Update;

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

/// Every topic with live subscribers (by exact selector) or stored history.
pub async fn list(state: &AppState) -> Result<Response<ResponseBody>, ApiError> {
    let mut topics: BTreeMap<String, TopicView> = BTreeMap::new();
    for history in state.store.topics().await? {
        topics.insert(
            history.topic.clone(),
            TopicView {
                topic: history.topic,
                events: history.events,
                last_event_id: Some(history.last_event_id),
                ..TopicView::default()
            },
        );
    }
    state.hub.for_each_subscriber(|subscriber| {
        for topic in subscriber.selectors.exact_topics() {
            topics
                .entry(topic.to_string())
                .or_insert_with(|| TopicView {
                    topic: topic.to_string(),
                    ..TopicView::default()
                })
                .subscribers += 1;
        }
    });
    // `*` and template subscribers: counted per distinct template, off the runtime's threads.
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
pub fn events_path(path: &str) -> Option<String> {
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
pub async fn events(
    state: &AppState,
    request: &Request<Incoming>,
    topic: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let raw_query = request.uri().query();
    let params = query::pairs(raw_query.unwrap_or("").as_bytes());
    let access = subscriber_access(state, request.headers(), raw_query)?;
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
        Some(id) => match state.store.resolve(id).await? {
            ReplayFrom::After(seq) => seq,
            ReplayFrom::Unknown => {
                return Err(ApiError::NotFound(format!(
                    "event {id} is not in history (never published, or trimmed by retention)"
                )));
            }
        },
    };
    let mut page = Vec::new();
    let mut cursor = after;
    // Private updates the caller may not see are skipped, so read until the page is full.
    loop {
        let batch = state.store.topic_events(topic, cursor, limit).await?;
        let exhausted = batch.len() < limit;
        for update in batch {
            cursor = update.seq;
            let visible = !update.private
                || access
                    .private_topics
                    .as_ref()
                    .is_some_and(|claim| claim.matches_any(&update.topics));
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

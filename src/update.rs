//! The [`Update`] value and its single encoding into an SSE frame.
//!
//! An update is encoded exactly once, when it is built; every subscriber then receives a clone of
//! the same [`Bytes`] (a reference count, never a copy). This module owns validation of the
//! fields that end up on the wire (`id`, `type`, `retry`) so nothing can inject a field into the
//! event stream. It knows nothing of HTTP, storage or subscribers.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_sse::{EventFields, encode_event, encode_field_lines, encoded_len, is_valid_field};

/// One published update, as stored and as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Position in the hub's global log; 0 until the store assigns it.
    pub seq: u64,
    /// The event id (`urn:uuid:` UUIDv7 unless the publisher chose one).
    pub id: String,
    /// Topics: the first is the canonical one, the others are alternates.
    pub topics: Vec<String>,
    /// The event's data, exactly as published.
    pub data: String,
    /// The SSE `event:` type, if any.
    pub event_type: Option<String>,
    /// The SSE `retry:` value in milliseconds, if any.
    pub retry: Option<u64>,
    /// Private updates reach only subscribers whose token allows one of the topics.
    pub private: bool,
    /// When the hub accepted the update, in milliseconds since the Unix epoch.
    pub published_at_ms: u64,
    /// The complete SSE frame, encoded once.
    pub frame: Bytes,
    /// The frame with a leading `topic:` field line, for subscribers that asked for it
    /// (`herald-topic=1`): encoded on first use, then shared by all of them.
    pub topic_frame: TopicFrame,
}

/// A lazily encoded variant of [`Update::frame`]. A cache of derived bytes: it never makes two
/// updates unequal.
#[derive(Debug, Clone, Default)]
pub struct TopicFrame(OnceLock<Bytes>);

impl PartialEq for TopicFrame {
    fn eq(&self, _other: &TopicFrame) -> bool {
        true
    }
}

impl Eq for TopicFrame {}

/// What a publisher asked for, before validation.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub topics: Vec<String>,
    pub data: String,
    pub id: Option<String>,
    pub event_type: Option<String>,
    pub retry: Option<u64>,
    pub private: bool,
}

/// Why a draft cannot become an update. Each maps to 400 at the HTTP edge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidUpdate {
    #[error("at least one topic is required")]
    NoTopic,
    #[error("topics must not be empty strings")]
    EmptyTopic,
    #[error("the id must not be empty or contain CR, LF or NUL")]
    BadId,
    #[error("the type must not contain CR, LF or NUL")]
    BadType,
}

impl Update {
    /// An update of `topic` with id `id` and data `d`, for tests.
    #[cfg(test)]
    pub fn for_test(topic: &str, id: &str) -> Update {
        Update::from_draft(Draft {
            topics: vec![topic.into()],
            data: "d".into(),
            id: Some(id.into()),
            ..Draft::default()
        })
        .unwrap_or_else(|error| panic!("a test update is valid: {error}"))
    }

    /// Validates a draft and encodes its frame.
    pub fn from_draft(draft: Draft) -> Result<Update, InvalidUpdate> {
        if draft.topics.is_empty() {
            return Err(InvalidUpdate::NoTopic);
        }
        if draft.topics.iter().any(String::is_empty) {
            return Err(InvalidUpdate::EmptyTopic);
        }
        let mut id = match draft.id {
            Some(id) if id.is_empty() || !is_valid_field(&id) => return Err(InvalidUpdate::BadId),
            Some(id) => id,
            None => new_event_id(),
        };
        if draft
            .event_type
            .as_deref()
            .is_some_and(|kind| !is_valid_field(kind))
        {
            return Err(InvalidUpdate::BadType);
        }
        let mut event_type = draft.event_type.filter(|kind| !kind.is_empty());
        let frame = encode_frame(&id, event_type.as_deref(), &draft.data, draft.retry);
        // An update may be kept in history for long: it keeps no spare capacity of the
        // buffers it was decoded into (a topic list grown by pushes holds 4 slots for 1 topic).
        let mut topics = draft.topics;
        let mut data = draft.data;
        id.shrink_to_fit();
        topics.shrink_to_fit();
        topics.iter_mut().for_each(String::shrink_to_fit);
        data.shrink_to_fit();
        if let Some(kind) = event_type.as_mut() {
            kind.shrink_to_fit();
        }
        Ok(Update {
            seq: 0,
            id,
            topics,
            data,
            event_type,
            retry: draft.retry,
            private: draft.private,
            published_at_ms: now_ms(),
            frame,
            topic_frame: TopicFrame::default(),
        })
    }

    /// The canonical topic (the first one).
    pub(crate) fn topic(&self) -> &str {
        self.topics.first().map(String::as_str).unwrap_or("")
    }

    /// The frame with the canonical topic as an extra `topic:` field line first (standard SSE
    /// parsers ignore unknown fields). Encoded once per update, then a clone of the same bytes.
    pub(crate) fn frame_with_topic(&self) -> Bytes {
        self.topic_frame
            .0
            .get_or_init(|| {
                // One `topic:` line per line of the topic (a line break cannot be written inside
                // a field), like `data:`; a client joins them with LF.
                let mut out = Vec::with_capacity(self.frame.len() + self.topic().len() + 8);
                encode_field_lines(&mut out, "topic", self.topic());
                out.extend_from_slice(&self.frame);
                Bytes::from(out)
            })
            .clone()
    }
}

/// Encodes one event into a frame of exactly the right size.
pub(crate) fn encode_frame(
    id: &str,
    event_type: Option<&str>,
    data: &str,
    retry: Option<u64>,
) -> Bytes {
    let fields = EventFields {
        id: Some(id),
        event_type,
        data,
        retry,
    };
    let mut out = Vec::with_capacity(encoded_len(&fields));
    encode_event(&mut out, &fields);
    Bytes::from(out)
}

/// The prefix of the ids the hub gives.
const ID_PREFIX: &str = "urn:uuid:";

/// A fresh `urn:uuid:` id: UUIDv7, so ids sort by time. Written straight into a string of its
/// exact length (no formatting machinery: one of these is made per publish).
pub(crate) fn new_event_id() -> String {
    let mut buffer = uuid::Uuid::encode_buffer();
    let uuid = uuid::Uuid::now_v7();
    let text = uuid.hyphenated().encode_lower(&mut buffer);
    let mut id = String::with_capacity(ID_PREFIX.len() + text.len());
    id.push_str(ID_PREFIX);
    id.push_str(text);
    id
}

/// Milliseconds since the Unix epoch.
#[cfg(not(test))]
pub fn now_ms() -> u64 {
    wall_clock_ms()
}

/// Milliseconds since the Unix epoch, as far as tokio's clock has moved: in the library's unit
/// tests, time that a test on paused time (`start_paused`) advances ages updates and tokens
/// too, so retention and expiry tests need not wait for the wall clock. Without a paused
/// runtime this is the wall clock.
#[cfg(test)]
pub fn now_ms() -> u64 {
    use std::time::{Duration, Instant};
    // A minute back, so a paused runtime built just before the first call does not start
    // behind the anchor.
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    let &(anchor, anchor_ms) = ANCHOR.get_or_init(|| {
        let now = Instant::now();
        let back = Duration::from_secs(60);
        match now.checked_sub(back) {
            Some(earlier) => (earlier, wall_clock_ms().saturating_sub(60_000)),
            None => (now, wall_clock_ms()),
        }
    });
    let elapsed = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(anchor);
    anchor_ms.saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn in_unit_tests_the_clock_follows_paused_tokio_time() {
        let before = now_ms();
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        assert_eq!(now_ms() - before, 3_600_000);
        assert!(now_ms().abs_diff(wall_clock_ms()) > 3_000_000);
    }

    #[test]
    fn without_a_paused_runtime_the_clock_is_the_wall_clock() {
        assert!(now_ms().abs_diff(wall_clock_ms()) < 1000);
    }

    fn draft(topic: &str, data: &str) -> Draft {
        Draft {
            topics: vec![topic.to_owned()],
            data: data.to_owned(),
            ..Draft::default()
        }
    }

    #[test]
    fn frame_is_encoded_once_with_every_field() {
        let update = Update::from_draft(Draft {
            id: Some("a1".into()),
            event_type: Some("note".into()),
            retry: Some(500),
            ..draft("t", "one\ntwo")
        });
        let update = update.unwrap_or_else(|error| panic!("valid draft refused: {error}"));
        assert_eq!(
            &update.frame[..],
            b"id: a1\nevent: note\nretry: 500\ndata: one\ndata: two\n\n"
        );
    }

    #[test]
    fn the_topic_frame_adds_one_field_line_and_is_encoded_once() {
        let update = Update::from_draft(Draft {
            id: Some("a1".into()),
            ..draft("https://example.com/books/1", "x")
        })
        .unwrap_or_else(|error| panic!("{error}"));
        let first = update.frame_with_topic();
        assert_eq!(
            &first[..],
            b"topic: https://example.com/books/1\nid: a1\ndata: x\n\n"
        );
        // The same bytes again, not a second encoding.
        assert_eq!(first.as_ptr(), update.frame_with_topic().as_ptr());
        assert_eq!(&update.frame[..], b"id: a1\ndata: x\n\n");
        let broken =
            Update::from_draft(draft("a\r\nb\nc\rd", "x")).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            broken
                .frame_with_topic()
                .starts_with(b"topic: a\ntopic: b\ntopic: c\ntopic: d\nid: ")
        );
    }

    #[test]
    fn a_built_update_keeps_no_spare_capacity() {
        let mut topics = Vec::with_capacity(8);
        topics.push(String::with_capacity(64) + "t");
        let update = Update::from_draft(Draft {
            topics,
            data: String::with_capacity(1024) + "data",
            id: Some(String::with_capacity(256) + "a1"),
            event_type: Some(String::with_capacity(64) + "note"),
            ..Draft::default()
        })
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(update.topics.capacity(), 1);
        assert_eq!(update.topics[0].capacity(), 1);
        assert_eq!(update.data.capacity(), 4);
        assert_eq!(update.id.capacity(), 2);
        assert_eq!(update.event_type.as_ref().map(String::capacity), Some(4));
        assert_eq!(&update.frame[..], b"id: a1\nevent: note\ndata: data\n\n");
        let generated = Update::from_draft(draft("t", "x")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(generated.id.capacity(), generated.id.len());
    }

    #[test]
    fn generated_ids_are_uuid_v7_urns() {
        let update = Update::from_draft(draft("t", "x")).unwrap_or_else(|e| panic!("{e}"));
        assert!(update.id.starts_with("urn:uuid:"));
        let uuid = uuid::Uuid::parse_str(&update.id["urn:uuid:".len()..]);
        assert_eq!(uuid.map(|u| u.get_version_num()).ok(), Some(7));
        // The canonical text: lower-case, hyphenated, nothing more; and ids made one after the
        // other sort in the order they were made, within a millisecond too.
        let ids: Vec<String> = (0..1000).map(|_| new_event_id()).collect();
        for id in &ids {
            let uuid =
                uuid::Uuid::parse_str(&id["urn:uuid:".len()..]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(*id, format!("urn:uuid:{uuid}"));
        }
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn injection_through_id_or_type_is_refused() {
        for bad in ["a\nb", "a\rb", "a\0b", ""] {
            let result = Update::from_draft(Draft {
                id: Some(bad.into()),
                ..draft("t", "x")
            });
            assert_eq!(result.err(), Some(InvalidUpdate::BadId), "{bad:?}");
        }
        let result = Update::from_draft(Draft {
            event_type: Some("x\ndata: y".into()),
            ..draft("t", "x")
        });
        assert_eq!(result.err(), Some(InvalidUpdate::BadType));
    }

    #[test]
    fn topics_are_required() {
        assert_eq!(
            Update::from_draft(Draft::default()).err(),
            Some(InvalidUpdate::NoTopic)
        );
        assert_eq!(
            Update::from_draft(draft("", "x")).err(),
            Some(InvalidUpdate::EmptyTopic)
        );
    }
}

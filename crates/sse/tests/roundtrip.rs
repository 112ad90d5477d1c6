//! Property test: whatever the encoder writes, the parser reads back exactly
//! (with data line breaks normalised to LF), however the bytes are chunked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use herald_sse::{
    Event, EventFields, Parser, encode_comment, encode_event, encode_retry, encoded_len,
    is_valid_field,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Item {
    Event {
        id: Option<String>,
        event_type: Option<String>,
        data: String,
        retry: Option<u64>,
    },
    Comment(String),
    Retry(u64),
}

/// Text rich in line breaks, spaces, colons and multi-byte characters.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n\r".to_owned()),
        "[ :a-z]{0,4}",
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        prop::collection::vec(piece, 0..10).prop_map(|p| p.concat()),
        any::<String>(),
    ]
}

/// A value that [`is_valid_field`] accepts.
fn field() -> impl Strategy<Value = String> {
    text().prop_map(|s| s.replace(['\r', '\n', '\0'], ""))
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        6 => (
            prop::option::of(field()),
            prop::option::of(field()),
            text(),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(id, event_type, data, retry)| Item::Event { id, event_type, data, retry }),
        1 => text().prop_map(Item::Comment),
        1 => any::<u64>().prop_map(Item::Retry),
    ]
}

/// Encodes `items` and returns the bytes, the events a spec-following client
/// must see, its final last event id and its final reconnection time.
fn encode_and_expect(items: &[Item]) -> (Vec<u8>, Vec<Event>, String, Option<u64>) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    let mut last_id = String::new();
    let mut reconnect = None;
    let mut pending_retry = None;
    for item in items {
        match item {
            Item::Event {
                id,
                event_type,
                data,
                retry,
            } => {
                let fields = EventFields {
                    id: id.as_deref(),
                    event_type: event_type.as_deref(),
                    data,
                    retry: *retry,
                };
                assert!(fields.id.is_none_or(is_valid_field));
                let before = wire.len();
                encode_event(&mut wire, &fields);
                assert_eq!(wire.len() - before, encoded_len(&fields));
                if let Some(id) = id {
                    last_id.clone_from(id);
                }
                if retry.is_some() {
                    pending_retry = *retry;
                    reconnect = *retry;
                }
                expected.push(Event {
                    event: event_type
                        .clone()
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| "message".to_owned()),
                    data: data.replace("\r\n", "\n").replace('\r', "\n"),
                    id: last_id.clone(),
                    retry: pending_retry.take(),
                });
            }
            Item::Comment(text) => encode_comment(&mut wire, text),
            Item::Retry(millis) => {
                encode_retry(&mut wire, *millis);
                pending_retry = Some(*millis);
                reconnect = Some(*millis);
            }
        }
    }
    (wire, expected, last_id, reconnect)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_parse_is_exact(
        items in prop::collection::vec(item(), 0..8),
        cuts in common::cuts(6),
    ) {
        let (wire, expected, last_id, reconnect) = encode_and_expect(&items);
        // Every blank line ends an event: comments and `retry` hints add none, so clients that
        // dispatch on any blank line (fetch-event-source) never see an empty message.
        let blank_lines = wire.windows(2).filter(|pair| pair == b"\n\n").count();
        prop_assert_eq!(blank_lines, expected.len());
        prop_assert!(!wire.starts_with(b"\n"));
        let mut parser = Parser::new();
        let mut got = Vec::new();
        for chunk in common::split(&wire, &cuts) {
            parser.feed(chunk);
            got.extend(std::iter::from_fn(|| parser.next_event()));
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(parser.last_event_id(), last_id.as_str());
        prop_assert_eq!(parser.retry(), reconnect);
    }

    /// Invalid id/event values never break the frame: CR, LF and NUL are
    /// stripped and exactly one event comes out.
    #[test]
    fn invalid_fields_are_stripped(
        id in text(),
        event_type in text(),
        data in text(),
        cuts in common::cuts(4),
    ) {
        let fields = EventFields { id: Some(&id), event_type: Some(&event_type), data: &data, retry: None };
        let mut wire = Vec::new();
        encode_event(&mut wire, &fields);
        prop_assert_eq!(wire.len(), encoded_len(&fields));
        let mut parser = Parser::new();
        for chunk in common::split(&wire, &cuts) {
            parser.feed(chunk);
        }
        let event = parser.next_event().unwrap();
        prop_assert_eq!(parser.next_event(), None);
        let strip = |s: &str| s.replace(['\r', '\n', '\0'], "");
        let event_type = strip(&event_type);
        prop_assert_eq!(event.id, strip(&id));
        prop_assert_eq!(event.event, if event_type.is_empty() { "message".to_owned() } else { event_type });
        prop_assert_eq!(event.data, data.replace("\r\n", "\n").replace('\r', "\n"));
    }
}

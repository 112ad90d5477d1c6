//! Fuzz target for the SSE parser: arbitrary bytes, split in two chunks at a
//! position taken from the first byte, must never panic, and re-encoding the
//! parsed events then parsing again must give the same events back.
#![no_main]

use herald_sse::{Event, EventFields, Parser, encode_event};
use libfuzzer_sys::fuzz_target;

fn parse(chunks: &[&[u8]]) -> Vec<Event> {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        parser.feed(chunk);
        events.extend(std::iter::from_fn(|| parser.next_event()));
    }
    events
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, rest)) = input.split_first() else {
        return;
    };
    let cut = usize::from(first) % (rest.len() + 1);
    let (a, b) = rest.split_at(cut);
    let events = parse(&[a, b]);
    assert_eq!(events, parse(&[rest]), "chunking changed the result");

    let mut wire = Vec::new();
    for event in &events {
        encode_event(
            &mut wire,
            &EventFields {
                id: Some(&event.id),
                event_type: Some(&event.event),
                data: &event.data,
                retry: event.retry,
            },
        );
    }
    // An event type may legally contain NUL, which the encoder strips (it
    // only writes values `is_valid_field` accepts). Ids never contain NUL.
    let expected: Vec<Event> = events
        .into_iter()
        .map(|mut event| {
            event.event.retain(|c| c != '\0');
            if event.event.is_empty() {
                event.event = "message".to_owned();
            }
            event
        })
        .collect();
    assert_eq!(parse(&[&wire]), expected, "re-encoding changed the events");
});

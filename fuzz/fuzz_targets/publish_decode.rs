//! Fuzz target for publish decoding: arbitrary bytes as a form body and as a JSON body must never
//! panic, and every update that decodes and validates must encode to exactly one event whose id,
//! type and data read back unchanged (no field injection through id, type or data).
#![no_main]

use herald::fuzzing::decode_publish;
use herald::fuzzing::Update;
use herald_sse::Parser;
use libfuzzer_sys::fuzz_target;

/// What an SSE parser gives back for `data` after line splitting: CRLF and CR read as LF.
fn normalized(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

fn check(content_type: Option<&str>, body: &[u8]) {
    let Ok(draft) = decode_publish(content_type, body) else {
        return;
    };
    let Ok(update) = Update::from_draft(draft) else {
        return;
    };
    let mut parser = Parser::new();
    parser.feed(&update.frame);
    let event = parser.next_event().expect("a frame is one complete event");
    assert!(parser.next_event().is_none(), "a frame is exactly one event");
    assert_eq!(event.id, update.id, "id changed on the wire");
    assert_eq!(
        event.event,
        update.event_type.as_deref().unwrap_or("message"),
        "type changed on the wire"
    );
    assert_eq!(event.data, normalized(&update.data), "data changed on the wire");
    assert_eq!(event.retry, update.retry, "retry changed on the wire");
}

fuzz_target!(|input: &[u8]| {
    check(None, input);
    check(Some("application/json"), input);
});

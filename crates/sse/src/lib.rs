//! Server-Sent Events wire format (`text/event-stream`): an encoder and an
//! incremental parser following the WHATWG HTML "Server-sent events" section
//! (event stream interpretation). No I/O: callers own the sockets and buffers.
//!
//! ```
//! use herald_sse::{encode_event, EventFields, Parser};
//!
//! let mut wire = Vec::new();
//! encode_event(
//!     &mut wire,
//!     &EventFields { id: Some("7"), event_type: Some("update"), data: "a\nb", retry: None },
//! );
//! assert_eq!(wire, b"id: 7\nevent: update\ndata: a\ndata: b\n\n");
//!
//! let mut parser = Parser::new();
//! parser.feed(&wire);
//! let event = parser.next_event().unwrap();
//! assert_eq!((event.event.as_str(), event.data.as_str(), event.id.as_str()), ("update", "a\nb", "7"));
//! ```
#![forbid(unsafe_code)]

mod encode;
mod parse;

pub use encode::{
    EMPTY_COMMENT, EventFields, encode_comment, encode_event, encode_field_lines, encode_retry,
    encoded_len, is_valid_field,
};
pub use parse::{DEFAULT_MAX_LINE, Event, Parser};

/// Compiles and runs the README's example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

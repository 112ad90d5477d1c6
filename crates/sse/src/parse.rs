//! Incremental `text/event-stream` parser implementing the WHATWG HTML
//! "Server-sent events" event stream interpretation. Owns line splitting
//! across arbitrary chunk boundaries, UTF-8 decoding, field handling and
//! event dispatch; it never does I/O.

use std::collections::VecDeque;
use std::mem;

/// Default for [`Parser::with_max_line`]: 16 MiB.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type: the last `event:` value, or `"message"` when there was
    /// none (or it was empty).
    pub event: String,
    /// The `data:` lines joined with LF.
    pub data: String,
    /// The last event id at dispatch time. Per spec it persists across
    /// events until the stream sets another one (possibly empty).
    pub id: String,
    /// The last valid `retry:` value seen since the previous dispatched event,
    /// if any (including ones in blocks that dispatched nothing, like
    /// `retry: 500` followed by a blank line). [`Parser::retry`] has the
    /// current reconnection time regardless.
    pub retry: Option<u64>,
}

/// Incremental parser: [`feed`](Parser::feed) bytes as they arrive, then
/// drain [`next_event`](Parser::next_event) until it returns `None`.
///
/// Lines end in CRLF, LF or CR. A line is processed as soon as its end is
/// seen, so an event terminated by a CR at the very end of a chunk is ready
/// at once; if the next chunk starts with LF, that LF is recognised as the
/// rest of the CRLF pair and not counted as a second (blank) line.
///
/// Memory is bounded per line: a line longer than the maximum (see
/// [`with_max_line`](Parser::with_max_line)) is discarded in full, up to and
/// including its line ending, and parsing resumes with the next line. The
/// queue of dispatched events is not bounded, so drain it after each feed.
#[derive(Debug)]
pub struct Parser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous line ended in CR: a LF right after it belongs to it.
    after_cr: bool,
    /// The current line exceeded `max_line`; its bytes are being dropped.
    discarding: bool,
    max_line: usize,
    /// How many bytes of a leading BOM have been matched, while undecided.
    bom_matched: usize,
    /// Whether the stream start (and its optional BOM) is behind us.
    started: bool,
    data: String,
    event_type: String,
    /// The spec's "last event ID buffer".
    id_buffer: String,
    /// The spec's "last event ID string": the buffer as of the last blank line.
    last_event_id: String,
    retry: Option<u64>,
    retry_since_dispatch: Option<u64>,
    ready: VecDeque<Event>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }
}

impl Parser {
    /// A parser at the start of a stream, with a [`DEFAULT_MAX_LINE`] limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser that discards any line longer than `max_line` bytes
    /// (excluding its line ending) instead of buffering it.
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            discarding: false,
            max_line,
            bom_matched: 0,
            started: false,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry: None,
            retry_since_dispatch: None,
            ready: VecDeque::new(),
        }
    }

    /// Feeds the next chunk of the stream. Chunks may be cut anywhere,
    /// including inside a CRLF pair or a UTF-8 sequence.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut chunk = chunk;
        if !self.started {
            // Skip one leading UTF-8 BOM, which may itself arrive in pieces.
            while let Some((&byte, rest)) = chunk.split_first() {
                if BOM.get(self.bom_matched) == Some(&byte) {
                    self.bom_matched += 1;
                    chunk = rest;
                    if self.bom_matched == BOM.len() {
                        self.started = true;
                        break;
                    }
                } else {
                    // Not a BOM after all: the bytes matched so far are content.
                    self.started = true;
                    let matched = BOM.get(..self.bom_matched).unwrap_or_default();
                    self.scan(matched);
                    break;
                }
            }
        }
        if self.started {
            self.scan(chunk);
        }
    }

    /// The next dispatched event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Option<Event> {
        self.ready.pop_front()
    }

    /// The reconnection time (milliseconds) last set by a `retry:` field.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The last event id: what a reconnecting client sends as
    /// `Last-Event-ID`. Per spec this is the id buffer as of the last blank
    /// line, so an `id:` in an event cut off by a disconnect does not count.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    fn scan(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if mem::take(&mut self.after_cr)
                && let Some(after_lf) = rest.strip_prefix(b"\n")
            {
                rest = after_lf;
                continue;
            }
            match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                Some(pos) => {
                    let (content, ending) = rest.split_at(pos);
                    self.push_line_bytes(content);
                    self.end_line();
                    self.after_cr = ending.first() == Some(&b'\r');
                    rest = ending.get(1..).unwrap_or_default();
                }
                None => {
                    self.push_line_bytes(rest);
                    rest = &[];
                }
            }
        }
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) {
        if self.discarding {
            return;
        }
        if self.line.len().saturating_add(bytes.len()) > self.max_line {
            self.discarding = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self) {
        if mem::take(&mut self.discarding) {
            return;
        }
        let line = mem::take(&mut self.line);
        self.process_line(&String::from_utf8_lossy(&line));
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    fn process_line(&mut self, line: &str) {
        if line.is_empty() {
            self.dispatch();
        } else if line.starts_with(':') {
            // Comment.
        } else {
            let (name, value) = match line.split_once(':') {
                Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            self.process_field(name, value);
        }
    }

    fn process_field(&mut self, name: &str, value: &str) {
        match name {
            "event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => {
                self.id_buffer.clear();
                self.id_buffer.push_str(value);
            }
            // Only ASCII digits; a value too large for u64 is ignored too.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(millis) = value.parse::<u64>() {
                    self.retry = Some(millis);
                    self.retry_since_dispatch = Some(millis);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        self.last_event_id.clone_from(&self.id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let event = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            mem::take(&mut self.event_type)
        };
        self.ready.push_back(Event {
            event,
            data,
            id: self.last_event_id.clone(),
            retry: self.retry_since_dispatch.take(),
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str, id: &str) -> Event {
        Event {
            event: event.to_owned(),
            data: data.to_owned(),
            id: id.to_owned(),
            retry: None,
        }
    }

    fn msg(data: &str) -> Event {
        ev("message", data, "")
    }

    fn drain(parser: &mut Parser) -> Vec<Event> {
        std::iter::from_fn(|| parser.next_event()).collect()
    }

    /// Parses `input` in one chunk, then again cut at every single position
    /// and byte by byte, and checks all three agree.
    fn parse(input: &[u8]) -> Vec<Event> {
        let mut whole = Parser::new();
        whole.feed(input);
        let expected = drain(&mut whole);
        for cut in 0..=input.len() {
            let mut parser = Parser::new();
            parser.feed(&input[..cut]);
            let mut got = drain(&mut parser);
            parser.feed(&input[cut..]);
            got.extend(drain(&mut parser));
            assert_eq!(got, expected, "cut at {cut} of {input:?}");
        }
        let mut parser = Parser::new();
        let mut got = Vec::new();
        for byte in input {
            parser.feed(std::slice::from_ref(byte));
            got.extend(drain(&mut parser));
        }
        assert_eq!(got, expected, "byte by byte: {input:?}");
        expected
    }

    #[test]
    fn simple_event() {
        assert_eq!(parse(b"data: hello\n\n"), [msg("hello")]);
    }

    #[test]
    fn need_more_bytes_is_none() {
        let mut parser = Parser::new();
        assert_eq!(parser.next_event(), None);
        parser.feed(b"data: x\n");
        assert_eq!(parser.next_event(), None);
        parser.feed(b"\n");
        assert_eq!(parser.next_event(), Some(msg("x")));
        assert_eq!(parser.next_event(), None);
    }

    #[test]
    fn no_trailing_blank_line_no_dispatch() {
        assert_eq!(parse(b"data: x"), []);
        assert_eq!(parse(b"data: x\n"), []);
        assert_eq!(parse(b"data: x\n\ndata: y\n"), [msg("x")]);
    }

    #[test]
    fn three_line_endings() {
        let expected = [msg("a\nb"), msg("c")];
        assert_eq!(parse(b"data: a\ndata: b\n\ndata: c\n\n"), expected);
        assert_eq!(
            parse(b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n"),
            expected
        );
        assert_eq!(parse(b"data: a\rdata: b\r\rdata: c\r\r"), expected);
        assert_eq!(parse(b"data: a\r\ndata: b\r\rdata: c\n\r\n"), expected);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_ending() {
        let mut parser = Parser::new();
        parser.feed(b"data: a\r");
        parser.feed(b"\ndata: b\r");
        parser.feed(b"\n\r");
        // The CR ending the blank line dispatches at once.
        assert_eq!(parser.next_event(), Some(msg("a\nb")));
        parser.feed(b"\n");
        parser.feed(b"data: c\r");
        parser.feed(b"\r");
        assert_eq!(drain(&mut parser), [msg("c")]);
    }

    #[test]
    fn lf_after_cr_only_skipped_immediately() {
        // CR, then an empty chunk, then LF: still one CRLF pair.
        let mut parser = Parser::new();
        parser.feed(b"data: a\r");
        parser.feed(b"");
        parser.feed(b"\n");
        assert_eq!(parser.next_event(), None);
        parser.feed(b"\n");
        assert_eq!(parser.next_event(), Some(msg("a")));
        // CR, x, LF: the LF is a separate line ending.
        assert_eq!(parse(b"data: a\rdata: b\n\n"), [msg("a\nb")]);
    }

    #[test]
    fn bom_skipped_once_at_start() {
        assert_eq!(parse(b"\xEF\xBB\xBFdata: x\n\n"), [msg("x")]);
        // A second BOM is part of the field name, so the field is unknown.
        assert_eq!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"), []);
        // A BOM later in the stream is not skipped.
        assert_eq!(parse(b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"), [msg("x")]);
    }

    #[test]
    fn partial_bom_is_content() {
        // EF BB then a non-BOM byte: the bytes are content (invalid UTF-8,
        // replaced), making an unknown field name.
        assert_eq!(parse(b"\xEF\xBBdata: x\n\n"), []);
        assert_eq!(parse(b"\xEF\xBB\n\ndata: x\n\n"), [msg("x")]);
        assert_eq!(parse(b"\xEF\xBBX\ndata: y\n\n"), [msg("y")]);
        assert_eq!(parse(b"\n\xEF\xBB\xBFdata: x\n\n"), []);
    }

    #[test]
    fn comments_ignored() {
        assert_eq!(
            parse(b": hello\ndata: a\n:data: b\n:\n\n: only comments\n\n"),
            [msg("a")]
        );
    }

    #[test]
    fn one_leading_space_stripped() {
        assert_eq!(
            parse(b"data:a\n\ndata: a\n\ndata:  a\n\ndata:\ta\n\n"),
            [msg("a"), msg("a"), msg(" a"), msg("\ta")]
        );
        assert_eq!(parse(b"data: a: b:c\n\n"), [msg("a: b:c")]);
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        assert_eq!(parse(b"data\n\n"), [msg("")]);
        assert_eq!(parse(b"data\ndata\n\n"), [msg("\n")]);
        assert_eq!(
            parse(b"id: 1\ndata: x\n\nid\ndata: y\n\n"),
            [ev("message", "x", "1"), ev("message", "y", "")]
        );
    }

    #[test]
    fn empty_data_buffer_dispatches_nothing_and_resets_type() {
        assert_eq!(parse(b"event: a\n\ndata: x\n\n"), [msg("x")]);
        assert_eq!(parse(b"data:\n\n"), [msg("")]);
        assert_eq!(parse(b"\n\n\n"), []);
    }

    #[test]
    fn multi_line_data_and_trailing_lf() {
        assert_eq!(parse(b"data: a\ndata:\ndata: b\n\n"), [msg("a\n\nb")]);
        assert_eq!(parse(b"data: a\ndata:\n\n"), [msg("a\n")]);
    }

    #[test]
    fn event_type() {
        assert_eq!(
            parse(b"event: add\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\nevent: a\nevent: b\ndata: 4\n\n"),
            [
                ev("add", "1", ""),
                msg("2"),
                msg("3"),
                ev("b", "4", "")
            ]
        );
    }

    #[test]
    fn id_persists_and_can_be_reset() {
        let mut parser = Parser::new();
        parser.feed(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n");
        assert_eq!(
            drain(&mut parser),
            [
                ev("message", "a", "1"),
                ev("message", "b", "1"),
                ev("message", "c", "")
            ]
        );
        assert_eq!(parser.last_event_id(), "");
    }

    #[test]
    fn id_with_nul_ignored() {
        let mut parser = Parser::new();
        parser.feed(b"id: 1\n\nid: 2\x003\ndata: x\n\n");
        assert_eq!(drain(&mut parser), [ev("message", "x", "1")]);
        assert_eq!(parser.last_event_id(), "1");
    }

    #[test]
    fn last_event_id_updates_at_blank_line_only() {
        let mut parser = Parser::new();
        parser.feed(b"id: 1\n\nid: 2\ndata: cut off");
        assert_eq!(parser.next_event(), None);
        assert_eq!(parser.last_event_id(), "1");
        parser.feed(b"\n\n");
        assert_eq!(parser.next_event(), Some(ev("message", "cut off", "2")));
        assert_eq!(parser.last_event_id(), "2");
    }

    #[test]
    fn retry_digits_only() {
        let mut parser = Parser::new();
        for (line, expected) in [
            (&b"retry: 100\n"[..], Some(100)),
            (b"retry: 1x\n", Some(100)),
            (b"retry: +5\n", Some(100)),
            (b"retry: -5\n", Some(100)),
            (b"retry:  5\n", Some(100)),
            (b"retry: 5 \n", Some(100)),
            (b"retry:\n", Some(100)),
            (b"retry\n", Some(100)),
            (b"retry: 99999999999999999999\n", Some(100)),
            (b"retry:007\n", Some(7)),
            (b"retry: 18446744073709551615\n", Some(u64::MAX)),
        ] {
            parser.feed(line);
            assert_eq!(parser.retry(), expected, "{line:?}");
        }
        assert_eq!(parser.next_event(), None);
    }

    #[test]
    fn retry_reported_on_next_dispatched_event() {
        let mut parser = Parser::new();
        parser.feed(b"retry: 5\n\ndata: a\n\ndata: b\nretry: 6\nretry: x\n\n");
        let events = drain(&mut parser);
        assert_eq!(events[0].retry, Some(5));
        assert_eq!(events[1].retry, Some(6));
        parser.feed(b"data: c\n\n");
        assert_eq!(parser.next_event().unwrap().retry, None);
        assert_eq!(parser.retry(), Some(6));
    }

    #[test]
    fn unknown_fields_ignored() {
        assert_eq!(
            parse(b"foo: bar\nDATA: no\ndata : no\n data: no\ndata: yes\n\n"),
            [msg("yes")]
        );
    }

    #[test]
    fn utf8_split_across_chunks() {
        // `parse` cuts at every byte, including inside the multi-byte chars.
        assert_eq!(
            parse("event: é\nid: 日本\ndata: 🎉\n\n".as_bytes()),
            [ev("é", "🎉", "日本")]
        );
    }

    #[test]
    fn invalid_utf8_replaced() {
        assert_eq!(
            parse(b"data: a\xFFb\xE6\x97\n\n"),
            [msg("a\u{FFFD}b\u{FFFD}")]
        );
    }

    #[test]
    fn long_line_discarded_to_its_end() {
        let mut parser = Parser::with_max_line(10);
        parser.feed(b"data: 0123");
        parser.feed(b"456789\r");
        parser.feed(b"\ndata: ok\n");
        parser.feed(b"data: 0123456789abcdef\rdata: ok2\n\n");
        assert_eq!(drain(&mut parser), [msg("ok\nok2")]);
        // Exactly at the limit is kept.
        let mut parser = Parser::with_max_line(10);
        parser.feed(b"data: 0123\n\n");
        assert_eq!(drain(&mut parser), [msg("0123")]);
        // A discarded line is not a blank line: it does not dispatch.
        let mut parser = Parser::with_max_line(4);
        parser.feed(b"data\n: long comment\ndata\n\n");
        assert_eq!(drain(&mut parser), [msg("\n")]);
    }

    #[test]
    fn spec_example_ids_and_spaces() {
        let input = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
        assert_eq!(
            parse(input),
            [
                ev("message", "first event", "1"),
                ev("message", "second event", ""),
                ev("message", " third event", "")
            ]
        );
    }
}

//! Encoding of events, comments and `retry` hints into `text/event-stream`
//! bytes. Owns the guarantee that whatever the caller passes, the output is a
//! well-formed frame that cannot inject extra fields or events.

/// The fields of one event to encode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// `id:` field. Should satisfy [`is_valid_field`]; see [`encode_event`].
    /// `Some("")` is meaningful: it resets the client's last event id.
    pub id: Option<&'a str>,
    /// `event:` field (the event type). Should satisfy [`is_valid_field`].
    pub event_type: Option<&'a str>,
    /// The payload. May contain any line breaks (CRLF, LF or CR); each line
    /// becomes its own `data:` line, and the client joins them with LF.
    pub data: &'a str,
    /// `retry:` field: the client's reconnection time in milliseconds.
    pub retry: Option<u64>,
}

/// Appends one complete event (terminated by a blank line) to `out`.
///
/// Fields are written in the order `id`, `event`, `retry`, `data`, each as
/// `name: value` with a single space after the colon (a parser strips exactly
/// one). `data` is split on CRLF, LF and CR into one `data:` line each, so a
/// parser gives back `data` with every line break normalised to LF. An empty
/// `data` still yields one `data:` line, so the event is dispatched.
///
/// `id` and `event_type` must not contain CR, LF or NUL (check with
/// [`is_valid_field`]). If they do anyway, those bytes are removed before
/// writing, so a bad value can never break the frame or inject fields; the
/// value the client sees is then the input with those bytes stripped.
pub fn encode_event(out: &mut Vec<u8>, fields: &EventFields<'_>) {
    // An estimate (exact for valid fields, single-line data and no retry) that avoids
    // a second pass over `data`; see `encoded_len` for the exact size.
    out.reserve(
        fields.id.map_or(0, |v| v.len() + 5)
            + fields.event_type.map_or(0, |v| v.len() + 8)
            + fields.retry.map_or(0, |_| 28)
            + fields.data.len()
            + 8,
    );
    if let Some(id) = fields.id {
        push_single_line_field(out, b"id", id);
    }
    if let Some(event_type) = fields.event_type {
        push_single_line_field(out, b"event", event_type);
    }
    if let Some(millis) = fields.retry {
        push_retry_line(out, millis);
    }
    encode_field_lines(out, "data", fields.data);
    out.push(b'\n');
}

/// Appends a field whose value may span lines, the way `data:` is written: `value` is split on
/// CRLF, LF and CR into one `name: line` each (a client joins them with LF), and an empty
/// `value` still yields one `name:` line. For extension fields (standard parsers ignore
/// unknown field names), e.g. Herald's `topic:`. No blank line follows: this is part of an
/// event, not a whole one.
///
/// `name` must be a field name: no `:`, CR, LF or NUL (a fixed name in the caller's code).
pub fn encode_field_lines(out: &mut Vec<u8>, name: &str, value: &str) {
    debug_assert!(
        !name.bytes().any(|b| b == b':' || is_forbidden_in_field(b)),
        "not a field name: {name:?}"
    );
    for_each_line(value, |line| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    });
}

/// Exact number of bytes [`encode_event`] appends for `fields`, so callers can
/// reserve once.
pub fn encoded_len(fields: &EventFields<'_>) -> usize {
    let mut len = 0;
    if let Some(id) = fields.id {
        len += single_line_field_len(b"id", id);
    }
    if let Some(event_type) = fields.event_type {
        len += single_line_field_len(b"event", event_type);
    }
    if let Some(millis) = fields.retry {
        len += b"retry: \n".len() + decimal_len(millis);
    }
    for_each_line(fields.data, |line| len += b"data: \n".len() + line.len());
    len + 1
}

/// What [`encode_comment`] writes for an empty comment, e.g. a keepalive: a
/// lone `:` line.
pub const EMPTY_COMMENT: &[u8] = b":\n";

/// Appends comment lines, e.g. for keepalives: `text` is split on line breaks
/// and each piece gets its own `:` prefix, so it can never inject fields. Empty
/// pieces are written as a bare `:`; `encode_comment(out, "")` appends exactly
/// [`EMPTY_COMMENT`] (`":\n"`).
///
/// No blank line follows. A comment needs none: a parser ignores a comment
/// line wherever it appears. A blank line would end an event with no data,
/// which the standard `EventSource` ignores but some clients do not (the npm
/// `@microsoft/fetch-event-source` calls `onmessage` with empty data for every
/// blank line, so an app's `JSON.parse` throws). Write comments between
/// complete events, as the output of [`encode_event`] always is.
pub fn encode_comment(out: &mut Vec<u8>, text: &str) {
    for_each_line(text, |line| {
        out.push(b':');
        if !line.is_empty() {
            out.push(b' ');
            out.extend_from_slice(line.as_bytes());
        }
        out.push(b'\n');
    });
}

/// Appends `retry: N\n`: sets the client's reconnection time (a parser applies
/// it as soon as it reads the line) without dispatching an event. As with
/// [`encode_comment`], no blank line follows, so no client sees an empty event.
pub fn encode_retry(out: &mut Vec<u8>, millis: u64) {
    push_retry_line(out, millis);
}

/// `true` when `value` contains no CR, LF or NUL, i.e. it can be written as
/// an `id:` or `event:` value unchanged.
pub fn is_valid_field(value: &str) -> bool {
    !value.bytes().any(is_forbidden_in_field)
}

fn is_forbidden_in_field(byte: u8) -> bool {
    matches!(byte, b'\r' | b'\n' | b'\0')
}

fn push_single_line_field(out: &mut Vec<u8>, name: &[u8], value: &str) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    if is_valid_field(value) {
        out.extend_from_slice(value.as_bytes());
    } else {
        // Only ASCII bytes are removed, so the rest stays valid UTF-8.
        out.extend(value.bytes().filter(|&b| !is_forbidden_in_field(b)));
    }
    out.push(b'\n');
}

fn single_line_field_len(name: &[u8], value: &str) -> usize {
    let kept = value.bytes().filter(|&b| !is_forbidden_in_field(b)).count();
    name.len() + b": \n".len() + kept
}

fn push_retry_line(out: &mut Vec<u8>, millis: u64) {
    out.extend_from_slice(b"retry: ");
    push_decimal(out, millis);
    out.push(b'\n');
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Calls `f` with each line of `text`, splitting on CRLF, LF and CR. Always
/// yields at least one (possibly empty) line; a trailing break yields a final
/// empty line, so `"a\n"` gives `"a"` then `""`.
fn for_each_line(text: &str, mut f: impl FnMut(&str)) {
    let mut rest = text;
    while let Some(pos) = rest.bytes().position(|b| b == b'\r' || b == b'\n') {
        // CR and LF are ASCII, so these are char boundaries.
        let (line, ending) = rest.split_at(pos);
        f(line);
        rest = ending
            .strip_prefix("\r\n")
            .or_else(|| ending.get(1..))
            .unwrap_or("");
    }
    f(rest);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn event(fields: EventFields<'_>) -> String {
        let mut out = Vec::new();
        encode_event(&mut out, &fields);
        assert_eq!(
            out.len(),
            encoded_len(&fields),
            "encoded_len for {fields:?}"
        );
        String::from_utf8(out).unwrap()
    }

    fn data(data: &str) -> EventFields<'_> {
        EventFields {
            data,
            ..EventFields::default()
        }
    }

    #[test]
    fn field_order_and_format() {
        let fields = EventFields {
            id: Some("42"),
            event_type: Some("update"),
            data: "hello",
            retry: Some(1500),
        };
        assert_eq!(
            event(fields),
            "id: 42\nevent: update\nretry: 1500\ndata: hello\n\n"
        );
    }

    #[test]
    fn empty_data_still_has_a_data_line() {
        assert_eq!(event(data("")), "data: \n\n");
    }

    #[test]
    fn data_split_on_every_line_ending() {
        assert_eq!(
            event(data("a\r\nb\nc\rd")),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(event(data("a\n")), "data: a\ndata: \n\n");
        assert_eq!(event(data("\r")), "data: \ndata: \n\n");
        assert_eq!(
            event(data("\r\r\n\n")),
            "data: \ndata: \ndata: \ndata: \n\n"
        );
    }

    #[test]
    fn data_keeps_leading_spaces_and_colons() {
        assert_eq!(event(data("  x: y")), "data:   x: y\n\n");
    }

    #[test]
    fn empty_id_is_written() {
        let fields = EventFields {
            id: Some(""),
            ..data("x")
        };
        assert_eq!(event(fields), "id: \ndata: x\n\n");
    }

    #[test]
    fn invalid_id_and_type_are_stripped() {
        let fields = EventFields {
            id: Some("1\r\n2\0-3"),
            event_type: Some("a\nevent: b\r"),
            data: "x",
            retry: None,
        };
        assert!(!is_valid_field(fields.id.unwrap()));
        assert_eq!(event(fields), "id: 12-3\nevent: aevent: b\ndata: x\n\n");
    }

    #[test]
    fn retry_digits() {
        for (millis, text) in [
            (0, "0"),
            (9, "9"),
            (10, "10"),
            (u64::MAX, "18446744073709551615"),
        ] {
            let mut out = Vec::new();
            encode_retry(&mut out, millis);
            assert_eq!(out, format!("retry: {text}\n").into_bytes());
            let fields = EventFields {
                retry: Some(millis),
                ..data("")
            };
            event(fields); // checks encoded_len
        }
    }

    #[test]
    fn field_lines_split_like_data() {
        let lines = |value: &str| {
            let mut out = Vec::new();
            encode_field_lines(&mut out, "topic", value);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(lines("https://x/1"), "topic: https://x/1\n");
        assert_eq!(lines(""), "topic: \n");
        assert_eq!(
            lines("a\r\nb\rc\nd"),
            "topic: a\ntopic: b\ntopic: c\ntopic: d\n"
        );
        assert_eq!(lines("a\n"), "topic: a\ntopic: \n");
        // The same lines as `data:` in an event.
        let mut event = Vec::new();
        encode_event(&mut event, &data("x\ny"));
        let mut data_lines = Vec::new();
        encode_field_lines(&mut data_lines, "data", "x\ny");
        data_lines.push(b'\n');
        assert_eq!(event, data_lines);
    }

    #[test]
    fn comments() {
        let comment = |text: &str| {
            let mut out = Vec::new();
            encode_comment(&mut out, text);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(comment("").as_bytes(), EMPTY_COMMENT);
        assert_eq!(comment(""), ":\n");
        assert_eq!(comment("ping"), ": ping\n");
        assert_eq!(comment("a\r\ndata: x\rb\n"), ": a\n: data: x\n: b\n:\n");
    }

    #[test]
    fn valid_fields() {
        assert!(is_valid_field(""));
        assert!(is_valid_field("urn:uuid:1234 é"));
        assert!(!is_valid_field("a\rb"));
        assert!(!is_valid_field("a\nb"));
        assert!(!is_valid_field("a\0b"));
    }

    #[test]
    fn appends_without_clearing() {
        let mut out = b"prefix".to_vec();
        encode_event(&mut out, &data("x"));
        assert_eq!(out, b"prefixdata: x\n\n");
    }
}

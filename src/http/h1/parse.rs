//! Request heads: bytes in, an `http` request head (or the status that refuses it) out.
//!
//! Pure and synchronous, so the fuzzer drives it directly. It is strict where hand-written
//! HTTP/1.1 usually is not: a request line or head over the limits is refused (414, 431), and so
//! is every head whose body framing is ambiguous: `Content-Length` with `Transfer-Encoding`, a
//! repeated, listed or non-numeric `Content-Length`, a transfer coding that does not end in
//! `chunked`, `Transfer-Encoding` on HTTP/1.0, and obs-fold (a header line starting with white
//! space). Every refusal closes the connection: after one, the next request cannot be framed.

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};

/// The largest request head (request line and headers) read.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// The longest request line; a longer one is refused with 414.
pub(crate) const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Headers in one request head; more are refused with 431.
pub(crate) const MAX_HEADERS: usize = 100;

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length` bytes (0: no body).
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: BodyFraming,
    /// The client allows the connection to stay open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expects_continue: bool,
}

/// Why a head is refused: the status to answer with, then the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadError {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl HeadError {
    fn bad(reason: &'static str) -> HeadError {
        HeadError {
            status: StatusCode::BAD_REQUEST,
            reason,
        }
    }
}

/// Parses the head at the start of `input`: `Ok(None)` when it is not complete yet,
/// `Ok(Some((head, length)))` when it is (`length` bytes of `input`), or the refusal.
pub fn parse_head(input: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let line_end = input.iter().position(|&byte| byte == b'\n');
    if line_end.unwrap_or(input.len()) > MAX_REQUEST_LINE {
        return Err(HeadError {
            status: StatusCode::URI_TOO_LONG,
            reason: "the request line is too long",
        });
    }
    let too_large = HeadError {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        reason: "the request head is too large",
    };
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let length = match parsed.parse(input) {
        Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD => length,
        Ok(httparse::Status::Complete(_)) => return Err(too_large),
        Ok(httparse::Status::Partial) if input.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(too_large),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: "the request has too many headers",
            });
        }
        Err(_) => return Err(HeadError::bad("the request head is malformed")),
    };
    let method = parsed
        .method
        .and_then(|method| Method::from_bytes(method.as_bytes()).ok())
        .ok_or(HeadError::bad("the method is malformed"))?;
    let uri = parsed
        .path
        .and_then(|target| target.parse::<Uri>().ok())
        .ok_or(HeadError::bad("the request target is malformed"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::bad("the HTTP version is not supported")),
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::bad("a header name is malformed"))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| HeadError::bad("a header value is malformed"))?;
        headers.append(name, value);
    }
    let body = body_framing(&headers, version)?;
    let keep_alive = keeps_alive(&headers, version);
    let expects_continue = version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let head = Head {
        method,
        uri,
        version,
        headers,
        body,
        keep_alive,
        expects_continue,
    };
    Ok(Some((head, length)))
}

/// The body framing the headers declare, refusing every ambiguous one.
fn body_framing(headers: &HeaderMap, version: Version) -> Result<BodyFraming, HeadError> {
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => None,
        (Some(value), None) => Some(content_length(value.as_bytes())?),
        (Some(_), Some(_)) => return Err(HeadError::bad("Content-Length is repeated")),
    };
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_none() {
        return Ok(BodyFraming::Length(length.unwrap_or(0)));
    }
    if length.is_some() {
        return Err(HeadError::bad(
            "Content-Length and Transfer-Encoding together",
        ));
    }
    if version == Version::HTTP_10 {
        return Err(HeadError::bad("Transfer-Encoding on HTTP/1.0"));
    }
    let last = codings
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .last();
    match last {
        Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => Ok(BodyFraming::Chunked),
        _ => Err(HeadError::bad(
            "the last transfer coding of a request must be chunked",
        )),
    }
}

/// One `Content-Length` value: decimal digits only, no list, no sign, no overflow.
fn content_length(value: &[u8]) -> Result<u64, HeadError> {
    let invalid = HeadError::bad("Content-Length is not a number");
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(invalid);
    }
    value.iter().try_fold(0u64, |total, digit| {
        total
            .checked_mul(10)
            .and_then(|total| total.checked_add(u64::from(digit - b'0')))
            .ok_or(invalid)
    })
}

/// Whether a `Connection` header lists `token` (case-insensitive, in a comma-separated list).
pub(super) fn connection_has(headers: &HeaderMap, token: &[u8]) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&byte| byte == b',')
            .any(|option| option.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// HTTP/1.1 stays open unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
fn keeps_alive(headers: &HeaderMap, version: Version) -> bool {
    let has = |token: &[u8]| connection_has(headers, token);
    if has(b"close") {
        return false;
    }
    version == Version::HTTP_11 || has(b"keep-alive")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    fn refused(text: &[u8]) -> StatusCode {
        parse_head(text).unwrap_err().status
    }

    #[test]
    fn a_plain_get_keeps_alive_with_no_body() {
        let head =
            head("GET /events?topic=a HTTP/1.1\r\nHost: x\r\nCookie: a\r\nCookie: b\r\n\r\n");
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri.path(), "/events");
        assert_eq!(head.uri.query(), Some("topic=a"));
        assert_eq!(head.headers.get_all("cookie").iter().count(), 2);
        assert_eq!(head.body, BodyFraming::Length(0));
        assert!(head.keep_alive);
        assert!(!head.expects_continue);
    }

    #[test]
    fn the_length_is_what_the_head_took() {
        let text = b"GET / HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
        let (_, length) = parse_head(text).unwrap().unwrap();
        assert_eq!(&text[length..], b"GET /next HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn connection_options_and_versions() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expects_continue);
        assert!(!head("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expects_continue);
    }

    #[test]
    fn bodies_are_framed_by_length_or_chunks() {
        let chunked = head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!(chunked.body, BodyFraming::Chunked);
        let sized = head("POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n");
        assert_eq!(sized.body, BodyFraming::Length(42));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for text in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: 1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /a\x01 HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                refused(text.as_bytes()),
                StatusCode::BAD_REQUEST,
                "{text:?}"
            );
        }
    }

    #[test]
    fn oversized_heads_are_refused_with_their_status() {
        let mut line = b"GET /".to_vec();
        line.resize(MAX_REQUEST_LINE + 10, b'a');
        assert_eq!(refused(&line), StatusCode::URI_TOO_LONG);
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(refused(&long), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(
            refused(many.as_bytes()),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        assert!(parse_head(b"").unwrap().is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost").unwrap().is_none());
    }
}

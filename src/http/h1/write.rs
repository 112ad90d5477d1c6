//! Writing responses: the response head, the chunked framing of a stream, and every write to the
//! socket (vectored, under the write deadline).

use std::cell::RefCell;
use std::io::{self, IoSlice, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use http::{StatusCode, header};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::http::body::write_timed_out;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `content-length`.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the connection closes (a stream to an HTTP/1.0 client).
    UntilClose,
    /// No body and no length (1xx, 204, 304).
    None,
}

/// Whether a response with `status` may carry a body.
pub(crate) fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// The status line and headers. The handler's own framing headers (`content-length`,
/// `transfer-encoding`, `connection`) are replaced by `framing` and `keep_alive`; `date` is
/// added. `http10_keep_alive`: say `connection: keep-alive`, which an HTTP/1.0 client needs.
pub(crate) fn encode_head(
    parts: &http::response::Parts,
    framing: Framing,
    keep_alive: bool,
    http10_keep_alive: bool,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(length) => {
            // Into the head's own buffer: a write to a Vec cannot fail.
            let _ = write!(head, "content-length: {length}\r\n");
        }
        Framing::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::UntilClose | Framing::None => {}
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    } else if http10_keep_alive {
        head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"date: ");
    push_http_date(&mut head, SystemTime::now());
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// Appends `now` as an HTTP date (whole seconds), formatted at most once a second per thread:
/// every response carries one, and formatting it anew cost each small response an allocation
/// and the calendar arithmetic.
fn push_http_date(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        /// The second last formatted, and its text.
        static FORMATTED: RefCell<Option<(u64, String)>> = const { RefCell::new(None) };
    }
    // A clock before 1970 is formatted every time (there is no second to key it by).
    let Ok(since_epoch) = now.duration_since(UNIX_EPOCH) else {
        out.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
        return;
    };
    let second = since_epoch.as_secs();
    FORMATTED.with_borrow_mut(|formatted| {
        let text = match formatted {
            Some((cached, text)) if *cached == second => text,
            _ => &mut formatted.insert((second, httpdate::fmt_http_date(now))).1,
        };
        out.extend_from_slice(text.as_bytes());
    });
}

/// Room for the longest chunk size line: 16 hex digits and CRLF.
pub(crate) const CHUNK_SIZE_LINE: usize = 18;

/// `<length in hex>\r\n`, written at the end of `out`.
pub(crate) fn chunk_size_line(mut length: usize, out: &mut [u8; CHUNK_SIZE_LINE]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = CHUNK_SIZE_LINE - 2;
    out[start..].copy_from_slice(b"\r\n");
    loop {
        start -= 1;
        out[start] = HEX[length % 16];
        length /= 16;
        if length == 0 {
            return &out[start..];
        }
    }
}

/// The last chunk of a chunked body (no trailers).
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Writes `head` (may be empty) then `data` as one piece of a body: a chunk of the chunked
/// coding when `chunked`, raw otherwise; one vectored write when the socket takes it all.
pub(crate) async fn write_body_piece<I: AsyncWrite + Unpin>(
    io: &mut I,
    head: &[u8],
    data: &[u8],
    chunked: bool,
    timeout: Duration,
) -> io::Result<()> {
    if !chunked || data.is_empty() {
        return write_all(io, &mut [IoSlice::new(head), IoSlice::new(data)], timeout).await;
    }
    let mut size = [0u8; CHUNK_SIZE_LINE];
    let size = chunk_size_line(data.len(), &mut size);
    write_all(
        io,
        &mut [
            IoSlice::new(head),
            IoSlice::new(size),
            IoSlice::new(data),
            IoSlice::new(b"\r\n"),
        ],
        timeout,
    )
    .await
}

/// Writes every slice and flushes, trying each write before arming a timer (the socket nearly
/// always takes it). Fails with `TimedOut` (counted in `herald_write_timeouts_total`) when the
/// socket has taken nothing for `timeout`: a client that stopped reading.
pub(crate) async fn write_all<I: AsyncWrite + Unpin>(
    io: &mut I,
    mut slices: &mut [IoSlice<'_>],
    timeout: Duration,
) -> io::Result<()> {
    // Drops leading empty slices, so that nothing left to write means no slices left.
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let written = match io.write_vectored(slices).now_or_never() {
            Some(result) => result?,
            None => {
                let deadline = Instant::now() + timeout;
                match tokio::time::timeout_at(deadline, io.write_vectored(slices)).await {
                    Ok(result) => result?,
                    Err(_) => return Err(write_timed_out()),
                }
            }
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    // A no-op on TCP; TLS pushes out the records it still holds.
    match io.flush().now_or_never() {
        Some(result) => result,
        None => match tokio::time::timeout(timeout, io.flush()).await {
            Ok(result) => result,
            Err(_) => Err(write_timed_out()),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::Response;

    use super::*;

    fn head_of(response: Response<()>, framing: Framing, keep_alive: bool) -> String {
        let (parts, ()) = response.into_parts();
        String::from_utf8(encode_head(&parts, framing, keep_alive, false)).unwrap()
    }

    #[test]
    fn heads_carry_their_framing_and_connection() {
        let stream = Response::builder()
            .header("content-type", "text/event-stream")
            .header("content-length", "99")
            .body(())
            .unwrap();
        let head = head_of(stream, Framing::Chunked, true);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"));
        assert!(head.contains("\r\ntransfer-encoding: chunked\r\ndate: "));
        assert!(!head.contains("99"));
        assert!(head.ends_with("\r\n\r\n"));

        let error = Response::builder().status(400).body(()).unwrap();
        let head = head_of(error, Framing::Length(12), false);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("\r\ncontent-length: 12\r\nconnection: close\r\ndate: "));
    }

    #[test]
    fn the_date_is_formatted_for_the_second_asked_even_when_cached() {
        use std::time::Duration;
        let date = |now: SystemTime| {
            let mut out = Vec::new();
            push_http_date(&mut out, now);
            String::from_utf8(out).unwrap()
        };
        let second = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(date(second), "Tue, 14 Nov 2023 22:13:20 GMT");
        // The same second, later in it: the cached text.
        assert_eq!(
            date(second + Duration::from_millis(999)),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        // The next second, and one long before: formatted anew, not the cached text.
        assert_eq!(
            date(second + Duration::from_secs(1)),
            "Tue, 14 Nov 2023 22:13:21 GMT"
        );
        assert_eq!(date(second), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        // What the clock says now, as the head carries it.
        let now = SystemTime::now();
        assert_eq!(date(now), httpdate::fmt_http_date(now));
    }

    #[test]
    fn chunk_sizes_are_hexadecimal() {
        let mut out = [0u8; CHUNK_SIZE_LINE];
        assert_eq!(chunk_size_line(0, &mut out), b"0\r\n");
        assert_eq!(chunk_size_line(255, &mut out), b"ff\r\n");
        assert_eq!(chunk_size_line(65_536, &mut out), b"10000\r\n");
        assert_eq!(
            chunk_size_line(usize::MAX, &mut out),
            b"ffffffffffffffff\r\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_after_the_timeout() {
        let (peer, mut io) = tokio::io::duplex(1024);
        let timeout = Duration::from_secs(2);
        write_all(&mut io, &mut [IoSlice::new(&[0; 1024])], timeout)
            .await
            .unwrap();
        let started = Instant::now();
        let error = write_all(&mut io, &mut [IoSlice::new(&[0; 10])], timeout)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), timeout);
        drop(peer);
    }
}

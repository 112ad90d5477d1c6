//! HTTP/1.1 event streams served on the raw socket, without hyper.
//!
//! Idle subscribers are most of what a hub holds, so their connections must be small. Served by
//! hyper, an HTTP/1.1 connection keeps a read buffer and a write buffer for its whole life
//! (about 12 KiB together, and hyper 1 cannot shrink them), which is most of an idle
//! subscriber's memory. So the accept loop lets this module read a plain-text connection's first
//! request head itself:
//!
//! - a `GET` of the subscribe endpoint over HTTP/1.1, without a body or an upgrade, is answered
//!   here: the response head and the opening comment in one write, then each chunk of the event
//!   stream straight to the socket (chunked transfer coding, one vectored write per chunk, the
//!   chunk itself shared, never copied). Bytes the client sends after that head are read and
//!   dropped (a closed connection is noticed at once); more than [`MAX_HEAD`] of them closes it.
//!   When the stream ends, the last chunk is written and the connection closed; an error
//!   response closes it too (`connection: close`). A write that the socket has not taken within
//!   `--write-timeout` (a client that stopped reading) closes the connection with a reset and
//!   is counted in `herald_write_timeouts_total`.
//! - anything else (another method or path, HTTP/1.0, a body, an upgrade, the HTTP/2 preface, a
//!   head that is malformed or larger than [`MAX_HEAD`]) goes to hyper with the bytes already
//!   read put back in front ([`Rewind`](super::rewind::Rewind)), so hyper answers it exactly as
//!   it would have.
//!
//! The routing, the subscribe handler and CORS are the same code as hyper's path
//! ([`router::route_subscribe`]).

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version, header};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::{ResponseBody, delivered_bytes, write_timed_out};
use super::{AppState, Peer, router};
use crate::stream::EventStream;

/// The largest request head read (hyper's read buffer limit is set to the same).
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers parsed in one request head; a head with more goes to hyper, which allows 100.
const MAX_HEADERS: usize = 64;
/// What the first read asks for; most subscribe heads fit.
const FIRST_READ: usize = 2048;

/// What the first request head of a connection turned out to be.
pub enum FirstRequest {
    /// A subscribe request, served here.
    Subscribe(Request<()>),
    /// Anything else: hyper serves the connection, reading these bytes first.
    Other(Bytes),
    /// The connection closed, failed or sent no complete head before the deadline.
    Gone,
}

/// Reads the first request head of `stream` (until `deadline`), just far enough to tell whether
/// it is a subscribe request.
pub async fn read_first_request(stream: &TcpStream, deadline: Instant) -> FirstRequest {
    let mut head = Vec::with_capacity(FIRST_READ);
    loop {
        match classify(&head) {
            Decision::NeedMore => {}
            Decision::Subscribe(request) => return FirstRequest::Subscribe(request),
            Decision::Hyper => return FirstRequest::Other(Bytes::from(head)),
        }
        if head.len() == head.capacity() {
            head.reserve(head.capacity().min(MAX_HEAD));
        }
        let read = tokio::time::timeout_at(deadline, async {
            loop {
                stream.readable().await?;
                match stream.try_read_buf(&mut head) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            }
        })
        .await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            // Closed, failed, or too slow: as hyper would, give up on the connection.
            _ => return FirstRequest::Gone,
        }
    }
}

// Lives on the stack for a moment, once per connection: not worth a box.
#[allow(clippy::large_enum_variant)]
enum Decision {
    NeedMore,
    Subscribe(Request<()>),
    Hyper,
}

/// Decides from the bytes read so far.
fn classify(head: &[u8]) -> Decision {
    const GET: &[u8] = b"GET ";
    if head.len() < GET.len() {
        return if GET.starts_with(head) {
            Decision::NeedMore
        } else {
            Decision::Hyper
        };
    }
    if !head.starts_with(GET) {
        return Decision::Hyper;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => match subscribe_request(&parsed) {
            Some(request) => Decision::Subscribe(request),
            None => Decision::Hyper,
        },
        Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => Decision::NeedMore,
        // Too large, malformed, too many headers: hyper answers with the right status.
        _ => Decision::Hyper,
    }
}

/// The request, when it is a plain HTTP/1.1 `GET` of the subscribe endpoint.
fn subscribe_request(parsed: &httparse::Request<'_, '_>) -> Option<Request<()>> {
    if parsed.method != Some("GET") || parsed.version != Some(1) {
        return None;
    }
    let target = parsed.path?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if !router::is_subscribe_path(path) {
        return None;
    }
    let mut request = Request::new(());
    *request.method_mut() = Method::GET;
    *request.version_mut() = Version::HTTP_11;
    *request.uri_mut() = Uri::try_from(target).ok()?;
    let headers = request.headers_mut();
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        // A body, an upgrade or an expectation: hyper knows how to deal with those.
        let unusual = name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
            || (name == header::CONTENT_LENGTH && field.value != b"0");
        if unusual {
            return None;
        }
        headers.append(name, HeaderValue::from_bytes(field.value).ok()?);
    }
    Some(request)
}

/// Answers a subscribe request on `stream` and streams the events until either side ends.
pub async fn serve(stream: TcpStream, request: Request<()>, state: Arc<AppState>, peer: Peer) {
    // Boxed: the handler's future is large, and only needed for a moment.
    let response = Box::pin(router::route_subscribe(&state, request, peer)).await;
    let timeout = state.config.write_timeout;
    drop(state);
    let (parts, body) = response.into_parts();
    let result = match body {
        ResponseBody::Stream(events) => {
            let head = encode_head(&parts, None);
            stream_events(&stream, head, events, timeout).await
        }
        ResponseBody::Full(bytes) => {
            let bytes = bytes.unwrap_or_default();
            let head = encode_head(&parts, Some(bytes.len()));
            let mut slices = [IoSlice::new(&head), IoSlice::new(&bytes)];
            write_all(&stream, &mut slices, timeout).await
        }
        // The subscribe handler never returns a stream already polled, nor chunks.
        ResponseBody::Streaming(_) | ResponseBody::Chunks { .. } => Ok(()),
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "event stream ended with an error");
        if error.kind() == io::ErrorKind::TimedOut {
            // The client stopped reading: a reset frees what the kernel still holds for it.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
            return;
        }
    }
    let mut stream = stream;
    let _ = stream.shutdown().await;
}

/// The status line and headers. `Some(length)`: a complete body, after which the connection
/// closes; `None`: a chunked stream.
fn encode_head(parts: &http::response::Parts, length: Option<usize>) -> Vec<u8> {
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
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    head.extend_from_slice(b"\r\n");
    match length {
        Some(length) => {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(length.to_string().as_bytes());
            head.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
        }
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n"),
    }
    head
}

/// Writes `head` with the first chunk, then every chunk as it comes, until the stream or the
/// client ends.
async fn stream_events(
    stream: &TcpStream,
    head: Vec<u8>,
    mut events: EventStream,
    timeout: Duration,
) -> io::Result<()> {
    let mut head = Some(head);
    loop {
        let chunk = tokio::select! {
            biased;
            chunk = events.next_chunk() => chunk,
            result = client_gone(stream) => return result,
        };
        let head = head.take().unwrap_or_default();
        let Some(chunk) = chunk else {
            return write_all(
                stream,
                &mut [IoSlice::new(&head), IoSlice::new(b"0\r\n\r\n")],
                timeout,
            )
            .await;
        };
        write_chunk(stream, &head, &chunk, timeout).await?;
        delivered_bytes().increment(chunk.len() as u64);
    }
}

/// Resolves when the client closed the connection (`Ok`) or it failed, or sent more than
/// [`MAX_HEAD`] bytes after its request (`Err`). Bytes sent after the request are dropped.
async fn client_gone(stream: &TcpStream) -> io::Result<()> {
    let mut scratch = [0u8; 64];
    let mut ignored = 0;
    loop {
        stream.readable().await?;
        match stream.try_read(&mut scratch) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                ignored += n;
                if ignored > MAX_HEAD {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the client kept sending on an event stream",
                    ));
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
}

/// One chunk of the chunked transfer coding, after `head` (may be empty), in one vectored write.
async fn write_chunk(
    stream: &TcpStream,
    head: &[u8],
    chunk: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let mut size = [0u8; CHUNK_SIZE_LINE];
    let size = chunk_size_line(chunk.len(), &mut size);
    write_all(
        stream,
        &mut [
            IoSlice::new(head),
            IoSlice::new(size),
            IoSlice::new(chunk),
            IoSlice::new(b"\r\n"),
        ],
        timeout,
    )
    .await
}

/// Room for the longest chunk size line: 16 hex digits and CRLF.
const CHUNK_SIZE_LINE: usize = 18;

/// `<length in hex>\r\n`, written at the end of `out`.
fn chunk_size_line(mut length: usize, out: &mut [u8; CHUNK_SIZE_LINE]) -> &[u8] {
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

/// Writes every slice, trying the write before waiting for the socket to be writable (it
/// nearly always is). Fails with `TimedOut` (counted) when the socket has not taken all of it
/// within `timeout` of the first time it was full; no timer is set while it never is.
async fn write_all(
    stream: &TcpStream,
    mut slices: &mut [IoSlice<'_>],
    timeout: Duration,
) -> io::Result<()> {
    // Drops leading empty slices, so that nothing left to write means no slices left.
    IoSlice::advance_slices(&mut slices, 0);
    let mut deadline = None;
    while !slices.is_empty() {
        match stream.try_write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
                match tokio::time::timeout_at(deadline, stream.writable()).await {
                    Ok(ready) => ready?,
                    Err(_) => return Err(write_timed_out()),
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::Response;

    use super::*;

    /// What [`encode_head`] writes for a response.
    fn head_of(response: Response<()>, length: Option<usize>) -> String {
        let (parts, ()) = response.into_parts();
        String::from_utf8(encode_head(&parts, length)).unwrap()
    }

    fn subscribe_of(head: &str) -> Option<Request<()>> {
        match classify(head.as_bytes()) {
            Decision::Subscribe(request) => Some(request),
            _ => None,
        }
    }

    fn goes_to_hyper(head: &[u8]) -> bool {
        matches!(classify(head), Decision::Hyper)
    }

    fn needs_more(head: &[u8]) -> bool {
        matches!(classify(head), Decision::NeedMore)
    }

    #[test]
    fn a_subscribe_get_is_served_here_with_its_headers() {
        let request = subscribe_of(
            "GET /.well-known/mercure?topic=a&topic=b HTTP/1.1\r\nHost: x\r\n\
             Last-Event-ID: 42\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(request.uri().path(), "/.well-known/mercure");
        assert_eq!(request.uri().query(), Some("topic=a&topic=b"));
        assert_eq!(request.headers()["last-event-id"], "42");
        assert_eq!(request.headers().get_all("cookie").iter().count(), 2);
        assert!(subscribe_of("GET /events?topic=a HTTP/1.1\r\n\r\n").is_some());
        assert!(subscribe_of("GET /events HTTP/1.1\r\nContent-Length: 0\r\n\r\n").is_some());
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for head in [
            "POST /.well-known/mercure HTTP/1.1\r\n\r\n",
            "GET /healthz HTTP/1.1\r\n\r\n",
            "GET /.well-known/mercure/subscriptions HTTP/1.1\r\n\r\n",
            "GET /events?topic=a HTTP/1.0\r\n\r\n",
            "GET /events?topic=a HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            "GET /events?topic=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /events?topic=a HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            "GET /events?topic=a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /events?topic=a HTTP/1.1\r\nBad Header\r\n\r\n",
            "GET /events?topic=a\x01 HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "OPTIONS /events HTTP/1.1\r\n\r\n",
        ] {
            assert!(goes_to_hyper(head.as_bytes()), "{head:?}");
        }
        assert!(goes_to_hyper(b"PRI"));
        assert!(goes_to_hyper(b"G E"));
    }

    #[test]
    fn a_partial_head_waits_for_more_until_it_is_too_large() {
        assert!(needs_more(b""));
        assert!(needs_more(b"GE"));
        assert!(needs_more(b"GET /events?topic=a HTTP/1.1\r\nHost"));
        let mut huge = b"GET /events?topic=a HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD, b'a');
        assert!(goes_to_hyper(&huge));
    }

    #[test]
    fn too_many_headers_go_to_hyper() {
        let mut head = String::from("GET /events?topic=a HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert!(goes_to_hyper(head.as_bytes()));
    }

    #[test]
    fn heads_are_chunked_for_streams_and_close_after_complete_bodies() {
        let stream = Response::builder()
            .header("content-type", "text/event-stream")
            .body(())
            .unwrap();
        let head = head_of(stream, None);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"));
        assert!(head.contains("\r\ndate: "));
        assert!(head.ends_with("\r\ntransfer-encoding: chunked\r\n\r\n"));

        let error = Response::builder().status(400).body(()).unwrap();
        let head = head_of(error, Some(12));
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.ends_with("\r\ncontent-length: 12\r\nconnection: close\r\n\r\n"));
    }

    #[test]
    fn chunk_sizes_are_hexadecimal() {
        let mut out = [0u8; CHUNK_SIZE_LINE];
        assert_eq!(chunk_size_line(0, &mut out), b"0\r\n");
        assert_eq!(chunk_size_line(3, &mut out), b"3\r\n");
        assert_eq!(chunk_size_line(255, &mut out), b"ff\r\n");
        assert_eq!(chunk_size_line(65_536, &mut out), b"10000\r\n");
        assert_eq!(
            chunk_size_line(usize::MAX, &mut out),
            b"ffffffffffffffff\r\n"
        );
    }
}

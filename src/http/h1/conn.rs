//! One HTTP/1.1 connection, from its first byte to its close: requests read in order (bytes
//! after a request are the next request, pipelined or not), each answered through a
//! [`Handler`], its response written; an event stream is written straight to the socket, one
//! vectored write per chunk, with nothing buffered in between.
//!
//! One rule decides whether the connection stays open after a response: it does when the client
//! allows it (HTTP/1.1 without `Connection: close`, HTTP/1.0 with `Connection: keep-alive`), the
//! request body was read in full, the response was delimited (a length, or chunks) and written in
//! full, the handler did not answer `connection: close`, and the hub is not shutting down.
//! Anything the parser refuses (a malformed or oversized head, ambiguous body framing, a bad
//! chunk) is answered with its status and `connection: close`, then the connection is closed:
//! the next request cannot be framed. A refusal by a handler (4xx) is an ordinary response and
//! keeps the connection.
//!
//! Deadlines: a request head (and each read of its body) must arrive within `--header-timeout`
//! of the last response (or of the connection's start): that is also how long an idle keep-alive
//! connection stays open. A write the socket has not taken within `--write-timeout` closes the
//! connection with a reset ([`write::write_all`](super::write::write_all)).

use std::future::Future;
use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::Socket;
use super::body::ChunkedDecoder;
use super::parse::{BodyFraming, Head, HeadError, MAX_HEAD, parse_head};
use super::spare::{self, READ_SIZE};
use super::write::{Framing, LAST_CHUNK, encode_head, has_body, write_all, write_body_piece};
use crate::http::body::{RequestBody, ResponseBody, delivered_bytes};
use crate::http::watch::ShutdownSignal;
use crate::stream::EventStream;

/// Answers requests.
pub trait Handler: Send + Sync {
    /// The response to `request`.
    fn handle(
        &self,
        request: Request<RequestBody>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send;
}

/// The limits and deadlines of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `--header-timeout`: for each request head, and each read of a body.
    pub header_timeout: Duration,
    /// `--write-timeout`.
    pub write_timeout: Duration,
    /// The largest request body read before the handler runs; a larger one is handed over as
    /// [`RequestBody::Oversized`] (413 from the handlers that read bodies) and the connection
    /// closed after the response.
    pub body_limit: usize,
}

/// Serves `io` until it closes; `input` holds bytes already read from it.
pub async fn serve<I: Socket, H: Handler>(
    mut io: I,
    mut input: Vec<u8>,
    handler: &H,
    settings: &Settings,
    mut shutdown: Option<ShutdownSignal>,
) {
    let result = serve_requests(&mut io, &mut input, handler, settings, &mut shutdown).await;
    // Shutdown need not wait for the closing below.
    drop(shutdown);
    spare::give_back(input);
    match result {
        // The client stopped reading: a reset frees what the kernel still holds for it.
        Err(error) if error.kind() == io::ErrorKind::TimedOut => io.reset_on_close(),
        Err(error) => {
            tracing::debug!(%error, "HTTP/1.1 connection ended with an error");
            close_gently(&mut io, settings.write_timeout).await;
        }
        Ok(()) => close_gently(&mut io, settings.write_timeout).await,
    }
}

/// How long, and how much, a closing connection is read from after its last response.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Ends the connection's writing side, then reads (and drops) what the client still sends for a
/// moment: closing a socket with unread data sends a reset, which can destroy the last response
/// (a 413 or 400) before the client has read it.
async fn close_gently<I: Socket>(io: &mut I, write_timeout: Duration) {
    if tokio::time::timeout(write_timeout, io.shutdown())
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        // On the heap: inline, it would enlarge every connection's task for its whole life.
        let mut scratch = vec![0u8; 1024];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(read) => drained += read,
            }
        }
    })
    .await;
}

/// What waiting for the next request gave.
enum Next {
    Request(Box<Head>),
    Refused(HeadError),
    /// Closed, timed out, or shutting down while idle.
    Closed,
}

/// How an event stream response ended.
enum StreamEnd {
    /// The stream ended (its last chunk written).
    Ended,
    /// The client closed the connection.
    ClientGone,
}

async fn serve_requests<I: Socket, H: Handler>(
    io: &mut I,
    input: &mut Vec<u8>,
    handler: &H,
    settings: &Settings,
    shutdown: &mut Option<ShutdownSignal>,
) -> io::Result<()> {
    loop {
        let head = match next_head(io, input, settings.header_timeout, shutdown).await? {
            Next::Request(head) => head,
            Next::Refused(refusal) => {
                tracing::debug!(reason = refusal.reason, "request head refused");
                return refuse(io, refusal.status, settings.write_timeout).await;
            }
            Next::Closed => return Ok(()),
        };
        let body = match read_body(io, input, &head, settings).await? {
            Ok(body) => body,
            Err(reason) => {
                tracing::debug!(reason, "request body refused");
                return refuse(io, StatusCode::BAD_REQUEST, settings.write_timeout).await;
            }
        };
        if input.is_empty() {
            // Give the read buffer back before a stream that may last for hours.
            spare::give_back(std::mem::take(input));
        }
        let keep_alive = head.keep_alive && !matches!(body, RequestBody::Oversized);
        let exchange = Exchange {
            head_only: head.method == Method::HEAD,
            version: head.version,
        };
        let Head {
            method,
            uri,
            version,
            headers,
            ..
        } = *head;
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = headers;
        // Boxed: a handler's future is large, and needed only while the request is handled.
        let response = Box::pin(handler.handle(request)).await;
        let keep_alive = keep_alive
            && !asks_to_close(response.headers())
            && !shutdown.as_ref().is_some_and(ShutdownSignal::is_raised);
        let keep_alive =
            write_response(io, input, response, exchange, keep_alive, settings).await?;
        if !keep_alive {
            return Ok(());
        }
        if input.is_empty() {
            // Give the memory back (a stream may have grown it): the connection may idle long.
            spare::give_back(std::mem::take(input));
        }
    }
}

/// Whether a handler's response says `connection: close`.
fn asks_to_close(headers: &http::HeaderMap) -> bool {
    super::parse::connection_has(headers, b"close")
}

/// Reads until `input` starts with a complete request head (taken out of `input`).
async fn next_head<I: Socket>(
    io: &mut I,
    input: &mut Vec<u8>,
    timeout: Duration,
    shutdown: &mut Option<ShutdownSignal>,
) -> io::Result<Next> {
    let deadline = Instant::now() + timeout;
    // Where the bytes not yet looked at start: what is already in `input` is looked at first.
    let mut fresh = 0;
    loop {
        if !input.is_empty() && worth_parsing(input, fresh) {
            match parse_head(input) {
                Ok(Some((head, length))) => {
                    input.drain(..length);
                    return Ok(Next::Request(Box::new(head)));
                }
                Ok(None) => {}
                Err(refusal) => return Ok(Next::Refused(refusal)),
            }
        }
        fresh = input.len();
        if input.capacity() == 0 {
            *input = spare::take();
        }
        input.reserve(READ_SIZE);
        let idle = input.is_empty();
        let read = async {
            match tokio::time::timeout_at(deadline, io.read_buf(input)).await {
                Ok(result) => result,
                Err(_) => Ok(0),
            }
        };
        let read = match shutdown {
            Some(signal) if idle => tokio::select! {
                read = read => read?,
                () = signal.raised() => 0,
            },
            _ => read.await?,
        };
        if read == 0 {
            return Ok(Next::Closed);
        }
    }
}

/// Whether `input`, whose bytes from `fresh` on arrived since it was last parsed, may now parse
/// differently: the first bytes (an early refusal of garbage), a completed line (the head may be
/// complete), or a size limit just crossed. A head sent a byte at a time is thus parsed once per
/// line, not once per byte: parsing it whole every time would cost the square of its size.
fn worth_parsing(input: &[u8], fresh: usize) -> bool {
    use super::parse::MAX_REQUEST_LINE;
    fresh == 0
        || input[fresh..].contains(&b'\n')
        || (fresh <= MAX_REQUEST_LINE && input.len() > MAX_REQUEST_LINE)
        || input.len() >= MAX_HEAD
}

/// Reads the request body: `Ok(Err(reason))` when its chunked framing is malformed.
async fn read_body<I: Socket>(
    io: &mut I,
    input: &mut Vec<u8>,
    head: &Head,
    settings: &Settings,
) -> io::Result<Result<RequestBody, &'static str>> {
    let limit = settings.body_limit;
    let length = match head.body {
        BodyFraming::Length(0) => return Ok(Ok(RequestBody::Read(Bytes::new()))),
        BodyFraming::Length(length) if length > limit as u64 => {
            return Ok(Ok(RequestBody::Oversized));
        }
        BodyFraming::Length(length) => Some(length as usize),
        BodyFraming::Chunked => None,
    };
    if head.expects_continue && input.is_empty() {
        write_all(
            io,
            &mut [IoSlice::new(b"HTTP/1.1 100 Continue\r\n\r\n")],
            settings.write_timeout,
        )
        .await?;
    }
    match length {
        Some(length) => {
            while input.len() < length {
                input.reserve((length - input.len()).min(64 * 1024));
                read_more(io, input, settings.header_timeout).await?;
            }
            if length <= READ_SIZE {
                // Copied out, so the read buffer stays for the next request.
                let body = Bytes::copy_from_slice(&input[..length]);
                input.drain(..length);
                return Ok(Ok(RequestBody::Read(body)));
            }
            let rest = input.split_off(length);
            let body = std::mem::replace(input, rest);
            Ok(Ok(RequestBody::Read(Bytes::from(body))))
        }
        None => {
            let mut decoder = ChunkedDecoder::new();
            let mut body = Vec::new();
            loop {
                match decoder.decode(input, &mut body) {
                    Ok(used) => {
                        input.drain(..used);
                    }
                    Err(error) => return Ok(Err(error.0)),
                }
                if body.len() > limit {
                    return Ok(Ok(RequestBody::Oversized));
                }
                if decoder.is_done() {
                    return Ok(Ok(RequestBody::Read(Bytes::from(body))));
                }
                input.reserve(READ_SIZE);
                read_more(io, input, settings.header_timeout).await?;
            }
        }
    }
}

/// Reads more into `input`; the connection closing or `timeout` passing is an error.
async fn read_more<I: Socket>(
    io: &mut I,
    input: &mut Vec<u8>,
    timeout: Duration,
) -> io::Result<()> {
    match tokio::time::timeout(timeout, io.read_buf(input)).await {
        Ok(Ok(0)) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the request body did not arrive within the header timeout",
        )),
    }
}

/// Answers a refused request head or body with `status` and closes.
async fn refuse<I: Socket>(io: &mut I, status: StatusCode, timeout: Duration) -> io::Result<()> {
    let (parts, ()) = Response::builder()
        .status(status)
        .body(())
        .unwrap_or_default()
        .into_parts();
    let head = encode_head(&parts, Framing::Length(0), false, false);
    write_all(io, &mut [IoSlice::new(&head)], timeout).await
}

/// What the response must know of its request.
#[derive(Clone, Copy)]
struct Exchange {
    head_only: bool,
    version: Version,
}

/// Writes the response; returns whether the connection stays open.
async fn write_response<I: Socket>(
    io: &mut I,
    input: &mut Vec<u8>,
    response: Response<ResponseBody>,
    exchange: Exchange,
    keep_alive: bool,
    settings: &Settings,
) -> io::Result<bool> {
    let (parts, body) = response.into_parts();
    let timeout = settings.write_timeout;
    let http10 = exchange.version == Version::HTTP_10;
    let with_body = has_body(parts.status);
    let send_body = with_body && !exchange.head_only;
    match body {
        ResponseBody::Full(bytes) => {
            let bytes = bytes.unwrap_or_default();
            let framing = if with_body {
                Framing::Length(bytes.len() as u64)
            } else {
                Framing::None
            };
            let head = encode_head(&parts, framing, keep_alive, http10);
            let data: &[u8] = if send_body { &bytes } else { &[] };
            write_body_piece(io, &head, data, false, timeout).await?;
            Ok(keep_alive)
        }
        ResponseBody::Streaming(_) => {
            let head = encode_head(&parts, Framing::Length(0), keep_alive, http10);
            write_all(io, &mut [IoSlice::new(&head)], timeout).await?;
            Ok(keep_alive)
        }
        ResponseBody::Chunks { mut chunks, len } => {
            let head = encode_head(&parts, Framing::Length(len), keep_alive, http10);
            if !send_body {
                write_all(io, &mut [IoSlice::new(&head)], timeout).await?;
                return Ok(keep_alive);
            }
            let mut head = Some(head);
            let mut sent = 0u64;
            while let Some(chunk) = chunks.recv().await {
                sent += chunk.len() as u64;
                if sent > len {
                    // Never past the announced length: the client would take a wrong body as
                    // whole. Closing short of it tells the client it failed.
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a response body ran past its content-length",
                    ));
                }
                let head = head.take().unwrap_or_default();
                write_body_piece(io, &head, &chunk, false, timeout).await?;
            }
            if let Some(head) = head {
                write_all(io, &mut [IoSlice::new(&head)], timeout).await?;
            }
            // Short of its length: closing tells the client it failed.
            Ok(keep_alive && sent == len)
        }
        ResponseBody::Stream(events) => {
            // HTTP/1.0 has no chunks: the stream ends with the connection.
            let keep_alive = keep_alive && !http10;
            let framing = if http10 {
                Framing::UntilClose
            } else {
                Framing::Chunked
            };
            let head = encode_head(&parts, framing, keep_alive, false);
            if !send_body {
                write_all(io, &mut [IoSlice::new(&head)], timeout).await?;
                return Ok(keep_alive);
            }
            match stream_events(io, input, head, events, !http10, timeout).await? {
                StreamEnd::Ended => Ok(keep_alive),
                StreamEnd::ClientGone => Ok(false),
            }
        }
    }
}

/// Writes `head` with the first chunk, then every chunk as it comes, until the stream or the
/// client ends. Bytes the client sends meanwhile are kept in `input`: they are its next request.
async fn stream_events<I: Socket>(
    io: &mut I,
    input: &mut Vec<u8>,
    head: Vec<u8>,
    mut events: EventStream,
    chunked: bool,
    timeout: Duration,
) -> io::Result<StreamEnd> {
    let mut head = Some(head);
    loop {
        let chunk = tokio::select! {
            biased;
            chunk = events.next_chunk() => chunk,
            gone = keep_input(io, input) => {
                gone?;
                return Ok(StreamEnd::ClientGone);
            }
        };
        let head = head.take().unwrap_or_default();
        let Some(chunk) = chunk else {
            let last: &[u8] = if chunked { LAST_CHUNK } else { &[] };
            write_all(io, &mut [IoSlice::new(&head), IoSlice::new(last)], timeout).await?;
            return Ok(StreamEnd::Ended);
        };
        write_body_piece(io, &head, &chunk, chunked, timeout).await?;
        delivered_bytes().increment(chunk.len() as u64);
    }
}

/// Reads what the client sends during a stream into `input`; resolves when it closes the
/// connection (`Ok`), or fails, or sends more than a request head's worth (`Err`).
async fn keep_input<I: AsyncRead + Unpin>(io: &mut I, input: &mut Vec<u8>) -> io::Result<()> {
    let mut scratch = [0u8; 64];
    loop {
        let read = io.read(&mut scratch).await?;
        if read == 0 {
            return Ok(());
        }
        if input.len() + read > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the client sent more than a request head during an event stream",
            ));
        }
        input.extend_from_slice(&scratch[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::MAX_REQUEST_LINE;
    use super::*;

    #[test]
    fn a_head_is_parsed_again_only_when_a_line_ends_or_a_limit_is_crossed() {
        let partial = b"GET /healthz HTTP/1.1\r\nHost: h";
        // The first bytes, and bytes left from a previous request, are parsed at once.
        assert!(worth_parsing(partial, 0));
        // A byte in the middle of a line: nothing can have changed.
        assert!(!worth_parsing(partial, partial.len() - 1));
        // The line (or the head) ends.
        let ended = b"GET /healthz HTTP/1.1\r\nHost: h\r\n";
        assert!(worth_parsing(ended, ended.len() - 1));
        // The request line grows past its limit (414), once; the head reaches its limit (431).
        let long = vec![b'a'; MAX_REQUEST_LINE + 1];
        assert!(worth_parsing(&long, MAX_REQUEST_LINE));
        assert!(!worth_parsing(
            &long[..MAX_REQUEST_LINE],
            MAX_REQUEST_LINE - 1
        ));
        let huge = vec![b'a'; MAX_HEAD];
        assert!(worth_parsing(&huge, MAX_HEAD - 1));
        assert!(!worth_parsing(&huge[..MAX_HEAD - 1], MAX_HEAD - 2));
    }
}

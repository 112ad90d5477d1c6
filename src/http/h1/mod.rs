//! The one HTTP/1.1 implementation: every HTTP/1.1 connection, cleartext or TLS (ALPN
//! `http/1.1`, or none), on the hub's listener, the `--metrics-listen` listener and the answers to
//! refused connections. HTTP/2 stays with hyper.
//!
//! Idle subscribers are most of what a hub holds, so their connections must be small: a
//! connection holds no read or write buffer while it streams or idles (hyper 1 keeps about
//! 12 KiB for its whole life), so a subscribe that follows a `GET /` or a preflight on the same
//! keep-alive connection is as lean as one that opens it.
//!
//! Each part lives in exactly one place:
//! - [`parse`]: request heads, their limits and their body framing (pure; fuzzed);
//! - [`body`]: the chunked request body decoder (pure; fuzzed);
//! - [`write`](mod@write): response heads, chunked framing, vectored writes under the write deadline;
//! - [`conn`]: the connection state machine: requests in order, keep-alive, streams;
//! - [`spare`]: read buffers kept for reuse on each worker thread.

pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod parse;
pub(crate) mod spare;
pub(crate) mod write;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::{RequestBody, ResponseBody};

pub use conn::{Handler, Settings, serve};

/// A connection the HTTP/1.1 layer can serve.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send {
    /// Makes the coming close a reset, when the transport has one (TCP): a client that stopped
    /// reading holds kernel buffers until then.
    fn reset_on_close(&self) {}
}

impl Socket for TcpStream {
    fn reset_on_close(&self) {
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

impl Socket for tokio_rustls::server::TlsStream<TcpStream> {
    fn reset_on_close(&self) {
        self.get_ref().0.reset_on_close();
    }
}

impl Socket for tokio::io::DuplexStream {}

/// The HTTP/2 connection preface (prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection are.
pub(crate) enum Protocol {
    /// HTTP/1.x: serve with [`serve`], these bytes first.
    Http1(Vec<u8>),
    /// The HTTP/2 preface: hyper serves it, these bytes first.
    Http2(Vec<u8>),
    /// Closed, failed, or silent until the deadline.
    Gone,
}

/// Reads just enough of a new connection (until `deadline`) to tell HTTP/2 with prior knowledge
/// from HTTP/1.x.
pub(crate) async fn sniff<I: AsyncRead + Unpin>(io: &mut I, deadline: Instant) -> Protocol {
    let mut input = spare::take();
    loop {
        let seen = input.len().min(H2_PREFACE.len());
        if input[..seen] != H2_PREFACE[..seen] {
            return Protocol::Http1(input);
        }
        if seen == H2_PREFACE.len() {
            return Protocol::Http2(input);
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut input)).await {
            Ok(Ok(read)) if read > 0 => {}
            _ => return Protocol::Gone,
        }
    }
}

/// Reads one request head (for at most `timeout`), whatever it is, answers it with `response`
/// and closes the connection; for connections refused before they are served.
pub(crate) async fn answer_once<I: Socket>(
    io: I,
    mut response: http::Response<ResponseBody>,
    timeout: Duration,
) {
    struct Once(parking_lot::Mutex<Option<http::Response<ResponseBody>>>);
    impl Handler for Once {
        async fn handle(
            &self,
            _request: http::Request<RequestBody>,
        ) -> http::Response<ResponseBody> {
            self.0
                .lock()
                .take()
                .unwrap_or_else(|| http::Response::new(ResponseBody::empty()))
        }
    }
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    let settings = Settings {
        header_timeout: timeout,
        write_timeout: timeout,
        body_limit: 0,
    };
    let once = Once(parking_lot::Mutex::new(Some(response)));
    let _ = tokio::time::timeout(timeout, serve(io, Vec::new(), &once, &settings, None)).await;
}

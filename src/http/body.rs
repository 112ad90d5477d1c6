//! Request and response bodies. A request body is hyper's (HTTP/2) or read in full by the
//! HTTP/1.1 layer; a response body is either a complete buffer, or a subscriber's event stream.
//!
//! Our own body type (not a boxed trait object, not axum's `Sse`): a stream chunk is the frames
//! that were ready, already joined, and the stream ends cleanly when the hub closes it, so
//! graceful shutdown is not blocked.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::stream::EventStream;
use crate::telemetry::names;

/// A request body, as the handlers see it.
pub enum RequestBody {
    /// An HTTP/2 request's body, read by the handler.
    Hyper(hyper::body::Incoming),
    /// An HTTP/1.1 request's body, read in full before the handler runs (empty when none).
    Read(Bytes),
    /// An HTTP/1.1 body larger than any handler reads: not read (`413` where a body is read).
    Oversized,
}

type NextChunk = Pin<Box<dyn Future<Output = (Option<Bytes>, EventStream)> + Send>>;

/// A response body.
pub enum ResponseBody {
    /// A complete body (or none).
    Full(Option<Bytes>),
    /// An event stream not polled yet.
    Stream(EventStream),
    /// An event stream being polled: the future computes the next chunk; `None` once it ended.
    Streaming(Option<NextChunk>),
    /// A body of known length read elsewhere, chunk by chunk (a backup snapshot). It ends when
    /// the sender goes; ending short of `len` fails the response.
    Chunks {
        chunks: tokio::sync::mpsc::Receiver<Bytes>,
        len: u64,
    },
}

/// Makes `response` the answer to a HEAD request: GET's head without its body. A complete body
/// keeps its length in `content-length`; a stream (its subscription) ends here. HTTP/2 needs
/// this (hyper would send the body's DATA frames); the HTTP/1.1 layer writes heads alone itself.
pub(crate) fn strip_for_head(response: &mut http::Response<ResponseBody>) {
    if let ResponseBody::Full(Some(bytes)) = response.body() {
        let length = http::HeaderValue::from(bytes.len());
        response
            .headers_mut()
            .entry(http::header::CONTENT_LENGTH)
            .or_insert(length);
    }
    *response.body_mut() = ResponseBody::Full(None);
}

impl ResponseBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Full(Some(bytes.into()))
    }

    /// No body.
    pub fn empty() -> ResponseBody {
        ResponseBody::Full(None)
    }

    /// `len` bytes sent through `chunks`.
    pub fn chunks(chunks: tokio::sync::mpsc::Receiver<Bytes>, len: u64) -> ResponseBody {
        ResponseBody::Chunks { chunks, len }
    }

    /// A subscriber's stream.
    pub fn stream(stream: EventStream) -> ResponseBody {
        ResponseBody::Stream(stream)
    }
}

/// `herald_delivered_bytes_total`, looked up once (the registry lookup is measurable per chunk).
/// The first chunk is written after the server installed the recorder.
pub(super) fn delivered_bytes() -> &'static metrics::Counter {
    static COUNTER: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| metrics::counter!(names::DELIVERED_BYTES_TOTAL))
}

/// Counts a connection closed because a write to it did not complete within `--write-timeout`
/// (`herald_write_timeouts_total`), and returns the error that ends it.
pub(super) fn write_timed_out() -> std::io::Error {
    metrics::counter!(names::WRITE_TIMEOUTS_TOTAL).increment(1);
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the client did not take a write within --write-timeout",
    )
}

fn next(mut stream: EventStream) -> NextChunk {
    Box::pin(async move {
        let chunk = stream.next_chunk().await;
        (chunk, stream)
    })
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if matches!(this, ResponseBody::Stream(_))
            && let ResponseBody::Stream(stream) =
                std::mem::replace(this, ResponseBody::Streaming(None))
        {
            *this = ResponseBody::Streaming(Some(next(stream)));
        }
        match this {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(_) => Poll::Ready(None),
            ResponseBody::Chunks { chunks, .. } => chunks
                .poll_recv(cx)
                .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes)))),
            ResponseBody::Streaming(slot) => {
                let Some(pending) = slot.as_mut() else {
                    return Poll::Ready(None);
                };
                match pending.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready((Some(chunk), stream)) => {
                        delivered_bytes().increment(chunk.len() as u64);
                        *slot = Some(next(stream));
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    Poll::Ready((None, _)) => {
                        *slot = None;
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Stream(_) | ResponseBody::Chunks { .. } => false,
            ResponseBody::Streaming(slot) => slot.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Chunks { len, .. } => SizeHint::with_exact(*len),
            ResponseBody::Stream(_) | ResponseBody::Streaming(_) => SizeHint::default(),
        }
    }
}

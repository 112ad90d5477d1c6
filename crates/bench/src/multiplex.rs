//! HTTP/2 subscriptions (`--mode h2c` and `h2-tls`): one connection carries up to
//! `--streams-per-connection` subscribe streams, as a browser multiplexes every `EventSource`
//! of an origin on one connection (up to the server's concurrent-stream limit). Each stream's
//! DATA frames go through the same SSE parser and exactly-once counting as HTTP/1.1 bodies;
//! the received bytes are handed back to the flow-control window at once, so a slow bench
//! never throttles the server.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use herald_sse::Parser;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::measure::{Counters, Window};
use super::wire::{Connection, Framing, check_status, connect};
use super::{CONNECT_TIMEOUT, Plan};

/// Per-stream receive window: room for a burst without waiting on a WINDOW_UPDATE.
const STREAM_WINDOW: u32 = 256 * 1024;
/// Connection receive window.
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// One HTTP/2 connection holding subscriptions `indexes`, from connect to close.
pub(super) async fn connection(
    plan: Arc<Plan>,
    indexes: Range<usize>,
    counters: Arc<Counters>,
    gate: Arc<Semaphore>,
) {
    let streams = indexes.len();
    let permit = gate.acquire().await;
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, handshake(&plan, indexes.start)).await;
    drop(permit);
    let send = match opened {
        Ok(Ok(send)) => send,
        Ok(Err(error)) => return fail(&counters, streams, error),
        Err(_) => {
            return fail(
                &counters,
                streams,
                format!("no HTTP/2 connection within {CONNECT_TIMEOUT:?}"),
            );
        }
    };
    let mut tasks = JoinSet::new();
    let mut send = Some(send);
    for index in indexes.clone() {
        let Some(ready) = send.take() else {
            fail(&counters, 1, "the HTTP/2 connection is gone".into());
            continue;
        };
        let mut ready = match ready.ready().await {
            Ok(ready) => ready,
            Err(error) => {
                fail(&counters, 1, format!("HTTP/2: {error}"));
                continue;
            }
        };
        match open_stream(&plan, index, &mut ready) {
            Ok(response) => {
                tasks.spawn(stream(
                    Arc::clone(&plan),
                    index,
                    response,
                    Arc::clone(&counters),
                ));
            }
            Err(error) => fail(&counters, 1, error),
        }
        send = Some(ready);
    }
    while tasks.join_next().await.is_some() {}
}

/// Counts `streams` failed subscriptions.
fn fail(counters: &Counters, streams: usize, error: String) {
    counters.failed.fetch_add(streams, Relaxed);
    counters.note_error(error);
}

type SendRequest = h2::client::SendRequest<Bytes>;

/// TCP (and TLS with ALPN `h2` for `h2-tls`), then the HTTP/2 preface; the connection is
/// driven by a task of its own.
async fn handshake(plan: &Plan, index: usize) -> Result<SendRequest, String> {
    let tcp = connect(plan, index).await?;
    match &plan.tls {
        None => start(tcp).await,
        Some(tls) => {
            let name = ServerName::try_from(plan.host.clone())
                .map_err(|error| format!("TLS server name {}: {error}", plan.host))?;
            let stream = tls
                .connector
                .connect(name, tcp)
                .await
                .map_err(|error| format!("TLS handshake: {error}"))?;
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err("the server did not choose h2 in the TLS handshake (ALPN): \
                            is HTTP/2 enabled on its TLS listener?"
                    .into());
            }
            start(stream).await
        }
    }
}

async fn start<T>(io: T) -> Result<SendRequest, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|error| format!("HTTP/2 handshake: {error}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

/// Sends subscription `index`'s request on the connection.
fn open_stream(
    plan: &Plan,
    index: usize,
    send: &mut SendRequest,
) -> Result<h2::client::ResponseFuture, String> {
    let scheme = plan.mode.scheme();
    let mut request = http::Request::builder()
        .method("GET")
        .uri(format!(
            "{scheme}://{}{}",
            plan.authority,
            plan.target(index)
        ))
        .header("accept", "text/event-stream");
    if let Some(token) = &plan.subscriber_token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(())
        .map_err(|error| format!("the request: {error}"))?;
    let (response, _) = send
        .send_request(request, true)
        .map_err(|error| format!("HTTP/2: {error}"))?;
    Ok(response)
}

/// One subscribe stream from its response head to its end.
async fn stream(
    plan: Arc<Plan>,
    index: usize,
    response: h2::client::ResponseFuture,
    counters: Arc<Counters>,
) {
    let response = match tokio::time::timeout(CONNECT_TIMEOUT, response).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return fail(&counters, 1, format!("HTTP/2: {error}")),
        Err(_) => {
            return fail(
                &counters,
                1,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            );
        }
    };
    let status = response.status();
    let answer = format!("HTTP/2 {status}");
    if let Err(error) = check_status(&plan, status.as_str(), &answer) {
        return fail(&counters, 1, error);
    }
    let mut connection = Connection {
        framing: Framing::Close,
        parser: Parser::new(),
        window: Window::default(),
        topic: plan.topic_index(index),
    };
    if let Some(topic) = counters.topics.get(connection.topic) {
        topic.subscribers.fetch_add(1, Relaxed);
    }
    counters.connected.fetch_add(1, Relaxed);
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        match data {
            Ok(data) => {
                let _ = body.flow_control().release_capacity(data.len());
                connection.feed(&data, &counters);
            }
            Err(error) => {
                counters.note_error(format!("HTTP/2 stream: {error}"));
                break;
            }
        }
    }
    counters.disconnected.fetch_add(1, Relaxed);
}

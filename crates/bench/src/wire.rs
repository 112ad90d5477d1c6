//! One `herald bench` subscription on the wire: raw HTTP/1.1 over a [`TcpStream`], an
//! incremental chunked-transfer decoder and the `herald-sse` parser, reading into one large
//! buffer per thread so that an idle connection costs no buffer at all.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use herald_sse::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::measure::{Counters, Window, now_micros};
use super::{CONNECT_CONCURRENCY, CONNECT_TIMEOUT, Plan, READ_BUFFER, SOURCE_ADDRESSES};
use crate::multiplex;

/// How the response body is delimited.
#[derive(Debug)]
pub(super) enum Framing {
    Chunked(Chunked),
    Length(u64),
    Close,
}

/// An incremental `Transfer-Encoding: chunked` decoder.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    pub(super) state: ChunkState,
    pub(super) size: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(super) enum ChunkState {
    #[default]
    Size,
    Extension,
    Data,
    DataEnd,
    Done,
}

impl Chunked {
    /// Hands the payload bytes of `input` to `out`; false once the last chunk was seen.
    pub(super) fn decode(&mut self, mut input: &[u8], out: &mut impl FnMut(&[u8])) -> bool {
        while let Some((&byte, rest)) = input.split_first() {
            match self.state {
                ChunkState::Size | ChunkState::Extension => {
                    input = rest;
                    match byte {
                        b'\n' => {
                            self.state = if self.size == 0 {
                                ChunkState::Done
                            } else {
                                ChunkState::Data
                            };
                        }
                        b';' => self.state = ChunkState::Extension,
                        _ if self.state == ChunkState::Extension => {}
                        b'\r' | b' ' | b'\t' => {}
                        _ => {
                            let digit = (byte as char).to_digit(16).unwrap_or(0);
                            self.size = self.size.saturating_mul(16) + u64::from(digit);
                        }
                    }
                }
                ChunkState::Data => {
                    let take = usize::try_from(self.size)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (data, rest) = input.split_at(take);
                    out(data);
                    self.size -= take as u64;
                    input = rest;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    input = rest;
                    if byte == b'\n' {
                        self.state = ChunkState::Size;
                        self.size = 0;
                    }
                }
                ChunkState::Done => return false,
            }
        }
        self.state != ChunkState::Done
    }
}

impl Framing {
    /// Hands the body bytes of `input` to `out`; false once the body is complete.
    pub(super) fn decode(&mut self, input: &[u8], out: &mut impl FnMut(&[u8])) -> bool {
        match self {
            Framing::Chunked(chunked) => chunked.decode(input, out),
            Framing::Length(left) => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                out(input.get(..take).unwrap_or_default());
                *left -= take as u64;
                *left > 0
            }
            Framing::Close => {
                out(input);
                true
            }
        }
    }
}

/// The state of one open subscription.
pub(super) struct Connection {
    pub(super) framing: Framing,
    pub(super) parser: Parser,
    pub(super) window: Window,
    pub(super) topic: usize,
}

impl Connection {
    /// Feeds received bytes; false once the body is complete.
    pub(super) fn feed(&mut self, bytes: &[u8], counters: &Counters) -> bool {
        let parser = &mut self.parser;
        let open = self.framing.decode(bytes, &mut |body| parser.feed(body));
        let mut now = 0;
        while let Some(event) = self.parser.next_event() {
            let mut fields = event.data.split(' ');
            let (Some(Ok(n)), Some(Ok(sent))) = (
                fields.next().map(str::parse::<u64>),
                fields.next().map(str::parse::<u64>),
            ) else {
                continue;
            };
            let Some(topic) = counters.topics.get(self.topic) else {
                continue;
            };
            if self.window.insert(n) {
                if now == 0 {
                    now = now_micros();
                }
                topic.unique.fetch_add(1, Relaxed);
                counters.delivered.fetch_add(1, Relaxed);
                counters.latency.record(now.saturating_sub(sent));
            } else {
                topic.duplicates.fetch_add(1, Relaxed);
            }
        }
        if now != 0 {
            counters.last_delivery.fetch_max(now, Relaxed);
        }
        open
    }
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER]);
}

/// What one drain of the socket found.
pub(super) enum Drained {
    Pending,
    Finished,
    Failed(std::io::Error),
}

/// Reads everything the socket has into this thread's buffer and feeds it; never waits.
pub(super) fn drain(
    stream: &TcpStream,
    connection: &mut Connection,
    counters: &Counters,
) -> Drained {
    READ_BUF.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        loop {
            match stream.try_read(&mut buffer) {
                Ok(0) => return Drained::Finished,
                Ok(n) => {
                    let bytes = buffer.get(..n).unwrap_or_default();
                    if !connection.feed(bytes, counters) {
                        return Drained::Finished;
                    }
                    if n < buffer.len() {
                        return Drained::Pending;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    return Drained::Pending;
                }
                Err(error) => return Drained::Failed(error),
            }
        }
    })
}

/// Connects (from one of the loopback source addresses when the hub is on loopback).
pub(super) async fn connect(plan: &Plan, index: usize) -> Result<TcpStream, String> {
    let socket = match plan.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|error| format!("socket: {error}"))?;
    if plan.spread_sources {
        let last = 2 + (index % SOURCE_ADDRESSES) as u8;
        let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0);
        socket
            .bind(source)
            .map_err(|error| format!("bind {source}: {error}"))?;
    }
    let stream = socket
        .connect(plan.addr)
        .await
        .map_err(|error| format!("connect {}: {error}", plan.addr))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A response head: its status line, the body's framing, and the bytes read past the head.
struct Head {
    status_line: String,
    framing: Framing,
    rest: Vec<u8>,
}

impl Head {
    fn status(&self) -> &str {
        self.status_line.split(' ').nth(1).unwrap_or_default()
    }
}

/// Reads one response head.
async fn read_head(stream: &mut TcpStream) -> Result<Head, String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    let end = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|error| format!("read the response: {error}"))?;
        if n == 0 {
            return Err("the hub closed the connection before answering".into());
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = head.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        if head.len() > 64 * 1024 {
            return Err("the response head is too large".into());
        }
    };
    let rest = head.split_off(end + 4);
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().trim().to_owned();
    let mut framing = Framing::Close;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked(Chunked::default());
        } else if name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked(_))
        {
            framing = Framing::Length(value.parse().unwrap_or(0));
        }
    }
    Ok(Head {
        status_line,
        framing,
        rest,
    })
}

/// `h1-reuse`: sends the warm-up request and reads its whole answer, leaving the connection
/// idle and open for the subscribe.
async fn warm_up(stream: &mut TcpStream, request: &str) -> Result<(), String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("send the warm-up request: {error}"))?;
    let Head {
        status_line,
        mut framing,
        rest,
    } = read_head(stream).await?;
    if matches!(framing, Framing::Close) {
        return Err(format!(
            "the warm-up request (GET /healthz) got {status_line} with a body delimited by the \
             connection's end: the connection cannot be reused"
        ));
    }
    let mut open = framing.decode(&rest, &mut |_| {});
    let mut chunk = [0u8; 2048];
    while open {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|error| format!("read the warm-up answer: {error}"))?;
        if n == 0 {
            return Err("the hub closed the connection after the warm-up request".into());
        }
        open = framing.decode(chunk.get(..n).unwrap_or_default(), &mut |_| {});
    }
    Ok(())
}

/// Connects, sends the request (after the warm-up with `h1-reuse`), reads the response head;
/// the connection is ready to read.
pub(super) async fn open(
    plan: &Plan,
    index: usize,
) -> Result<(TcpStream, Connection, Vec<u8>), String> {
    let mut stream = connect(plan, index).await?;
    if let Some(request) = &plan.warm_up {
        warm_up(&mut stream, request).await?;
    }
    stream
        .write_all(plan.request(index).as_bytes())
        .await
        .map_err(|error| format!("send the request: {error}"))?;
    let head = read_head(&mut stream).await?;
    check_status(plan, head.status(), &head.status_line)?;
    let connection = Connection {
        framing: head.framing,
        parser: Parser::new(),
        window: Window::default(),
        topic: plan.topic_index(index),
    };
    Ok((stream, connection, head.rest))
}

/// A subscription is open on 200 only; a refusal says what was sent and what to do.
pub(super) fn check_status(plan: &Plan, status: &str, answer: &str) -> Result<(), String> {
    match status {
        "200" => Ok(()),
        "401" | "403" => Err(format!(
            "the hub refused the subscription ({answer}): {}",
            plan.refused_hint
        )),
        _ => Err(format!("the hub answered {answer}")),
    }
}

/// One subscription from connect to close.
pub(super) async fn subscription(
    plan: Arc<Plan>,
    index: usize,
    counters: Arc<Counters>,
    gate: Arc<Semaphore>,
) {
    let permit = gate.acquire().await;
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&plan, index)).await;
    drop(permit);
    let (stream, mut connection, rest) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => {
            counters.failed.fetch_add(1, Relaxed);
            counters.note_error(error);
            return;
        }
        Err(_) => {
            counters.failed.fetch_add(1, Relaxed);
            counters.note_error(format!("no answer within {CONNECT_TIMEOUT:?}"));
            return;
        }
    };
    if let Some(topic) = counters.topics.get(connection.topic) {
        topic.subscribers.fetch_add(1, Relaxed);
    }
    counters.connected.fetch_add(1, Relaxed);
    if connection.feed(&rest, &counters) {
        loop {
            if stream.readable().await.is_err() {
                break;
            }
            match drain(&stream, &mut connection, &counters) {
                Drained::Pending => {}
                Drained::Finished => break,
                Drained::Failed(error) => {
                    counters.note_error(format!("read: {error}"));
                    break;
                }
            }
        }
    }
    counters.disconnected.fetch_add(1, Relaxed);
}

/// This process's share of the subscriptions.
pub(super) struct LocalShard {
    pub(super) counters: Arc<Counters>,
    pub(super) count: usize,
    pub(super) tasks: JoinSet<()>,
}

impl LocalShard {
    pub(super) fn start(plan: &Arc<Plan>, first: usize, count: usize) -> Self {
        let counters = Arc::new(Counters::new(plan.topics.len()));
        let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
        let mut tasks = JoinSet::new();
        if plan.mode.multiplexed() {
            let per_connection = plan.streams_per_connection;
            let mut start = first;
            while start < first + count {
                let streams = per_connection.min(first + count - start);
                tasks.spawn(multiplex::connection(
                    Arc::clone(plan),
                    start..start + streams,
                    Arc::clone(&counters),
                    Arc::clone(&gate),
                ));
                start += streams;
            }
        } else {
            for index in first..first + count {
                tasks.spawn(subscription(
                    Arc::clone(plan),
                    index,
                    Arc::clone(&counters),
                    Arc::clone(&gate),
                ));
            }
        }
        Self {
            counters,
            count,
            tasks,
        }
    }

    pub(super) fn settled(&self) -> usize {
        self.counters.connected.load(Relaxed) + self.counters.failed.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = Chunked::default();
            let mut out = Vec::new();
            let (a, b) = wire.split_at(split);
            let open_a = decoder.decode(a, &mut |bytes| out.extend_from_slice(bytes));
            let open_b = decoder.decode(b, &mut |bytes| out.extend_from_slice(bytes));
            assert_eq!(out, b"hello, world", "split at {split}");
            assert!(open_a || split >= wire.len() - 5);
            assert!(!open_b);
        }
    }

    /// A subscription on topic 0 whose body runs to the connection's end.
    fn unframed() -> Connection {
        Connection {
            framing: Framing::Close,
            parser: Parser::new(),
            window: Window::default(),
            topic: 0,
        }
    }

    #[test]
    fn a_connection_counts_deliveries_and_duplicates() {
        let counters = Counters::new(1);
        let mut connection = unframed();
        let sent = now_micros();
        let wire = format!(
            ": hello\n\nid: a\ndata: 0 {sent} x\n\nid: b\ndata: 1 {sent}\n\ndata: 1 {sent}\n\ndata: junk\n\n"
        );
        assert!(connection.feed(wire.as_bytes(), &counters));
        assert_eq!(counters.delivered.load(Relaxed), 2);
        assert_eq!(counters.topics[0].unique.load(Relaxed), 2);
        assert_eq!(counters.topics[0].duplicates.load(Relaxed), 1);
        assert_eq!(
            counters
                .latency
                .snapshot()
                .iter()
                .map(|(_, c)| c)
                .sum::<u64>(),
            2
        );
    }

    #[test]
    fn nchan_frames_are_counted_by_their_data_only() {
        // What nchan's eventsource subscriber sends: a comment first, then an id of its own
        // (`<time>:<tag>`) before each message; the body is delimited by the connection's end.
        let counters = Counters::new(1);
        let mut connection = unframed();
        let sent = now_micros();
        let wire = format!(
            ": hi\n\nid: 1795438344:0\ndata: 0 {sent} xx\n\nid: 1795438344:1\ndata: 1 {sent} xx\n\n\
             id: 1795438345:0\ndata: 1 {sent} xx\n\n"
        );
        for piece in wire.as_bytes().chunks(7) {
            assert!(connection.feed(piece, &counters));
        }
        assert_eq!(counters.delivered.load(Relaxed), 2);
        assert_eq!(counters.topics[0].duplicates.load(Relaxed), 1);
    }
}

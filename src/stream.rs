//! The event stream of one subscription: replay from history, then live frames from the hub,
//! with catch-up from history when the subscriber falls behind.
//!
//! The subscription is registered with the hub *before* history is read, so nothing published
//! in between is missed; live frames whose sequence is not above the last one written are
//! dropped, so nothing is written twice. Every frame that is ready is written in one chunk
//! (one write for many events). This module joins the hub and the store; it knows no HTTP.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::hub::Subscription;
use crate::hub::mailbox::{Delivery, Status};
use crate::store::{Store, StoreError};
use crate::update::Update;

/// `herald_deliveries_total`, looked up once: a registry lookup per chunk shows in profiles. The
/// first delivery happens after the server installed the recorder.
fn deliveries() -> &'static metrics::Counter {
    static COUNTER: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| metrics::counter!("herald_deliveries_total"))
}

/// Most updates read from history per store call.
const REPLAY_PAGE: usize = 256;
/// About how many bytes of frames one store call reads: pages shrink when updates are large, so
/// a subscriber catching up on 60 KB updates reads a few of them per call, not 256 (15 MB, read
/// again for every chunk).
const REPLAY_BYTES: usize = 4 * MAX_CHUNK;
/// A replay chunk is cut at about this many bytes so one slow client cannot pin a huge buffer.
const MAX_CHUNK: usize = 64 * 1024;

/// Past this capacity an emptied `ready` list gives its buffer back.
const KEEP_READY: usize = 16;

/// Where the stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Replay every update with a sequence above this one, then go live.
    ReplayAfter(u64),
    /// Live only; updates up to this sequence were committed before the subscription.
    LiveAfter(u64),
}

/// What the lag policy did; counted in `herald_lagging_subscribers_total{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagAction {
    /// History still holds everything missed: replay it, then go live again.
    CatchUp,
    /// History no longer holds it: end the stream; the client reconnects with Last-Event-ID.
    Close,
}

impl LagAction {
    fn label(self) -> &'static str {
        match self {
            LagAction::CatchUp => "catch_up",
            LagAction::Close => "close",
        }
    }
}

enum Phase {
    Replay,
    Live,
    Done,
}

/// One subscriber's outgoing stream.
pub struct EventStream {
    subscription: Subscription,
    store: Arc<dyn Store>,
    prelude: Option<Bytes>,
    phase: Phase,
    /// The highest sequence written (or deliberately skipped).
    last_seq: u64,
    ready: Vec<Delivery>,
    /// Write each update's canonical topic as a `topic:` field (`herald-topic=1`).
    topic_field: bool,
    /// Updates per history read, adapted to their size.
    page: usize,
}

impl EventStream {
    /// A stream that first writes `prelude` (the opening comment, a gap notice), then follows
    /// `start`.
    pub fn new(
        subscription: Subscription,
        store: Arc<dyn Store>,
        prelude: Bytes,
        start: Start,
    ) -> EventStream {
        let (phase, last_seq) = match start {
            Start::ReplayAfter(seq) => (Phase::Replay, seq),
            Start::LiveAfter(seq) => (Phase::Live, seq),
        };
        EventStream {
            subscription,
            store,
            prelude: Some(prelude).filter(|bytes| !bytes.is_empty()),
            phase,
            last_seq,
            ready: Vec::new(),
            topic_field: false,
            // Small first: the first read tells the size of the updates.
            page: 32,
        }
    }

    /// Makes every update carry its canonical topic as a `topic:` field line (see
    /// [`Update::frame_with_topic`]).
    pub fn with_topic_field(mut self, topic_field: bool) -> EventStream {
        self.topic_field = topic_field;
        self
    }

    /// The next chunk to write; `None` when the stream is over.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(prelude) = self.prelude.take() {
            return Some(prelude);
        }
        loop {
            match self.phase {
                Phase::Done => return None,
                Phase::Replay => match self.replay_page().await {
                    Ok(Some(chunk)) => return Some(chunk),
                    Ok(None) => self.phase = Phase::Live,
                    Err(error) => {
                        tracing::warn!(%error, "history read failed; closing the stream");
                        self.phase = Phase::Done;
                    }
                },
                Phase::Live => {
                    // Frames left over from a drain that filled a whole chunk go first.
                    if let Some(chunk) = self.coalesce_ready() {
                        return Some(chunk);
                    }
                    let mailbox = &self.subscription.subscriber().mailbox;
                    // About one chunk at a time: what the mailbox still holds counts against its
                    // byte budget, what this stream holds would not.
                    let status = std::future::poll_fn(|cx| {
                        mailbox.poll_drain_up_to(cx, &mut self.ready, MAX_CHUNK)
                    })
                    .await;
                    if let Some(chunk) = self.coalesce_ready() {
                        return Some(chunk);
                    }
                    match status {
                        Status::Live => {}
                        Status::Closed => self.phase = Phase::Done,
                        Status::Lagging => {
                            let action = self.lag_action().await;
                            metrics::counter!(
                                "herald_lagging_subscribers_total",
                                "action" => action.label()
                            )
                            .increment(1);
                            tracing::debug!(
                                subscriber = self.subscription.subscriber().id,
                                action = action.label(),
                                "subscriber fell behind"
                            );
                            match action {
                                LagAction::CatchUp => {
                                    self.subscription.subscriber().mailbox.resume();
                                    self.phase = Phase::Replay;
                                }
                                LagAction::Close => self.phase = Phase::Done,
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads history after `last_seq` until some frames for this subscriber are found.
    /// `Ok(None)` once history has nothing more.
    async fn replay_page(&mut self) -> Result<Option<Bytes>, StoreError> {
        loop {
            let asked = self.page;
            let page = self.store.read_after(self.last_seq, asked).await?;
            let history_exhausted = page.len() < asked;
            let bytes: usize = page.iter().map(|update| update.frame.len()).sum();
            if let Some(fit) = REPLAY_BYTES.saturating_mul(page.len()).checked_div(bytes) {
                self.page = fit.clamp(1, REPLAY_PAGE);
            }
            let subscriber = Arc::clone(self.subscription.subscriber());
            let mut chunk = BytesMut::new();
            let mut written = 0;
            for update in &page {
                self.last_seq = update.seq;
                if subscriber.may_receive(update) {
                    chunk.extend_from_slice(&frame_of(update, self.topic_field));
                    written += 1;
                    if chunk.len() >= MAX_CHUNK {
                        break;
                    }
                }
            }
            if written > 0 {
                deliveries().increment(written);
                metrics::counter!("herald_replayed_total").increment(written);
                return Ok(Some(chunk.freeze()));
            }
            // Nothing in this page was for this subscriber: read on, unless history ends here.
            if history_exhausted {
                return Ok(None);
            }
        }
    }

    /// Joins ready deliveries into one chunk of about [`MAX_CHUNK`] bytes at most (a single
    /// larger frame is passed as is, without a copy), dropping updates already written. What
    /// does not fit stays ready for the next chunk, so a subscriber with a full queue never
    /// costs a copy of the whole queue.
    fn coalesce_ready(&mut self) -> Option<Bytes> {
        let mut taken = 0;
        let mut updates = 0u64;
        let mut first: Option<Bytes> = None;
        let mut joined: Option<BytesMut> = None;
        for delivery in &self.ready {
            taken += 1;
            let (is_update, frame) = match delivery {
                Delivery::Update(update) if update.seq <= self.last_seq => continue,
                Delivery::Update(update) => {
                    self.last_seq = update.seq;
                    (true, frame_of(update, self.topic_field))
                }
                Delivery::Comment(comment) => (false, comment.clone()),
            };
            updates += u64::from(is_update);
            let size = match (&first, &mut joined) {
                (None, _) => {
                    let size = frame.len();
                    first = Some(frame);
                    size
                }
                (Some(first), None) => {
                    let mut buffer = BytesMut::with_capacity(first.len() + frame.len() + 256);
                    buffer.extend_from_slice(first);
                    buffer.extend_from_slice(&frame);
                    let size = buffer.len();
                    joined = Some(buffer);
                    size
                }
                (Some(_), Some(buffer)) => {
                    buffer.extend_from_slice(&frame);
                    buffer.len()
                }
            };
            if size >= MAX_CHUNK {
                break;
            }
        }
        self.ready.drain(..taken);
        if self.ready.is_empty() && self.ready.capacity() > KEEP_READY {
            // A burst has drained: give its buffer back.
            self.ready = Vec::new();
        }
        let chunk = match joined {
            Some(buffer) => buffer.freeze(),
            None => first?,
        };
        if updates > 0 {
            deliveries().increment(updates);
        }
        Some(chunk)
    }

    /// Catch up when history still holds everything after `last_seq`; close otherwise.
    async fn lag_action(&self) -> LagAction {
        match self.store.bounds().await {
            Ok(bounds) => match bounds.oldest {
                Some((oldest, _)) if oldest <= self.last_seq + 1 => LagAction::CatchUp,
                _ => LagAction::Close,
            },
            Err(_) => LagAction::Close,
        }
    }
}

fn frame_of(update: &Update, topic_field: bool) -> Bytes {
    if topic_field {
        update.frame_with_topic()
    } else {
        update.frame.clone()
    }
}

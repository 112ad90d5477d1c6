//! The event stream of one subscription: replay from history, then live frames from the hub,
//! with catch-up from history when the subscriber falls behind.
//!
//! The subscription is registered with the hub *before* history is read, so nothing published
//! in between is missed; live frames whose sequence is not above the last one written are
//! dropped, so nothing is written twice. Every frame that is ready is written in one chunk
//! (one write for many events). This module joins the hub and the store; it knows no HTTP.
//!
//! # Never a silent skip
//! History is not always one contiguous run of the log: with `--history-per-topic`, retention
//! keeps a topic's newest updates and trims around them, so history has holes below
//! [`crate::store::Bounds::trimmed_through`], and a replay that started before a trim may find
//! its next updates gone. The stream knows up to which sequence its client was already told of
//! losses (`announced`: the `herald-gap` notice, or a start that replays "whatever is kept").
//! Whenever a replay page skips sequences above that, it asks the store whether anything after
//! the last sequence written was trimmed; if so, it ends the stream after what it has written,
//! so the client reconnects with its `Last-Event-ID` and is told of the gap. Catching up after
//! a lag follows the same rule.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::hub::Subscription;
use crate::hub::mailbox::{Delivery, Status};
use crate::store::{Store, StoreError};
use crate::telemetry::names;
use crate::update::Update;

/// `herald_deliveries_total`, looked up once: a registry lookup per chunk shows in profiles. The
/// first delivery happens after the server installed the recorder.
fn deliveries() -> &'static metrics::Counter {
    static COUNTER: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| metrics::counter!(names::DELIVERIES_TOTAL))
}

/// Most updates read from history per store call.
const REPLAY_PAGE: usize = 256;
/// About how many bytes of frames one store call reads: pages shrink when updates are large, so
/// a subscriber catching up on 60 KB updates reads a few of them per call, not 256 (15 MB, read
/// again for every chunk).
const REPLAY_BYTES: usize = 4 * MAX_CHUNK;
/// A replay chunk is cut at about this many bytes so one slow client cannot pin a huge buffer.
const MAX_CHUNK: usize = 64 * 1024;

/// Past this capacity an emptied `ready` list gives its buffer back (the mailbox's own
/// threshold: a few deliveries per wake-up keep their buffer, a drained burst frees it).
const KEEP_READY: usize = crate::hub::mailbox::KEEP_BUFFER;

/// Where the stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Replay every update with a sequence above `after`, then go live. Updates trimmed up to
    /// `announced` (at least `after`) are known lost to the client: skipping them is no gap.
    ReplayAfter { after: u64, announced: u64 },
    /// Live only; updates up to this sequence were committed before the subscription.
    LiveAfter(u64),
}

/// What the lag policy did; counted in `herald_lagging_subscribers_total{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LagAction {
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

/// What one replay step found.
enum Replayed {
    /// Frames for this subscriber.
    Chunk(Bytes),
    /// History has nothing more: go live.
    Exhausted,
    /// Updates after the last one written were trimmed: write what was found, then end.
    Lost(Option<Bytes>),
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
    /// Updates trimmed up to this sequence were announced (or accepted) as lost.
    announced: u64,
    ready: Vec<Delivery>,
    /// Write each update's canonical topic as a `topic:` field (`herald-topic=1`).
    topic_field: bool,
    /// Updates per history read, adapted to their size.
    page: usize,
}

impl EventStream {
    /// A stream that first writes `prelude` (the opening comment, a gap notice), then follows
    /// `start`.
    pub(crate) fn new(
        subscription: Subscription,
        store: Arc<dyn Store>,
        prelude: Bytes,
        start: Start,
    ) -> EventStream {
        let (phase, last_seq, announced) = match start {
            Start::ReplayAfter { after, announced } => (Phase::Replay, after, announced.max(after)),
            Start::LiveAfter(seq) => (Phase::Live, seq, seq),
        };
        EventStream {
            subscription,
            store,
            prelude: Some(prelude).filter(|bytes| !bytes.is_empty()),
            phase,
            last_seq,
            announced,
            ready: Vec::new(),
            topic_field: false,
            // Small first: the first read tells the size of the updates.
            page: 32,
        }
    }

    /// Makes every update carry its canonical topic as a `topic:` field line (see
    /// [`Update::frame_with_topic`]).
    pub(crate) fn with_topic_field(mut self, topic_field: bool) -> EventStream {
        self.topic_field = topic_field;
        self
    }

    /// The next chunk to write; `None` when the stream is over.
    pub(crate) async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(prelude) = self.prelude.take() {
            return Some(prelude);
        }
        loop {
            match self.phase {
                Phase::Done => return None,
                Phase::Replay => match self.replay_page().await {
                    Ok(Replayed::Chunk(chunk)) => return Some(chunk),
                    Ok(Replayed::Exhausted) => self.phase = Phase::Live,
                    Ok(Replayed::Lost(chunk)) => {
                        tracing::debug!(
                            subscriber = self.subscription.subscriber().id,
                            after = self.last_seq,
                            "updates the client has not seen were trimmed; closing the stream"
                        );
                        metrics::counter!(names::LAGGING_SUBSCRIBERS_TOTAL, "action" => "close")
                            .increment(1);
                        self.phase = Phase::Done;
                        if chunk.is_some() {
                            return chunk;
                        }
                    }
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
                                names::LAGGING_SUBSCRIBERS_TOTAL,
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
    async fn replay_page(&mut self) -> Result<Replayed, StoreError> {
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
            // Checked at most once per page: a check made after the page was read covers it all.
            let mut page_checked = false;
            for update in &page {
                let skipped_from = self.last_seq.saturating_add(1).max(self.announced + 1);
                if update.seq > skipped_from && !page_checked {
                    // Sequences were skipped that the client was not told about: were any of
                    // them trimmed (or only never assigned, as between Redis stream ids)?
                    page_checked = true;
                    let trimmed = self.store.bounds().await?.trimmed_through;
                    if trimmed > self.last_seq.max(self.announced) {
                        if written > 0 {
                            deliveries().increment(written);
                            metrics::counter!(names::REPLAYED_TOTAL).increment(written);
                        }
                        return Ok(Replayed::Lost(
                            Some(chunk.freeze()).filter(|chunk| !chunk.is_empty()),
                        ));
                    }
                }
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
                metrics::counter!(names::REPLAYED_TOTAL).increment(written);
                return Ok(Replayed::Chunk(chunk.freeze()));
            }
            // Nothing in this page was for this subscriber: read on, unless history ends here.
            if history_exhausted {
                return Ok(Replayed::Exhausted);
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
                Delivery::Comment(comment) => (false, Bytes::from_static(comment)),
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

    /// Catch up when history still holds everything after `last_seq` (nothing above it was
    /// trimmed: with per-topic retention the oldest kept says nothing about holes); close
    /// otherwise.
    async fn lag_action(&self) -> LagAction {
        match self.store.bounds().await {
            Ok(bounds) if bounds.trimmed_through <= self.last_seq.max(self.announced) => {
                LagAction::CatchUp
            }
            _ => LagAction::Close,
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

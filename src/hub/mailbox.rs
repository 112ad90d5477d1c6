//! One subscriber's bounded queue of frames waiting to be written.
//!
//! The fan-out pushes, the subscriber's response body drains. The queue never grows past its
//! capacity: a push that does not fit switches the mailbox to `Lagging` and is dropped, and from
//! then on the consumer knows it must recover the missed updates from history (or close the
//! stream so the client reconnects with Last-Event-ID). Nothing is lost silently.
//!
//! The queue is bounded twice: in deliveries (`--queue-size`) and in bytes of the frames it holds
//! (`--queue-bytes`), so a subscriber that stopped reading pins at most that many bytes of large
//! updates, not `--queue-size` of them. One update is always accepted by an empty queue, however
//! large (the publish body limit bounds it). The consumer drains in pieces of about a chunk
//! ([`Mailbox::poll_drain_up_to`]), so what it holds outside the queue stays small too.
//!
//! One mutex per mailbox, held for a few instructions; the waker is stored inside it so a push
//! and a drain never miss each other.
//!
//! A burst grows two buffers per subscriber: the queue, and the list the consumer drains into.
//! A busy mailbox keeps both (no free and regrow per wake-up); a quiet one gives them back: the
//! consumer parks its emptied list here when it waits, and the hub's sweep
//! ([`Mailbox::release_if_quiet`]) frees both once nothing was pushed for a sweep period, or,
//! when neither is larger than a single delivery leaves it ([`SMALL_BUFFER`]), once nothing was
//! pushed for [`SMALL_QUIET_SWEEPS`] periods: a subscriber that gets an update every few seconds
//! keeps two small buffers instead of freeing and growing them for every update.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::update::Update;

/// Something to write to one subscriber: 16 bytes, so the queues a burst grows stay small
/// (`Bytes` here made every slot 32).
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A committed update (its frame is shared with every other subscriber).
    Update(Arc<Update>),
    /// A comment, such as a heartbeat: always one of the hub's own, so static.
    Comment(&'static [u8]),
}

/// The state of a mailbox as seen by its consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every update since the subscriber went live is in the queue or was drained.
    Live,
    /// An update did not fit: the consumer must catch up from history, then call [`Mailbox::resume`].
    Lagging,
    /// The hub is shutting down or the subscription ended: write what is queued, then stop.
    Closed,
}

/// What happened to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// This push overflowed the queue; the mailbox is now lagging.
    Overflowed,
    /// The mailbox was already lagging or closed; nothing was queued.
    Ignored,
}

/// Past this capacity an emptied queue gives its buffer back, so a burst does not pin memory
/// (64 deliveries would pin 1 KB per subscriber, a fifth of an idle subscriber's whole cost).
/// 16, not the 4 the first push allocates: a subscriber that regularly gets a handful of
/// deliveries per wake-up keeps its buffer instead of freeing and growing it every time, and a
/// drained queue pins at most 16 slots (256 B).
pub(crate) const KEEP_BUFFER: usize = 16;

/// The capacity one delivery gives an empty queue or drain list: buffers no larger than this
/// are kept for [`SMALL_QUIET_SWEEPS`] quiet sweeps, larger ones for one.
pub(crate) const SMALL_BUFFER: usize = 4;

/// Quiet sweep periods (half a second each) before a mailbox's small buffers go: 20 s.
pub(crate) const SMALL_QUIET_SWEEPS: u8 = 40;

/// A bounded queue with a waker.
pub struct Mailbox {
    capacity: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

struct State {
    queue: VecDeque<Delivery>,
    /// Bytes of the update frames in `queue` (comments are not counted: one tiny heartbeat at
    /// most, and only in an otherwise empty queue).
    bytes: usize,
    waker: Option<Waker>,
    status: Status,
    /// The consumer's emptied drain list, parked while it waits (reused by its next drain).
    spare: Vec<Delivery>,
    /// Calls of [`Mailbox::release_if_quiet`] since an update was last pushed (a push sets 0).
    sweeps_since_push: u8,
}

impl Delivery {
    /// Bytes counted against the mailbox's byte budget.
    fn counted_bytes(&self) -> usize {
        match self {
            Delivery::Update(update) => update.frame.len(),
            Delivery::Comment(_) => 0,
        }
    }

    /// Bytes this delivery writes.
    fn len(&self) -> usize {
        match self {
            Delivery::Update(update) => update.frame.len(),
            Delivery::Comment(comment) => comment.len(),
        }
    }
}

impl Mailbox {
    /// An empty, live mailbox holding at most `capacity` deliveries, with no byte budget.
    pub fn new(capacity: usize) -> Mailbox {
        Mailbox::with_budget(capacity, usize::MAX)
    }

    /// An empty, live mailbox holding at most `capacity` deliveries and at most `max_bytes` of
    /// update frames (one update of any size fits in an empty queue).
    pub(crate) fn with_budget(capacity: usize, max_bytes: usize) -> Mailbox {
        Mailbox {
            capacity: capacity.max(1),
            max_bytes,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                waker: None,
                status: Status::Live,
                spare: Vec::new(),
                sweeps_since_push: 0,
            }),
        }
    }

    /// Queues an update, or marks the mailbox lagging if it is full (in deliveries or bytes).
    pub(crate) fn push(&self, update: &Arc<Update>) -> Pushed {
        let size = update.frame.len();
        let (pushed, waker) = {
            let mut state = self.state.lock();
            let fits = state.queue.len() < self.capacity
                && (state.bytes == 0 || state.bytes.saturating_add(size) <= self.max_bytes);
            match state.status {
                Status::Live if fits => {
                    state.queue.push_back(Delivery::Update(Arc::clone(update)));
                    state.bytes += size;
                    state.sweeps_since_push = 0;
                    (Pushed::Queued, state.waker.take())
                }
                Status::Live => {
                    state.status = Status::Lagging;
                    (Pushed::Overflowed, state.waker.take())
                }
                Status::Lagging | Status::Closed => (Pushed::Ignored, None),
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        pushed
    }

    /// Queues a comment if nothing else is waiting (a heartbeat is only needed on a quiet stream).
    pub(crate) fn push_idle_comment(&self, comment: &'static [u8]) {
        let waker = {
            let mut state = self.state.lock();
            if state.status != Status::Live || !state.queue.is_empty() {
                return;
            }
            state.queue.push_back(Delivery::Comment(comment));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ends the stream after what is already queued.
    pub(crate) fn close(&self) {
        let waker = {
            let mut state = self.state.lock();
            state.status = Status::Closed;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// After catching up from history: accept pushes again.
    pub(crate) fn resume(&self) {
        let mut state = self.state.lock();
        if state.status == Status::Lagging {
            state.status = Status::Live;
        }
    }

    /// Moves everything queued into `out`. Ready when something was moved or the status is not
    /// `Live`; otherwise registers the waker and returns pending.
    pub fn poll_drain(&self, cx: &mut Context<'_>, out: &mut Vec<Delivery>) -> Poll<Status> {
        self.poll_drain_up_to(cx, out, usize::MAX)
    }

    /// Moves queued deliveries into `out` until about `max_bytes` were moved (at least one).
    /// While some remain queued the status reported is `Live`: `Lagging` and `Closed` are only
    /// reported once the queue is empty, so the consumer acts on them after writing everything.
    /// Pending (with the waker registered) when nothing is queued and the mailbox is live; an
    /// empty `out` then leaves its buffer here, and a later drain into an `out` with no buffer
    /// gets it back.
    pub(crate) fn poll_drain_up_to(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Delivery>,
        max_bytes: usize,
    ) -> Poll<Status> {
        let mut state = self.state.lock();
        if state.queue.is_empty() {
            if state.status == Status::Live {
                if out.is_empty() && out.capacity() > 0 {
                    state.spare = std::mem::take(out);
                }
                match &state.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => state.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            return Poll::Ready(state.status);
        }
        if out.capacity() == 0 {
            *out = std::mem::take(&mut state.spare);
        }
        let mut moved = 0usize;
        while moved < max_bytes {
            let Some(delivery) = state.queue.pop_front() else {
                break;
            };
            moved = moved.saturating_add(delivery.len());
            state.bytes -= delivery.counted_bytes();
            out.push(delivery);
        }
        if !state.queue.is_empty() {
            return Poll::Ready(Status::Live);
        }
        state.bytes = 0;
        if state.queue.capacity() > KEEP_BUFFER {
            state.queue = VecDeque::new();
        }
        Poll::Ready(state.status)
    }

    /// Frees the queue's buffer and the parked drain list when nothing is queued and nothing was
    /// pushed since the previous call (or, when both are small, since [`SMALL_QUIET_SWEEPS`]
    /// calls): the hub's sweep calls it every period, so what a burst grew is given back one to
    /// two periods after the burst, while a mailbox that keeps receiving keeps its buffers.
    /// Returns whether it freed anything.
    pub(crate) fn release_if_quiet(&self) -> bool {
        let mut state = self.state.lock();
        if !state.queue.is_empty() {
            // Still queued: a period as busy as one with a push in it.
            state.sweeps_since_push = 1;
            return false;
        }
        state.sweeps_since_push = state.sweeps_since_push.saturating_add(1);
        // The first call after a push covers a period with that push in it; each later one, a
        // whole period without any.
        let quiet_periods = state.sweeps_since_push - 1;
        let (queue, spare) = (state.queue.capacity(), state.spare.capacity());
        let small = queue <= SMALL_BUFFER && spare <= SMALL_BUFFER;
        let needed = if small { SMALL_QUIET_SWEEPS } else { 1 };
        if queue + spare == 0 || quiet_periods < needed {
            return false;
        }
        state.queue = VecDeque::new();
        state.spare = Vec::new();
        true
    }

    /// Number of deliveries waiting.
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deliveries the queue's buffer holds room for (what a drained burst would pin).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.state.lock().queue.capacity()
    }

    /// Deliveries the parked drain list holds room for.
    #[cfg(test)]
    pub(crate) fn spare_capacity(&self) -> usize {
        self.state.lock().spare.capacity()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::task::Waker;

    use super::*;
    use crate::update::Draft;

    fn update() -> Arc<Update> {
        Arc::new(
            Update::from_draft(Draft {
                topics: vec!["t".into()],
                ..Draft::default()
            })
            .unwrap(),
        )
    }

    fn drain(mailbox: &Mailbox) -> (Poll<Status>, usize) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let poll = mailbox.poll_drain(&mut cx, &mut out);
        (poll, out.len())
    }

    #[test]
    fn overflow_switches_to_lagging_and_keeps_what_fitted() {
        let mailbox = Mailbox::new(2);
        let update = update();
        assert_eq!(mailbox.push(&update), Pushed::Queued);
        assert_eq!(mailbox.push(&update), Pushed::Queued);
        assert_eq!(mailbox.push(&update), Pushed::Overflowed);
        assert_eq!(mailbox.push(&update), Pushed::Ignored);
        assert_eq!(drain(&mailbox), (Poll::Ready(Status::Lagging), 2));
        assert_eq!(drain(&mailbox), (Poll::Ready(Status::Lagging), 0));
        mailbox.resume();
        assert_eq!(drain(&mailbox), (Poll::Pending, 0));
        assert_eq!(mailbox.push(&update), Pushed::Queued);
    }

    fn sized(bytes: usize) -> Arc<Update> {
        Arc::new(
            Update::from_draft(Draft {
                topics: vec!["t".into()],
                data: "d".repeat(bytes),
                ..Draft::default()
            })
            .unwrap(),
        )
    }

    #[test]
    fn the_byte_budget_switches_to_lagging_before_the_count_does() {
        let big = sized(40_000);
        let frame = big.frame.len();
        let mailbox = Mailbox::with_budget(1024, 100_000);
        assert_eq!(mailbox.push(&big), Pushed::Queued);
        assert_eq!(mailbox.push(&big), Pushed::Queued);
        assert_eq!(mailbox.push(&big), Pushed::Overflowed);
        assert_eq!(mailbox.len(), 2);
        assert_eq!(mailbox.state.lock().bytes, 2 * frame);
        // Drained one piece at a time: the rest stays queued and the lag is reported last.
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let poll = mailbox.poll_drain_up_to(&mut cx, &mut out, 1);
        assert_eq!((poll, out.len()), (Poll::Ready(Status::Live), 1));
        let poll = mailbox.poll_drain_up_to(&mut cx, &mut out, 1);
        assert_eq!((poll, out.len()), (Poll::Ready(Status::Lagging), 2));
        assert_eq!(mailbox.state.lock().bytes, 0);
        mailbox.resume();
        // An empty queue takes one update larger than the whole budget.
        let huge = sized(150_000);
        assert_eq!(mailbox.push(&huge), Pushed::Queued);
        assert_eq!(mailbox.push(&sized(10)), Pushed::Overflowed);
    }

    #[test]
    fn a_queued_delivery_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<Delivery>(), 16);
    }

    #[test]
    fn heartbeats_only_go_to_quiet_mailboxes() {
        let mailbox = Mailbox::new(4);
        mailbox.push_idle_comment(herald_sse::EMPTY_COMMENT);
        mailbox.push_idle_comment(herald_sse::EMPTY_COMMENT);
        assert_eq!(mailbox.len(), 1);
        mailbox.push(&update());
        assert_eq!(drain(&mailbox), (Poll::Ready(Status::Live), 2));
    }

    #[test]
    fn close_drains_then_reports_closed() {
        let mailbox = Mailbox::new(4);
        mailbox.push(&update());
        mailbox.close();
        assert_eq!(mailbox.push(&update()), Pushed::Ignored);
        assert_eq!(drain(&mailbox), (Poll::Ready(Status::Closed), 1));
        assert_eq!(drain(&mailbox), (Poll::Ready(Status::Closed), 0));
    }

    #[test]
    fn a_queue_that_grew_in_a_burst_gives_its_buffer_back_once_drained() {
        let mailbox = Mailbox::new(1024);
        for _ in 0..500 {
            assert_eq!(mailbox.push(&update()), Pushed::Queued);
        }
        assert!(mailbox.buffer_capacity() >= 500);
        // Drained in pieces, as a stream does: the buffer is kept until the queue is empty.
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let poll = mailbox.poll_drain_up_to(&mut cx, &mut out, 1);
        assert_eq!(poll, Poll::Ready(Status::Live));
        assert!(mailbox.buffer_capacity() >= 499);
        let (poll, _) = drain(&mailbox);
        assert_eq!(poll, Poll::Ready(Status::Live));
        assert!(mailbox.is_empty());
        assert!(
            mailbox.buffer_capacity() <= KEEP_BUFFER,
            "a drained burst pins {} slots",
            mailbox.buffer_capacity()
        );
    }

    #[test]
    fn a_steady_trickle_keeps_its_small_buffer() {
        let mailbox = Mailbox::new(1024);
        assert_eq!(mailbox.push(&update()), Pushed::Queued);
        let first = mailbox.buffer_capacity();
        assert!(
            first > 0 && first <= KEEP_BUFFER,
            "first push allocates {first}"
        );
        assert_eq!(drain(&mailbox), (Poll::Ready(Status::Live), 1));
        for _ in 0..10 {
            assert_eq!(mailbox.push(&update()), Pushed::Queued);
            assert_eq!(drain(&mailbox), (Poll::Ready(Status::Live), 1));
            assert_eq!(
                mailbox.buffer_capacity(),
                first,
                "reallocated on a steady stream"
            );
        }
        // A handful per wake-up: the grown buffer is kept, not freed and grown again each time.
        let fill = |count: usize| {
            for _ in 0..count {
                assert_eq!(mailbox.push(&update()), Pushed::Queued);
            }
        };
        fill(8);
        assert_eq!(drain(&mailbox), (Poll::Ready(Status::Live), 8));
        let grown = mailbox.buffer_capacity();
        for _ in 0..10 {
            fill(8);
            assert_eq!(drain(&mailbox), (Poll::Ready(Status::Live), 8));
            assert_eq!(mailbox.buffer_capacity(), grown, "churned on 8 per wake-up");
        }
    }

    #[test]
    fn a_quiet_mailbox_gives_back_both_buffers_and_a_busy_one_keeps_them() {
        let mailbox = Mailbox::new(1024);
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        for _ in 0..12 {
            assert_eq!(mailbox.push(&update()), Pushed::Queued);
        }
        let poll = mailbox.poll_drain_up_to(&mut cx, &mut out, usize::MAX);
        assert_eq!((poll, out.len()), (Poll::Ready(Status::Live), 12));
        let grown = out.capacity();
        assert!(grown >= 12);
        out.clear();
        // The consumer waits: its emptied list is parked in the mailbox.
        let poll = mailbox.poll_drain_up_to(&mut cx, &mut out, usize::MAX);
        assert_eq!(poll, Poll::Pending);
        assert_eq!(out.capacity(), 0);
        assert_eq!(mailbox.spare_capacity(), grown);
        // Pushed since the last sweep: busy, kept. The next drain gets the parked list back.
        assert!(!mailbox.release_if_quiet());
        assert_eq!(mailbox.push(&update()), Pushed::Queued);
        assert!(!mailbox.release_if_quiet());
        let poll = mailbox.poll_drain_up_to(&mut cx, &mut out, usize::MAX);
        assert_eq!((poll, out.len()), (Poll::Ready(Status::Live), 1));
        assert_eq!(out.capacity(), grown, "the parked list was not reused");
        out.clear();
        assert_eq!(
            mailbox.poll_drain_up_to(&mut cx, &mut out, usize::MAX),
            Poll::Pending
        );
        assert!(mailbox.buffer_capacity() > 0 && mailbox.spare_capacity() > 0);
        // A whole sweep period with no push: both buffers go.
        assert!(mailbox.release_if_quiet());
        assert_eq!(mailbox.buffer_capacity(), 0);
        assert_eq!(mailbox.spare_capacity(), 0);
        assert!(!mailbox.release_if_quiet());
        // And the mailbox works as before.
        assert_eq!(mailbox.push(&update()), Pushed::Queued);
        assert_eq!(drain(&mailbox), (Poll::Ready(Status::Live), 1));
    }

    #[test]
    fn small_buffers_outlive_a_few_quiet_sweeps_and_go_after_many() {
        let mailbox = Mailbox::new(1024);
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let deliver_one = |out: &mut Vec<Delivery>, cx: &mut Context<'_>| {
            assert_eq!(mailbox.push(&update()), Pushed::Queued);
            let poll = mailbox.poll_drain_up_to(cx, out, usize::MAX);
            assert_eq!((poll, out.len()), (Poll::Ready(Status::Live), 1));
            out.clear();
            assert_eq!(mailbox.poll_drain_up_to(cx, out, usize::MAX), Poll::Pending);
        };
        deliver_one(&mut out, &mut cx);
        let (queue, spare) = (mailbox.buffer_capacity(), mailbox.spare_capacity());
        assert!(queue > 0 && queue <= SMALL_BUFFER && spare > 0 && spare <= SMALL_BUFFER);
        // One update every few sweeps: the small buffers stay.
        for _ in 0..3 {
            for _ in 0..SMALL_QUIET_SWEEPS / 2 {
                assert!(!mailbox.release_if_quiet());
            }
            deliver_one(&mut out, &mut cx);
            assert_eq!(mailbox.buffer_capacity(), queue);
            assert_eq!(mailbox.spare_capacity(), spare);
        }
        // The push resets the count: SMALL_QUIET_SWEEPS quiet calls after it, they go.
        assert!(!mailbox.release_if_quiet(), "pushed since the last sweep");
        for _ in 1..SMALL_QUIET_SWEEPS {
            assert!(!mailbox.release_if_quiet());
        }
        assert!(mailbox.release_if_quiet());
        assert_eq!(
            (mailbox.buffer_capacity(), mailbox.spare_capacity()),
            (0, 0)
        );
    }

    #[test]
    fn a_sweep_never_frees_what_is_still_queued() {
        let mailbox = Mailbox::new(16);
        assert_eq!(mailbox.push(&update()), Pushed::Queued);
        assert!(!mailbox.release_if_quiet());
        assert!(
            !mailbox.release_if_quiet(),
            "freed a queue holding an update"
        );
        assert_eq!(mailbox.len(), 1);
        assert_eq!(drain(&mailbox), (Poll::Ready(Status::Live), 1));
    }
}

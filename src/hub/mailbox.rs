//! One subscriber's bounded queue of frames waiting to be written.
//!
//! The fan-out pushes, the subscriber's response body drains. The queue never grows past its
//! capacity: a push that does not fit switches the mailbox to `Lagging` and is dropped, and from
//! then on the consumer knows it must recover the missed updates from history (or close the
//! stream so the client reconnects with Last-Event-ID). Nothing is lost silently.
//!
//! One mutex per mailbox, held for a few instructions; the waker is stored inside it so a push
//! and a drain never miss each other.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::update::Update;

/// Something to write to one subscriber.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A committed update (its frame is shared with every other subscriber).
    Update(Arc<Update>),
    /// A comment, such as a heartbeat.
    Comment(Bytes),
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
pub enum Pushed {
    Queued,
    /// This push overflowed the queue; the mailbox is now lagging.
    Overflowed,
    /// The mailbox was already lagging or closed; nothing was queued.
    Ignored,
}

/// Past this capacity an emptied queue gives its buffer back, so a burst does not pin memory.
const KEEP_BUFFER: usize = 64;

/// A bounded queue with a waker.
pub struct Mailbox {
    capacity: usize,
    state: Mutex<State>,
}

struct State {
    queue: VecDeque<Delivery>,
    waker: Option<Waker>,
    status: Status,
}

impl Mailbox {
    /// An empty, live mailbox holding at most `capacity` deliveries.
    pub fn new(capacity: usize) -> Mailbox {
        Mailbox {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                waker: None,
                status: Status::Live,
            }),
        }
    }

    /// Queues an update, or marks the mailbox lagging if it is full.
    pub fn push(&self, update: &Arc<Update>) -> Pushed {
        let (pushed, waker) = {
            let mut state = self.state.lock();
            match state.status {
                Status::Live if state.queue.len() < self.capacity => {
                    state.queue.push_back(Delivery::Update(Arc::clone(update)));
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
    pub fn push_idle_comment(&self, comment: &Bytes) {
        let waker = {
            let mut state = self.state.lock();
            if state.status != Status::Live || !state.queue.is_empty() {
                return;
            }
            state.queue.push_back(Delivery::Comment(comment.clone()));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ends the stream after what is already queued.
    pub fn close(&self) {
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
    pub fn resume(&self) {
        let mut state = self.state.lock();
        if state.status == Status::Lagging {
            state.status = Status::Live;
        }
    }

    /// Moves everything queued into `out`. Ready when something was moved or the status is not
    /// `Live`; otherwise registers the waker and returns pending.
    pub fn poll_drain(&self, cx: &mut Context<'_>, out: &mut Vec<Delivery>) -> Poll<Status> {
        let mut state = self.state.lock();
        if state.queue.is_empty() {
            if state.status == Status::Live {
                match &state.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => state.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            return Poll::Ready(state.status);
        }
        out.extend(state.queue.drain(..));
        if state.queue.capacity() > KEEP_BUFFER {
            state.queue = VecDeque::new();
        }
        Poll::Ready(state.status)
    }

    /// Number of deliveries waiting.
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[test]
    fn heartbeats_only_go_to_quiet_mailboxes() {
        let mailbox = Mailbox::new(4);
        let beat = Bytes::from_static(b":\n\n");
        mailbox.push_idle_comment(&beat);
        mailbox.push_idle_comment(&beat);
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
}

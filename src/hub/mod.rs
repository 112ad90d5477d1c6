//! Live state: who is subscribed, their bounded queues, fan-out, heartbeats, shutdown.
//!
//! The hub knows no HTTP, JWT or disk. It receives committed updates (from the store's writer,
//! or from a cluster bus like a local publisher) and queues each one, as a shared frame, for every
//! subscriber allowed to receive it. A [`Subscription`] is the RAII handle of one subscriber: when
//! the response that owns it is dropped (client gone, write failed, shutdown) the subscriber is
//! removed at once.

pub(crate) mod expiry;
pub mod mailbox;
pub(crate) mod registry;

pub(crate) use registry::PatternCounts;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::telemetry::names;
use crate::topic::SelectorSet;
use crate::update::Update;
use expiry::ExpiryQueue;
use mailbox::Mailbox;
use registry::Registry;

/// One live subscriber.
pub struct Subscriber {
    /// Unique within this hub process.
    pub id: u64,
    /// What the subscriber asked for (`topic=` selectors).
    pub selectors: SelectorSet,
    /// Topics whose private updates the subscriber's token allows (`mercure.subscribe`); `None`
    /// means public updates only.
    pub private_access: Option<SelectorSet>,
    /// Frames waiting to be written.
    pub mailbox: Mailbox,
    /// Who this is, for subscription events and the subscriptions API (only kept when those
    /// are on, so a plain subscriber costs nothing extra).
    pub(crate) identity: Option<Box<Identity>>,
    /// The number of the last fan-out that reached this subscriber (see [`registry`]): how a
    /// fan-out delivers once to a subscriber it reaches through several selectors.
    reached: AtomicU64,
}

/// A subscriber's public identity (Mercure subscriptions).
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// `urn:uuid:…`, unique per subscription.
    pub urn: Box<str>,
    /// The `payload` of this subscriber's subscription events.
    pub payload: Payloads,
    /// Subscribed the Mercure 1.0 way (`match=`): it receives the hub's subscription events
    /// in the 1.0 format only, a 0.x subscriber in the JSON-LD format only.
    pub mercure1: bool,
}

/// The `payload` a subscriber's token gives each of its subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payloads {
    /// The same for every selector: a 0.x token's `mercure.payload` (or none).
    Same(Option<serde_json::Value>),
    /// One per selector, in the order of the subscriber's selectors: for a Mercure 1.0 token,
    /// the payload of the first `subscribe` entry whose topics match that selector's matcher
    /// string.
    PerSelector(Box<[Option<serde_json::Value>]>),
}

impl Payloads {
    /// One payload per selector, kept as [`Payloads::Same`] when they are all equal.
    pub(crate) fn per_selector(payloads: Vec<Option<serde_json::Value>>) -> Payloads {
        match payloads.first() {
            None => Payloads::Same(None),
            Some(first) if payloads.iter().all(|payload| payload == first) => {
                Payloads::Same(first.clone())
            }
            Some(_) => Payloads::PerSelector(payloads.into_boxed_slice()),
        }
    }

    /// The payload of the subscription of the selector at `index`.
    pub(crate) fn of_selector(&self, index: usize) -> Option<&serde_json::Value> {
        match self {
            Payloads::Same(payload) => payload.as_ref(),
            Payloads::PerSelector(payloads) => payloads.get(index).and_then(Option::as_ref),
        }
    }
}

/// Told about every subscriber that joins (`true`) or leaves (`false`).
pub(crate) type Lifecycle = Arc<dyn Fn(&Subscriber, bool) + Send + Sync>;

impl Subscriber {
    /// May this subscriber receive `update`? A topic of the update must match the selectors and,
    /// for a private update, a topic of the update must also match the token's claim.
    pub(crate) fn may_receive(&self, update: &Update) -> bool {
        self.selectors.matches_any(&update.topics) && self.may_receive_selected(update)
    }

    /// As [`Subscriber::may_receive`], for an update already known to match the selectors: the
    /// one visibility rule ([`crate::visibility`]), and subscription events in this
    /// subscriber's own format.
    pub(crate) fn may_receive_selected(&self, update: &Update) -> bool {
        crate::visibility::may_see(self.private_access.as_ref(), update)
            && self.identity.as_ref().is_none_or(|identity| {
                crate::visibility::in_subscription_format(identity.mercure1, update)
            })
    }

    /// True when one of the subscriber's selectors is exactly `topic`.
    pub(crate) fn selects_exactly(&self, topic: &str) -> bool {
        self.selectors.exact_topics().any(|exact| &**exact == topic)
    }
}

/// Why the hub refused a subscriber.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("the hub is shutting down")]
    ShuttingDown,
}

/// `herald_fanout_queued_total`, looked up once: a registry lookup per publish showed in the
/// publish path's profile. The first fan-out happens after the server installed the recorder.
fn fanout_queued() -> &'static metrics::Counter {
    static COUNTER: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| metrics::counter!(names::FANOUT_QUEUED_TOTAL))
}

/// The live state shared by every connection.
pub struct Hub {
    registry: Registry,
    next_id: AtomicU64,
    queue_capacity: usize,
    queue_bytes: usize,
    closing: AtomicBool,
    expiring: ExpiryQueue,
    lifecycle: std::sync::OnceLock<Lifecycle>,
    /// One pattern count ([`Hub::pattern_subscriber_counts`]) at a time.
    counting: tokio::sync::Semaphore,
}

/// Matcher steps one [`Hub::pattern_subscriber_counts`] may spend (see
/// [`crate::topic::template::Template::complexity`]): about a tenth of a second of one core.
pub(crate) const COUNTING_BUDGET: usize = 100_000_000;
/// Matcher steps above which a fan-out leaves the runtime's thread to others (about a
/// millisecond).
pub(crate) const HEAVY_FAN_OUT: usize = 1_000_000;
/// Time one [`Hub::pattern_subscriber_counts`] may take, however fast the machine.
pub(crate) const COUNTING_TIME: Duration = Duration::from_millis(200);

/// How often the expiry ticker looks for streams whose token expired.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// How often the hub looks for quiet mailboxes to free their buffers
/// ([`Mailbox::release_if_quiet`](mailbox::Mailbox::release_if_quiet)): what a burst grew is given
/// back 0.5–1 s after the burst. One lock per subscriber per sweep (20,000 subscribers: about a
/// millisecond every half second).
pub(crate) const BUFFER_SWEEP: Duration = Duration::from_millis(500);

/// When a hub-wide ticker ([`Hub::ticks`]) first runs.
#[derive(Clone, Copy)]
enum Wait {
    /// At once.
    None,
    /// One period from now (a heartbeat is due only after a quiet period).
    OnePeriod,
}

/// The heartbeat frame: an empty comment line alone (`:\n`), no blank line, so clients that
/// dispatch on every blank line (`@microsoft/fetch-event-source`) see no empty message.
const HEARTBEAT: &[u8] = herald_sse::EMPTY_COMMENT;

impl Hub {
    /// A hub whose subscribers each queue at most `queue_capacity` frames.
    pub fn new(queue_capacity: usize) -> Arc<Hub> {
        Hub::with_budget(queue_capacity, usize::MAX)
    }

    /// A hub whose subscribers each queue at most `queue_capacity` frames and `queue_bytes` bytes
    /// of frames (`--queue-size`, `--queue-bytes`).
    pub(crate) fn with_budget(queue_capacity: usize, queue_bytes: usize) -> Arc<Hub> {
        Arc::new(Hub {
            registry: Registry::default(),
            next_id: AtomicU64::new(1),
            queue_capacity,
            queue_bytes,
            closing: AtomicBool::new(false),
            expiring: ExpiryQueue::default(),
            lifecycle: std::sync::OnceLock::new(),
            counting: tokio::sync::Semaphore::new(1),
        })
    }

    /// Installs the hook told about subscribers joining and leaving (set once, at start-up).
    pub(crate) fn set_lifecycle(&self, hook: Lifecycle) {
        let _ = self.lifecycle.set(hook);
    }

    /// True when a lifecycle hook is installed (subscribers then carry an [`Identity`]).
    pub(crate) fn tracks_identities(&self) -> bool {
        self.lifecycle.get().is_some()
    }

    /// Registers a subscriber. Fan-out reaches it from the moment this returns.
    pub fn subscribe(
        self: &Arc<Self>,
        selectors: SelectorSet,
        private_access: Option<SelectorSet>,
    ) -> Result<Subscription, HubError> {
        self.subscribe_as(selectors, private_access, None)
    }

    /// As [`Hub::subscribe`], with the subscriber's identity.
    pub(crate) fn subscribe_as(
        self: &Arc<Self>,
        selectors: SelectorSet,
        private_access: Option<SelectorSet>,
        identity: Option<Identity>,
    ) -> Result<Subscription, HubError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(HubError::ShuttingDown);
        }
        let subscriber = Arc::new(Subscriber {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            selectors,
            private_access,
            mailbox: Mailbox::with_budget(self.queue_capacity, self.queue_bytes),
            identity: identity.map(Box::new),
            reached: AtomicU64::new(0),
        });
        self.registry.insert(Arc::clone(&subscriber));
        metrics::gauge!(names::SUBSCRIPTIONS).increment(1.0);
        if let Some(hook) = self.lifecycle.get() {
            hook(&subscriber, true);
        }
        // A shutdown that started while registering must still close this one.
        if self.closing.load(Ordering::Acquire) {
            subscriber.mailbox.close();
        }
        Ok(Subscription {
            hub: Arc::clone(self),
            subscriber,
            expires_at: AtomicU64::new(NO_EXPIRY),
        })
    }

    /// Queues committed updates, in order, for every subscriber that may receive them.
    ///
    /// A fan-out whose template matching may be long (the distinct templates' complexity × the
    /// topics' length above [`HEAVY_FAN_OUT`]) runs with [`tokio::task::block_in_place`] on a
    /// multi-threaded runtime, so the runtime moves its other tasks to another thread meanwhile.
    pub fn fan_out(&self, updates: &[Arc<Update>]) {
        let topic_bytes: usize = updates
            .iter()
            .flat_map(|update| &update.topics)
            .map(String::len)
            .sum();
        let heavy = self
            .registry
            .template_complexity()
            .saturating_mul(topic_bytes)
            > HEAVY_FAN_OUT;
        let multi_threaded = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        if heavy && multi_threaded {
            tokio::task::block_in_place(|| self.fan_out_now(updates));
        } else {
            self.fan_out_now(updates);
        }
    }

    fn fan_out_now(&self, updates: &[Arc<Update>]) {
        let mut queued = 0;
        for update in updates {
            let result = self.registry.fan_out(update);
            queued += result.queued;
            if result.overflowed > 0 {
                metrics::counter!(names::QUEUE_OVERFLOWS_TOTAL).increment(result.overflowed);
            }
        }
        fanout_queued().increment(queued);
    }

    /// Sends a heartbeat comment to every subscriber with nothing queued.
    pub(crate) fn heartbeat(&self) {
        self.registry
            .for_each(|subscriber| subscriber.mailbox.push_idle_comment(HEARTBEAT));
    }

    /// The one hub-wide heartbeat ticker, to run as a background task
    /// ([`crate::shutdown::Tasks::spawn`]): ends when the hub closes or is dropped.
    pub(crate) fn heartbeats(
        self: &Arc<Self>,
        every: Duration,
    ) -> impl Future<Output = ()> + use<> {
        self.ticks(every, Wait::OnePeriod, Hub::heartbeat)
    }

    /// The one hub-wide ticker that closes streams whose token expired, to run as a background
    /// task: ends when the hub closes or is dropped.
    pub(crate) fn expiry_ticks(self: &Arc<Self>) -> impl Future<Output = ()> + use<> {
        self.ticks(EXPIRY_TICK, Wait::None, |hub| {
            let closed = hub.expiring.close_expired(crate::update::now_ms() / 1000);
            if closed > 0 {
                tracing::debug!(closed, "closed streams whose token expired");
            }
        })
    }

    /// Frees the queue buffers of every mailbox that received nothing since the previous call;
    /// returns how many gave something back.
    pub(crate) fn release_quiet_buffers(&self) -> usize {
        let mut released = 0;
        self.registry.for_each(|subscriber| {
            released += usize::from(subscriber.mailbox.release_if_quiet());
        });
        released
    }

    /// The one hub-wide ticker that gives back the buffers a burst grew once it is over
    /// ([`BUFFER_SWEEP`]), to run as a background task: ends when the hub closes or is dropped.
    pub(crate) fn buffer_sweeps(self: &Arc<Self>) -> impl Future<Output = ()> + use<> {
        self.ticks(BUFFER_SWEEP, Wait::None, |hub| {
            hub.release_quiet_buffers();
        })
    }

    /// Runs `work` on the hub every `period`, the first time after `first` (a tick missed under
    /// load is not made up); ends when the hub closes or is dropped. The task holds only a weak
    /// reference, so it never keeps a hub alive.
    fn ticks(
        self: &Arc<Self>,
        period: Duration,
        first: Wait,
        work: fn(&Hub),
    ) -> impl Future<Output = ()> + use<> {
        let hub = Arc::downgrade(self);
        async move {
            let start = match first {
                Wait::None => tokio::time::Instant::now(),
                Wait::OnePeriod => tokio::time::Instant::now() + period,
            };
            let mut ticker = tokio::time::interval_at(start, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match hub.upgrade() {
                    Some(hub) if !hub.is_closing() => work(&hub),
                    _ => return,
                }
            }
        }
    }

    /// Subscriptions waiting in the token-expiry queue (each leaves it when dropped).
    pub fn expiry_queue_len(&self) -> usize {
        self.expiring.len()
    }

    /// Refuses new subscribers and ends every stream after what is queued.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.registry
            .for_each(|subscriber| subscriber.mailbox.close());
    }

    /// True once [`Hub::close`] was called.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Number of live subscriptions.
    pub(crate) fn subscriptions(&self) -> usize {
        self.registry.len()
    }

    /// For each of `topics`, the live subscribers that select it through `*`, a URI template or a URL pattern
    /// and not also exactly (add those from the exact selectors to get every subscriber). Each
    /// distinct template is matched once per topic, however many subscribers share it; the work
    /// runs on a blocking thread, one count at a time, and spends at most [`COUNTING_BUDGET`]
    /// matcher steps and [`COUNTING_TIME`]: past either, `complete` is false and the counts are
    /// lower bounds.
    pub(crate) async fn pattern_subscriber_counts(
        self: &Arc<Self>,
        topics: Vec<String>,
    ) -> PatternCounts {
        let incomplete = |len| PatternCounts {
            counts: vec![0; len],
            complete: false,
        };
        let len = topics.len();
        let Ok(_permit) = self.counting.acquire().await else {
            return incomplete(len);
        };
        let hub = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + COUNTING_TIME;
            hub.registry
                .pattern_counts(&topics, COUNTING_BUDGET, deadline)
        })
        .await
        .unwrap_or_else(|_| incomplete(len))
    }

    /// As [`Hub::pattern_subscriber_counts`], on the calling thread, with a given budget.
    #[cfg(test)]
    pub(crate) fn pattern_subscriber_counts_now<S: AsRef<str>>(
        &self,
        topics: &[S],
        budget: usize,
    ) -> PatternCounts {
        let deadline = std::time::Instant::now() + Duration::from_secs(3600);
        self.registry.pattern_counts(topics, budget, deadline)
    }

    /// Calls `visit` for every live subscriber.
    pub(crate) fn for_each_subscriber(&self, visit: impl FnMut(&Arc<Subscriber>)) {
        self.registry.for_each(visit);
    }
}

/// A registered subscriber; removed from the hub when dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    subscriber: Arc<Subscriber>,
    /// Its entry in the expiry queue, [`NO_EXPIRY`] when it has none.
    expires_at: AtomicU64,
}

/// [`Subscription::expires_at`] when the subscription is not in the expiry queue.
const NO_EXPIRY: u64 = u64::MAX;

impl Subscription {
    /// The subscriber.
    pub fn subscriber(&self) -> &Arc<Subscriber> {
        &self.subscriber
    }

    /// Ends the stream when its token expires (`exp`, Unix seconds). A token already expired
    /// closes the stream at the next tick. The subscription leaves the queue when dropped.
    pub(crate) fn expire_at(&self, expires_at: u64) {
        if expires_at == NO_EXPIRY {
            return; // Never, in practice.
        }
        let id = self.subscriber.id;
        let previous = self.expires_at.swap(expires_at, Ordering::AcqRel);
        if previous != NO_EXPIRY {
            self.hub.expiring.remove(previous, id);
        }
        self.hub
            .expiring
            .insert(expires_at, id, Arc::downgrade(&self.subscriber));
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let expires_at = *self.expires_at.get_mut();
        if expires_at != NO_EXPIRY {
            self.hub.expiring.remove(expires_at, self.subscriber.id);
        }
        if self.hub.registry.remove(self.subscriber.id).is_some() {
            metrics::gauge!(names::SUBSCRIPTIONS).decrement(1.0);
            if let Some(hook) = self.hub.lifecycle.get() {
                hook(&self.subscriber, false);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

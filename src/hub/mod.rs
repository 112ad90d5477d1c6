//! Live state: who is subscribed, their bounded queues, fan-out, heartbeats, shutdown.
//!
//! The hub knows no HTTP, JWT or disk. It receives committed updates (from the store's writer,
//! or from a cluster bus like a local publisher) and queues each one, as a shared frame, for every
//! subscriber allowed to receive it. A [`Subscription`] is the RAII handle of one subscriber: when
//! the response that owns it is dropped (client gone, write failed, shutdown) the subscriber is
//! removed at once.

pub mod expiry;
pub mod mailbox;
pub mod registry;

pub use registry::PatternCounts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

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
    pub identity: Option<Box<Identity>>,
    /// The number of the last fan-out that reached this subscriber (see [`registry`]): how a
    /// fan-out delivers once to a subscriber it reaches through several selectors.
    reached: AtomicU64,
}

/// A subscriber's public identity (Mercure subscriptions).
#[derive(Debug, Clone)]
pub struct Identity {
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
pub enum Payloads {
    /// The same for every selector: a 0.x token's `mercure.payload` (or none).
    Same(Option<serde_json::Value>),
    /// One per selector, in the order of the subscriber's selectors: for a Mercure 1.0 token,
    /// the payload of the first `subscribe` entry whose topics match that selector's matcher
    /// string.
    PerSelector(Box<[Option<serde_json::Value>]>),
}

impl Payloads {
    /// One payload per selector, kept as [`Payloads::Same`] when they are all equal.
    pub fn per_selector(payloads: Vec<Option<serde_json::Value>>) -> Payloads {
        match payloads.first() {
            None => Payloads::Same(None),
            Some(first) if payloads.iter().all(|payload| payload == first) => {
                Payloads::Same(first.clone())
            }
            Some(_) => Payloads::PerSelector(payloads.into_boxed_slice()),
        }
    }

    /// The payload of the subscription of the selector at `index`.
    pub fn of_selector(&self, index: usize) -> Option<&serde_json::Value> {
        match self {
            Payloads::Same(payload) => payload.as_ref(),
            Payloads::PerSelector(payloads) => payloads.get(index).and_then(Option::as_ref),
        }
    }
}

/// Told about every subscriber that joins (`true`) or leaves (`false`).
pub type Lifecycle = Arc<dyn Fn(&Subscriber, bool) + Send + Sync>;

impl Subscriber {
    /// May this subscriber receive `update`? A topic of the update must match the selectors and,
    /// for a private update, a topic of the update must also match the token's claim.
    pub fn may_receive(&self, update: &Update) -> bool {
        self.selectors.matches_any(&update.topics) && self.may_receive_selected(update)
    }

    /// As [`Subscriber::may_receive`], for an update already known to match the selectors: the
    /// one visibility rule ([`crate::visibility`]), and subscription events in this
    /// subscriber's own format.
    pub fn may_receive_selected(&self, update: &Update) -> bool {
        crate::visibility::may_see(self.private_access.as_ref(), update)
            && self.identity.as_ref().is_none_or(|identity| {
                crate::visibility::in_subscription_format(identity.mercure1, update)
            })
    }

    /// True when one of the subscriber's selectors is exactly `topic`.
    pub fn selects_exactly(&self, topic: &str) -> bool {
        self.selectors.exact_topics().any(|exact| &**exact == topic)
    }
}

/// Why the hub refused a subscriber.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("the hub is shutting down")]
    ShuttingDown,
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
pub const COUNTING_BUDGET: usize = 100_000_000;
/// Matcher steps above which a fan-out leaves the runtime's thread to others (about a
/// millisecond).
pub const HEAVY_FAN_OUT: usize = 1_000_000;
/// Time one [`Hub::pattern_subscriber_counts`] may take, however fast the machine.
pub const COUNTING_TIME: Duration = Duration::from_millis(200);

/// The heartbeat frame: an empty comment line alone (`:\n`), no blank line, so clients that
/// dispatch on every blank line (`@microsoft/fetch-event-source`) see no empty message.
const HEARTBEAT: Bytes = Bytes::from_static(herald_sse::EMPTY_COMMENT);

impl Hub {
    /// A hub whose subscribers each queue at most `queue_capacity` frames.
    pub fn new(queue_capacity: usize) -> Arc<Hub> {
        Hub::with_budget(queue_capacity, usize::MAX)
    }

    /// A hub whose subscribers each queue at most `queue_capacity` frames and `queue_bytes` bytes
    /// of frames (`--queue-size`, `--queue-bytes`).
    pub fn with_budget(queue_capacity: usize, queue_bytes: usize) -> Arc<Hub> {
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
    pub fn set_lifecycle(&self, hook: Lifecycle) {
        let _ = self.lifecycle.set(hook);
    }

    /// True when a lifecycle hook is installed (subscribers then carry an [`Identity`]).
    pub fn tracks_identities(&self) -> bool {
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
    pub fn subscribe_as(
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
        metrics::gauge!("herald_subscriptions").increment(1.0);
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
                metrics::counter!("herald_queue_overflows_total").increment(result.overflowed);
            }
        }
        metrics::counter!("herald_fanout_queued_total").increment(queued);
    }

    /// Sends a heartbeat comment to every subscriber with nothing queued.
    pub fn heartbeat(&self) {
        self.registry
            .for_each(|subscriber| subscriber.mailbox.push_idle_comment(&HEARTBEAT));
    }

    /// Starts the one hub-wide heartbeat ticker.
    pub fn spawn_heartbeat(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match hub.upgrade() {
                    Some(hub) if !hub.is_closing() => hub.heartbeat(),
                    _ => return,
                }
            }
        })
    }

    /// Starts the one hub-wide ticker that closes streams whose token expired.
    pub fn spawn_expiry(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(250));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match hub.upgrade() {
                    Some(hub) if !hub.is_closing() => {
                        let closed = hub.expiring.close_expired(crate::update::now_ms() / 1000);
                        if closed > 0 {
                            tracing::debug!(closed, "closed streams whose token expired");
                        }
                    }
                    _ => return,
                }
            }
        })
    }

    /// Refuses new subscribers and ends every stream after what is queued.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.registry
            .for_each(|subscriber| subscriber.mailbox.close());
    }

    /// True once [`Hub::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Number of live subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.registry.len()
    }

    /// For each of `topics`, the live subscribers that select it through `*` or a URI template
    /// and not also exactly (add those from the exact selectors to get every subscriber). Each
    /// distinct template is matched once per topic, however many subscribers share it; the work
    /// runs on a blocking thread, one count at a time, and spends at most [`COUNTING_BUDGET`]
    /// matcher steps and [`COUNTING_TIME`]: past either, `complete` is false and the counts are
    /// lower bounds.
    pub async fn pattern_subscriber_counts(self: &Arc<Self>, topics: Vec<String>) -> PatternCounts {
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
    pub fn pattern_subscriber_counts_now<S: AsRef<str>>(
        &self,
        topics: &[S],
        budget: usize,
    ) -> PatternCounts {
        let deadline = std::time::Instant::now() + Duration::from_secs(3600);
        self.registry.pattern_counts(topics, budget, deadline)
    }

    /// Calls `visit` for every live subscriber.
    pub fn for_each_subscriber(&self, visit: impl FnMut(&Arc<Subscriber>)) {
        self.registry.for_each(visit);
    }
}

/// A registered subscriber; removed from the hub when dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    subscriber: Arc<Subscriber>,
}

impl Subscription {
    /// The subscriber.
    pub fn subscriber(&self) -> &Arc<Subscriber> {
        &self.subscriber
    }

    /// Ends the stream when its token expires (`exp`, Unix seconds). A token already expired
    /// closes the stream at the next tick.
    pub fn expire_at(&self, expires_at: u64) {
        self.hub
            .expiring
            .insert(expires_at, Arc::downgrade(&self.subscriber));
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.hub.registry.remove(self.subscriber.id).is_some() {
            metrics::gauge!("herald_subscriptions").decrement(1.0);
            if let Some(hook) = self.hub.lifecycle.get() {
                hook(&self.subscriber, false);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::mailbox::{Delivery, Status};
    use super::*;
    use crate::topic::Selector;
    use crate::update::Draft;

    fn update(topics: &[&str], private: bool) -> Arc<Update> {
        Arc::new(
            Update::from_draft(Draft {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                private,
                ..Draft::default()
            })
            .unwrap(),
        )
    }

    fn received(subscription: &Subscription) -> Vec<String> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let _ = subscription
            .subscriber()
            .mailbox
            .poll_drain(&mut cx, &mut out);
        out.into_iter()
            .filter_map(|d| match d {
                Delivery::Update(u) => Some(u.topic().to_owned()),
                Delivery::Comment(_) => None,
            })
            .collect()
    }

    #[test]
    fn each_matching_subscriber_gets_each_update_once() {
        let hub = Hub::new(16);
        let exact = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
        let both = hub.subscribe(SelectorSet::parse(["a", "*"]), None).unwrap();
        let other = hub.subscribe(SelectorSet::parse(["b"]), None).unwrap();
        hub.fan_out(&[update(&["a"], false), update(&["a", "b"], false)]);
        assert_eq!(received(&exact), ["a", "a"]);
        assert_eq!(received(&both), ["a", "a"]);
        assert_eq!(received(&other), ["a"]);
    }

    #[test]
    fn private_updates_need_a_matching_claim() {
        let hub = Hub::new(16);
        let public = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
        let allowed = hub
            .subscribe(SelectorSet::parse(["a"]), Some(SelectorSet::parse(["a"])))
            .unwrap();
        let other_claim = hub
            .subscribe(SelectorSet::parse(["a"]), Some(SelectorSet::parse(["b"])))
            .unwrap();
        hub.fan_out(&[update(&["a"], true)]);
        assert!(received(&public).is_empty());
        assert_eq!(received(&allowed), ["a"]);
        assert!(received(&other_claim).is_empty());
    }

    #[test]
    fn dropping_a_subscription_removes_it_at_once() {
        let hub = Hub::new(16);
        let subscription = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
        assert_eq!(hub.subscriptions(), 1);
        drop(subscription);
        assert_eq!(hub.subscriptions(), 0);
        hub.fan_out(&[update(&["a"], false)]);
    }

    #[test]
    fn close_ends_streams_and_refuses_newcomers() {
        let hub = Hub::new(16);
        let subscription = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
        hub.close();
        let mut cx = Context::from_waker(Waker::noop());
        let status = subscription
            .subscriber()
            .mailbox
            .poll_drain(&mut cx, &mut Vec::new());
        assert_eq!(status, Poll::Ready(Status::Closed));
        assert!(hub.subscribe(SelectorSet::parse(["a"]), None).is_err());
    }

    #[test]
    fn expired_subscribers_are_closed_and_others_stay() {
        let hub = Hub::new(16);
        let soon = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
        let later = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
        soon.expire_at(100);
        later.expire_at(200);
        assert_eq!(hub.expiring.close_expired(150), 1);
        let mut cx = Context::from_waker(Waker::noop());
        let status = soon
            .subscriber()
            .mailbox
            .poll_drain(&mut cx, &mut Vec::new());
        assert_eq!(status, Poll::Ready(Status::Closed));
        let status = later
            .subscriber()
            .mailbox
            .poll_drain(&mut cx, &mut Vec::new());
        assert_eq!(status, Poll::Pending);
        drop(later);
        assert_eq!(
            hub.expiring.close_expired(300),
            0,
            "gone subscribers are skipped"
        );
        assert!(hub.expiring.is_empty());
    }

    #[test]
    fn template_subscribers_get_each_update_once_through_any_number_of_selectors() {
        let hub = Hub::new(16);
        let books = hub
            .subscribe(SelectorSet::parse(["https://e.com/books/{id}"]), None)
            .unwrap();
        let twice = hub
            .subscribe(
                SelectorSet::parse([
                    "https://e.com/books/{id}",
                    "https://e.com/{+any}",
                    "https://e.com/books/1",
                    "*",
                ]),
                None,
            )
            .unwrap();
        let users = hub
            .subscribe(SelectorSet::parse(["https://e.com/users/{id}"]), None)
            .unwrap();
        let unprefixed = hub.subscribe(SelectorSet::parse(["{+x}/1"]), None).unwrap();
        hub.fan_out(&[
            update(&["https://e.com/books/1"], false),
            update(&["https://e.com/books/2", "https://e.com/books/1"], false),
            update(&["https://e.com/users/7"], false),
        ]);
        assert_eq!(
            received(&books),
            ["https://e.com/books/1", "https://e.com/books/2"]
        );
        assert_eq!(
            received(&twice),
            [
                "https://e.com/books/1",
                "https://e.com/books/2",
                "https://e.com/users/7"
            ]
        );
        assert_eq!(received(&users), ["https://e.com/users/7"]);
        assert_eq!(
            received(&unprefixed),
            ["https://e.com/books/1", "https://e.com/books/2"]
        );
    }

    #[test]
    fn subscribers_of_one_template_share_one_slot_and_leave_nothing_behind() {
        let hub = Hub::new(4);
        let many: Vec<_> = (0..1000)
            .map(|_| {
                hub.subscribe(SelectorSet::parse(["https://e.com/rooms/{id}"]), None)
                    .unwrap()
            })
            .collect();
        let distinct: Vec<_> = (0..50)
            .map(|n| {
                hub.subscribe(
                    SelectorSet::parse([format!("https://e.com/r{n}/{{id}}")]),
                    None,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(hub.registry.template_stats().0, 51);
        drop(many);
        drop(distinct);
        assert_eq!(hub.registry.template_stats(), (0, 1));
    }

    #[test]
    fn subscribers_of_one_url_pattern_share_one_slot_and_each_gets_an_update_once() {
        let hub = Hub::new(4);
        let base = url::Url::parse("https://hub.example/.well-known/mercure").unwrap();
        let pattern = |source: &str| Selector::url_pattern(source, &base).unwrap();
        let many: Vec<_> = (0..100)
            .map(|_| {
                hub.subscribe(
                    SelectorSet::from_selectors([pattern("https://e.com/books/:id")]),
                    None,
                )
                .unwrap()
            })
            .collect();
        // Two patterns (a slot each), one of them shared with the hundred, and an exact topic.
        let mixed = hub
            .subscribe(
                SelectorSet::from_selectors([
                    pattern("https://e.com/books/:id"),
                    pattern("/rooms/:id"),
                    Selector::exact("https://e.com/books/1"),
                ]),
                None,
            )
            .unwrap();
        assert_eq!(hub.registry.url_pattern_stats(), (2, 102));
        hub.fan_out(&[
            update(&["https://e.com/books/1", "https://e.com/books/2"], false),
            update(&["https://hub.example/rooms/7"], false),
            update(&["https://e.com/books/1/reviews"], false),
        ]);
        assert_eq!(
            received(&mixed),
            ["https://e.com/books/1", "https://hub.example/rooms/7"]
        );
        for subscription in &many {
            assert_eq!(received(subscription), ["https://e.com/books/1"]);
        }
        let counts = hub.pattern_subscriber_counts_now(&["https://e.com/books/3"], usize::MAX);
        assert_eq!(counts.counts, [101]);
        drop(many);
        assert_eq!(hub.registry.url_pattern_stats(), (2, 2));
        drop(mixed);
        assert_eq!(hub.registry.url_pattern_stats(), (0, 0));
    }

    #[test]
    fn pattern_counts_are_per_distinct_template_and_bounded_by_the_budget() {
        let hub = Hub::new(4);
        let _subscriptions: Vec<_> = [
            vec!["https://e.com/books/{id}"],
            vec!["https://e.com/books/{id}"],
            vec!["https://e.com/books/{id}", "https://e.com/books/1"],
            vec!["https://e.com/books/{id}", "{+all}"],
            vec!["*"],
            vec!["*", "https://e.com/books/2"],
            vec!["https://e.com/books/1"],
        ]
        .into_iter()
        .map(|selectors| hub.subscribe(SelectorSet::parse(selectors), None).unwrap())
        .collect();
        let topics = ["https://e.com/books/1", "https://e.com/books/2", "other"];
        let counts = hub.pattern_subscriber_counts_now(&topics, usize::MAX);
        assert!(counts.complete);
        // Those that also select the topic exactly are counted elsewhere (with exact selectors).
        assert_eq!(counts.counts, [5, 5, 3]);
        let starved = hub.pattern_subscriber_counts_now(&topics, 10);
        assert!(!starved.complete);
        assert!(
            starved
                .counts
                .iter()
                .zip(&counts.counts)
                .all(|(s, c)| s <= c)
        );
    }

    #[test]
    fn the_identity_kept_per_subscriber_did_not_grow() {
        // 56 bytes before the Mercure 1.0 flag: the urn became a `Box<str>` to make room.
        assert!(std::mem::size_of::<Identity>() <= 56);
    }

    #[test]
    fn one_update_reaches_ten_thousand_queues() {
        let hub = Hub::new(4);
        let subscriptions: Vec<_> = (0..10_000)
            .map(|_| hub.subscribe(SelectorSet::parse(["t"]), None).unwrap())
            .collect();
        let update = update(&["t"], false);
        hub.fan_out(&[Arc::clone(&update)]);
        // Every queue holds the same allocation: one reference per subscriber.
        assert_eq!(Arc::strong_count(&update), 1 + subscriptions.len());
    }
}

//! The live subscriber registry and the fan-out.
//!
//! Subscribers are spread over shards by id, and their exact topics over shards of a hash index
//! by the topic's hash, so registering and removing touch one id shard and one topic shard per
//! exact topic, while a fan-out reads only the one topic shard of each of the update's topics
//! (not every shard: a per-user topic costs one lookup). Pattern subscribers are filed once for
//! the whole hub: `*` subscribers in a list, URI-template subscribers by distinct template
//! (subscribers of the same template text share one compiled matcher and one slot), and the
//! templates in a
//! [`PrefixIndex`] by their literal prefix. A topic therefore runs the matcher of each distinct
//! template whose prefix it starts with, once, however many subscribers share that template.
//! Mercure 1.0 URL-pattern subscribers are filed the same way, by distinct pattern (pattern and
//! base: one interned matcher), without a prefix index: a topic runs each distinct pattern's
//! matcher once.
//!
//! Fan-outs are serialized, and each stamps the subscribers it reaches with its own number, so a
//! subscriber reached through several selectors or topics gets the update once without any
//! per-fan-out allocation.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use super::Subscriber;
use super::mailbox::Pushed;
use crate::topic::Selector;
use crate::topic::cache::CachedTemplate;
use crate::topic::prefix::PrefixIndex;
use crate::topic::urlpattern::CachedPattern;
use crate::update::Update;

/// Number of shards: a power of two comfortably above the core count.
const SHARDS: usize = 32;
/// Budget units charged for counting one subscriber that has several selectors (a hash-set
/// insert), in [`Registry::pattern_counts`].
const MIXED_VISIT_COST: usize = 16;

/// What one fan-out did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FanOut {
    /// Subscribers the update was queued for.
    pub queued: u64,
    /// Subscribers whose queue overflowed with this update (now lagging).
    pub overflowed: u64,
}

/// Pattern subscribers per topic, as counted by [`Registry::pattern_counts`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PatternCounts {
    /// For each topic asked about: live subscribers that select it through `*`, a URI template
    /// or a URL pattern, and not also exactly.
    pub counts: Vec<usize>,
    /// False when the work budget ran out: the counts are then lower bounds.
    pub complete: bool,
}

/// Subscribers by id (one shard of them).
type IdShard = HashMap<u64, Arc<Subscriber>>;

/// Subscribers by exact topic (one shard of the index: the topics whose hash falls in it).
type TopicShard = HashMap<Arc<str>, Vec<Arc<Subscriber>>>;

/// The subscribers of one distinct template.
struct TemplateSlot {
    template: Arc<CachedTemplate>,
    /// Subscribers whose only selector is this template.
    single: Vec<Arc<Subscriber>>,
    /// Subscribers with other selectors too.
    mixed: Vec<Arc<Subscriber>>,
}

/// The subscribers of one distinct URL pattern, split like a [`TemplateSlot`].
struct UrlPatternSlot {
    pattern: Arc<CachedPattern>,
    single: Vec<Arc<Subscriber>>,
    mixed: Vec<Arc<Subscriber>>,
}

/// `*` subscribers, split like a [`TemplateSlot`].
#[derive(Default)]
struct AnySlot {
    single: Vec<Arc<Subscriber>>,
    mixed: Vec<Arc<Subscriber>>,
}

#[derive(Default)]
struct Patterns {
    any: AnySlot,
    /// Subscribers of Mercure 1.0 URL Pattern selectors, by distinct pattern (keyed by the
    /// address of its interned matcher, which its slot keeps alive).
    url_patterns: HashMap<usize, UrlPatternSlot>,
    templates: PrefixIndex<TemplateSlot>,
    /// The total complexity of the distinct templates in `templates`.
    complexity: usize,
}

/// Every live subscriber, indexed for fan-out.
pub(crate) struct Registry {
    shards: Box<[RwLock<IdShard>]>,
    topic_shards: Box<[RwLock<TopicShard>]>,
    /// Picks a topic's shard.
    topic_hasher: RandomState,
    patterns: RwLock<Patterns>,
    /// Held for a whole fan-out; the number of the last one.
    fanning: Mutex<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(IdShard::default()))
                .collect(),
            topic_shards: (0..SHARDS)
                .map(|_| RwLock::new(TopicShard::default()))
                .collect(),
            topic_hasher: RandomState::new(),
            patterns: RwLock::default(),
            fanning: Mutex::new(0),
        }
    }
}

/// The key of a URL pattern's slot: the address of its interned matcher.
fn pattern_key(pattern: &Arc<CachedPattern>) -> usize {
    Arc::as_ptr(pattern) as usize
}

fn remove_from(list: &mut Vec<Arc<Subscriber>>, id: u64) {
    if let Some(at) = list.iter().position(|other| other.id == id) {
        list.swap_remove(at);
    }
}

impl Registry {
    fn shard(&self, id: u64) -> &RwLock<IdShard> {
        &self.shards[(id as usize) % self.shards.len()]
    }

    fn topic_shard(&self, topic: &str) -> &RwLock<TopicShard> {
        let hash = self.topic_hasher.hash_one(topic);
        &self.topic_shards[(hash as usize) % self.topic_shards.len()]
    }

    /// Adds a subscriber to the indexes.
    pub(crate) fn insert(&self, subscriber: Arc<Subscriber>) {
        if subscriber.selectors.has_patterns() {
            let single = subscriber.selectors.len() == 1;
            let mut guard = self.patterns.write();
            let Patterns {
                any,
                url_patterns,
                templates,
                complexity,
            } = &mut *guard;
            for selector in subscriber.selectors.iter() {
                let list = match selector {
                    Selector::Exact(_) => continue,
                    Selector::UrlPattern(pattern) => {
                        let slot = url_patterns.entry(pattern_key(pattern)).or_insert_with(|| {
                            UrlPatternSlot {
                                pattern: Arc::clone(pattern),
                                single: Vec::new(),
                                mixed: Vec::new(),
                            }
                        });
                        if single {
                            &mut slot.single
                        } else {
                            &mut slot.mixed
                        }
                    }
                    Selector::Any => {
                        if single {
                            &mut any.single
                        } else {
                            &mut any.mixed
                        }
                    }
                    Selector::Template(template) => {
                        let slots = templates.entry(template.literal_prefix().as_bytes());
                        let at = match slots
                            .iter()
                            .position(|slot| Arc::ptr_eq(&slot.template, template))
                        {
                            Some(at) => at,
                            None => {
                                *complexity += template.complexity();
                                slots.push(TemplateSlot {
                                    template: Arc::clone(template),
                                    single: Vec::new(),
                                    mixed: Vec::new(),
                                });
                                slots.len() - 1
                            }
                        };
                        let slot = &mut slots[at];
                        if single {
                            &mut slot.single
                        } else {
                            &mut slot.mixed
                        }
                    }
                };
                list.push(Arc::clone(&subscriber));
            }
        }
        self.shard(subscriber.id)
            .write()
            .insert(subscriber.id, Arc::clone(&subscriber));
        for topic in subscriber.selectors.exact_topics() {
            self.topic_shard(topic)
                .write()
                .entry(Arc::clone(topic))
                .or_default()
                .push(Arc::clone(&subscriber));
        }
    }

    /// Removes a subscriber; returns it if it was registered.
    pub(crate) fn remove(&self, id: u64) -> Option<Arc<Subscriber>> {
        let subscriber = self.shard(id).write().remove(&id)?;
        for topic in subscriber.selectors.exact_topics() {
            let mut shard = self.topic_shard(topic).write();
            if let Some(list) = shard.get_mut(topic) {
                list.retain(|other| other.id != id);
                if list.is_empty() {
                    shard.remove(topic);
                }
            }
        }
        if subscriber.selectors.has_patterns() {
            let mut patterns = self.patterns.write();
            for selector in subscriber.selectors.iter() {
                match selector {
                    Selector::Exact(_) => {}
                    Selector::UrlPattern(pattern) => {
                        let key = pattern_key(pattern);
                        if let Some(slot) = patterns.url_patterns.get_mut(&key) {
                            remove_from(&mut slot.single, id);
                            remove_from(&mut slot.mixed, id);
                            if slot.single.is_empty() && slot.mixed.is_empty() {
                                patterns.url_patterns.remove(&key);
                            }
                        }
                    }
                    Selector::Any => {
                        remove_from(&mut patterns.any.single, id);
                        remove_from(&mut patterns.any.mixed, id);
                    }
                    Selector::Template(template) => {
                        let prefix = template.literal_prefix().as_bytes();
                        let Some(slots) = patterns.templates.get_mut(prefix) else {
                            continue;
                        };
                        if let Some(at) = slots
                            .iter()
                            .position(|slot| Arc::ptr_eq(&slot.template, template))
                        {
                            let slot = &mut slots[at];
                            remove_from(&mut slot.single, id);
                            remove_from(&mut slot.mixed, id);
                            if slot.single.is_empty() && slot.mixed.is_empty() {
                                slots.swap_remove(at);
                                let emptied = slots.is_empty();
                                patterns.complexity -= template.complexity();
                                if emptied {
                                    patterns.templates.prune(prefix);
                                }
                            }
                        }
                    }
                }
            }
        }
        Some(subscriber)
    }

    /// Queues `update` for every subscriber that may receive it, each exactly once.
    pub(crate) fn fan_out(&self, update: &Arc<Update>) -> FanOut {
        let mut fanning = self.fanning.lock();
        *fanning += 1;
        let stamp = *fanning;
        let mut result = FanOut::default();
        let mut deliver = |subscriber: &Subscriber| {
            // Reached already by this fan-out (through another selector or topic).
            if subscriber.reached.swap(stamp, Ordering::Relaxed) == stamp {
                return;
            }
            if !subscriber.may_receive_selected(update) {
                return;
            }
            match subscriber.mailbox.push(update) {
                Pushed::Queued => result.queued += 1,
                Pushed::Overflowed => result.overflowed += 1,
                Pushed::Ignored => {}
            }
        };
        for topic in &update.topics {
            if let Some(list) = self.topic_shard(topic).read().get(topic.as_str()) {
                list.iter().for_each(|subscriber| deliver(subscriber));
            }
        }
        let patterns = self.patterns.read();
        let any = &patterns.any;
        any.single
            .iter()
            .chain(&any.mixed)
            .for_each(|subscriber| deliver(subscriber));
        for slot in patterns.url_patterns.values() {
            if update
                .topics
                .iter()
                .any(|topic| slot.pattern.matches(topic))
            {
                slot.single
                    .iter()
                    .chain(&slot.mixed)
                    .for_each(|subscriber| deliver(subscriber));
            }
        }
        for topic in &update.topics {
            patterns
                .templates
                .for_each_prefix_of(topic.as_bytes(), |slot| {
                    if slot.template.matches(topic) {
                        slot.single
                            .iter()
                            .chain(&slot.mixed)
                            .for_each(|subscriber| deliver(subscriber));
                    }
                });
        }
        result
    }

    /// For each of `topics`, the live subscribers that select it through `*`, a URI template or a URL pattern
    /// and not also exactly (those are counted by their exact selector). Matches once per
    /// distinct template and topic, and counts subscribers that have no other selector by
    /// number; spends at most `budget` matcher steps (see
    /// [`crate::topic::template::Template::complexity`]) and stops at `deadline`, after which
    /// the remaining work is skipped and the result says it is incomplete.
    pub(crate) fn pattern_counts<S: AsRef<str>>(
        &self,
        topics: &[S],
        budget: usize,
        deadline: Instant,
    ) -> PatternCounts {
        let patterns = self.patterns.read();
        let mut left = budget;
        let mut complete = true;
        let mut counted: HashSet<u64> = HashSet::new();
        let mut counts = Vec::with_capacity(topics.len());
        for topic in topics {
            let topic = topic.as_ref();
            if Instant::now() >= deadline {
                left = 0;
            }
            counted.clear();
            let mut count = 0;
            let mut count_mixed = |list: &[Arc<Subscriber>], left: &mut usize| {
                for subscriber in list {
                    if *left < MIXED_VISIT_COST {
                        return false;
                    }
                    *left -= MIXED_VISIT_COST;
                    if !subscriber.selects_exactly(topic) && counted.insert(subscriber.id) {
                        count += 1;
                    }
                }
                true
            };
            complete &= count_mixed(&patterns.any.mixed, &mut left);
            // Each distinct URL pattern is matched once, charged like a mixed visit.
            let mut url_patterns_matched: Vec<&UrlPatternSlot> = Vec::new();
            for slot in patterns.url_patterns.values() {
                if left < MIXED_VISIT_COST {
                    complete = false;
                    break;
                }
                left -= MIXED_VISIT_COST;
                if slot.pattern.matches(topic) {
                    url_patterns_matched.push(slot);
                }
            }
            for slot in &url_patterns_matched {
                complete &= count_mixed(&slot.mixed, &mut left);
            }
            let mut matched: Vec<&TemplateSlot> = Vec::new();
            patterns
                .templates
                .for_each_prefix_of(topic.as_bytes(), |slot| {
                    if Instant::now() >= deadline {
                        left = 0;
                    }
                    match slot.template.matches_within(topic, &mut left) {
                        Some(true) => matched.push(slot),
                        Some(false) => {}
                        None => complete = false,
                    }
                });
            for slot in &matched {
                complete &= count_mixed(&slot.mixed, &mut left);
            }
            count += patterns.any.single.len();
            count += matched.iter().map(|slot| slot.single.len()).sum::<usize>();
            count += url_patterns_matched
                .iter()
                .map(|slot| slot.single.len())
                .sum::<usize>();
            counts.push(count);
        }
        PatternCounts { counts, complete }
    }

    /// Calls `visit` for every live subscriber (heartbeats, shutdown, counting).
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&Arc<Subscriber>)) {
        for shard in self.shards.iter() {
            shard.read().values().for_each(&mut visit);
        }
    }

    /// Number of live subscribers.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().len()).sum()
    }

    /// True when nobody is subscribed.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total complexity of the distinct URI templates of live subscribers: a fan-out of a
    /// topic costs at most this × the topic's length in matcher steps.
    pub(crate) fn template_complexity(&self) -> usize {
        self.patterns.read().complexity
    }

    /// Distinct URL patterns among live subscribers, and the subscriptions filed under them.
    #[cfg(test)]
    pub(crate) fn url_pattern_stats(&self) -> (usize, usize) {
        let patterns = self.patterns.read();
        let filed = patterns
            .url_patterns
            .values()
            .map(|slot| slot.single.len() + slot.mixed.len())
            .sum();
        (patterns.url_patterns.len(), filed)
    }

    /// Distinct URI templates among live subscribers, and the nodes of their prefix index.
    #[cfg(test)]
    pub(crate) fn template_stats(&self) -> (usize, usize) {
        let patterns = self.patterns.read();
        let mut templates = 0;
        patterns.templates.for_each(|_| templates += 1);
        (templates, patterns.templates.node_count())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

//! The live subscriber registry and the fan-out.
//!
//! Subscribers are spread over shards by id, so registering and removing touch one shard's lock
//! while a fan-out holds every shard only for reading. Inside a shard, subscribers with exact
//! topics are found through a hash index; only `*` and template subscribers are scanned.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use super::Subscriber;
use super::mailbox::Pushed;
use crate::update::Update;

/// Number of shards: a power of two comfortably above the core count.
const SHARDS: usize = 32;

/// What one fan-out did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// Subscribers the update was queued for.
    pub queued: u64,
    /// Subscribers whose queue overflowed with this update (now lagging).
    pub overflowed: u64,
}

#[derive(Default)]
struct Shard {
    by_id: HashMap<u64, Arc<Subscriber>>,
    by_topic: HashMap<Arc<str>, Vec<Arc<Subscriber>>>,
    patterns: Vec<Arc<Subscriber>>,
}

/// Every live subscriber, indexed for fan-out.
pub struct Registry {
    shards: Box<[RwLock<Shard>]>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
        }
    }
}

impl Registry {
    fn shard(&self, id: u64) -> &RwLock<Shard> {
        &self.shards[(id as usize) % self.shards.len()]
    }

    /// Adds a subscriber to the indexes.
    pub fn insert(&self, subscriber: Arc<Subscriber>) {
        let mut shard = self.shard(subscriber.id).write();
        for topic in subscriber.selectors.exact_topics() {
            shard
                .by_topic
                .entry(Arc::clone(topic))
                .or_default()
                .push(Arc::clone(&subscriber));
        }
        if subscriber.selectors.has_patterns() {
            shard.patterns.push(Arc::clone(&subscriber));
        }
        shard.by_id.insert(subscriber.id, subscriber);
    }

    /// Removes a subscriber; returns it if it was registered.
    pub fn remove(&self, id: u64) -> Option<Arc<Subscriber>> {
        let mut shard = self.shard(id).write();
        let subscriber = shard.by_id.remove(&id)?;
        for topic in subscriber.selectors.exact_topics() {
            if let Some(list) = shard.by_topic.get_mut(topic) {
                list.retain(|other| other.id != id);
                if list.is_empty() {
                    shard.by_topic.remove(topic);
                }
            }
        }
        if subscriber.selectors.has_patterns() {
            shard.patterns.retain(|other| other.id != id);
        }
        Some(subscriber)
    }

    /// Queues `update` for every subscriber that may receive it, each exactly once.
    pub fn fan_out(&self, update: &Arc<Update>) -> FanOut {
        let mut result = FanOut::default();
        let mut deliver = |subscriber: &Subscriber| {
            if !subscriber.may_receive(update) {
                return;
            }
            match subscriber.mailbox.push(update) {
                Pushed::Queued => result.queued += 1,
                Pushed::Overflowed => result.overflowed += 1,
                Pushed::Ignored => {}
            }
        };
        match update.topics.as_slice() {
            [topic] => {
                for shard in self.shards.iter() {
                    let shard = shard.read();
                    if let Some(list) = shard.by_topic.get(topic.as_str()) {
                        list.iter().for_each(|subscriber| deliver(subscriber));
                    }
                    for subscriber in &shard.patterns {
                        // Already served through the index when it also selects the topic exactly.
                        if !subscriber.selects_exactly(topic) {
                            deliver(subscriber);
                        }
                    }
                }
            }
            topics => {
                let mut served = HashSet::new();
                for shard in self.shards.iter() {
                    let shard = shard.read();
                    let indexed = topics
                        .iter()
                        .filter_map(|topic| shard.by_topic.get(topic.as_str()))
                        .flatten();
                    for subscriber in indexed.chain(shard.patterns.iter()) {
                        if served.insert(subscriber.id) {
                            deliver(subscriber);
                        }
                    }
                }
            }
        }
        result
    }

    /// Calls `visit` for every live subscriber (heartbeats, shutdown, counting).
    pub fn for_each(&self, mut visit: impl FnMut(&Arc<Subscriber>)) {
        for shard in self.shards.iter() {
            shard.read().by_id.values().for_each(&mut visit);
        }
    }

    /// Number of live subscribers.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().by_id.len())
            .sum()
    }

    /// True when nobody is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

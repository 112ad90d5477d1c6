//! `memory:`: a bounded in-process log of updates. Nothing survives a restart.
//!
//! For tests and for users who want no disk. Updates are kept in a map by sequence (with
//! `--history-per-topic`, retention may leave holes), an id is found through a hash index. With
//! `per_topic` on, each topic's kept sequences are indexed too, with the set of kept updates that
//! no topic protects, so retention finds what to trim without a scan (see [`Retention`]).
//! The indexes hold no copy of an update's id: history may keep many updates.
//!
//! Every publish hashes its id and topics a few times here (index, tally, and the same when
//! retention trims the oldest), so the maps use foldhash, seeded per map from the process's
//! random state, instead of SipHash, whose cost showed in the publish path's profile. The keys
//! are publishers' ids and topics, which need a token to send, the maps are bounded by the
//! history size, and nothing shows their order (`/topics` sorts): foldhash's "minimal" DoS
//! resistance (a random seed, no claim against an attacker who can observe hashes) is enough.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use foldhash::quality::RandomState;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Bounds, ReplayFrom, Retention, Store, StoreError, TopicHistory};
use crate::update::{Update, now_ms};

/// A hash map with foldhash's seeded hasher (see the module's documentation).
type HashMap<K, V> = std::collections::HashMap<K, V, RandomState>;
type HashSet<T> = std::collections::HashSet<T, RandomState>;

/// The in-memory store.
pub(crate) struct MemoryStore {
    state: Mutex<Ring>,
}

struct Ring {
    retention: Retention,
    updates: BTreeMap<u64, Arc<Update>>,
    /// Each kept id's newest occurrence.
    newest_by_id: HashSet<ById>,
    /// The kept occurrences of ids appended more than once (an id's entry stays while one of
    /// them is kept, even if its newest went first, as `--history-per-topic` may trim).
    duplicates: HashMap<String, BTreeSet<u64>>,
    topics: HashMap<String, TopicTally>,
    last_seq: u64,
    /// The highest sequence removed by retention.
    trimmed_through: u64,
    /// With `per_topic`: each topic's kept sequences.
    by_topic: HashMap<String, BTreeSet<u64>>,
    /// With `per_topic`: the kept sequences no topic protects (trimmed first, oldest first).
    unprotected: BTreeSet<u64>,
}

/// A topic's two tallies: every update kept, and the public ones only.
struct TopicTally {
    events: u64,
    last_event_id: String,
    public_events: u64,
    /// Kept until `public_events` falls to 0.
    last_public_event_id: Option<String>,
}

impl TopicTally {
    /// A topic with nothing tallied yet.
    fn empty() -> TopicTally {
        TopicTally {
            events: 0,
            last_event_id: String::new(),
            public_events: 0,
            last_public_event_id: None,
        }
    }
}

impl MemoryStore {
    /// An empty store with these retention limits.
    pub(crate) fn new(retention: Retention) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(Ring {
                retention,
                updates: BTreeMap::new(),
                newest_by_id: HashSet::default(),
                duplicates: HashMap::default(),
                topics: HashMap::default(),
                last_seq: 0,
                trimmed_through: 0,
                by_topic: HashMap::default(),
                unprotected: BTreeSet::new(),
            }),
        }
    }

    /// Appends one update at once, on the caller's thread: what [`Store::append`] does for a
    /// batch of one, without a future (the inline writer, [`super::inline`]).
    pub(crate) fn append_now(&self, update: Update) -> Arc<Update> {
        let mut ring = self.state.lock();
        let stored = ring.push(update);
        ring.trim();
        stored
    }
}

impl Ring {
    fn push(&mut self, mut update: Update) -> Arc<Update> {
        self.last_seq += 1;
        update.seq = self.last_seq;
        let update = Arc::new(update);
        // `replace`, not `insert`: the newest occurrence becomes the key, so the index never
        // keeps an older one alive once retention drops it.
        if let Some(ById(previous)) = self.newest_by_id.replace(ById(Arc::clone(&update))) {
            let seqs = self.duplicates.entry(update.id.clone()).or_default();
            seqs.insert(previous.seq);
            seqs.insert(update.seq);
        }
        for topic in unique_topics(&update) {
            // A topic already tallied (the common case) costs no copy of its name.
            let tally = match self.topics.get_mut(topic.as_str()) {
                Some(tally) => tally,
                None => self
                    .topics
                    .entry(topic.clone())
                    .or_insert_with(TopicTally::empty),
            };
            tally.events += 1;
            // `clone_from`: the id is copied into the tally's own buffers, reused when they fit.
            tally.last_event_id.clone_from(&update.id);
            if !update.private {
                tally.public_events += 1;
                match &mut tally.last_public_event_id {
                    Some(last) => last.clone_from(&update.id),
                    none => *none = Some(update.id.clone()),
                }
            }
        }
        self.updates.insert(update.seq, Arc::clone(&update));
        let per_topic = self.retention.per_topic;
        if per_topic > 0 {
            // The new update is the newest of each of its topics: protected. The update it
            // pushes out of each topic's newest `per_topic` may now be protected by none.
            for topic in unique_topics(&update) {
                self.by_topic
                    .entry(topic.clone())
                    .or_default()
                    .insert(update.seq);
            }
            for topic in unique_topics(&update) {
                let pushed_out = self
                    .by_topic
                    .get(topic)
                    .and_then(|seqs| seqs.iter().rev().nth(per_topic).copied());
                if let Some(seq) = pushed_out
                    && !self.protected(seq)
                {
                    self.unprotected.insert(seq);
                }
            }
        }
        update
    }

    /// The sequence of `id`'s newest kept occurrence.
    fn newest_seq(&self, id: &str) -> Option<u64> {
        self.newest_by_id.get(id).map(|kept| kept.0.seq)
    }

    /// Is the kept update at `seq` among the newest `per_topic` kept of one of its topics?
    fn protected(&self, seq: u64) -> bool {
        let per_topic = self.retention.per_topic;
        let Some(update) = self.updates.get(&seq) else {
            return false;
        };
        unique_topics(update).any(|topic| {
            self.by_topic.get(topic).is_some_and(|seqs| {
                seqs.range(seq.saturating_add(1)..).take(per_topic).count() < per_topic
            })
        })
    }

    fn trim(&mut self) {
        let oldest_allowed_ms = self
            .retention
            .max_age
            .map(|age| now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
        if let Some(limit) = oldest_allowed_ms {
            while let Some((&seq, front)) = self.updates.first_key_value() {
                if front.published_at_ms >= limit {
                    break;
                }
                self.remove(seq);
            }
        }
        // The newest `max_events` appended are history's ring; what is older stays only if
        // protected, and at most `max_events` of it.
        let max_events = u64::try_from(self.retention.max_events).unwrap_or(u64::MAX);
        let ring_start = self.last_seq.saturating_sub(max_events).saturating_add(1);
        if self.retention.per_topic == 0 {
            while let Some(&seq) = self.updates.keys().next() {
                if seq >= ring_start {
                    break;
                }
                self.remove(seq);
            }
            return;
        }
        while let Some(&seq) = self.unprotected.first() {
            if seq >= ring_start {
                break;
            }
            self.remove(seq);
        }
        while self.updates.len() > self.retention.max_events.saturating_mul(2) {
            match self.updates.keys().next() {
                Some(&seq) => self.remove(seq),
                None => break,
            }
        }
    }

    fn remove(&mut self, seq: u64) {
        let Some(dropped) = self.updates.remove(&seq) else {
            return;
        };
        self.trimmed_through = self.trimmed_through.max(seq);
        if self.newest_seq(&dropped.id) == Some(dropped.seq) {
            self.newest_by_id.remove(dropped.id.as_str());
        }
        // Ids are nearly always unique: an empty map needs no hash to say so.
        if !self.duplicates.is_empty()
            && let Some(seqs) = self.duplicates.get_mut(&dropped.id)
        {
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.duplicates.remove(&dropped.id);
            }
        }
        for topic in unique_topics(&dropped) {
            if let Some(tally) = self.topics.get_mut(topic) {
                tally.events = tally.events.saturating_sub(1);
                if !dropped.private {
                    tally.public_events = tally.public_events.saturating_sub(1);
                    if tally.public_events == 0 {
                        tally.last_public_event_id = None;
                    }
                }
                // The newest ids stay: what goes is never a topic's newest while it has older
                // ones (the oldest goes, or an update outside its topics' newest `per_topic`).
                if tally.events == 0 {
                    self.topics.remove(topic);
                }
            }
        }
        let per_topic = self.retention.per_topic;
        if per_topic > 0 {
            let was_unprotected = self.unprotected.remove(&seq);
            for topic in unique_topics(&dropped) {
                let Some(seqs) = self.by_topic.get_mut(topic) else {
                    continue;
                };
                seqs.remove(&seq);
                if seqs.is_empty() {
                    self.by_topic.remove(topic);
                    continue;
                }
                // A protected update left this topic's newest `per_topic`: the next older one
                // enters them.
                if !was_unprotected && let Some(&entered) = seqs.iter().rev().nth(per_topic - 1) {
                    self.unprotected.remove(&entered);
                }
            }
        }
    }
}

/// A kept update in the index of ids: equal, hashed and looked up (`&str`) by its id alone, so
/// the index shares the update instead of holding a copy of its id.
struct ById(Arc<Update>);

impl PartialEq for ById {
    fn eq(&self, other: &ById) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that `Borrow<str>` lookups find it.
        self.0.id.as_str().hash(state);
    }
}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// The topics of an update, each once.
fn unique_topics(update: &Update) -> impl Iterator<Item = &String> {
    update
        .topics
        .iter()
        .enumerate()
        .filter(|(index, topic)| !update.topics[..*index].contains(topic))
        .map(|(_, topic)| topic)
}

#[async_trait]
impl Store for MemoryStore {
    async fn append(&self, batch: Vec<Update>) -> Result<Vec<Arc<Update>>, StoreError> {
        let mut ring = self.state.lock();
        let stored = batch.into_iter().map(|update| ring.push(update)).collect();
        ring.trim();
        Ok(stored)
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Arc<Update>>, StoreError> {
        let mut ring = self.state.lock();
        ring.trim();
        Ok(ring
            .updates
            .range(after.saturating_add(1)..)
            .map(|(_, update)| update)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn resolve(&self, id: &str) -> Result<ReplayFrom, StoreError> {
        let mut ring = self.state.lock();
        ring.trim();
        Ok(match ring.newest_seq(id) {
            Some(seq) => ReplayFrom::After(seq),
            None => ReplayFrom::Unknown,
        })
    }

    async fn resolve_earliest(&self, id: &str, after: u64) -> Result<ReplayFrom, StoreError> {
        let mut ring = self.state.lock();
        ring.trim();
        let above = after.saturating_add(1);
        let duplicate = ring
            .duplicates
            .get(id)
            .and_then(|seqs| seqs.range(above..).next().copied());
        let newest = ring.newest_seq(id).filter(|&seq| seq >= above);
        Ok(match duplicate.into_iter().chain(newest).min() {
            Some(seq) => ReplayFrom::After(seq),
            None => ReplayFrom::Unknown,
        })
    }

    async fn bounds(&self) -> Result<Bounds, StoreError> {
        let mut ring = self.state.lock();
        ring.trim();
        let edge = |(seq, update): (&u64, &Arc<Update>)| (*seq, update.id.clone());
        Ok(Bounds {
            oldest: ring.updates.first_key_value().map(edge),
            newest: ring.updates.last_key_value().map(edge),
            last_seq: ring.last_seq,
            trimmed_through: ring.trimmed_through,
        })
    }

    async fn topics(&self) -> Result<Vec<TopicHistory>, StoreError> {
        let mut ring = self.state.lock();
        ring.trim();
        Ok(ring
            .topics
            .iter()
            .map(|(topic, tally)| TopicHistory {
                topic: topic.clone(),
                events: tally.events,
                last_event_id: tally.last_event_id.clone(),
                public_events: tally.public_events,
                last_public_event_id: tally.last_public_event_id.clone(),
            })
            .collect())
    }

    async fn topic_events(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Update>>, StoreError> {
        let mut ring = self.state.lock();
        ring.trim();
        Ok(ring
            .updates
            .range(after.saturating_add(1)..)
            .map(|(_, update)| update)
            .filter(|update| update.topics.iter().any(|t| t == topic))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn update(topic: &str, id: &str) -> Update {
        Update::for_test(topic, id)
    }

    fn store(max_events: usize) -> MemoryStore {
        MemoryStore::new(Retention {
            max_events,
            max_age: None,
            per_topic: 0,
        })
    }

    #[tokio::test]
    async fn appends_assign_contiguous_sequences_and_replay_reads_after() {
        let store = store(10);
        let stored = store
            .append(vec![update("a", "1"), update("b", "2"), update("a", "3")])
            .await
            .unwrap();
        assert_eq!(stored.iter().map(|u| u.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(store.resolve("2").await.unwrap(), ReplayFrom::After(2));
        assert_eq!(store.resolve("nope").await.unwrap(), ReplayFrom::Unknown);
        let after = store.read_after(1, 10).await.unwrap();
        assert_eq!(
            after.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
            ["2", "3"]
        );
        let limited = store.read_after(0, 2).await.unwrap();
        assert_eq!(limited.len(), 2);
        let on_a = store.topic_events("a", 0, 10).await.unwrap();
        assert_eq!(
            on_a.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
            ["1", "3"]
        );
    }

    #[tokio::test]
    async fn the_id_index_holds_only_kept_updates() {
        let store = store(2);
        let stored = |updates: Vec<Arc<Update>>| Arc::downgrade(&updates[0]);
        let first = stored(store.append(vec![update("t", "a")]).await.unwrap());
        let again = stored(store.append(vec![update("t", "a")]).await.unwrap());
        // Both occurrences kept: the id resolves to its newest, the earliest is still found.
        assert_eq!(store.resolve("a").await.unwrap(), ReplayFrom::After(2));
        assert_eq!(
            store.resolve_earliest("a", 0).await.unwrap(),
            ReplayFrom::After(1)
        );
        store.append(vec![update("t", "b")]).await.unwrap();
        // The first occurrence went: nothing keeps it alive, not even the index of ids.
        assert!(first.upgrade().is_none());
        assert_eq!(store.resolve("a").await.unwrap(), ReplayFrom::After(2));
        assert_eq!(
            store.resolve_earliest("a", 0).await.unwrap(),
            ReplayFrom::After(2)
        );
        store.append(vec![update("t", "c")]).await.unwrap();
        assert!(again.upgrade().is_none());
        assert_eq!(store.resolve("a").await.unwrap(), ReplayFrom::Unknown);
        assert_eq!(store.resolve("c").await.unwrap(), ReplayFrom::After(4));
    }

    #[tokio::test]
    async fn retention_by_count_forgets_ids_and_topics() {
        let store = store(2);
        for (topic, id) in [("a", "1"), ("b", "2"), ("c", "3")] {
            store.append(vec![update(topic, id)]).await.unwrap();
        }
        assert_eq!(store.resolve("1").await.unwrap(), ReplayFrom::Unknown);
        assert_eq!(store.resolve("2").await.unwrap(), ReplayFrom::After(2));
        let bounds = store.bounds().await.unwrap();
        assert_eq!(bounds.oldest, Some((2, "2".into())));
        assert_eq!(bounds.newest, Some((3, "3".into())));
        let mut topics: Vec<_> = store
            .topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.topic)
            .collect();
        topics.sort();
        assert_eq!(topics, ["b", "c"]);
        // Reading after a trimmed position starts at the oldest kept.
        let all = store.read_after(0, 10).await.unwrap();
        assert_eq!(all.first().map(|u| u.seq), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn retention_by_age_drops_old_updates() {
        let store = MemoryStore::new(Retention {
            max_events: 100,
            max_age: Some(Duration::from_secs(1)),
            per_topic: 0,
        });
        store.append(vec![update("a", "old")]).await.unwrap();
        // On paused time the limit is exact: kept a millisecond before it, gone just after.
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert_ne!(store.resolve("old").await.unwrap(), ReplayFrom::Unknown);
        tokio::time::sleep(Duration::from_millis(2)).await;
        store.append(vec![update("a", "new")]).await.unwrap();
        assert_eq!(store.resolve("old").await.unwrap(), ReplayFrom::Unknown);
        assert_eq!(store.read_after(0, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn tallies_count_private_and_public_updates_apart() {
        use crate::store::conformance as scenario;
        scenario::mixed_updates(&MemoryStore::new(scenario::MIXED)).await;
    }

    #[tokio::test]
    async fn tallies_follow_retention_by_count() {
        use crate::store::conformance as scenario;
        scenario::count_retention(&MemoryStore::new(scenario::BY_COUNT)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn tallies_follow_retention_by_age() {
        use crate::store::conformance as scenario;
        scenario::age_retention(&MemoryStore::new(scenario::BY_AGE)).await;
    }

    #[tokio::test]
    async fn duplicate_ids_resolve_to_their_newest_or_earliest_occurrence() {
        use crate::store::conformance as scenario;
        scenario::duplicate_ids(&MemoryStore::new(scenario::DUPLICATES)).await;
    }

    #[tokio::test]
    async fn a_duplicate_id_kept_in_a_hole_is_still_its_earliest() {
        use crate::store::conformance as scenario;
        scenario::duplicate_ids_around_holes(&MemoryStore::new(scenario::DUPLICATES_BY_TOPIC))
            .await;
    }

    #[tokio::test]
    async fn per_topic_retention_keeps_a_quiet_topics_newest() {
        use crate::store::conformance as scenario;
        scenario::per_topic_protection(&MemoryStore::new(scenario::BY_TOPIC)).await;
    }

    #[tokio::test]
    async fn per_topic_retention_stays_within_the_history_size() {
        use crate::store::conformance as scenario;
        scenario::per_topic_limits(&MemoryStore::new(scenario::BY_TOPIC_TIGHT)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn per_topic_retention_yields_to_age() {
        use crate::store::conformance as scenario;
        scenario::per_topic_age(&MemoryStore::new(scenario::BY_TOPIC_AND_AGE)).await;
    }

    #[tokio::test]
    async fn per_topic_retention_follows_the_rule_computed_from_scratch() {
        use crate::store::conformance as scenario;
        for (max_events, per_topic) in [(0, 2), (1, 1), (6, 1), (6, 2), (9, 3), (20, 4)] {
            let retention = Retention {
                max_events,
                max_age: None,
                per_topic,
            };
            let store = MemoryStore::new(retention);
            let mut state = 0x2545_f491_u64;
            let mut next = move |bound: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % bound
            };
            let topics = ["a", "b", "c", "d", "e", "f"];
            let mut expected: Vec<(u64, Vec<String>)> = Vec::new();
            let mut seq = 0;
            for round in 0..200 {
                let mut batch = Vec::new();
                for n in 0..=next(3) {
                    // Skewed: "a" is busy, the others quiet; some updates have two topics.
                    let mut chosen = vec![topics[usize::try_from(next(6).min(next(6))).unwrap()]];
                    if next(4) == 0 {
                        chosen.push(topics[usize::try_from(next(6)).unwrap()]);
                    }
                    seq += 1;
                    let mut distinct: Vec<String> = Vec::new();
                    for topic in &chosen {
                        if !distinct.iter().any(|t| t == topic) {
                            distinct.push((*topic).to_owned());
                        }
                    }
                    expected.push((seq, distinct));
                    batch.push(scenario::update(
                        &chosen,
                        &format!("{round}-{n}"),
                        next(2) == 0,
                    ));
                }
                store.append(batch).await.unwrap();
                let kept = scenario::rule_by_count(expected.clone(), seq, retention);
                expected.retain(|(seq, _)| kept.contains(seq));
                let stored: Vec<u64> = store
                    .read_after(0, usize::MAX)
                    .await
                    .unwrap()
                    .iter()
                    .map(|u| u.seq)
                    .collect();
                assert_eq!(
                    stored, kept,
                    "max {max_events}, per topic {per_topic}, round {round}"
                );
            }
        }
    }

    #[tokio::test]
    async fn zero_history_keeps_nothing() {
        let store = store(0);
        let stored = store.append(vec![update("a", "1")]).await.unwrap();
        assert_eq!(stored[0].seq, 1);
        assert!(store.read_after(0, 10).await.unwrap().is_empty());
        assert_eq!(
            store.bounds().await.unwrap(),
            Bounds {
                last_seq: 1,
                trimmed_through: 1,
                ..Bounds::default()
            }
        );
    }
}

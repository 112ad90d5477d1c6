//! Scenarios that every [`Store`] must pass (per-topic tallies, retention, duplicated ids), run
//! by the memory and redb unit tests and, against real Redis and NATS servers, by
//! `tests/cluster.rs` (which calls the duplicate-id scenario from here, hence this module is
//! public, hidden from the docs; the tally scenarios are still written out there). Each
//! scenario names the retention its store must be opened with. Test code: it panics on failure.

use std::time::Duration;

use super::{Retention, Store, TopicHistory};
use crate::update::{Draft, Update};

/// One topic's tallies, as compared: (topic, events, last id, public events, last public id).
pub type Row = (String, u64, String, u64, Option<String>);

/// `store.topics()`, sorted by topic, as rows.
pub async fn tallies(store: &dyn Store) -> Vec<Row> {
    let mut rows: Vec<Row> = store
        .topics()
        .await
        .expect("topics")
        .into_iter()
        .map(
            |TopicHistory {
                 topic,
                 events,
                 last_event_id,
                 public_events,
                 last_public_event_id,
             }| {
                (
                    topic,
                    events,
                    last_event_id,
                    public_events,
                    last_public_event_id,
                )
            },
        )
        .collect();
    rows.sort();
    rows
}

/// The row of a topic with `events` updates (newest `last`) of which `public` are public (newest
/// `last_public`).
pub fn row(topic: &str, events: u64, last: &str, public: u64, last_public: Option<&str>) -> Row {
    (
        topic.to_owned(),
        events,
        last.to_owned(),
        public,
        last_public.map(str::to_owned),
    )
}

/// An update of `topics` with id `id`.
pub fn update(topics: &[&str], id: &str, private: bool) -> Update {
    Update::from_draft(Draft {
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        data: format!("data of {id}"),
        id: Some(id.to_owned()),
        private,
        ..Draft::default()
    })
    .expect("a valid test update")
}

/// For [`mixed_updates`].
pub const MIXED: Retention = Retention {
    max_events: 100,
    max_age: None,
    per_topic: 0,
};

/// Private and public updates on one topic, a topic only private updates used, and updates of
/// several topics (a repeated topic counts once).
pub async fn mixed_updates(store: &dyn Store) {
    store
        .append(vec![
            update(&["a"], "1", false),
            update(&["a"], "2", true),
            update(&["a", "b", "a"], "3", false),
        ])
        .await
        .expect("append");
    store
        .append(vec![update(&["a", "p"], "4", true)])
        .await
        .expect("append");
    store
        .append(vec![update(&["p", "p"], "5", true)])
        .await
        .expect("append");
    assert_eq!(
        tallies(store).await,
        [
            row("a", 4, "4", 2, Some("3")),
            row("b", 1, "3", 1, Some("3")),
            row("p", 2, "5", 0, None),
        ]
    );
}

/// For [`count_retention`].
pub const BY_COUNT: Retention = Retention {
    max_events: 3,
    max_age: None,
    per_topic: 0,
};

/// Trimming by count takes public updates out of both tallies, private ones out of the full
/// one only; the newest public id stays while any public update is kept.
pub async fn count_retention(store: &dyn Store) {
    for (topics, id, private) in [
        (&["a", "b", "a"][..], "1", false),
        (&["a"][..], "2", false),
        (&["a"][..], "3", true),
    ] {
        store
            .append(vec![update(topics, id, private)])
            .await
            .expect("append");
    }
    assert_eq!(
        tallies(store).await,
        [
            row("a", 3, "3", 2, Some("2")),
            row("b", 1, "1", 1, Some("1"))
        ]
    );
    // 1 goes: from a (once, though it named a twice) and from b.
    store
        .append(vec![update(&["a"], "4", true)])
        .await
        .expect("append");
    assert_eq!(tallies(store).await, [row("a", 3, "4", 1, Some("2"))]);
    // 2 goes: a's last public update; a stays, with private updates only.
    store
        .append(vec![update(&["a"], "5", true)])
        .await
        .expect("append");
    assert_eq!(tallies(store).await, [row("a", 3, "5", 0, None)]);
    // A batch that trims within itself.
    store
        .append(vec![
            update(&["b", "a"], "6", false),
            update(&["c"], "7", true),
        ])
        .await
        .expect("append");
    assert_eq!(
        tallies(store).await,
        [
            row("a", 2, "6", 1, Some("6")),
            row("b", 1, "6", 1, Some("6")),
            row("c", 1, "7", 0, None),
        ]
    );
}

/// For [`age_retention`].
pub const AGE: Duration = Duration::from_millis(1000);
/// For [`age_retention`].
pub const BY_AGE: Retention = Retention {
    max_events: 100,
    max_age: Some(AGE),
    per_topic: 0,
};

/// What aged out leaves both tallies, even before the next append; an append then trims it.
pub async fn age_retention(store: &dyn Store) {
    store
        .append(vec![update(&["a", "b"], "old", false)])
        .await
        .expect("append");
    tokio::time::sleep(AGE * 6 / 10).await;
    store
        .append(vec![update(&["a"], "young", true)])
        .await
        .expect("append");
    assert_eq!(
        tallies(store).await,
        [
            row("a", 2, "young", 1, Some("old")),
            row("b", 1, "old", 1, Some("old")),
        ]
    );
    // "old" ages out ("young" is 0.6 of the limit old, with 0.4 to spare).
    tokio::time::sleep(AGE * 6 / 10).await;
    assert_eq!(tallies(store).await, [row("a", 1, "young", 0, None)]);
    store
        .append(vec![update(&["b"], "fresh", false)])
        .await
        .expect("append");
    assert_eq!(
        tallies(store).await,
        [
            row("a", 1, "young", 0, None),
            row("b", 1, "fresh", 1, Some("fresh")),
        ]
    );
}

/// For [`per_topic_protection`].
pub const BY_TOPIC: Retention = Retention {
    max_events: 5,
    max_age: None,
    per_topic: 2,
};

/// The ids `store.read_after(0, ..)` returns, oldest first.
pub async fn kept_ids(store: &dyn Store) -> Vec<String> {
    store
        .read_after(0, usize::MAX)
        .await
        .expect("read")
        .iter()
        .map(|update| update.id.clone())
        .collect()
}

/// A quiet topic keeps its newest `per_topic` updates beside the newest `max_events`; what is
/// trimmed around them leaves a hole that `trimmed_through` reports.
pub async fn per_topic_protection(store: &dyn Store) {
    for id in ["a1", "a2", "a3"] {
        store
            .append(vec![update(&["a"], id, false)])
            .await
            .expect("append");
    }
    for id in ["b1", "b2", "b3", "b4", "b5", "b6"] {
        store
            .append(vec![update(&["b"], id, id == "b5")])
            .await
            .expect("append");
    }
    // The ring is b2..b6 (seqs 5..9); a2 and a3 are a's newest two; a1 and b1 went.
    assert_eq!(
        kept_ids(store).await,
        ["a2", "a3", "b2", "b3", "b4", "b5", "b6"]
    );
    assert_eq!(
        tallies(store).await,
        [
            row("a", 2, "a3", 2, Some("a3")),
            row("b", 5, "b6", 4, Some("b6")),
        ]
    );
    let bounds = store.bounds().await.expect("bounds");
    assert_eq!(bounds.oldest, Some((2, "a2".to_owned())));
    assert_eq!(bounds.newest, Some((9, "b6".to_owned())));
    assert_eq!((bounds.last_seq, bounds.trimmed_through), (9, 4));
    assert_eq!(
        store.resolve("a3").await.expect("resolve"),
        super::ReplayFrom::After(3)
    );
    assert_eq!(
        store.resolve("b1").await.expect("resolve"),
        super::ReplayFrom::Unknown
    );
    let on_a: Vec<String> = store
        .topic_events("a", 0, 10)
        .await
        .expect("topic events")
        .iter()
        .map(|update| update.id.clone())
        .collect();
    assert_eq!(on_a, ["a2", "a3"]);
    // Reading after a kept update skips the hole: the stream decides, with trimmed_through.
    let after_a2: Vec<u64> = store
        .read_after(2, 3)
        .await
        .expect("read")
        .iter()
        .map(|update| update.seq)
        .collect();
    assert_eq!(after_a2, [3, 5, 6]);
    // A batch: the ring moves to b4..b8; b2 and b3 are not b's newest two any more.
    store
        .append(vec![
            update(&["b"], "b7", false),
            update(&["b"], "b8", false),
        ])
        .await
        .expect("append");
    assert_eq!(
        kept_ids(store).await,
        ["a2", "a3", "b4", "b5", "b6", "b7", "b8"]
    );
    assert_eq!(store.bounds().await.expect("bounds").trimmed_through, 6);
}

/// For [`per_topic_limits`].
pub const BY_TOPIC_TIGHT: Retention = Retention {
    max_events: 2,
    max_age: None,
    per_topic: 1,
};

/// An update of several topics stays while it is the newest of any of them; history never
/// holds more than twice `max_events`: past that, the oldest protected update goes.
pub async fn per_topic_limits(store: &dyn Store) {
    for (topics, id) in [
        (&["a", "b"][..], "x"),
        (&["a"][..], "a2"),
        (&["c"][..], "c1"),
        (&["c"][..], "c2"),
        (&["c"][..], "c3"),
    ] {
        store
            .append(vec![update(topics, id, false)])
            .await
            .expect("append");
    }
    // x is no longer a's newest, but still b's; c1 went.
    assert_eq!(kept_ids(store).await, ["x", "a2", "c2", "c3"]);
    store
        .append(vec![update(&["b"], "b2", false)])
        .await
        .expect("append");
    // Now x is the newest of none of its topics; c2 left the ring and is not c's newest.
    assert_eq!(kept_ids(store).await, ["a2", "c3", "b2"]);
    store
        .append(vec![update(&["d"], "d1", false)])
        .await
        .expect("append");
    assert_eq!(kept_ids(store).await, ["a2", "c3", "b2", "d1"]);
    // Five topics' newest, four places: the oldest protected goes.
    store
        .append(vec![update(&["e"], "e1", true)])
        .await
        .expect("append");
    assert_eq!(kept_ids(store).await, ["c3", "b2", "d1", "e1"]);
    assert_eq!(
        tallies(store).await,
        [
            row("b", 1, "b2", 1, Some("b2")),
            row("c", 1, "c3", 1, Some("c3")),
            row("d", 1, "d1", 1, Some("d1")),
            row("e", 1, "e1", 0, None),
        ]
    );
    let bounds = store.bounds().await.expect("bounds");
    assert_eq!((bounds.last_seq, bounds.trimmed_through), (8, 4));
}

/// For [`per_topic_age`].
pub const BY_TOPIC_AND_AGE: Retention = Retention {
    max_events: 100,
    max_age: Some(AGE),
    per_topic: 5,
};

/// Age retention removes protected updates too.
pub async fn per_topic_age(store: &dyn Store) {
    store
        .append(vec![update(&["a"], "old", false)])
        .await
        .expect("append");
    tokio::time::sleep(AGE * 12 / 10).await;
    store
        .append(vec![update(&["b"], "new", false)])
        .await
        .expect("append");
    assert_eq!(kept_ids(store).await, ["new"]);
    assert_eq!(tallies(store).await, [row("b", 1, "new", 1, Some("new"))]);
    assert_eq!(store.bounds().await.expect("bounds").trimmed_through, 1);
}

/// The kept sequences the retention rule asks for, computed from scratch: `kept` (ascending
/// `(seq, distinct topics)`) just after an append whose newest sequence is `last_seq`, trimmed
/// by count only. The reference the stores are checked against.
pub fn rule_by_count(
    mut kept: Vec<(u64, Vec<String>)>,
    last_seq: u64,
    retention: Retention,
) -> Vec<u64> {
    let max_events = retention.max_events as u64;
    let ring_start = last_seq.saturating_sub(max_events) + 1;
    let per_topic = retention.per_topic;
    let protected: Vec<bool> = (0..kept.len())
        .map(|index| {
            let (_, topics) = &kept[index];
            topics.iter().any(|topic| {
                kept[index + 1..]
                    .iter()
                    .filter(|(_, others)| others.contains(topic))
                    .count()
                    < per_topic
            })
        })
        .collect();
    let mut index = 0;
    kept.retain(|(seq, _)| {
        index += 1;
        *seq >= ring_start || protected[index - 1]
    });
    while kept.len() > retention.max_events * 2 {
        kept.remove(0);
    }
    kept.into_iter().map(|(seq, _)| seq).collect()
}

/// For [`duplicate_ids`].
pub const DUPLICATES: Retention = Retention {
    max_events: 5,
    max_age: None,
    per_topic: 0,
};

/// Appends one batch of `(topic, id)` updates and notes each one's seq under its topic.
async fn append_named(
    store: &dyn Store,
    seqs: &mut std::collections::HashMap<String, u64>,
    batch: &[(&str, &str)],
) {
    let updates = batch
        .iter()
        .map(|(topic, id)| update(&[topic], id, false))
        .collect();
    let stored = store.append(updates).await.expect("append");
    for (update, (topic, _)) in stored.iter().zip(batch) {
        seqs.insert((*topic).to_owned(), update.seq);
    }
}

/// A publisher may use an id more than once. `resolve` gives its newest kept occurrence (Mercure
/// 0.x, unchanged); `resolve_earliest` its oldest kept occurrence above a sequence (Mercure 1.0),
/// and follows retention as occurrences are trimmed, whatever the batches.
pub async fn duplicate_ids(store: &dyn Store) {
    use super::ReplayFrom::{After, Unknown};

    // Each update has its own topic, so that the topic names its seq (seqs are compared, never
    // assumed: Redis and NATS number them their own way).
    let mut seqs = std::collections::HashMap::new();
    append_named(store, &mut seqs, &[("a", "dup")]).await;
    append_named(store, &mut seqs, &[("b", "x"), ("c", "dup")]).await;
    append_named(store, &mut seqs, &[("d", "once"), ("e", "dup")]).await;
    let earliest =
        async |id: &str, after: u64| store.resolve_earliest(id, after).await.expect("resolve");
    let newest = async |id: &str| store.resolve(id).await.expect("resolve");
    assert_eq!(newest("dup").await, After(seqs["e"]));
    assert_eq!(earliest("dup", 0).await, After(seqs["a"]));
    // Stepping past occurrences, one at a time.
    assert_eq!(earliest("dup", seqs["a"]).await, After(seqs["c"]));
    assert_eq!(earliest("dup", seqs["c"]).await, After(seqs["e"]));
    assert_eq!(earliest("dup", seqs["e"]).await, Unknown);
    // An id used once is its own earliest occurrence; an unknown id is unknown either way.
    assert_eq!(earliest("once", 0).await, After(seqs["d"]));
    assert_eq!(earliest("nope", 0).await, Unknown);

    // Retention (5 kept) trims the first occurrence: the earliest kept is now the second.
    append_named(store, &mut seqs, &[("f", "y")]).await;
    assert_eq!(kept_ids(store).await, ["x", "dup", "once", "dup", "y"]);
    assert_eq!(earliest("dup", 0).await, After(seqs["c"]));
    assert_eq!(newest("dup").await, After(seqs["e"]));
    // Used again after the second went: the oldest kept occurrence is still the earliest.
    append_named(store, &mut seqs, &[("g", "z"), ("h", "w"), ("i", "dup")]).await;
    assert_eq!(kept_ids(store).await, ["dup", "y", "z", "w", "dup"]);
    assert_eq!(earliest("dup", 0).await, After(seqs["e"]));
    assert_eq!(newest("dup").await, After(seqs["i"]));
    // Every earlier occurrence trimmed: the one left is both earliest and newest.
    append_named(store, &mut seqs, &[("j", "v")]).await;
    assert_eq!(earliest("dup", 0).await, After(seqs["i"]));
    assert_eq!(newest("dup").await, After(seqs["i"]));
    // None left.
    append_named(
        store,
        &mut seqs,
        &[("k", "1"), ("l", "2"), ("m", "3"), ("n", "4"), ("o", "5")],
    )
    .await;
    assert_eq!(earliest("dup", 0).await, Unknown);
    assert_eq!(newest("dup").await, Unknown);
}

/// For [`duplicate_ids_around_holes`].
pub const DUPLICATES_BY_TOPIC: Retention = Retention {
    max_events: 2,
    max_age: None,
    per_topic: 1,
};

/// With `per_topic`, a newer occurrence of an id may be trimmed while an older one, protected by
/// its topic, stays: that one is still found as the earliest.
pub async fn duplicate_ids_around_holes(store: &dyn Store) {
    let mut seqs = std::collections::HashMap::new();
    append_named(store, &mut seqs, &[("a", "dup")]).await;
    append_named(store, &mut seqs, &[("b", "dup")]).await;
    append_named(store, &mut seqs, &[("b", "z")]).await;
    append_named(store, &mut seqs, &[("c", "w")]).await;
    assert_eq!(kept_ids(store).await, ["dup", "z", "w"]);
    let first = kept_seqs(store).await[0];
    assert_eq!(
        store.resolve_earliest("dup", 0).await.expect("resolve"),
        super::ReplayFrom::After(first)
    );
    assert_eq!(
        store.resolve_earliest("dup", first).await.expect("resolve"),
        super::ReplayFrom::Unknown
    );
}

/// The seqs `store.read_after(0, ..)` returns, oldest first.
async fn kept_seqs(store: &dyn Store) -> Vec<u64> {
    store
        .read_after(0, usize::MAX)
        .await
        .expect("read")
        .iter()
        .map(|update| update.seq)
        .collect()
}

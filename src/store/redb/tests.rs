//! Tests of the redb store: retention (count, age, per topic), tallies, restarts, snapshots, disk use, refusing foreign or damaged files, and kill -9 durability.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use super::*;
use crate::store::conformance as scenario;
use crate::store::memory::MemoryStore;
use crate::update::Draft;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "herald-redb-{name}-{}-{}-{}",
            std::process::id(),
            now_ms(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        TempDir(std::env::temp_dir().join(unique))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self) -> PathBuf {
        self.0.join(FILE_NAME)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn update(topic: &str, id: &str) -> Update {
    Update::for_test(topic, id)
}

fn keep(max_events: usize) -> Retention {
    Retention {
        max_events,
        max_age: None,
        per_topic: 0,
    }
}

fn open(dir: &TempDir, max_events: usize) -> RedbStore {
    RedbStore::open(dir.path(), keep(max_events)).unwrap()
}

fn open_error(dir: &Path) -> String {
    match RedbStore::open(dir, keep(10)) {
        Ok(_) => panic!("opened a file that must be refused"),
        Err(error) => {
            eprintln!("refused as expected: {error}");
            error.to_string()
        }
    }
}

fn ids(updates: &[Arc<Update>]) -> Vec<&str> {
    updates.iter().map(|u| u.id.as_str()).collect()
}

async fn sorted_topics(store: &dyn Store) -> Vec<TopicHistory> {
    let mut topics = store.topics().await.unwrap();
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    topics
}

// --- The memory ring's tests, on disk ------------------------------------------------------

#[tokio::test]
async fn appends_assign_contiguous_sequences_and_replay_reads_after() {
    let dir = TempDir::new("contiguous");
    let store = open(&dir, 10);
    let stored = store
        .append(vec![update("a", "1"), update("b", "2"), update("a", "3")])
        .await
        .unwrap();
    assert_eq!(stored.iter().map(|u| u.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(store.resolve("2").await.unwrap(), ReplayFrom::After(2));
    assert_eq!(store.resolve("nope").await.unwrap(), ReplayFrom::Unknown);
    let after = store.read_after(1, 10).await.unwrap();
    assert_eq!(ids(&after), ["2", "3"]);
    let limited = store.read_after(0, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
    let on_a = store.topic_events("a", 0, 10).await.unwrap();
    assert_eq!(ids(&on_a), ["1", "3"]);
}

#[tokio::test]
async fn retention_by_count_forgets_ids_and_topics() {
    let dir = TempDir::new("count");
    let store = open(&dir, 2);
    for (topic, id) in [("a", "1"), ("b", "2"), ("c", "3")] {
        store.append(vec![update(topic, id)]).await.unwrap();
    }
    assert_eq!(store.resolve("1").await.unwrap(), ReplayFrom::Unknown);
    assert_eq!(store.resolve("2").await.unwrap(), ReplayFrom::After(2));
    let bounds = store.bounds().await.unwrap();
    assert_eq!(bounds.oldest, Some((2, "2".into())));
    assert_eq!(bounds.newest, Some((3, "3".into())));
    let topics: Vec<_> = sorted_topics(&store)
        .await
        .into_iter()
        .map(|t| t.topic)
        .collect();
    assert_eq!(topics, ["b", "c"]);
    // Reading after a trimmed position starts at the oldest kept.
    let all = store.read_after(0, 10).await.unwrap();
    assert_eq!(all.first().map(|u| u.seq), Some(2));
}

#[tokio::test(start_paused = true)]
async fn retention_by_age_drops_old_updates() {
    let dir = TempDir::new("age");
    let store = RedbStore::open(
        dir.path(),
        Retention {
            max_events: 100,
            max_age: Some(Duration::from_secs(1)),
            per_topic: 0,
        },
    )
    .unwrap();
    store.append(vec![update("a", "old")]).await.unwrap();
    // On paused time a slow fsync cannot age anything: kept a millisecond before the limit,
    // gone just after.
    tokio::time::sleep(Duration::from_millis(999)).await;
    assert_ne!(store.resolve("old").await.unwrap(), ReplayFrom::Unknown);
    tokio::time::sleep(Duration::from_millis(2)).await;
    store.append(vec![update("a", "new")]).await.unwrap();
    assert_eq!(store.resolve("old").await.unwrap(), ReplayFrom::Unknown);
    assert_eq!(store.read_after(0, 10).await.unwrap().len(), 1);
    // Trimmed on disk, not only hidden: a store without an age limit no longer has it.
    drop(store);
    let store = open(&dir, 100);
    assert_eq!(ids(&store.read_after(0, 10).await.unwrap()), ["new"]);
    let topics = store.topics().await.unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].events, 1);
}

#[tokio::test]
async fn zero_history_keeps_nothing() {
    let dir = TempDir::new("zero");
    let store = open(&dir, 0);
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
    assert!(store.topics().await.unwrap().is_empty());
    assert_eq!(store.resolve("1").await.unwrap(), ReplayFrom::Unknown);
}

#[tokio::test]
async fn tallies_count_private_and_public_updates_apart() {
    let dir = TempDir::new("tally-mixed");
    let store = RedbStore::open(dir.path(), scenario::MIXED).unwrap();
    scenario::mixed_updates(&store).await;
    // On disk, not only in memory.
    let before = scenario::tallies(&store).await;
    drop(store);
    let store = RedbStore::open(dir.path(), scenario::MIXED).unwrap();
    assert_eq!(scenario::tallies(&store).await, before);
}

#[tokio::test]
async fn tallies_follow_retention_by_count() {
    let dir = TempDir::new("tally-count");
    let store = RedbStore::open(dir.path(), scenario::BY_COUNT).unwrap();
    scenario::count_retention(&store).await;
}

#[tokio::test(start_paused = true)]
async fn tallies_follow_retention_by_age() {
    let dir = TempDir::new("tally-age");
    let store = RedbStore::open(dir.path(), scenario::BY_AGE).unwrap();
    scenario::age_retention(&store).await;
}

// --- Schema 1: files of an earlier herald ---------------------------------------------------

/// Turns a store file into what an earlier herald (schema 1) leaves: the same log and ids, the
/// two tally tables (with rows that do not match the log: they must be ignored) and the two
/// `meta` marks of the public tally.
fn make_schema_1(dir: &TempDir) {
    let db = Database::open(dir.file()).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(META_SCHEMA, SCHEMA_WITH_TALLY_TABLES).unwrap();
        meta.insert(META_PUBLIC_SEQ, 1).unwrap();
        meta.insert(META_PUBLIC_FRONT, 1).unwrap();
        for table in [TOPICS, TOPICS_PUBLIC] {
            txn.open_table(table)
                .unwrap()
                .insert("stale", (99, "x"))
                .unwrap();
        }
    }
    txn.commit().unwrap();
}

fn has_table(dir: &TempDir, name: &str) -> bool {
    let db = Database::open(dir.file()).unwrap();
    let read = db.begin_read().unwrap();
    read.list_tables()
        .unwrap()
        .any(|table| table.name() == name)
}

fn meta_value(dir: &TempDir, key: &str) -> Option<u64> {
    let db = Database::open(dir.file()).unwrap();
    let read = db.begin_read().unwrap();
    let meta = read.open_table(META).unwrap();
    meta.get(key).unwrap().map(|guard| guard.value())
}

#[tokio::test]
async fn a_schema_1_file_is_upgraded_and_its_tallies_are_counted_from_the_log() {
    let dir = TempDir::new("schema-1");
    let store = RedbStore::open(dir.path(), scenario::BY_COUNT).unwrap();
    scenario::count_retention(&store).await;
    let before = scenario::tallies(&store).await;
    let replay = store.read_after(0, 10).await.unwrap();
    drop(store);
    make_schema_1(&dir);
    assert_eq!(meta_value(&dir, META_SCHEMA), Some(1));
    // `inspect` (what `herald backup` checks) takes a schema 1 file as it is.
    assert_eq!(inspect(&dir.file()).unwrap().records, 3);
    assert_eq!(meta_value(&dir, META_SCHEMA), Some(1));

    let store = RedbStore::open(dir.path(), scenario::BY_COUNT).unwrap();
    assert_eq!(scenario::tallies(&store).await, before);
    assert_eq!(store.read_after(0, 10).await.unwrap(), replay);
    drop(store);
    assert_eq!(meta_value(&dir, META_SCHEMA), Some(SCHEMA_VERSION));
    assert!(!has_table(&dir, TOPICS.name()));
    assert!(!has_table(&dir, TOPICS_PUBLIC.name()));
    assert_eq!(meta_value(&dir, META_PUBLIC_SEQ), None);
    assert_eq!(meta_value(&dir, META_PUBLIC_FRONT), None);
    // And counted from there on: the private 5 goes, a public 8 comes.
    let store = RedbStore::open(dir.path(), scenario::BY_COUNT).unwrap();
    store
        .append(vec![scenario::update(&["c"], "8", false)])
        .await
        .unwrap();
    assert_eq!(
        scenario::tallies(&store).await,
        [
            scenario::row("a", 1, "6", 1, Some("6")),
            scenario::row("b", 1, "6", 1, Some("6")),
            scenario::row("c", 2, "8", 1, Some("8")),
        ]
    );
}

#[test]
fn a_schema_1_tally_of_another_type_is_refused_and_left_untouched() {
    let dir = TempDir::new("schema-1-foreign");
    drop(open(&dir, 10));
    make_schema_1(&dir);
    let other: TableDefinition<'_, u64, u64> = TableDefinition::new("topics_public");
    {
        let db = Database::open(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(TOPICS_PUBLIC).unwrap();
        txn.open_table(other).unwrap().insert(1, 2).unwrap();
        txn.commit().unwrap();
    }
    let message = open_error(dir.path());
    assert!(message.contains("not a herald store"), "{message}");
    assert!(
        message.contains(&dir.file().display().to_string()),
        "{message}"
    );
    assert_eq!(meta_value(&dir, META_SCHEMA), Some(1));
    let db = Database::open(dir.file()).unwrap();
    let read = db.begin_read().unwrap();
    assert_eq!(
        read.open_table(other)
            .unwrap()
            .get(1)
            .unwrap()
            .unwrap()
            .value(),
        2
    );
}

#[tokio::test]
async fn an_undecodable_record_found_while_counting_the_tallies_is_damage() {
    let dir = TempDir::new("tally-damaged");
    let store = open(&dir, 10);
    store.append(vec![update("a", "1")]).await.unwrap();
    drop(store);
    {
        let db = Database::open(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(LOG)
            .unwrap()
            .insert(2, &b"not a record"[..])
            .unwrap();
        txn.commit().unwrap();
    }
    let message = open_error(dir.path());
    assert!(message.contains("damaged"), "{message}");
    assert!(message.contains("undecodable record at seq 2"), "{message}");
    let db = Database::open(dir.file()).unwrap();
    let read = db.begin_read().unwrap();
    let log = read.open_table(LOG).unwrap();
    assert_eq!(log.get(2).unwrap().unwrap().value(), b"not a record");
}

// --- Beyond the ring ------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn aged_out_updates_are_hidden_even_when_nothing_is_published() {
    let dir = TempDir::new("idle-age");
    let store = RedbStore::open(
        dir.path(),
        Retention {
            max_events: 100,
            max_age: Some(Duration::from_secs(1)),
            per_topic: 0,
        },
    )
    .unwrap();
    store
        .append(vec![update("a", "1"), update("b", "2")])
        .await
        .unwrap();
    assert_eq!(store.topics().await.unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(store.resolve("1").await.unwrap(), ReplayFrom::Unknown);
    assert!(store.read_after(0, 10).await.unwrap().is_empty());
    assert!(store.topic_events("a", 0, 10).await.unwrap().is_empty());
    assert!(store.topics().await.unwrap().is_empty());
    assert_eq!(
        store.bounds().await.unwrap(),
        Bounds {
            last_seq: 2,
            trimmed_through: 2,
            ..Bounds::default()
        }
    );
}

/// Replays the same workload on the memory ring and on redb: every answer must be equal.
#[tokio::test]
async fn answers_exactly_like_the_memory_ring() {
    for (max_events, per_topic) in [(0, 0), (1, 0), (7, 0), (1000, 0), (0, 2), (7, 1), (9, 2)] {
        let retention = Retention {
            per_topic,
            ..keep(max_events)
        };
        let dir = TempDir::new("differential");
        let disk = RedbStore::open(dir.path(), retention).unwrap();
        let ring = MemoryStore::new(retention);
        let mut state = 0x9e37_79b9_u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let topics = ["a", "b", "c", "d"];
        let mut all_ids: Vec<String> = Vec::new();
        for round in 0..40 {
            let mut batch = Vec::new();
            for n in 0..=next(5) {
                // Some ids repeat on purpose: a later update takes the id over.
                let id = if next(4) == 0 && !all_ids.is_empty() {
                    all_ids[usize::try_from(next(all_ids.len() as u64)).unwrap()].clone()
                } else {
                    format!("{round}-{n}")
                };
                all_ids.push(id.clone());
                let mut chosen = vec![topics[usize::try_from(next(4)).unwrap()].to_owned()];
                if next(3) == 0 {
                    chosen.push(topics[usize::try_from(next(4)).unwrap()].to_owned());
                }
                batch.push(
                    Update::from_draft(Draft {
                        topics: chosen,
                        data: format!("data {round} {n}"),
                        id: Some(id),
                        private: next(2) == 0,
                        ..Draft::default()
                    })
                    .unwrap(),
                );
            }
            let from_disk = disk.append(batch.clone()).await.unwrap();
            let from_ring = ring.append(batch).await.unwrap();
            assert_eq!(from_disk, from_ring);
        }
        for after in 0..=all_ids.len() as u64 + 1 {
            for limit in [0, 1, 3, usize::MAX] {
                assert_eq!(
                    disk.read_after(after, limit).await.unwrap(),
                    ring.read_after(after, limit).await.unwrap()
                );
                for topic in topics {
                    assert_eq!(
                        disk.topic_events(topic, after, limit).await.unwrap(),
                        ring.topic_events(topic, after, limit).await.unwrap()
                    );
                }
            }
        }
        for id in all_ids.iter().chain([&"missing".to_owned()]) {
            assert_eq!(
                disk.resolve(id).await.unwrap(),
                ring.resolve(id).await.unwrap()
            );
            for after in [0, 1, 5, 20, 60, 200] {
                assert_eq!(
                    disk.resolve_earliest(id, after).await.unwrap(),
                    ring.resolve_earliest(id, after).await.unwrap(),
                    "{id} after {after}"
                );
            }
        }
        assert_eq!(disk.bounds().await.unwrap(), ring.bounds().await.unwrap());
        assert_eq!(sorted_topics(&disk).await, sorted_topics(&ring).await);
    }
}

#[tokio::test]
async fn duplicate_ids_resolve_to_their_newest_or_earliest_occurrence() {
    use crate::store::conformance as scenario;
    let dir = TempDir::new("duplicates");
    scenario::duplicate_ids(&RedbStore::open(dir.path(), scenario::DUPLICATES).unwrap()).await;
}

#[tokio::test]
async fn a_duplicate_id_kept_in_a_hole_is_still_its_earliest() {
    use crate::store::conformance as scenario;
    let dir = TempDir::new("duplicate-holes");
    let retention = scenario::DUPLICATES_BY_TOPIC;
    scenario::duplicate_ids_around_holes(&RedbStore::open(dir.path(), retention).unwrap()).await;
}

#[tokio::test]
async fn per_topic_retention_keeps_a_quiet_topics_newest() {
    use crate::store::conformance as scenario;
    let dir = TempDir::new("per-topic");
    scenario::per_topic_protection(&RedbStore::open(dir.path(), scenario::BY_TOPIC).unwrap()).await;
}

#[tokio::test]
async fn per_topic_retention_stays_within_the_history_size() {
    use crate::store::conformance as scenario;
    let dir = TempDir::new("per-topic-tight");
    let store = RedbStore::open(dir.path(), scenario::BY_TOPIC_TIGHT).unwrap();
    scenario::per_topic_limits(&store).await;
}

#[tokio::test(start_paused = true)]
async fn per_topic_retention_yields_to_age() {
    use crate::store::conformance as scenario;
    let dir = TempDir::new("per-topic-age");
    let store = RedbStore::open(dir.path(), scenario::BY_TOPIC_AND_AGE).unwrap();
    scenario::per_topic_age(&store).await;
}

/// The per-topic index is rebuilt when the file was written without it (or for another
/// N), and the holes, `trimmed_through` included, survive a restart.
#[tokio::test]
async fn per_topic_index_is_rebuilt_on_open_and_holes_survive_restarts() {
    use crate::store::conformance as scenario;
    let dir = TempDir::new("per-topic-reopen");
    let with = |per_topic| Retention {
        per_topic,
        ..keep(5)
    };
    async fn append(store: &RedbStore, topic: &str, id: String) {
        let update = scenario::update(&[topic], &id, false);
        store.append(vec![update]).await.unwrap();
    }
    {
        let store = RedbStore::open(dir.path(), with(2)).unwrap();
        for n in 1..=3 {
            append(&store, "a", format!("a{n}")).await;
        }
        for n in 1..=6 {
            append(&store, "b", format!("b{n}")).await;
        }
        assert_eq!(
            scenario::kept_ids(&store).await,
            ["a2", "a3", "b2", "b3", "b4", "b5", "b6"]
        );
    }
    {
        // Same N: the hole and trimmed_through are as they were.
        let store = RedbStore::open(dir.path(), with(2)).unwrap();
        assert_eq!(store.bounds().await.unwrap().trimmed_through, 4);
        drop(store);
        // A run without per-topic retention keeps the plain ring, and leaves the index
        // stale.
        let plain = RedbStore::open(dir.path(), with(0)).unwrap();
        append(&plain, "a", "a4".into()).await;
        assert_eq!(
            scenario::kept_ids(&plain).await,
            ["b3", "b4", "b5", "b6", "a4"]
        );
        assert_eq!(plain.bounds().await.unwrap().trimmed_through, 5);
    }
    // Back with N = 1: the index is rebuilt from the log, so a4 is a's newest.
    let store = RedbStore::open(dir.path(), with(1)).unwrap();
    for n in 7..=11 {
        append(&store, "b", format!("b{n}")).await;
    }
    assert_eq!(
        scenario::kept_ids(&store).await,
        ["a4", "b7", "b8", "b9", "b10", "b11"]
    );
    // A stale index would not know a4, and keep it.
    append(&store, "a", "a5".into()).await;
    assert_eq!(
        scenario::kept_ids(&store).await,
        ["b8", "b9", "b10", "b11", "a5"]
    );
    assert_eq!(store.bounds().await.unwrap().trimmed_through, 11);
}

#[tokio::test]
async fn every_field_survives_a_restart_and_sequences_continue() {
    let dir = TempDir::new("reopen");
    let full = Update::from_draft(Draft {
        topics: vec![
            "https://example.com/books/1".into(),
            "alt/ü/1".into(),
            "alt/ü/1".into(),
        ],
        data: "line one\nline two\r\nthird: ✓".into(),
        id: Some("custom-id".into()),
        event_type: Some("note".into()),
        retry: Some(1500),
        private: true,
    })
    .unwrap();
    let plain = Update::from_draft(Draft {
        topics: vec!["t".into()],
        data: String::new(),
        ..Draft::default()
    })
    .unwrap();
    let (stored, replay, bounds, topics) = {
        let store = open(&dir, 100);
        let stored = store
            .append(vec![full.clone(), plain.clone()])
            .await
            .unwrap();
        store.append(vec![update("t", "third")]).await.unwrap();
        let replay = store.read_after(0, 100).await.unwrap();
        (
            stored,
            replay,
            store.bounds().await.unwrap(),
            sorted_topics(&store).await,
        )
    };
    assert_eq!(*stored[0], Update { seq: 1, ..full });
    assert_eq!(
        *stored[1],
        Update {
            seq: 2,
            ..plain.clone()
        }
    );

    let store = open(&dir, 100);
    assert_eq!(store.read_after(0, 100).await.unwrap(), replay);
    assert_eq!(store.bounds().await.unwrap(), bounds);
    assert_eq!(sorted_topics(&store).await, topics);
    assert_eq!(topics[0].topic, "alt/ü/1");
    assert_eq!(topics[0].events, 1);
    assert_eq!(
        store.resolve("custom-id").await.unwrap(),
        ReplayFrom::After(1)
    );
    assert_eq!(
        store.resolve(&plain.id).await.unwrap(),
        ReplayFrom::After(2)
    );
    assert_eq!(
        ids(&store.topic_events("alt/ü/1", 0, 10).await.unwrap()),
        ["custom-id"]
    );
    let next = store.append(vec![update("t", "fourth")]).await.unwrap();
    assert_eq!(next[0].seq, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_during_appends_opens_as_a_store_of_one_commit() {
    let dir = TempDir::new("snapshot-src");
    let store = Arc::new(open(&dir, 100_000));
    for n in 0..50 {
        store
            .append(vec![
                update("a", &format!("a{n}")),
                update("b", &format!("b{n}")),
            ])
            .await
            .unwrap();
    }
    // Appends go on while the snapshot is taken.
    let appender = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for n in 0..200 {
                store
                    .append(vec![update("c", &format!("c{n}"))])
                    .await
                    .unwrap();
            }
        })
    };
    let snapshot = store.snapshot().await.unwrap();
    appender.await.unwrap();
    assert!(snapshot.records >= 100, "{snapshot:?}");
    assert_eq!(snapshot.records, snapshot.last_seq, "nothing trimmed yet");
    // The snapshot's file is already unlinked: only herald.redb is in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);

    let restored = TempDir::new("snapshot-dst");
    std::fs::create_dir_all(restored.path()).unwrap();
    let mut copy = std::fs::File::create(restored.file()).unwrap();
    let mut source = snapshot.file;
    let copied = std::io::copy(&mut source, &mut copy).unwrap();
    assert_eq!(copied, snapshot.bytes);
    drop(copy);
    let summary = inspect(&restored.file()).unwrap();
    assert_eq!(summary.records, snapshot.records);
    assert_eq!(summary.newest_id, snapshot.newest_id);

    let reopened = open(&restored, 100_000);
    let replayed = reopened.read_after(0, 10_000).await.unwrap();
    let original = store.read_after(0, 10_000).await.unwrap();
    let cut = usize::try_from(snapshot.records).unwrap();
    assert_eq!(ids(&replayed), ids(&original[..cut]), "a prefix, in order");
    assert_eq!(
        replayed.last().map(|u| u.id.clone()),
        snapshot.newest_id.clone()
    );
    // The tallies came along and match the copied log.
    for tally in sorted_topics(&reopened).await {
        let carried = replayed
            .iter()
            .filter(|u| u.topics.contains(&tally.topic))
            .count();
        assert_eq!(tally.events, carried as u64, "{tally:?}");
    }
    // And the copy takes appends, continuing the sequence.
    let next = reopened.append(vec![update("d", "d0")]).await.unwrap();
    assert_eq!(next[0].seq, snapshot.last_seq + 1);
}

#[test]
fn inspect_refuses_what_is_not_a_store() {
    let dir = TempDir::new("inspect-foreign");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.file(), b"not a database at all").unwrap();
    assert!(matches!(
        inspect(&dir.file()),
        Err(OpenError::Foreign { .. } | OpenError::Damaged { .. })
    ));
}

#[tokio::test]
async fn the_last_sequence_survives_trimming_everything() {
    let dir = TempDir::new("last-seq");
    {
        let store = open(&dir, 0);
        store
            .append(vec![update("a", "1"), update("a", "2"), update("a", "3")])
            .await
            .unwrap();
    }
    let store = open(&dir, 0);
    assert_eq!(store.bounds().await.unwrap().last_seq, 3);
    let next = store.append(vec![update("a", "4")]).await.unwrap();
    assert_eq!(next[0].seq, 4);
}

#[tokio::test]
async fn an_append_writes_meta_only_when_the_log_cannot_tell() {
    let dir = TempDir::new("meta-writes");
    {
        let store = open(&dir, 2);
        for n in 1..=5 {
            store
                .append(vec![update("a", &n.to_string())])
                .await
                .unwrap();
        }
        let bounds = store.bounds().await.unwrap();
        assert_eq!((bounds.last_seq, bounds.trimmed_through), (5, 3));
    }
    // Trimmed from the front only, the newest kept: the log tells both, `meta` keeps its
    // values from when the file was made.
    assert_eq!(meta_value(&dir, META_LAST_SEQ), Some(0));
    assert_eq!(meta_value(&dir, META_TRIMMED), None);
    assert_eq!(inspect(&dir.file()).unwrap().last_seq, 5);
    let store = open(&dir, 2);
    let bounds = store.bounds().await.unwrap();
    assert_eq!((bounds.last_seq, bounds.trimmed_through), (5, 3));
    let next = store.append(vec![update("a", "6")]).await.unwrap();
    assert_eq!(next[0].seq, 6);
    drop(store);
    // Retention removing everything: now only `meta` can tell.
    let store = open(&dir, 0);
    store.append(vec![update("a", "7")]).await.unwrap();
    drop(store);
    assert_eq!(meta_value(&dir, META_LAST_SEQ), Some(7));
}

#[tokio::test]
async fn what_appends_keep_in_memory_matches_the_file_after_every_commit() {
    let by_topic = Retention {
        max_events: 4,
        max_age: None,
        per_topic: 1,
    };
    for (name, retention) in [("count", keep(3)), ("by-topic", by_topic)] {
        let dir = TempDir::new(&format!("kept-in-memory-{name}"));
        let store = RedbStore::open(dir.path(), retention).unwrap();
        // Ids used again (`duplicate_ids` fills, then empties as retention removes them), a
        // quiet topic that per-topic retention protects, and batches of several.
        let batches: [&[(&str, &str)]; 7] = [
            &[("quiet", "q1"), ("a", "x")],
            &[("a", "x"), ("a", "y")],
            &[("b", "x")],
            &[("a", "1"), ("b", "2"), ("a", "3")],
            &[("a", "y"), ("b", "4")],
            &[("a", "5"), ("a", "6"), ("b", "7"), ("a", "8")],
            &[("b", "9")],
        ];
        let mut most_duplicates = 0;
        for batch in batches {
            let updates = batch.iter().map(|(topic, id)| update(topic, id)).collect();
            store.append(updates).await.unwrap();
            let file = bounds_blocking(&store.db, retention).unwrap();
            assert_eq!(store.bounds().await.unwrap(), file, "{name}: cached bounds");
            let read = read_committed(&store.db).unwrap();
            let kept = store.committed.lock().unwrap();
            assert_eq!(
                (kept.last_seq, kept.duplicates),
                (read.last_seq, read.duplicates),
                "{name}: the writer's counts"
            );
            most_duplicates = most_duplicates.max(kept.duplicates);
        }
        assert!(most_duplicates >= 2, "{name}: duplicate_ids was used");
        assert_eq!(
            store.committed.lock().map(|kept| kept.duplicates),
            Some(0),
            "{name}: every duplicate trimmed"
        );
        // As after a failed append: nothing known, the next append reads the file.
        *store.committed.lock() = None;
        *store.bounds.lock() = None;
        let file = bounds_blocking(&store.db, retention).unwrap();
        assert_eq!(
            store.bounds().await.unwrap(),
            file,
            "{name}: bounds from the file"
        );
        let next = store.append(vec![update("a", "after")]).await.unwrap();
        assert_eq!(next[0].seq, file.last_seq + 1, "{name}: no sequence reused");
        assert_eq!(
            store.bounds().await.unwrap(),
            bounds_blocking(&store.db, retention).unwrap(),
            "{name}: cached again after the next commit"
        );
        let bounds = store.bounds().await.unwrap();
        drop(store);
        let reopened = RedbStore::open(dir.path(), retention).unwrap();
        assert_eq!(
            reopened.bounds().await.unwrap(),
            bounds,
            "{name}: after a restart"
        );
    }
}

/// Turns a store file into what a schema 2 herald leaves: `last_seq` and `trimmed` written on
/// every commit.
fn make_schema_2(dir: &TempDir, last_seq: u64, trimmed: u64) {
    let db = Database::open(dir.file()).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(META_SCHEMA, SCHEMA_WRITING_META_PER_COMMIT)
            .unwrap();
        meta.insert(META_LAST_SEQ, last_seq).unwrap();
        meta.insert(META_TRIMMED, trimmed).unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_schema_2_file_is_upgraded_and_keeps_its_sequences() {
    let dir = TempDir::new("schema-2");
    let (bounds, replay) = {
        let store = open(&dir, 2);
        for n in 1..=4 {
            store
                .append(vec![update("a", &n.to_string())])
                .await
                .unwrap();
        }
        (
            store.bounds().await.unwrap(),
            store.read_after(0, 10).await.unwrap(),
        )
    };
    make_schema_2(&dir, 4, 2);
    // `inspect` (what `herald backup` checks) takes a schema 2 file as it is.
    assert_eq!(inspect(&dir.file()).unwrap().last_seq, 4);
    assert_eq!(meta_value(&dir, META_SCHEMA), Some(2));

    let store = open(&dir, 2);
    assert_eq!(store.bounds().await.unwrap(), bounds);
    assert_eq!(store.read_after(0, 10).await.unwrap(), replay);
    let next = store.append(vec![update("a", "5")]).await.unwrap();
    assert_eq!(next[0].seq, 5);
    drop(store);
    assert_eq!(meta_value(&dir, META_SCHEMA), Some(SCHEMA_VERSION));
    // A schema 2 `last_seq` above the log (everything after it trimmed) still counts.
    make_schema_2(&dir, 9, 2);
    let store = open(&dir, 2);
    assert_eq!(store.bounds().await.unwrap().last_seq, 9);
    let next = store.append(vec![update("a", "6")]).await.unwrap();
    assert_eq!(next[0].seq, 10);
}

#[tokio::test]
async fn a_batch_of_a_thousand_is_one_commit() {
    let dir = TempDir::new("batch");
    let store = open(&dir, 10_000);
    let batch: Vec<_> = (0..1000).map(|n| update("t", &format!("b{n}"))).collect();
    let before = store.commits();
    let stored = store.append(batch).await.unwrap();
    assert_eq!(store.commits() - before, 1);
    assert_eq!(
        stored.iter().map(|u| u.seq).collect::<Vec<_>>(),
        (1..=1000).collect::<Vec<u64>>()
    );
    drop(store);
    let store = open(&dir, 10_000);
    assert_eq!(store.read_after(0, usize::MAX).await.unwrap().len(), 1000);
    assert_eq!(
        store.resolve("b999").await.unwrap(),
        ReplayFrom::After(1000)
    );
}

#[tokio::test]
async fn disk_use_stays_bounded_under_an_endless_stream() {
    let dir = TempDir::new("bounded");
    let store = open(&dir, 100);
    let mut sizes = Vec::new();
    let mut n = 0;
    for checkpoint in [5_000, 20_000] {
        while n < checkpoint {
            let batch = (0..20)
                .map(|k| update(&format!("topic-{}", (n + k) % 50), &format!("e{}", n + k)))
                .collect();
            store.append(batch).await.unwrap();
            n += 20;
        }
        sizes.push(std::fs::metadata(dir.file()).unwrap().len());
    }
    assert_eq!(store.read_after(0, usize::MAX).await.unwrap().len(), 100);
    assert_eq!(store.topics().await.unwrap().len(), 50);
    assert_eq!(
        store.resolve("e19899").await.unwrap(),
        ReplayFrom::Unknown,
        "trimmed ids leave the index"
    );
    eprintln!(
        "file size after 5k: {} B, after 20k: {} B",
        sizes[0], sizes[1]
    );
    assert!(
        sizes[1] <= sizes[0] * 2,
        "the file grows with the stream: {sizes:?}"
    );
}

/// The figure docs/DEPLOY.md quotes: file bytes per kept update, for a typical small update
/// (a 100-byte JSON body, one URL topic, a generated `urn:uuid` id), at the default
/// `--history-size` of 10,000, when full and in the steady state of an endless stream.
#[tokio::test]
async fn disk_use_per_small_update() {
    let dir = TempDir::new("per-update");
    let kept = 10_000;
    let store = open(&dir, kept);
    let draft = |n: usize| {
        let body = format!(r#"{{"id":{n},"title":"A book title of some length","price":12.5}}"#);
        Update::from_draft(Draft {
            topics: vec![format!("https://example.com/books/{}", n % 100)],
            data: format!("{body:<100}"),
            ..Draft::default()
        })
        .unwrap()
    };
    let mut sizes = Vec::new();
    let mut n = 0;
    for checkpoint in [kept, 3 * kept] {
        while n < checkpoint {
            store
                .append((n..n + 500).map(draft).collect())
                .await
                .unwrap();
            n += 500;
        }
        sizes.push(std::fs::metadata(dir.file()).unwrap().len());
    }
    let frame = draft(0).frame.len();
    let per_update: Vec<u64> = sizes.iter().map(|size| size / kept as u64).collect();
    eprintln!(
        "SSE frame {frame} B; file {} B when full ({} B per update), {} B after {} appends ({} B per kept update)",
        sizes[0],
        per_update[0],
        sizes[1],
        3 * kept,
        per_update[1]
    );
    assert!(per_update[1] < 2048, "{per_update:?}");
}

// --- Refusing files -------------------------------------------------------------------------

#[test]
fn a_missing_directory_is_created() {
    let dir = TempDir::new("nested");
    let nested = dir.path().join("a").join("b");
    let store = RedbStore::open(&nested, keep(10)).unwrap();
    assert_eq!(store.path(), nested.join(FILE_NAME));
    assert!(nested.join(FILE_NAME).is_file());
}

#[test]
fn a_foreign_file_is_refused_and_left_untouched() {
    let dir = TempDir::new("foreign");
    std::fs::create_dir_all(dir.path()).unwrap();
    for garbage in [&b"hello"[..], &[0xAB; 64 * 1024][..]] {
        std::fs::write(dir.file(), garbage).unwrap();
        let message = open_error(dir.path());
        assert!(
            message.contains(&dir.file().display().to_string()),
            "{message}"
        );
        assert!(message.contains("not a herald store"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert_eq!(std::fs::read(dir.file()).unwrap(), garbage);
    }
}

#[test]
fn another_programs_redb_file_is_refused() {
    let dir = TempDir::new("other-redb");
    std::fs::create_dir_all(dir.path()).unwrap();
    {
        let db = Database::create(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let other: TableDefinition<'_, u64, u64> = TableDefinition::new("other");
            txn.open_table(other).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(dir.file()).unwrap();
    let message = open_error(dir.path());
    assert!(message.contains("not a herald store"), "{message}");
    assert!(
        message.contains(&dir.file().display().to_string()),
        "{message}"
    );
    // The integrity pass of the open may rewrite redb's own header, never the tables.
    let db = Database::open(dir.file()).unwrap();
    let other: TableDefinition<'_, u64, u64> = TableDefinition::new("other");
    let read = db.begin_read().unwrap();
    let table = read.open_table(other).unwrap();
    assert_eq!(table.get(1).unwrap().unwrap().value(), 2);
    assert!(!before.is_empty());
}

#[test]
fn an_unknown_schema_version_is_refused() {
    let dir = TempDir::new("schema");
    drop(open(&dir, 10));
    {
        let db = Database::open(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA, 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let message = open_error(dir.path());
    assert!(message.contains("schema version 99"), "{message}");
    assert!(
        message.contains(&dir.file().display().to_string()),
        "{message}"
    );
    let db = Database::open(dir.file()).unwrap();
    let read = db.begin_read().unwrap();
    let meta = read.open_table(META).unwrap();
    assert_eq!(meta.get(META_SCHEMA).unwrap().unwrap().value(), 99);
}

#[tokio::test]
async fn a_damaged_file_is_refused_and_left_untouched() {
    let dir = TempDir::new("damaged");
    let marker = b"DAMAGE-ME-0123456789";
    {
        let store = open(&dir, 1000);
        let batch = (0..50)
            .map(|n| {
                Update::from_draft(Draft {
                    topics: vec!["t".into()],
                    data: String::from_utf8(marker.to_vec()).unwrap(),
                    id: Some(format!("d{n}")),
                    ..Draft::default()
                })
                .unwrap()
            })
            .collect();
        store.append(batch).await.unwrap();
    }
    let mut bytes = std::fs::read(dir.file()).unwrap();
    let mut hits = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..]
        .windows(marker.len())
        .position(|window| window == marker)
    {
        let start = at + found;
        bytes[start..start + marker.len()].fill(b'#');
        at = start + marker.len();
        hits += 1;
    }
    assert!(hits > 0);
    std::fs::write(dir.file(), &bytes).unwrap();
    let message = open_error(dir.path());
    assert!(message.contains("damaged"), "{message}");
    assert!(
        message.contains(&dir.file().display().to_string()),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(std::fs::read(dir.file()).unwrap(), bytes);
}

#[test]
fn a_second_open_in_the_same_process_is_refused() {
    let dir = TempDir::new("locked");
    let first = open(&dir, 10);
    let message = open_error(dir.path());
    assert!(message.contains("is another herald using it?"), "{message}");
    assert!(
        message.contains(&dir.file().display().to_string()),
        "{message}"
    );
    drop(first);
    drop(open(&dir, 10));
}

// --- Other processes ------------------------------------------------------------------------

const CHILD_MODE: &str = "HERALD_REDB_TEST_CHILD";
const CHILD_DIR: &str = "HERALD_REDB_TEST_DIR";
const CHILD_ROUND: &str = "HERALD_REDB_TEST_ROUND";

/// This test binary again, running only [`child_process`].
fn spawn_child(mode: &str, dir: &Path, round: usize) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::redb::tests::child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode)
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Does nothing in a normal run. In a child spawned by the tests below it is the other
/// process: `hold` opens the store and waits; `crash` appends at full speed and prints every
/// acknowledged seq, until it is killed (or 30 s pass, so it can never linger).
#[tokio::test]
async fn child_process() {
    let (Ok(mode), Ok(dir), Ok(round)) = (
        std::env::var(CHILD_MODE),
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_ROUND),
    ) else {
        return;
    };
    let store = RedbStore::open(Path::new(&dir), keep(1_000_000)).unwrap();
    let mut out = std::io::stdout().lock();
    // On a line of its own: the harness has just printed the test's name without one.
    writeln!(out, "\nopen").unwrap();
    out.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    if mode == "hold" {
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        return;
    }
    let mut n = 0_usize;
    while Instant::now() < deadline {
        let batch: Vec<_> = (0..1 + n % 32)
            .map(|k| update("crash", &format!("r{round}-{}", n + k)))
            .collect();
        n += batch.len();
        for stored in store.append(batch).await.unwrap() {
            writeln!(out, "ack {} {}", stored.seq, stored.id).unwrap();
        }
        out.flush().unwrap();
    }
}

/// Reads the child's stdout lines until `stop` says so or the child ends; returns them all.
fn read_lines(
    child: &mut std::process::Child,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    (receive, reader)
}

#[test]
fn a_second_process_on_the_same_store_is_refused() {
    let dir = TempDir::new("locked-process");
    drop(open(&dir, 10));
    let mut child = spawn_child("hold", dir.path(), 0);
    let (lines, reader) = read_lines(&mut child);
    // Past the test harness's own lines, the child says when it holds the store.
    while lines.recv_timeout(Duration::from_secs(20)).unwrap() != "open" {}
    let message = open_error(dir.path());
    assert!(message.contains("is another herald using it?"), "{message}");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lines);
    reader.join().unwrap();
    // Killed, the other process released its lock.
    drop(open(&dir, 10));
}

#[tokio::test]
async fn every_acknowledged_update_survives_kill_9_in_order_exactly_once() {
    let dir = TempDir::new("crash");
    let mut acked: Vec<(u64, String)> = Vec::new();
    for round in 0..2 {
        let mut child = spawn_child("crash", dir.path(), round);
        let (lines, reader) = read_lines(&mut child);
        let started = Instant::now();
        let mut acks_this_round = 0;
        let mut killed = false;
        loop {
            if !killed && started.elapsed() > Duration::from_secs(20) {
                panic!("the writer child acknowledged nothing");
            }
            if !killed && acks_this_round > 0 && started.elapsed() > Duration::from_millis(300) {
                child.kill().unwrap();
                child.wait().unwrap();
                killed = true;
            }
            match lines.recv_timeout(Duration::from_millis(10)) {
                Ok(line) => {
                    let mut words = line.split(' ');
                    if words.next() == Some("ack") {
                        let seq = words.next().unwrap().parse::<u64>().unwrap();
                        let id = words.next().unwrap().to_owned();
                        acked.push((seq, id));
                        acks_this_round += 1;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        reader.join().unwrap();
        assert!(acks_this_round > 0);

        let store = open(&dir, 1_000_000);
        let kept = store.read_after(0, usize::MAX).await.unwrap();
        // The log is contiguous from 1, each id once.
        assert_eq!(
            kept.iter().map(|u| u.seq).collect::<Vec<_>>(),
            (1..=kept.len() as u64).collect::<Vec<_>>()
        );
        let mut unique_ids: Vec<_> = kept.iter().map(|u| u.id.as_str()).collect();
        unique_ids.sort_unstable();
        unique_ids.dedup();
        assert_eq!(unique_ids.len(), kept.len(), "an id is stored twice");
        // Acknowledged seqs came in order, and each is stored with its id.
        assert!(acked.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (seq, id) in &acked {
            let stored = &kept[usize::try_from(*seq - 1).unwrap()];
            assert_eq!(&stored.id, id, "seq {seq}");
            assert_eq!(store.resolve(id).await.unwrap(), ReplayFrom::After(*seq));
        }
        eprintln!(
            "round {round}: {acks_this_round} acknowledged before kill -9, {} stored",
            kept.len()
        );
    }
}

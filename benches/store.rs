//! Durable history on redb: acknowledged publishes per second through the group-commit writer,
//! and replay speed from the store.
//!
//! `cargo bench --bench store` (add `-- --quick` for a short run). Each `append` element is one
//! publish answered only after its batch was committed with fsync; `replay` reads the whole
//! history in the pages a subscriber's replay uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald::store::redb::RedbStore;
use herald::store::writer::{CommitMetrics, Writer};
use herald::store::{Retention, Store};
use herald::update::{Draft, Update};

/// The hub's batch limit (`server.rs`).
const MAX_BATCH: usize = 1024;
/// The replay page of `stream.rs`.
const REPLAY_PAGE: usize = 256;
/// Events replayed per measured iteration.
const REPLAY_EVENTS: usize = 100_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "herald-bench-{name}-{}-{}",
            std::process::id(),
            herald::update::now_ms()
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn update(topic: &str, data: &str) -> Update {
    Update::from_draft(Draft {
        topics: vec![topic.to_owned()],
        data: data.to_owned(),
        ..Draft::default()
    })
    .unwrap()
}

/// `total` publishes spread over `publishers` concurrent tasks, each waiting for its ack.
async fn publish(writer: &Writer, publishers: usize, total: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(publishers);
    for p in 0..publishers as u64 {
        let writer = writer.clone();
        let share = total / publishers as u64 + u64::from(p < total % publishers as u64);
        tasks.push(tokio::spawn(async move {
            for n in 0..share {
                let data = format!("{{\"publisher\":{p},\"n\":{n}}}");
                writer
                    .submit(update("https://example.com/bench", &data))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let dir = TempDir::new("append");
    let store: Arc<dyn Store> = Arc::new(
        RedbStore::open(
            &dir.0,
            Retention {
                max_events: 10_000,
                max_age: None,
                per_topic: 0,
            },
        )
        .unwrap(),
    );
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for publishers in [1_usize, 16, 64] {
        let commits = Arc::new(AtomicU64::new(0));
        let events = Arc::new(AtomicU64::new(0));
        let (counted_commits, counted_events) = (Arc::clone(&commits), Arc::clone(&events));
        let on_commit = Arc::new(move |batch: &[Arc<Update>]| {
            counted_commits.fetch_add(1, Ordering::Relaxed);
            counted_events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        });
        let (writer, task) = rt.block_on(async {
            Writer::spawn(
                Arc::clone(&store),
                on_commit,
                CommitMetrics::none(),
                MAX_BATCH,
            )
        });
        group.bench_with_input(
            BenchmarkId::new("acknowledged", format!("{publishers}_publishers")),
            &publishers,
            |b, &publishers| {
                b.iter_custom(|iters| rt.block_on(publish(&writer, publishers, iters)));
            },
        );
        drop(writer);
        rt.block_on(task).unwrap();
        let commits = commits.load(Ordering::Relaxed).max(1);
        println!(
            "{publishers} publishers: {:.1} updates per commit on average",
            events.load(Ordering::Relaxed) as f64 / commits as f64
        );
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let rt = runtime();
    let dir = TempDir::new("replay");
    let retention = Retention {
        max_events: REPLAY_EVENTS,
        max_age: None,
        per_topic: 0,
    };
    rt.block_on(async {
        let store = RedbStore::open(&dir.0, retention).unwrap();
        for chunk in 0..REPLAY_EVENTS / 1000 {
            let batch = (0..1000)
                .map(|n| {
                    update(
                        "https://example.com/bench",
                        &format!("{{\"chunk\":{chunk},\"n\":{n},\"payload\":\"0123456789abcdef0123456789abcdef\"}}"),
                    )
                })
                .collect();
            store.append(batch).await.unwrap();
        }
    });
    // Reopened: redb's cache starts empty; the pages come from the file (the OS may cache it).
    let store = RedbStore::open(&dir.0, retention).unwrap();
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(REPLAY_EVENTS as u64));
    group.sample_size(10);
    group.bench_function(format!("read_after_pages_of_{REPLAY_PAGE}"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut after = 0;
                let mut read = 0;
                loop {
                    let page = store.read_after(after, REPLAY_PAGE).await.unwrap();
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    read += page.len();
                }
                assert_eq!(read, REPLAY_EVENTS);
            });
        });
    });
    group.finish();
}

criterion_group!(benches, append, replay);
criterion_main!(benches);

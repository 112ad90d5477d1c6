//! Tests of one subscriber's stream: framing, the replay/live handover, chunking, lag and trimmed history.

use super::*;
use crate::hub::Hub;
use crate::store::Retention;
use crate::store::memory::MemoryStore;
use crate::topic::SelectorSet;

fn ids_in(chunk: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(chunk)
        .lines()
        .filter_map(|line| {
            line.strip_prefix("id: ")
                .or_else(|| line.strip_prefix("id:"))
        })
        .map(|id| id.trim().to_owned())
        .collect()
}

async fn publish(store: &MemoryStore, hub: &Hub, topic: &str, ids: impl Iterator<Item = String>) {
    for id in ids {
        let stored = store
            .append(vec![Update::for_test(topic, &id)])
            .await
            .unwrap();
        hub.fan_out(&stored);
    }
}

/// Everything the stream writes until it ends, or `limit` chunks, or it waits 300 ms for
/// live updates; and whether it ended.
async fn drain(stream: &mut EventStream, limit: usize) -> (Vec<String>, bool) {
    let mut ids = Vec::new();
    for _ in 0..limit {
        let next = tokio::time::timeout(std::time::Duration::from_millis(300), stream.next_chunk());
        match next.await {
            Ok(Some(chunk)) => ids.extend(ids_in(&chunk)),
            Ok(None) => return (ids, true),
            Err(_) => break,
        }
    }
    (ids, false)
}

/// History keeps chat's three while clock updates were trimmed after the subscriber's
/// position: the oldest kept update (chat) is older than what it missed, yet it must not
/// catch up as if nothing was lost (the old `oldest <= last + 1` rule would have).
#[tokio::test(start_paused = true)]
async fn a_lagging_subscriber_whose_missed_updates_were_trimmed_is_closed() {
    let store = Arc::new(MemoryStore::new(Retention {
        max_events: 5,
        max_age: None,
        per_topic: 3,
    }));
    let hub = Hub::new(4);
    publish(&store, &hub, "chat", (1..=3).map(|n| format!("c{n}"))).await;
    let subscription = hub
        .subscribe(SelectorSet::parse(["chat", "clock"]), None)
        .unwrap();
    let mut stream = EventStream::new(
        subscription,
        Arc::clone(&store) as Arc<dyn Store>,
        Bytes::new(),
        Start::LiveAfter(3),
    );
    // 20 clock ticks: the queue (4) overflows, history keeps c1..c3 and k16..k20.
    publish(&store, &hub, "clock", (1..=20).map(|n| format!("k{n}"))).await;
    let bounds = store.bounds().await.unwrap();
    assert_eq!(bounds.oldest.map(|(seq, _)| seq), Some(1));
    assert_eq!(bounds.trimmed_through, 18);
    let (ids, ended) = drain(&mut stream, 10).await;
    assert!(ended, "the stream must end, not catch up: wrote {ids:?}");
    assert_eq!(
        ids,
        ["k1", "k2", "k3", "k4"],
        "what was queued, then the end"
    );
}

/// A lagging subscriber that missed only what history still holds catches up.
#[tokio::test(start_paused = true)]
async fn a_lagging_subscriber_catches_up_when_nothing_it_missed_was_trimmed() {
    let store = Arc::new(MemoryStore::new(Retention {
        max_events: 50,
        max_age: None,
        per_topic: 3,
    }));
    let hub = Hub::new(4);
    let subscription = hub.subscribe(SelectorSet::parse(["clock"]), None).unwrap();
    let mut stream = EventStream::new(
        subscription,
        Arc::clone(&store) as Arc<dyn Store>,
        Bytes::new(),
        Start::LiveAfter(0),
    );
    publish(&store, &hub, "clock", (1..=20).map(|n| format!("k{n}"))).await;
    let (ids, ended) = drain(&mut stream, 10).await;
    assert!(!ended);
    let expected: Vec<String> = (1..=20).map(|n| format!("k{n}")).collect();
    assert_eq!(ids, expected);
}

/// A replay overtaken by retention (the ring moved past the next update to write while the
/// client was reading the first page) ends after what it wrote instead of jumping.
#[tokio::test(start_paused = true)]
async fn a_replay_overtaken_by_retention_ends_instead_of_skipping() {
    let store = Arc::new(MemoryStore::new(Retention {
        max_events: 600,
        max_age: None,
        per_topic: 3,
    }));
    let hub = Hub::new(1024);
    publish(&store, &hub, "chat", (1..=3).map(|n| format!("c{n}"))).await;
    publish(&store, &hub, "clock", (1..=300).map(|n| format!("k{n}"))).await;
    let subscription = hub
        .subscribe(SelectorSet::parse(["chat", "clock"]), None)
        .unwrap();
    let mut stream = EventStream::new(
        subscription,
        Arc::clone(&store) as Arc<dyn Store>,
        Bytes::new(),
        Start::ReplayAfter {
            after: 3,
            announced: 3,
        },
    );
    // The first page: k1.. in order (its size is the stream's business).
    let first = ids_in(&stream.next_chunk().await.unwrap());
    let expected: Vec<String> = (1..=first.len()).map(|n| format!("k{n}")).collect();
    assert!(!first.is_empty() && first.len() < 300, "{first:?}");
    assert_eq!(first, expected);
    // 700 more: the ring moves to seq 404, so k1..k400 go, the next ones this stream would
    // write among them.
    publish(&store, &hub, "clock", (301..=1000).map(|n| format!("k{n}"))).await;
    let written_through = 3 + u64::try_from(first.len()).unwrap();
    assert!(store.bounds().await.unwrap().trimmed_through > written_through + 1);
    let (rest, ended) = drain(&mut stream, 10).await;
    assert!(ended, "the stream must end: wrote {rest:?}");
    assert!(rest.is_empty(), "nothing after the hole: {rest:?}");
}

/// Holes the client was told of (a gap notice, `earliest`) are no reason to end.
#[tokio::test(start_paused = true)]
async fn holes_already_announced_are_replayed_across() {
    let store = Arc::new(MemoryStore::new(Retention {
        max_events: 5,
        max_age: None,
        per_topic: 3,
    }));
    let hub = Hub::new(1024);
    publish(&store, &hub, "chat", (1..=3).map(|n| format!("c{n}"))).await;
    publish(&store, &hub, "clock", (1..=50).map(|n| format!("k{n}"))).await;
    let trimmed = store.bounds().await.unwrap().trimmed_through;
    let subscription = hub
        .subscribe(SelectorSet::parse(["chat", "clock"]), None)
        .unwrap();
    let mut stream = EventStream::new(
        subscription,
        Arc::clone(&store) as Arc<dyn Store>,
        Bytes::new(),
        Start::ReplayAfter {
            after: 0,
            announced: trimmed,
        },
    );
    let (ids, ended) = drain(&mut stream, 10).await;
    assert!(!ended);
    assert_eq!(ids, ["c1", "c2", "c3", "k46", "k47", "k48", "k49", "k50"]);
}

fn stream_of(
    hub: &Arc<Hub>,
    store: &Arc<MemoryStore>,
    topics: &[&str],
    start: Start,
) -> EventStream {
    let subscription = hub
        .subscribe(SelectorSet::parse(topics.iter().copied()), None)
        .unwrap();
    EventStream::new(
        subscription,
        Arc::clone(store) as Arc<dyn Store>,
        Bytes::new(),
        start,
    )
}

fn ring(max_events: usize) -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(Retention {
        max_events,
        max_age: None,
        per_topic: 0,
    }))
}

#[tokio::test(start_paused = true)]
async fn the_prelude_comes_first_and_once_then_each_frame_as_encoded() {
    let store = ring(100);
    let hub = Hub::new(16);
    let subscription = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    let prelude = Bytes::from_static(b":welcome\n\n");
    let mut stream = EventStream::new(
        subscription,
        Arc::clone(&store) as Arc<dyn Store>,
        prelude.clone(),
        Start::LiveAfter(0),
    );
    assert_eq!(stream.next_chunk().await.unwrap(), prelude);
    let stored = store
        .append(vec![Update::for_test("a", "one")])
        .await
        .unwrap();
    hub.fan_out(&stored);
    assert_eq!(stream.next_chunk().await.unwrap(), stored[0].frame);
    // An empty prelude writes nothing (no empty chunk).
    let mut quiet = stream_of(&hub, &store, &["a"], Start::LiveAfter(1));
    let stored = store
        .append(vec![Update::for_test("a", "two")])
        .await
        .unwrap();
    hub.fan_out(&stored);
    assert_eq!(quiet.next_chunk().await.unwrap(), stored[0].frame);
}

#[tokio::test(start_paused = true)]
async fn with_the_topic_field_each_frame_carries_its_topic_first() {
    let store = ring(100);
    let hub = Hub::new(16);
    let mut stream = stream_of(&hub, &store, &["a/b"], Start::LiveAfter(0)).with_topic_field(true);
    publish(&store, &hub, "a/b", ["x".to_owned()].into_iter()).await;
    let chunk = stream.next_chunk().await.unwrap();
    assert!(chunk.starts_with(b"topic: a/b\n"), "{chunk:?}");
    assert_eq!(ids_in(&chunk), ["x"]);
}

/// Updates committed after the subscription and before the history read are both in history
/// and in the mailbox: each is written once, in order, and the stream goes on live.
#[tokio::test(start_paused = true)]
async fn the_handover_from_replay_to_live_writes_each_update_once_in_order() {
    let store = ring(100);
    let hub = Hub::new(64);
    publish(&store, &hub, "t", (1..=3).map(|n| format!("h{n}"))).await;
    let mut stream = stream_of(
        &hub,
        &store,
        &["t"],
        Start::ReplayAfter {
            after: 1,
            announced: 1,
        },
    );
    // Committed and fanned out after the subscription: queued live and in history.
    publish(&store, &hub, "t", (4..=6).map(|n| format!("h{n}"))).await;
    let (ids, ended) = drain(&mut stream, 20).await;
    assert!(!ended);
    assert_eq!(ids, ["h2", "h3", "h4", "h5", "h6"]);
    publish(&store, &hub, "t", ["h7".to_owned()].into_iter()).await;
    let (ids, _) = drain(&mut stream, 20).await;
    assert_eq!(ids, ["h7"], "live after the handover");
}

#[tokio::test(start_paused = true)]
async fn a_live_stream_drops_queued_updates_not_above_its_start() {
    let store = ring(100);
    let hub = Hub::new(64);
    let mut stream = stream_of(&hub, &store, &["t"], Start::LiveAfter(2));
    // Queued for it, but committed before it started: already accounted for.
    publish(&store, &hub, "t", (1..=4).map(|n| format!("u{n}"))).await;
    let (ids, _) = drain(&mut stream, 20).await;
    assert_eq!(ids, ["u3", "u4"]);
}

#[tokio::test(start_paused = true)]
async fn replay_writes_only_what_the_subscriber_selects_and_may_see() {
    let store = ring(100);
    let hub = Hub::new(64);
    let draft = |topic: &str, id: &str, private: bool| {
        Update::from_draft(crate::update::Draft {
            topics: vec![topic.to_owned()],
            id: Some(id.to_owned()),
            private,
            data: "d".into(),
            ..crate::update::Draft::default()
        })
        .unwrap()
    };
    store
        .append(vec![
            draft("a", "public", false),
            draft("a", "private", true),
            draft("b", "elsewhere", false),
            draft("a", "last", false),
        ])
        .await
        .unwrap();
    let mut stream = stream_of(
        &hub,
        &store,
        &["a"],
        Start::ReplayAfter {
            after: 0,
            announced: 0,
        },
    );
    let (ids, ended) = drain(&mut stream, 20).await;
    assert!(!ended);
    assert_eq!(ids, ["public", "last"]);
}

#[tokio::test(start_paused = true)]
async fn live_chunks_are_cut_near_the_limit_and_a_big_frame_passes_without_a_copy() {
    let store = ring(1000);
    let hub = Hub::new(1024);
    let mut stream = stream_of(&hub, &store, &["t"], Start::LiveAfter(0));
    let update = |id: String, size: usize| {
        Update::from_draft(crate::update::Draft {
            topics: vec!["t".into()],
            id: Some(id),
            data: "x".repeat(size),
            ..crate::update::Draft::default()
        })
        .unwrap()
    };
    let batch: Vec<Update> = (0..64).map(|n| update(format!("s{n}"), 4096)).collect();
    let stored = store.append(batch).await.unwrap();
    hub.fan_out(&stored);
    let largest_frame = stored.iter().map(|u| u.frame.len()).max().unwrap();
    let mut ids = Vec::new();
    let mut chunks = 0;
    while ids.len() < 64 {
        let chunk = stream.next_chunk().await.unwrap();
        assert!(
            chunk.len() < MAX_CHUNK + largest_frame,
            "{} bytes",
            chunk.len()
        );
        ids.extend(ids_in(&chunk));
        chunks += 1;
    }
    let expected: Vec<String> = (0..64).map(|n| format!("s{n}")).collect();
    assert_eq!(ids, expected);
    assert!(chunks >= 4, "{chunks} chunks for 256 KiB");
    // One frame above the limit is written as is: the same bytes every subscriber shares.
    let big = store
        .append(vec![update("big".into(), 100_000)])
        .await
        .unwrap();
    hub.fan_out(&big);
    let chunk = stream.next_chunk().await.unwrap();
    assert_eq!(chunk.as_ptr(), big[0].frame.as_ptr());
    assert_eq!(chunk.len(), big[0].frame.len());
}

#[tokio::test(start_paused = true)]
async fn heartbeats_pass_through_and_a_closing_hub_ends_the_stream_after_what_is_queued() {
    let store = ring(100);
    let hub = Hub::new(64);
    let mut stream = stream_of(&hub, &store, &["t"], Start::LiveAfter(0));
    hub.heartbeat();
    assert_eq!(
        &stream.next_chunk().await.unwrap()[..],
        herald_sse::EMPTY_COMMENT
    );
    publish(&store, &hub, "t", ["last".to_owned()].into_iter()).await;
    hub.close();
    let (ids, ended) = drain(&mut stream, 20).await;
    assert_eq!(ids, ["last"]);
    assert!(ended);
}

//! History and replay: Last-Event-ID, lastEventID, earliest, gaps, and the subscribe/publish race.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::util::Hub;

async fn publish_series(hub: &Hub, topic: &str, ids: &[&str]) {
    for id in ids {
        hub.publish_ok(&[
            ("topic", topic),
            ("id", id),
            ("data", &format!("data-{id}")),
        ])
        .await;
    }
}

fn ids(events: &[herald_sse::Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

#[tokio::test]
async fn last_event_id_header_replays_what_was_missed_then_goes_live() {
    let hub = Hub::start(&[]);
    publish_series(&hub, "a", &["1", "2", "3"]).await;
    hub.publish_ok(&[("topic", "other"), ("id", "o1")]).await;
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=a", &[("last-event-id", "1")])
        .await;
    assert_eq!(
        stream.header("last-event-id"),
        Some("o1"),
        "the newest id in history"
    );
    let replayed = stream.events(2).await;
    assert_eq!(ids(&replayed), ["2", "3"]);
    assert_eq!(replayed[0].data, "data-2");
    publish_series(&hub, "a", &["4"]).await;
    assert_eq!(stream.next_event().await.id, "4");
    stream.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn the_query_parameter_works_and_the_header_wins() {
    let hub = Hub::start(&[]);
    publish_series(&hub, "a", &["1", "2", "3"]).await;
    let mut by_query = hub
        .subscribe("/.well-known/mercure?topic=a&lastEventID=2", &[])
        .await;
    assert_eq!(by_query.next_event().await.id, "3");
    let mut both = hub
        .subscribe(
            "/.well-known/mercure?topic=a&lastEventID=2",
            &[("last-event-id", "1")],
        )
        .await;
    assert_eq!(ids(&both.events(2).await), ["2", "3"]);
}

#[tokio::test]
async fn earliest_replays_everything_kept() {
    let hub = Hub::start(&[]);
    publish_series(&hub, "a", &["1", "2"]).await;
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=a&lastEventID=earliest", &[])
        .await;
    assert_eq!(ids(&stream.events(2).await), ["1", "2"]);
    let mut stream = hub
        .subscribe("/events?topic=a", &[("last-event-id", "earliest")])
        .await;
    assert_eq!(ids(&stream.events(2).await), ["1", "2"]);
}

#[tokio::test]
async fn without_a_last_id_nothing_is_replayed_and_no_header_is_sent() {
    let hub = Hub::start(&[]);
    publish_series(&hub, "a", &["1"]).await;
    let mut stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    assert_eq!(stream.header("last-event-id"), None);
    stream.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn an_id_older_than_retention_gets_a_gap_event_then_everything_kept() {
    let hub = Hub::start(&["--history-size", "3"]);
    publish_series(&hub, "a", &["1", "2", "3", "4", "5"]).await;
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=a", &[("last-event-id", "1")])
        .await;
    let gap = stream.next_event().await;
    assert_eq!(gap.event, "herald-gap");
    let body: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(body["lastEventID"], "1");
    assert_eq!(body["oldestEventID"], "3");
    assert_eq!(ids(&stream.events(3).await), ["3", "4", "5"]);
    // An id never seen behaves the same.
    let mut stream = hub
        .subscribe(
            "/.well-known/mercure?topic=a",
            &[("last-event-id", "never")],
        )
        .await;
    assert_eq!(stream.next_event().await.event, "herald-gap");
    assert_eq!(ids(&stream.events(3).await), ["3", "4", "5"]);
}

#[tokio::test]
async fn replay_respects_private_updates() {
    let hub = Hub::start(&[]);
    hub.publish_ok(&[("topic", "a"), ("id", "p"), ("private", "1")])
        .await;
    hub.publish_ok(&[("topic", "a"), ("id", "q")]).await;
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=a&lastEventID=earliest", &[])
        .await;
    assert_eq!(stream.next_event().await.id, "q");
    stream.expect_silence(Duration::from_millis(200)).await;
}

/// Publishers race a subscriber that resumes from an id: it must see every update after that
/// id exactly once, in the hub's order, with no gap at the replay/live boundary.
#[tokio::test]
async fn replay_then_live_has_no_gap_and_no_duplicate_under_concurrent_publishes() {
    let hub = Arc::new(Hub::start(&[]));
    let anchor = hub
        .publish_ok(&[("topic", "race"), ("data", "anchor")])
        .await;
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let hub = Arc::clone(&hub);
            tokio::spawn(async move {
                for n in 0..100 {
                    hub.publish_ok(&[("topic", "race"), ("data", &format!("{p}-{n}"))])
                        .await;
                }
            })
        })
        .collect();
    // Subscribe in the middle of the storm, several times.
    let mut streams = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        streams.push(
            hub.subscribe(
                "/.well-known/mercure?topic=race",
                &[("last-event-id", &anchor)],
            )
            .await,
        );
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    // The hub's own order, from the history API.
    let history = hub
        .get_json(&format!("/topics/race/events?after={anchor}&limit=1000"))
        .await;
    let expected: Vec<String> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(expected.len(), 400);
    for stream in &mut streams {
        let received: Vec<String> = stream.events(400).await.into_iter().map(|e| e.id).collect();
        assert_eq!(
            received.iter().collect::<HashSet<_>>().len(),
            400,
            "duplicates"
        );
        assert_eq!(received, expected);
        stream.expect_silence(Duration::from_millis(200)).await;
    }
}

/// The ids of `/topics/{topic}/events`.
async fn topic_history(hub: &Hub, topic: &str) -> Vec<String> {
    let body = hub.get_json(&format!("/topics/{topic}/events")).await;
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `--history-size 5 --history-per-topic 3`: 3 chat messages, then 50 clock ticks. The chat
/// keeps its 3 beside the clock's last 5; resuming inside the trimmed range, or from a kept
/// chat message with trimmed ticks after it, is told of the gap. Memory and the embedded store,
/// and the three spellings of the option (flag, environment, TOML key).
#[tokio::test]
async fn per_topic_history_keeps_a_quiet_topic_and_tells_of_holes() {
    let dir = crate::util::TempDir::new("per-topic");
    let toml = dir.path().join("herald.toml");
    std::fs::write(&toml, "history-per-topic = 3\n").unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let hubs = [
        Hub::start(&["--history-size", "5", "--history-per-topic", "3"]),
        Hub::start_with_env(
            &[
                "--jwt-key",
                crate::util::KEY,
                "--anonymous",
                "--store",
                data,
                "--history-size",
                "5",
            ],
            &[("HERALD_HISTORY_PER_TOPIC", "3")],
        ),
        Hub::start(&["--history-size", "5", "--config", toml.to_str().unwrap()]),
    ];
    for hub in &hubs {
        publish_series(hub, "chat", &["c1", "c2", "c3"]).await;
        let ticks: Vec<String> = (1..=50).map(|n| format!("k{n}")).collect();
        let ticks: Vec<&str> = ticks.iter().map(String::as_str).collect();
        publish_series(hub, "clock", &ticks).await;

        let mut chat = hub
            .subscribe("/.well-known/mercure?topic=chat&lastEventID=earliest", &[])
            .await;
        assert_eq!(ids(&chat.events(3).await), ["c1", "c2", "c3"]);
        chat.expect_silence(Duration::from_millis(200)).await;
        assert_eq!(topic_history(hub, "chat").await, ["c1", "c2", "c3"]);
        assert_eq!(
            topic_history(hub, "clock").await,
            ["k46", "k47", "k48", "k49", "k50"]
        );
        let mut clock = hub
            .subscribe("/.well-known/mercure?topic=clock&lastEventID=earliest", &[])
            .await;
        assert_eq!(
            ids(&clock.events(5).await),
            ["k46", "k47", "k48", "k49", "k50"]
        );

        // Resuming in the middle of the trimmed ticks: a gap, then what is kept.
        let mut resumed = hub
            .subscribe(
                "/.well-known/mercure?topic=clock",
                &[("last-event-id", "k20")],
            )
            .await;
        let gap = resumed.next_event().await;
        assert_eq!(gap.event, "herald-gap");
        let body: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(body["lastEventID"], "k20");
        assert_eq!(body["oldestEventID"], "c1");
        assert_eq!(
            ids(&resumed.events(5).await),
            ["k46", "k47", "k48", "k49", "k50"]
        );

        // The subtle case: c3 is still kept, so its id resolves, but k1..k45 after it were
        // trimmed. Replaying "everything after c3" would skip them silently: a gap first.
        let mut after_chat = hub
            .subscribe(
                "/.well-known/mercure?topic=clock&topic=chat",
                &[("last-event-id", "c3")],
            )
            .await;
        let gap = after_chat.next_event().await;
        assert_eq!(gap.event, "herald-gap", "{gap:?}");
        let body: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
        assert_eq!(body["lastEventID"], "c3");
        assert_eq!(
            ids(&after_chat.events(5).await),
            ["k46", "k47", "k48", "k49", "k50"]
        );
        // Resuming from the newest kept update: nothing was trimmed after it, no gap.
        let mut current = hub
            .subscribe(
                "/.well-known/mercure?topic=clock",
                &[("last-event-id", "k48")],
            )
            .await;
        assert_eq!(ids(&current.events(2).await), ["k49", "k50"]);
        publish_series(hub, "clock", &["k51"]).await;
        assert_eq!(current.next_event().await.id, "k51");
    }
}

/// Without the flag the ring is shared: the same ticks push the chat out entirely (what the
/// flag is for), and `--demo` turns it on.
#[tokio::test]
async fn without_per_topic_history_a_busy_topic_evicts_a_quiet_one_and_demo_protects_it() {
    for (flags, chat_kept) in [
        (&["--history-size", "5"][..], 0),
        (&["--history-size", "5", "--demo"][..], 3),
    ] {
        let hub = Hub::start(flags);
        publish_series(&hub, "chat", &["c1", "c2", "c3"]).await;
        for n in 1..=10 {
            publish_series(&hub, "clock", &[&format!("k{n}")]).await;
        }
        assert_eq!(
            topic_history(&hub, "chat").await.len(),
            chat_kept,
            "{flags:?}"
        );
    }
}

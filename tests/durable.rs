//! The durable store: history survives restarts and `kill -9`; damaged, foreign or locked files
//! are refused loudly and left untouched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{Hub, KEY, TempDir, client, run_cli, token};

fn durable(dir: &TempDir, extra: &[&str]) -> Hub {
    let mut args = vec!["--jwt-key", KEY, "--anonymous", "--store", dir.str()];
    args.extend_from_slice(extra);
    Hub::start_raw(&args)
}

#[tokio::test]
async fn history_survives_a_restart() {
    let dir = TempDir::new("restart");
    let mut hub = durable(&dir, &[]);
    for id in ["1", "2", "3"] {
        hub.publish_ok(&[("topic", "a"), ("id", id), ("data", &format!("d{id}"))])
            .await;
    }
    hub.signal("TERM");
    assert!(
        hub.wait_exit(Duration::from_secs(6))
            .is_some_and(|s| s.success())
    );
    drop(hub);

    let hub = durable(&dir, &[]);
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=a", &[("last-event-id", "1")])
        .await;
    let events = stream.events(2).await;
    assert_eq!(
        (events[0].id.as_str(), events[0].data.as_str()),
        ("2", "d2")
    );
    assert_eq!(events[1].id, "3");
    // Sequences continue after the restart, and the JSON views read the store.
    let new_id = hub
        .publish_ok(&[("topic", "a"), ("data", "after restart")])
        .await;
    assert_eq!(stream.next_event().await.id, new_id);
    let topics = hub.get_json("/topics").await;
    let a = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "a")
        .cloned()
        .unwrap();
    assert_eq!(a["events"], 4);
    assert_eq!(a["last_event_id"], new_id.as_str());
    assert!(
        hub.banner.iter().any(|line| line.contains("herald.redb")),
        "{:?}",
        hub.banner
    );
}

/// Publishers at full speed, `kill -9`, restart: every update that got a 200 replays, in each
/// publisher's order, exactly once.
#[tokio::test]
async fn every_acknowledged_update_survives_kill_9() {
    let dir = TempDir::new("crash");
    let mut hub = durable(&dir, &["--history-size", "1000000"]);
    let url = hub.url("/.well-known/mercure");
    let acknowledged: Arc<Mutex<HashMap<usize, Vec<String>>>> = Arc::default();
    let bearer = token(&["*"], &[]);
    let mut publishers = Vec::new();
    for publisher in 0..16 {
        let (url, bearer, acknowledged) = (url.clone(), bearer.clone(), Arc::clone(&acknowledged));
        publishers.push(tokio::spawn(async move {
            let client = client();
            for n in 0.. {
                let sent = client
                    .post(&url)
                    .bearer_auth(&bearer)
                    .form(&[("topic", "crash"), ("data", &format!("{publisher}-{n}"))])
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != 200 {
                    return;
                }
                let Ok(id) = response.text().await else {
                    return;
                };
                acknowledged
                    .lock()
                    .unwrap()
                    .entry(publisher)
                    .or_default()
                    .push(id);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    hub.signal("KILL");
    hub.wait_exit(Duration::from_secs(5)).expect("killed");
    for publisher in publishers {
        let _ = publisher.await;
    }
    drop(hub);
    let acknowledged = acknowledged.lock().unwrap().clone();
    let total: usize = acknowledged.values().map(Vec::len).sum();
    assert!(
        total > 100,
        "only {total} publishes were acknowledged before the kill"
    );

    let hub = durable(&dir, &["--history-size", "1000000"]);
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=crash&lastEventID=earliest", &[])
        .await;
    let mut replayed = Vec::new();
    while let Some(event) = stream.next_event_within(Duration::from_secs(2)).await {
        replayed.push(event.id);
    }
    let position: HashMap<&str, usize> = replayed
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    assert_eq!(position.len(), replayed.len(), "an update replayed twice");
    for (publisher, ids) in &acknowledged {
        let mut previous = None;
        for id in ids {
            let at = *position.get(id.as_str()).unwrap_or_else(|| {
                panic!("acknowledged update {id} of publisher {publisher} is lost")
            });
            assert!(
                previous < Some(at),
                "publisher {publisher}: {id} replayed out of order"
            );
            previous = Some(at);
        }
    }
    eprintln!(
        "{total} acknowledged before kill -9; {} replayed after restart",
        replayed.len()
    );
}

#[test]
fn a_foreign_or_damaged_file_is_refused_and_left_untouched() {
    let dir = TempDir::new("foreign");
    let file = dir.path().join("herald.redb");
    let garbage = b"this is not a database, and it must survive intact".repeat(100);
    std::fs::write(&file, &garbage).unwrap();
    let (code, _, stderr) = run_cli(
        &["serve", "--listen", "127.0.0.1:0", "--store", dir.str()],
        &[],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("herald.redb"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        garbage,
        "the file was modified"
    );
}

#[tokio::test]
async fn a_second_hub_on_the_same_store_is_refused() {
    let dir = TempDir::new("locked");
    let _first = durable(&dir, &[]);
    let (code, _, stderr) = run_cli(
        &["serve", "--listen", "127.0.0.1:0", "--store", dir.str()],
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("locked") || stderr.contains("another herald"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_default_store_is_herald_data_in_the_working_directory() {
    let dir = TempDir::new("default");
    let hub = Hub::start_in(&["--jwt-key", KEY, "--anonymous"], &[], Some(dir.path()));
    hub.publish_ok(&[("topic", "a"), ("id", "kept")]).await;
    assert!(dir.path().join("herald-data").join("herald.redb").is_file());
}

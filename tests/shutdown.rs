//! Graceful shutdown: SIGTERM ends every stream cleanly and the process exits within seconds.

use std::time::{Duration, Instant};

use crate::util::Hub;

#[tokio::test]
async fn sigterm_ends_every_stream_and_exits_quickly() {
    let mut hub = Hub::start(&["--heartbeat", "60s"]);
    let mut streams = Vec::new();
    for n in 0..300 {
        streams.push(
            hub.subscribe(&format!("/.well-known/mercure?topic=t{}", n % 7), &[])
                .await,
        );
    }
    hub.wait_subscriptions(300).await;
    let started = Instant::now();
    hub.signal("TERM");
    let status = hub
        .wait_exit(Duration::from_secs(8))
        .expect("the hub did not exit");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    for stream in &mut streams {
        assert!(
            stream.read_to_end(Duration::from_secs(2)).await,
            "a stream did not end"
        );
    }
}

#[tokio::test]
async fn sigint_works_too() {
    let mut hub = Hub::start(&[]);
    let mut stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    hub.wait_subscriptions(1).await;
    hub.signal("INT");
    assert!(
        hub.wait_exit(Duration::from_secs(6))
            .is_some_and(|s| s.success())
    );
    assert!(stream.read_to_end(Duration::from_secs(2)).await);
}

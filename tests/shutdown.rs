//! Graceful shutdown: SIGTERM ends every stream cleanly and the process exits within seconds.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// In process, every background task at once (writer, subscription events, heartbeat, expiry,
/// the `--demo` clock, the `/metrics` listener): after `run` returns, none is still running.
#[tokio::test]
async fn after_shutdown_no_background_task_is_still_running() {
    let config = herald::config::Config::from_args(herald::config::ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        store: Some("memory:".into()),
        jwt_key: Some("a-secret-of-at-least-thirty-two-bytes!".into()),
        subscriptions: true,
        demo: true,
        heartbeat: Some("1s".into()),
        metrics_listen: Some(format!("127.0.0.1:{}", crate::util::free_port())),
        shutdown_timeout: Some("5s".into()),
        ..Default::default()
    })
    .expect("a valid configuration");
    let server = herald::server::Server::bind(config)
        .await
        .expect("the hub starts");
    let addr = server.local_addr().expect("bound");
    let metrics_addr = server
        .metrics_addr()
        .expect("the metrics listener is bound");
    let tasks = server.tasks();
    assert!(
        tasks.running() >= 5,
        "writer, events, heartbeat, clock, expiry: {} running",
        tasks.running()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // A live stream, and the clock's first tick through the writer to it.
    let response = crate::util::client()
        .get(format!("http://{addr}/.well-known/mercure?topic=clock"))
        .send()
        .await
        .expect("subscribed");
    let mut stream = crate::util::Stream::new(response);
    assert!(
        stream
            .read_until(b"Current time is", Duration::from_secs(10))
            .await,
        "the clock never ticked"
    );
    assert!(tasks.running() >= 6, "the metrics listener too");
    assert!(!tasks.is_finished());
    // A scraper's keep-alive connection, answered once and left open.
    let mut scraper = tokio::net::TcpStream::connect(metrics_addr)
        .await
        .expect("the metrics listener accepts");
    scraper
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: hub\r\n\r\n")
        .await
        .expect("request sent");
    let mut answer = vec![0u8; 256];
    let read = scraper.read(&mut answer).await.expect("answered");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));

    let started = Instant::now();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("run returned within --shutdown-timeout")
        .expect("run did not panic");
    assert!(
        tasks.is_finished(),
        "{} background tasks still running after shutdown",
        tasks.running()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(stream.read_to_end(Duration::from_secs(2)).await);
    // The scrape connection was closed with its listener, not left behind.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), scraper.read_to_end(&mut rest))
        .await
        .expect("the metrics connection outlived shutdown")
        .expect("closed cleanly");
}

//! What an idle HTTP/2 connection costs the hub: one h2c connection per subscriber (a browser
//! tab with one EventSource), nothing published, measured as the hub's settled resident memory
//! per connection. h2 is patched (vendor/h2/HERALD-PATCH.md) so that such a connection holds no
//! read, write or HPACK scratch buffer.

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::util::{Hub, settled_rss_kib};

/// The bound per idle h2c connection with one subscription, for the debug build the tests run
/// (a release build costs less). Measured on this machine with this test: 26.3 KB with h2 0.4.20
/// as published (a 16 KiB write buffer, an 8 KiB read buffer and a 4 KiB HPACK scratch per
/// connection), 10.3-11.3 KB with the patch.
const MAX_BYTES_PER_CONNECTION: u64 = 18 * 1024;

/// One h2c connection (the `h2` crate's client, as a browser would: HPACK with Huffman coding
/// and the dynamic table) with one subscription whose response head has arrived. Holding the
/// returned value keeps the stream open; the connection is driven by a task of its own.
async fn idle_subscriber(hub: &Hub, topic: &str) -> IdleSubscriber {
    let socket = TcpStream::connect(hub.addr).await.unwrap();
    let (sender, connection) = h2::client::handshake(socket).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut sender = sender.ready().await.unwrap();
    let request = http::Request::get(hub.url(&format!("/.well-known/mercure?topic={topic}")))
        .header("accept", "text/event-stream")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) herald-test")
        .body(())
        .unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    IdleSubscriber {
        _sender: sender,
        _body: response.into_body(),
        driver,
    }
}

struct IdleSubscriber {
    _sender: h2::client::SendRequest<Bytes>,
    _body: h2::RecvStream,
    driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

impl Drop for IdleSubscriber {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[tokio::test]
async fn an_idle_h2c_connection_holds_no_buffers() {
    let hub = Hub::start(&["--heartbeat", "1h"]);
    let mut held = Vec::new();
    // Warm up, so the allocator's pools, the runtime's threads and the hub's tables exist
    // before anything is measured.
    let warm_up = 50;
    for subscriber in 0..warm_up {
        held.push(idle_subscriber(&hub, &format!("warm-{subscriber}")).await);
    }
    hub.wait_subscriptions(held.len() as u64).await;
    // Then batches, each measured as a delta of settled figures: the connections' own cost
    // shows in every batch, a one-off growth of the process in one only, so the smallest
    // batch figure is theirs.
    let batch = 150;
    let mut costs = Vec::new();
    for first in (warm_up..).step_by(batch).take(2) {
        let before = settled_rss_kib(&hub).await;
        for subscriber in first..first + batch {
            held.push(idle_subscriber(&hub, &format!("user-{subscriber}")).await);
        }
        hub.wait_subscriptions(held.len() as u64).await;
        let after = settled_rss_kib(&hub).await;
        let per_connection = after.saturating_sub(before) * 1024 / batch as u64;
        eprintln!(
            "RSS {before} KiB, {after} KiB with {batch} more idle h2c connections: \
             {per_connection} bytes each"
        );
        costs.push(per_connection);
    }
    let cost = costs.iter().min().copied().unwrap_or(u64::MAX);
    assert!(
        cost <= MAX_BYTES_PER_CONNECTION,
        "each idle h2c connection with one subscription holds {cost} bytes \
         (batches: {costs:?}); at most {MAX_BYTES_PER_CONNECTION}"
    );
}

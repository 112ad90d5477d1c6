//! Clustering: three real hub processes share one real `redis-server` or `nats-server -js`
//! (started by each test on a free loopback port). Updates published on any node reach every
//! node once, in one order; replay works on any node; a restart of the engine or a killed node
//! loses nothing acknowledged. Every scenario runs against both engines.
//!
//! These tests need `redis-server` and `nats-server` on the PATH (`scripts/test` installs them)
//! and fail without them.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{Hub, KEY, SOON, Stream, TempDir, run_cli};

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A key prefix no other test uses.
fn unique_prefix(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "test-{}-{label}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A `redis-server` of our own, killed when dropped.
struct Redis {
    port: u16,
    /// With a directory, the server keeps an AOF there (fsync on every write) and a restart
    /// gets the data back.
    dir: Option<TempDir>,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        Redis::launch(None)
    }

    fn start_persistent() -> Redis {
        Redis::launch(Some(TempDir::new("redis")))
    }

    fn launch(dir: Option<TempDir>) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again, on the same port and data) and waits until it answers.
    fn restart(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""]);
        match &self.dir {
            Some(dir) => {
                command.args([
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--dir",
                    dir.str(),
                ]);
            }
            None => {
                command.args(["--appendonly", "no"]);
            }
        }
        command
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = command
            .spawn()
            .expect("redis-server is needed for the cluster tests (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0_u8; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `nats-server -js` of our own (JetStream on disk in a temporary directory), killed when
/// dropped.
struct Nats {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Nats {
    fn start() -> Nats {
        let mut nats = Nats {
            port: free_port(),
            dir: TempDir::new("nats"),
            child: None,
        };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again, on the same port and data) and waits until it is ready.
    fn restart(&mut self) {
        let port = self.port.to_string();
        let mut child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd", self.dir.str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server is needed for the cluster tests (scripts/test installs it)");
        let stderr = child.stderr.take().expect("stderr");
        let (ready, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = ready.send(());
                }
            }
        });
        seen.recv_timeout(Duration::from_secs(10))
            .expect("nats-server did not become ready");
        self.child = Some(child);
    }

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shared engine of a test.
enum Engine {
    Redis(Redis),
    Nats(Nats),
}

impl Engine {
    fn redis() -> Engine {
        Engine::Redis(Redis::start())
    }

    /// With data that survives a restart.
    fn redis_persistent() -> Engine {
        Engine::Redis(Redis::start_persistent())
    }

    fn nats() -> Engine {
        Engine::Nats(Nats::start())
    }

    fn url(&self) -> String {
        match self {
            Engine::Redis(redis) => redis.url(),
            Engine::Nats(nats) => nats.url(),
        }
    }

    fn prefix_flag(&self) -> &'static str {
        match self {
            Engine::Redis(_) => "--redis-prefix",
            Engine::Nats(_) => "--nats-prefix",
        }
    }

    fn kill(&mut self) {
        match self {
            Engine::Redis(redis) => redis.kill(),
            Engine::Nats(nats) => nats.kill(),
        }
    }

    fn restart(&mut self) {
        match self {
            Engine::Redis(redis) => redis.restart(),
            Engine::Nats(nats) => nats.restart(),
        }
    }
}

/// A hub on this engine, with this prefix.
fn node(engine: &Engine, prefix: &str, extra: &[&str]) -> Hub {
    let url = engine.url();
    let mut args = vec![
        "--jwt-key",
        KEY,
        "--anonymous",
        "--store",
        &url,
        engine.prefix_flag(),
        prefix,
    ];
    args.extend_from_slice(extra);
    // Outages are staged here: keep the expected 503s out of the test output.
    let log = std::env::var("TEST_HERALD_LOG")
        .unwrap_or_else(|_| "error,herald::store::writer=off".into());
    Hub::start_with_env(&args, &[("HERALD_LOG", &log)])
}

/// Three nodes sharing one prefix.
fn three_nodes(engine: &Engine, label: &str, extra: &[&str]) -> Vec<Hub> {
    let prefix = unique_prefix(label);
    (0..3).map(|_| node(engine, &prefix, extra)).collect()
}

/// Runs a scenario against Redis and against NATS.
macro_rules! on_both_engines {
    ($scenario:ident, $redis:ident, $nats:ident, $engine:expr_2021, $nats_engine:expr_2021) => {
        #[tokio::test]
        async fn $redis() {
            $scenario($engine).await;
        }

        #[tokio::test]
        async fn $nats() {
            $scenario($nats_engine).await;
        }
    };
}

/// Reads events until `n` update events (not comments) were collected; returns their ids.
async fn ids(stream: &mut Stream, n: usize, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match stream.next_event_within(left).await {
            Some(event) => ids.push(event.id),
            None => panic!("got {} of {n} events: {ids:?}", ids.len()),
        }
    }
    ids
}

on_both_engines!(
    one_order_exactly_once,
    redis_updates_published_on_any_node_reach_every_node_once_in_one_order,
    nats_updates_published_on_any_node_reach_every_node_once_in_one_order,
    Engine::redis(),
    Engine::nats()
);

async fn one_order_exactly_once(engine: Engine) {
    let nodes = three_nodes(&engine, "order", &[]);
    let mut streams = Vec::new();
    for hub in &nodes {
        streams.push(hub.subscribe("/.well-known/mercure?topic=t", &[]).await);
    }
    for hub in &nodes {
        hub.wait_subscriptions(1).await;
    }

    // Three publishers per node, all at once.
    const EACH: usize = 20;
    let mut publishers = Vec::new();
    for (n, hub) in nodes.iter().enumerate() {
        for p in 0..3 {
            let url = hub.url("/.well-known/mercure");
            publishers.push(tokio::spawn(async move {
                let client = crate::util::client();
                let token = crate::util::token(&["*"], &[]);
                let mut acked = Vec::new();
                for i in 0..EACH {
                    let id = format!("n{n}-p{p}-{i}");
                    let response = client
                        .post(&url)
                        .bearer_auth(&token)
                        .form(&[("topic", "t"), ("id", id.as_str()), ("data", "x")])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    acked.push(id);
                }
                acked
            }));
        }
    }
    let mut acked = Vec::new();
    for publisher in publishers {
        acked.push(publisher.await.unwrap());
    }
    let total = EACH * 9;

    let mut seen = Vec::new();
    for stream in &mut streams {
        let got = ids(stream, total, Duration::from_secs(15)).await;
        stream.expect_silence(Duration::from_millis(300)).await;
        seen.push(got);
    }
    // Exactly once on every node...
    let distinct: HashSet<&String> = seen[0].iter().collect();
    assert_eq!(distinct.len(), total, "a duplicate on node 0");
    let expected: HashSet<&String> = acked.iter().flatten().collect();
    assert_eq!(distinct, expected);
    // ... in the same order everywhere ...
    assert_eq!(seen[0], seen[1], "nodes 0 and 1 disagree on the order");
    assert_eq!(seen[0], seen[2], "nodes 0 and 2 disagree on the order");
    // ... which keeps each publisher's own order.
    for publisher in &acked {
        let positions: Vec<usize> = publisher
            .iter()
            .map(|id| seen[0].iter().position(|s| s == id).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{publisher:?}");
    }
}

on_both_engines!(
    replay_on_any_node,
    redis_replay_by_last_event_id_works_on_any_node,
    nats_replay_by_last_event_id_works_on_any_node,
    Engine::redis(),
    Engine::nats()
);

async fn replay_on_any_node(engine: Engine) {
    let nodes = three_nodes(&engine, "replay", &[]);
    for id in ["c1", "c2", "c3", "c4"] {
        nodes[0]
            .publish_ok(&[("topic", "r"), ("id", id), ("data", &format!("d-{id}"))])
            .await;
    }
    let generated = nodes[1]
        .publish_ok(&[("topic", "r"), ("data", "generated id")])
        .await;
    assert!(generated.starts_with("urn:uuid:"), "{generated}");
    nodes[2]
        .publish_ok(&[("topic", "other"), ("id", "o1"), ("data", "elsewhere")])
        .await;
    nodes[2]
        .publish_ok(&[("topic", "r"), ("id", "c5"), ("data", "d-c5")])
        .await;

    // The header, on a node that published none of them.
    let mut stream = nodes[2]
        .subscribe("/.well-known/mercure?topic=r", &[("last-event-id", "c2")])
        .await;
    let events = stream.events(4).await;
    let got: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, ["c3", "c4", generated.as_str(), "c5"]);
    assert_eq!(events[0].data, "d-c3");
    // Then live: an update published elsewhere arrives once.
    nodes[0]
        .publish_ok(&[("topic", "r"), ("id", "c6"), ("data", "live")])
        .await;
    assert_eq!(stream.next_event().await.id, "c6");
    stream.expect_silence(Duration::from_millis(300)).await;

    // The query parameter, and a generated id, on another node.
    let mut stream = nodes[0]
        .subscribe(
            &format!(
                "/.well-known/mercure?topic=r&lastEventID={}",
                crate::util::encode_form(&[("x", &generated)])
                    .trim_start_matches("x=")
                    .to_owned()
            ),
            &[],
        )
        .await;
    let got: Vec<String> = stream.events(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(got, ["c5", "c6"]);

    // earliest: everything kept.
    let mut stream = nodes[1]
        .subscribe(
            "/.well-known/mercure?topic=r",
            &[("last-event-id", "earliest")],
        )
        .await;
    assert_eq!(ids(&mut stream, 7, SOON).await[0], "c1");

    // An id history never held: a gap notice, then everything kept.
    let mut stream = nodes[1]
        .subscribe("/.well-known/mercure?topic=r", &[("last-event-id", "nope")])
        .await;
    let gap = stream.next_event().await;
    assert_eq!(gap.event, "herald-gap");
    assert!(gap.data.contains("\"nope\""), "{}", gap.data);
    assert_eq!(stream.next_event().await.id, "c1");

    // Every node sees the same history in the JSON views.
    for hub in &nodes {
        let topics: serde_json::Value = crate::util::client()
            .get(hub.url("/topics"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = topics["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["topic"] == "r")
            .cloned()
            .unwrap();
        assert_eq!(r["events"], 7);
        assert_eq!(r["last_event_id"], "c6");
    }
}

on_both_engines!(
    retention,
    redis_retention_applies_to_the_shared_history_and_zero_still_delivers_live,
    nats_retention_applies_to_the_shared_history_and_zero_still_delivers_live,
    Engine::redis(),
    Engine::nats()
);

async fn retention(engine: Engine) {
    let nodes = three_nodes(&engine, "retention", &["--history-size", "3"]);
    for id in ["k1", "k2", "k3", "k4", "k5"] {
        nodes[0]
            .publish_ok(&[("topic", "k"), ("id", id), ("data", "x")])
            .await;
    }
    let mut stream = nodes[1]
        .subscribe("/.well-known/mercure?topic=k", &[("last-event-id", "k3")])
        .await;
    assert_eq!(ids(&mut stream, 2, SOON).await, ["k4", "k5"]);
    // k1 was trimmed: a gap notice naming the oldest kept, then what is kept.
    let mut stream = nodes[2]
        .subscribe("/.well-known/mercure?topic=k", &[("last-event-id", "k1")])
        .await;
    let gap = stream.next_event().await;
    assert_eq!(gap.event, "herald-gap");
    assert!(gap.data.contains("\"k3\""), "{}", gap.data);
    assert_eq!(ids(&mut stream, 3, SOON).await, ["k3", "k4", "k5"]);

    // No history at all: live updates still cross nodes.
    let nodes = three_nodes(&engine, "no-history", &["--history-size", "0"]);
    let mut stream = nodes[2]
        .subscribe("/.well-known/mercure?topic=z", &[])
        .await;
    nodes[2].wait_subscriptions(1).await;
    for id in ["z1", "z2"] {
        nodes[0]
            .publish_ok(&[("topic", "z"), ("id", id), ("data", "x")])
            .await;
    }
    assert_eq!(ids(&mut stream, 2, SOON).await, ["z1", "z2"]);
    let mut replay = nodes[1]
        .subscribe("/.well-known/mercure?topic=z", &[("last-event-id", "z1")])
        .await;
    assert_eq!(replay.next_event().await.event, "herald-gap");
    replay.expect_silence(Duration::from_millis(300)).await;
}

on_both_engines!(
    restart_under_load,
    a_redis_restart_under_load_loses_nothing_acknowledged,
    a_nats_restart_under_load_loses_nothing_acknowledged,
    Engine::redis_persistent(),
    Engine::nats()
);

async fn restart_under_load(mut engine: Engine) {
    let nodes = three_nodes(&engine, "restart", &[]);
    let mut streams = Vec::new();
    for hub in &nodes[1..] {
        streams.push(hub.subscribe("/.well-known/mercure?topic=load", &[]).await);
        hub.wait_subscriptions(1).await;
    }

    // One publisher, one at a time, so acknowledgement order is commit order.
    let url = nodes[0].url("/.well-known/mercure");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let client = crate::util::client();
            let token = crate::util::token(&["*"], &[]);
            let mut acked = Vec::new();
            let mut refused = 0_usize;
            let mut slowest_refusal = Duration::ZERO;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = format!("u{n}");
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .form(&[("topic", "load"), ("id", id.as_str()), ("data", "x")])
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    200 => acked.push(id),
                    503 => {
                        refused += 1;
                        slowest_refusal = slowest_refusal.max(started.elapsed());
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("publish answered {other}"),
                }
            }
            (acked, refused, slowest_refusal)
        })
    };

    tokio::time::sleep(Duration::from_millis(700)).await;
    engine.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    engine.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, refused, slowest_refusal) = publisher.await.unwrap();

    assert!(refused > 0, "no publish failed while the engine was down");
    assert!(
        slowest_refusal < Duration::from_secs(4),
        "a publish took {slowest_refusal:?} to fail"
    );
    assert!(acked.len() > 10, "too few publishes to tell: {acked:?}");
    let last = acked.last().cloned().unwrap();
    for stream in &mut streams {
        // Everything acknowledged arrives once, in order; a refused publish may or may not have
        // been stored (a timeout can hide a success), but never twice.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !got.contains(&last) {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = stream
                .next_event_within(left)
                .await
                .unwrap_or_else(|| panic!("stream stalled after {} events", got.len()));
            got.push(event.id);
        }
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), got.len(), "a duplicate");
        let acked_in_stream: Vec<&String> = got.iter().filter(|id| acked.contains(id)).collect();
        assert_eq!(
            acked_in_stream,
            acked.iter().collect::<Vec<_>>(),
            "an acknowledged update is missing or out of order"
        );
    }
    // History agrees: a replay from the first update holds every acknowledged one.
    let mut replay = nodes[2]
        .subscribe(
            "/.well-known/mercure?topic=load",
            &[("last-event-id", "earliest")],
        )
        .await;
    let mut replayed = Vec::new();
    while !replayed.contains(&last) {
        replayed.push(replay.next_event().await.id);
    }
    assert!(acked.iter().all(|id| replayed.contains(id)));
}

on_both_engines!(
    failover,
    redis_a_killed_nodes_clients_replay_what_they_missed_on_another_node,
    nats_a_killed_nodes_clients_replay_what_they_missed_on_another_node,
    Engine::redis(),
    Engine::nats()
);

async fn failover(engine: Engine) {
    let mut nodes = three_nodes(&engine, "failover", &[]);
    let mut stream = nodes[0]
        .subscribe("/.well-known/mercure?topic=f", &[])
        .await;
    nodes[0].wait_subscriptions(1).await;
    for id in ["f1", "f2"] {
        nodes[1]
            .publish_ok(&[("topic", "f"), ("id", id), ("data", "x")])
            .await;
    }
    let got = ids(&mut stream, 2, SOON).await;
    let last = got.last().cloned().unwrap();

    nodes[0].signal("KILL");
    assert!(nodes[0].wait_exit(SOON).is_some());
    assert!(
        stream.read_to_end(SOON).await,
        "the stream outlived its node"
    );
    for id in ["f3", "f4", "f5"] {
        nodes[1]
            .publish_ok(&[("topic", "f"), ("id", id), ("data", "x")])
            .await;
    }
    // The client reconnects to another node with its last id.
    let mut stream = nodes[2]
        .subscribe("/.well-known/mercure?topic=f", &[("last-event-id", &last)])
        .await;
    assert_eq!(ids(&mut stream, 3, SOON).await, ["f3", "f4", "f5"]);
    nodes[1]
        .publish_ok(&[("topic", "f"), ("id", "f6"), ("data", "x")])
        .await;
    assert_eq!(stream.next_event().await.id, "f6");
    stream.expect_silence(Duration::from_millis(300)).await;
}

#[test]
fn an_unreachable_engine_is_refused_at_start_up_with_one_line() {
    for scheme in ["redis", "nats"] {
        unreachable_engine(scheme);
    }
}

fn unreachable_engine(scheme: &str) {
    let url = format!("{scheme}://127.0.0.1:{}/", free_port());
    let started = Instant::now();
    let (code, _stdout, stderr) = run_cli(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-key",
            KEY,
            "--store",
            &url,
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

fn draft(topics: &[&str], id: &str) -> herald::update::Update {
    herald::update::Update::from_draft(herald::update::Draft {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        data: format!("data of {id}"),
        id: Some(id.to_owned()),
        ..Default::default()
    })
    .unwrap()
}

/// A store on this engine, as a node would open it.
async fn open_store(
    engine: &Engine,
    prefix: &str,
    retention: herald::store::Retention,
) -> Box<dyn herald::store::Store> {
    match engine {
        Engine::Redis(redis) => Box::new(
            herald::store::redis::RedisStore::connect(&redis.url(), prefix, retention)
                .await
                .unwrap(),
        ),
        Engine::Nats(nats) => Box::new(
            herald::store::nats::NatsStore::connect(&nats.url(), prefix, retention)
                .await
                .unwrap(),
        ),
    }
}

on_both_engines!(
    store_contract,
    the_redis_store_keeps_the_store_contract,
    the_nats_store_keeps_the_store_contract,
    Engine::redis(),
    Engine::nats()
);

async fn store_contract(engine: Engine) {
    use herald::store::{ReplayFrom, Retention};

    let retention = |max_events, max_age| Retention {
        max_events,
        max_age,
        per_topic: 0,
    };
    let store = open_store(&engine, &unique_prefix("contract"), retention(3, None)).await;
    assert_eq!(store.bounds().await.unwrap().last_seq, 0);
    let stored = store
        .append(vec![draft(&["a"], "1"), draft(&["b", "a", "b"], "2")])
        .await
        .unwrap();
    let more = store
        .append(vec![draft(&["a"], "3"), draft(&["c"], "4")])
        .await
        .unwrap();
    let seqs: Vec<u64> = stored.iter().chain(&more).map(|u| u.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The first update was trimmed (history size 3).
    assert_eq!(store.resolve("1").await.unwrap(), ReplayFrom::Unknown);
    assert_eq!(
        store.resolve("2").await.unwrap(),
        ReplayFrom::After(seqs[1])
    );
    let bounds = store.bounds().await.unwrap();
    assert_eq!(bounds.oldest, Some((seqs[1], "2".to_owned())));
    assert_eq!(bounds.newest, Some((seqs[3], "4".to_owned())));
    assert_eq!(bounds.last_seq, seqs[3]);
    // What the streams' gap decisions read: 1 was trimmed, nothing after it (a reader that
    // wrote 1 missed nothing; one that wrote nothing did).
    assert!(
        (seqs[0]..seqs[1]).contains(&bounds.trimmed_through),
        "{bounds:?} {seqs:?}"
    );
    // Reads start at the oldest kept, whatever position is asked for before it.
    let all = store.read_after(0, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["2", "3", "4"]
    );
    assert_eq!(all[0], stored[1], "a stored update reads back identical");
    assert_eq!(store.read_after(seqs[2], 10).await.unwrap().len(), 1);
    assert_eq!(store.read_after(seqs[1], 1).await.unwrap()[0].id, "3");
    let on_a = store.topic_events("a", 0, 10).await.unwrap();
    assert_eq!(
        on_a.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["2", "3"]
    );
    // Topic tallies follow trimming (each topic once per update).
    let mut topics: Vec<(String, u64, String)> = store
        .topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.topic, t.events, t.last_event_id))
        .collect();
    topics.sort();
    assert_eq!(
        topics,
        [
            ("a".to_owned(), 2, "3".to_owned()),
            ("b".to_owned(), 1, "2".to_owned()),
            ("c".to_owned(), 1, "4".to_owned()),
        ]
    );
    // A later update with the same id takes the id over.
    let again = store.append(vec![draft(&["a"], "2")]).await.unwrap();
    assert_eq!(
        store.resolve("2").await.unwrap(),
        ReplayFrom::After(again[0].seq)
    );

    // A second handle on the same prefix (another node) sees the same history and sequences.
    let prefix = unique_prefix("age");
    let store = open_store(
        &engine,
        &prefix,
        retention(100, Some(Duration::from_millis(300))),
    )
    .await;
    store.append(vec![draft(&["a"], "old")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Aged out even before the next append.
    assert_eq!(store.resolve("old").await.unwrap(), ReplayFrom::Unknown);
    assert!(store.read_after(0, 10).await.unwrap().is_empty());
    let new = store.append(vec![draft(&["a"], "new")]).await.unwrap();
    let other = open_store(
        &engine,
        &prefix,
        retention(100, Some(Duration::from_millis(300))),
    )
    .await;
    assert_eq!(other.bounds().await.unwrap().last_seq, new[0].seq);
    assert_eq!(
        other.resolve("new").await.unwrap(),
        ReplayFrom::After(new[0].seq)
    );
    let topics = other.topics().await.unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].events, 1);
}

// --- Per-topic tallies: every update, and public ones apart --------------------------------------

/// An update of `topics` with id `id`.
fn update_of(topics: &[&str], id: &str, private: bool) -> herald::update::Update {
    herald::update::Update::from_draft(herald::update::Draft {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        data: format!("data of {id}"),
        id: Some(id.to_owned()),
        private,
        ..Default::default()
    })
    .unwrap()
}

/// (topic, events, last id, public events, last public id).
type Row = (String, u64, String, u64, Option<String>);

async fn tallies(store: &dyn herald::store::Store) -> Vec<Row> {
    let mut rows: Vec<Row> = store
        .topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| {
            (
                t.topic,
                t.events,
                t.last_event_id,
                t.public_events,
                t.last_public_event_id,
            )
        })
        .collect();
    rows.sort();
    rows
}

fn row(topic: &str, events: u64, last: &str, public: u64, last_public: Option<&str>) -> Row {
    (
        topic.to_owned(),
        events,
        last.to_owned(),
        public,
        last_public.map(str::to_owned),
    )
}

on_both_engines!(
    store_tallies,
    the_redis_store_tallies_public_updates_apart,
    the_nats_store_tallies_public_updates_apart,
    Engine::redis(),
    Engine::nats()
);

/// The scenarios of `src/store/conformance.rs` (memory, redb), on a shared engine.
async fn store_tallies(engine: Engine) {
    use herald::store::Retention;

    // Private and public updates on one topic, a private-only topic, several topics per update
    // (a repeated topic counts once).
    let keep = |max_events, max_age| Retention {
        max_events,
        max_age,
        per_topic: 0,
    };
    let store = open_store(&engine, &unique_prefix("tally-mixed"), keep(100, None)).await;
    store
        .append(vec![
            update_of(&["a"], "1", false),
            update_of(&["a"], "2", true),
            update_of(&["a", "b", "a"], "3", false),
        ])
        .await
        .unwrap();
    store
        .append(vec![update_of(&["a", "p"], "4", true)])
        .await
        .unwrap();
    store
        .append(vec![update_of(&["p", "p"], "5", true)])
        .await
        .unwrap();
    assert_eq!(
        tallies(&*store).await,
        [
            row("a", 4, "4", 2, Some("3")),
            row("b", 1, "3", 1, Some("3")),
            row("p", 2, "5", 0, None),
        ]
    );

    // Retention by count: public updates leave both tallies, private ones the full one only.
    let store = open_store(&engine, &unique_prefix("tally-count"), keep(3, None)).await;
    for (topics, id, private) in [
        (&["a", "b", "a"][..], "1", false),
        (&["a"][..], "2", false),
        (&["a"][..], "3", true),
    ] {
        store
            .append(vec![update_of(topics, id, private)])
            .await
            .unwrap();
    }
    assert_eq!(
        tallies(&*store).await,
        [
            row("a", 3, "3", 2, Some("2")),
            row("b", 1, "1", 1, Some("1"))
        ]
    );
    store
        .append(vec![update_of(&["a"], "4", true)])
        .await
        .unwrap();
    assert_eq!(tallies(&*store).await, [row("a", 3, "4", 1, Some("2"))]);
    store
        .append(vec![update_of(&["a"], "5", true)])
        .await
        .unwrap();
    assert_eq!(tallies(&*store).await, [row("a", 3, "5", 0, None)]);
    store
        .append(vec![
            update_of(&["b", "a"], "6", false),
            update_of(&["c"], "7", true),
        ])
        .await
        .unwrap();
    assert_eq!(
        tallies(&*store).await,
        [
            row("a", 2, "6", 1, Some("6")),
            row("b", 1, "6", 1, Some("6")),
            row("c", 1, "7", 0, None),
        ]
    );

    // Retention by age, before the next append and after it.
    let age = Duration::from_millis(1000);
    let store = open_store(&engine, &unique_prefix("tally-age"), keep(100, Some(age))).await;
    store
        .append(vec![update_of(&["a", "b"], "old", false)])
        .await
        .unwrap();
    tokio::time::sleep(age * 6 / 10).await;
    store
        .append(vec![update_of(&["a"], "young", true)])
        .await
        .unwrap();
    assert_eq!(
        tallies(&*store).await,
        [
            row("a", 2, "young", 1, Some("old")),
            row("b", 1, "old", 1, Some("old")),
        ]
    );
    tokio::time::sleep(age * 6 / 10).await;
    assert_eq!(tallies(&*store).await, [row("a", 1, "young", 0, None)]);
    store
        .append(vec![update_of(&["b"], "fresh", false)])
        .await
        .unwrap();
    assert_eq!(
        tallies(&*store).await,
        [
            row("a", 1, "young", 0, None),
            row("b", 1, "fresh", 1, Some("fresh")),
        ]
    );
}

/// Redis keys as a herald without public tallies leaves them: no `topic-public-*` hashes, no
/// `tallied` in meta (or one that lags `last`, after such a node appended).
#[tokio::test]
async fn redis_public_tallies_are_recounted_for_keys_an_earlier_herald_wrote() {
    use herald::store::Retention;

    let engine = Engine::redis();
    let prefix = unique_prefix("tally-upgrade");
    let store = open_store(
        &engine,
        &prefix,
        Retention {
            max_events: 3,
            max_age: None,
            per_topic: 0,
        },
    )
    .await;
    store
        .append(vec![
            update_of(&["a"], "1", false),
            update_of(&["a", "b"], "2", false),
            update_of(&["b"], "3", true),
            update_of(&["a", "c"], "4", false),
        ])
        .await
        .unwrap();
    let expected = [
        row("a", 2, "4", 2, Some("4")),
        row("b", 2, "3", 1, Some("2")),
        row("c", 1, "4", 1, Some("4")),
    ];
    assert_eq!(tallies(&*store).await, expected);

    let client = redis::Client::open(engine.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let count_key = format!("{prefix}:topic-public-count");
    let last_key = format!("{prefix}:topic-public-last");
    let meta_key = format!("{prefix}:meta");
    let mut forget = async |wrong: bool| {
        redis::pipe()
            .cmd("DEL")
            .arg(&count_key)
            .arg(&last_key)
            .cmd("HDEL")
            .arg(&meta_key)
            .arg("tallied")
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
        if wrong {
            // Counted once, then a node of an earlier herald appended.
            redis::pipe()
                .cmd("HSET")
                .arg(&count_key)
                .arg("a")
                .arg(99)
                .cmd("HSET")
                .arg(&last_key)
                .arg("a")
                .arg("stale")
                .cmd("HSET")
                .arg(&meta_key)
                .arg("tallied")
                .arg("1-0")
                .query_async::<()>(&mut connection)
                .await
                .unwrap();
        }
    };
    // Recounted by a read...
    forget(false).await;
    assert_eq!(tallies(&*store).await, expected);
    forget(true).await;
    assert_eq!(tallies(&*store).await, expected);
    // ... and by an append (which then trims 2 and 3).
    forget(true).await;
    store
        .append(vec![
            update_of(&["c"], "5", true),
            update_of(&["b"], "6", false),
        ])
        .await
        .unwrap();
    assert_eq!(
        tallies(&*store).await,
        [
            row("a", 1, "4", 1, Some("4")),
            row("b", 1, "6", 1, Some("6")),
            row("c", 2, "5", 1, Some("4")),
        ]
    );
}

#[tokio::test]
async fn a_node_that_fell_too_far_behind_ends_its_streams_and_counts_a_gap() {
    use herald::store::Retention;

    let engine = Engine::redis();
    let prefix = unique_prefix("gap");
    let hub = node(&engine, &prefix, &["--history-size", "10"]);
    let mut stream = hub.subscribe("/.well-known/mercure?topic=g", &[]).await;
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "g"), ("id", "g0"), ("data", "x")])
        .await;
    assert_eq!(stream.next_event().await.id, "g0");

    // The node stops reading while others publish more than the stream keeps (10,000). What a
    // blocked read already had on its way (the first batch) still arrives; the rest is gone.
    hub.signal("STOP");
    let store = open_store(
        &engine,
        &prefix,
        Retention {
            max_events: 10,
            max_age: None,
            per_topic: 0,
        },
    )
    .await;
    for batch in 0..13 {
        let updates = (0..1000)
            .map(|n| draft(&["g"], &format!("b{batch}-{n}")))
            .collect();
        store.append(updates).await.unwrap();
    }
    hub.signal("CONT");

    // It notices, says so, and ends the stream rather than skip updates silently.
    assert!(stream.read_to_end(SOON).await, "the stream was not ended");
    assert_eq!(hub.metric("herald_bus_gaps_total").await, 1.0);
    // The client reconnects with its last id and learns of the gap.
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=g", &[("last-event-id", "g0")])
        .await;
    assert_eq!(stream.next_event().await.event, "herald-gap");
    assert_eq!(stream.next_event().await.id, "b12-990");
}

on_both_engines!(
    store_duplicate_ids,
    the_redis_store_resolves_duplicate_ids_to_the_newest_or_earliest,
    the_nats_store_resolves_duplicate_ids_to_the_newest_or_earliest,
    Engine::redis(),
    Engine::nats()
);

/// `src/store/conformance.rs`'s duplicate-id scenario, on a shared engine.
async fn store_duplicate_ids(engine: Engine) {
    use herald::store::conformance as scenario;
    let store = open_store(&engine, &unique_prefix("duplicates"), scenario::DUPLICATES).await;
    scenario::duplicate_ids(&*store).await;
}

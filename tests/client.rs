//! The client side against real hubs: `herald pub`, `sub`, `token` and `bench`, and the
//! `herald-client` subscriber through a hub restart, a 204, a 401 and a dropped connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald_client::{ClientError, Event, PublishOptions, Publisher, Subscriber};

use crate::util::{Hub, KEY, SOON, TempDir, run_cli, token};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// `herald sub …` running in the background; its stdout lines arrive on a channel.
struct SubProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl SubProcess {
    fn start(hub: &str, args: &[&str]) -> SubProcess {
        let mut child = Command::new(BIN)
            .arg("sub")
            .args(args)
            .env("HERALD_HUB", hub)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald sub");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        SubProcess { child, lines }
    }

    fn line(&self, limit: Duration) -> String {
        self.lines
            .recv_timeout(limit)
            .expect("herald sub printed no line in time")
    }

    /// Waits for the exit; returns (code, stderr).
    fn finish(mut self, limit: Duration) -> (i32, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return (status.code().unwrap_or(-1), stderr);
            }
            assert!(Instant::now() < deadline, "herald sub did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
}

#[tokio::test]
async fn pub_prints_the_id_and_sub_prints_json_lines() {
    let hub = Hub::start(&[]);
    let base = hub.url("");
    let sub = SubProcess::start(
        &base,
        &["news", "--json", "--count", "3", "--timeout", "20s"],
    );
    hub.wait_subscriptions(1).await;

    let env = [("HERALD_HUB", base.as_str()), ("HERALD_KEY", KEY)];
    let (code, first_id, stderr) = run_cli(&["pub", "news", "--data", "hello"], &env);
    assert_eq!(code, 0, "{stderr}");
    let first_id = first_id.trim().to_owned();
    assert!(first_id.starts_with("urn:uuid:"), "{first_id}");

    let (code, out, stderr) = run_cli(
        &[
            "pub", "news", "--data", "a\nb", "--id", "n-2", "--type", "alert", "--retry", "1500",
        ],
        &env,
    );
    assert_eq!((code, out.trim()), (0, "n-2"), "{stderr}");

    let dir = TempDir::new("pub-data-file");
    let file = dir.path().join("data.json");
    std::fs::write(&file, "{\"n\": 3}\n").unwrap();
    let file = file.to_str().unwrap();
    let (code, out, stderr) = run_cli(&["pub", "news", "--data-file", file], &env);
    assert_eq!(code, 0, "{stderr}");
    let third_id = out.trim().to_owned();

    let lines: Vec<serde_json::Value> = (0..3).map(|_| json(&sub.line(SOON))).collect();
    assert_eq!(lines[0]["id"], first_id.as_str());
    assert_eq!(lines[0]["type"], "message");
    assert_eq!(lines[0]["data"], "hello");
    assert_eq!(lines[0]["topic"], "news");
    assert_eq!(lines[1]["id"], "n-2");
    assert_eq!(lines[1]["type"], "alert");
    assert_eq!(lines[1]["data"], "a\nb");
    // One trailing newline of a data file is dropped.
    assert_eq!(lines[2]["id"], third_id.as_str());
    assert_eq!(lines[2]["data"], "{\"n\": 3}");
    let (code, stderr) = sub.finish(SOON);
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn pub_reads_stdin_and_takes_a_token_from_herald_token() {
    let hub = Hub::start(&[]);
    let (code, minted, stderr) = run_cli(&["token", "--key", KEY, "--publish", "*"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut child = Command::new(BIN)
        .args(["pub", "piped", "--private"])
        .env("HERALD_HUB", hub.url(""))
        .env("HERALD_TOKEN", minted.trim())
        .env_remove("HERALD_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();

    // Private: only a subscriber whose token allows the topic gets it.
    let (code, out, stderr) = run_cli(
        &[
            "sub",
            "piped",
            "--last-event-id",
            "earliest",
            "--count",
            "1",
            "--timeout",
            "10s",
            "--token",
            &token(&[], &["piped"]),
        ],
        &[("HERALD_HUB", &hub.url(""))],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out.trim(), format!("[{id}] message: from stdin"));
}

#[tokio::test]
async fn pub_failures_are_one_clear_line_and_a_non_zero_exit() {
    let hub = Hub::start(&[]);
    let base = hub.url("");
    let no_auth = [("HERALD_HUB", base.as_str())];
    let check = |args: &[&str], env: &[(&str, &str)], code: i32, mentions: &str| {
        let (actual, stdout, stderr) = run_cli(args, env);
        assert_eq!(actual, code, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
    };
    check(&["pub", "t", "--data", "x"], &no_auth, 1, "401");
    let other = token(&["elsewhere"], &[]);
    check(
        &["pub", "t", "--data", "x", "--token", &other],
        &no_auth,
        1,
        "403",
    );
    check(
        &["pub", "t", "--data", "x", "--key", "wrong-key"],
        &no_auth,
        1,
        "401",
    );
    // Nothing listens on port 1.
    check(
        &[
            "pub",
            "t",
            "--data",
            "x",
            "--key",
            KEY,
            "--hub",
            "http://127.0.0.1:1",
        ],
        &[],
        1,
        "cannot reach the hub",
    );
    check(&["pub", "--data", "x"], &no_auth, 64, "");
    check(
        &["pub", "t", "--data", "x", "--retry", "soon"],
        &no_auth,
        64,
        "--retry",
    );
    check(
        &[
            "pub",
            "t",
            "--data-file",
            "/nonexistent/herald",
            "--key",
            KEY,
        ],
        &no_auth,
        64,
        "--data-file",
    );
    check(
        &["pub", "t", "--data", "x", "--hub", "not a url"],
        &[],
        64,
        "hub URL",
    );
}

#[tokio::test]
async fn sub_prints_readable_lines_resumes_after_an_id_and_exits_at_the_timeout() {
    let hub = Hub::start(&[]);
    let base = hub.url("");
    for (id, data) in [("1", "one"), ("2", "two"), ("3", "three")] {
        hub.publish_ok(&[("topic", "log"), ("id", id), ("data", data)])
            .await;
    }
    let env = [("HERALD_HUB", base.as_str())];
    let (code, out, stderr) = run_cli(
        &["sub", "log", "--last-event-id", "1", "--count", "2"],
        &env,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out, "[2] message: two\n[3] message: three\n");

    // Nothing new: --timeout ends it with success and no output.
    let started = Instant::now();
    let (code, out, stderr) = run_cli(&["sub", "log", "--timeout", "500ms"], &env);
    assert_eq!((code, out.as_str()), (0, ""), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Custom headers go out with the request: here, the resume point.
    let (code, out, stderr) = run_cli(
        &[
            "sub",
            "log",
            "--header",
            "Last-Event-ID: 2",
            "--count",
            "1",
            "--json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&out)["data"], "three");

    let (code, _, stderr) = run_cli(&["sub", "log", "--header", "no colon"], &env);
    assert_eq!(code, 64, "{stderr}");
    let (code, _, stderr) = run_cli(&["sub", "log", "--timeout", "a while"], &env);
    assert_eq!(code, 64, "{stderr}");
}

#[tokio::test]
async fn sub_is_refused_clearly_without_a_token() {
    let hub = Hub::start_raw(&["--jwt-key", KEY, "--store", "memory:"]);
    let base = hub.url("");
    let env = [("HERALD_HUB", base.as_str())];
    let (code, out, stderr) = run_cli(&["sub", "t", "--timeout", "10s"], &env);
    assert_eq!((code, out.as_str()), (1, ""), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("401 Unauthorized"), "{stderr}");

    // With a token it gets in.
    let (code, _, stderr) = run_cli(
        &[
            "sub",
            "t",
            "--timeout",
            "300ms",
            "--token",
            &token(&[], &["t"]),
        ],
        &env,
    );
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn bench_reports_zero_loss_and_every_field() {
    let hub = Hub::start(&[]);
    let pid = hub.pid().to_string();
    let (code, out, stderr) = run_cli(
        &[
            "bench",
            "--subscribers",
            "20",
            "--topics",
            "2",
            "--rate",
            "50",
            "--duration",
            "2s",
            "--hold",
            "1s",
            "--json",
            "--pid",
            &pid,
        ],
        &[("HERALD_HUB", &hub.url("")), ("HERALD_KEY", KEY)],
    );
    assert_eq!(code, 0, "{stderr}");
    let report = json(out.trim());
    assert_eq!(report["connections"], 20, "{report}");
    assert_eq!(report["connect_failures"], 0, "{report}");
    assert_eq!(report["published"], 100, "{report}");
    assert_eq!(report["expected"], 1000, "{report}");
    assert_eq!(report["delivered"], 1000, "{report}");
    assert_eq!(report["loss"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert!(report["deliveries_per_sec"].as_f64().unwrap() > 0.0);
    for field in ["p50", "p90", "p99", "max"] {
        assert!(
            report["latency_ms"][field].as_f64().unwrap() > 0.0,
            "{field}: {report}"
        );
    }
    assert!(report["rss_before_kib"].as_u64().unwrap() > 0);
    assert!(report["rss_after_kib"].as_u64().unwrap() > 0);
    assert!(report["rss_drained_kib"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["rss_drained_per_connection_bytes"].is_number(),
        "{report}"
    );
    // The hub wrote at least once per subscriber (the stream heads) and per delivery batch.
    assert!(
        report["server_write_syscalls"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(report["server_writes_per_delivery"].is_number(), "{report}");
    assert!(report["rss_per_connection_bytes"].is_number(), "{report}");
    assert_eq!(report["server"], "herald", "{report}");
    assert_eq!(report["hold_secs"], 1.0, "{report}");
    // The hub did some work for the 1,000 deliveries; its CPU time is read with a clock tick of
    // at most 10 ms, so the figure is a multiple of it (possibly zero on a fast run).
    let cpu = report["server_cpu_secs"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&cpu), "{report}");
    let per_delivery = report["server_cpu_us_per_delivery"].as_f64().unwrap();
    assert!((per_delivery - cpu * 1e6 / 1000.0).abs() < 1e-6, "{report}");
    assert!(
        stderr.contains("herald bench"),
        "no progress line: {stderr}"
    );
}

#[tokio::test]
async fn bench_spreads_subscriptions_over_worker_processes() {
    let hub = Hub::start(&[]);
    let (code, out, stderr) = run_cli(
        &[
            "bench",
            "--subscribers",
            "30",
            "--per-process",
            "12",
            "--topics",
            "3",
            "--rate",
            "30",
            "--duration",
            "1s",
            "--json",
        ],
        &[("HERALD_HUB", &hub.url("")), ("HERALD_KEY", KEY)],
    );
    assert_eq!(code, 0, "{stderr}");
    let report = json(out.trim());
    assert_eq!(report["processes"], 4, "{report}");
    assert_eq!(report["connections"], 30, "{report}");
    assert_eq!(report["expected"], 300, "{report}");
    assert_eq!(report["loss"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
}

#[test]
fn bench_fails_clearly_without_a_hub_or_a_publisher_token() {
    let (code, _, stderr) = run_cli(
        &[
            "bench",
            "--subscribers",
            "2",
            "--duration",
            "1s",
            "--hub",
            "http://127.0.0.1:1",
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no subscription could be opened"),
        "{stderr}"
    );
    let (code, _, stderr) = run_cli(&["bench", "--rate", "0"], &[]);
    assert_eq!(code, 64, "{stderr}");
    let hub = Hub::start(&[]);
    let (code, _, stderr) = run_cli(
        &["bench", "--subscribers", "2", "--duration", "1s"],
        &[("HERALD_HUB", &hub.url(""))],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
}

/// A hub whose publisher and subscriber keys differ and which allows anonymous subscribers:
/// `--key` signs the publisher's token only, the subscriptions go anonymously and all get in.
#[tokio::test]
async fn bench_against_split_keys_subscribes_anonymously() {
    let hub = Hub::start_raw(&[
        "--publisher-jwt-key",
        "publisher-secret",
        "--subscriber-jwt-key",
        "subscriber-secret",
        "--anonymous",
        "--store",
        "memory:",
    ]);
    let (code, out, stderr) = run_cli(
        &[
            "bench",
            "--subscribers",
            "10",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--json",
            "--key",
            "publisher-secret",
        ],
        &[("HERALD_HUB", &hub.url(""))],
    );
    assert_eq!(code, 0, "{stderr}");
    let report = json(out.trim());
    assert_eq!(report["connections"], 10, "{report}");
    assert_eq!(report["expected"], 200, "{report}");
    assert_eq!(report["loss"], 0, "{report}");

    // With the subscriber key, the subscriptions carry a token the hub accepts.
    let (code, out, stderr) = run_cli(
        &[
            "bench",
            "--subscribers",
            "4",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--json",
            "--key",
            "publisher-secret",
            "--subscriber-key",
            "subscriber-secret",
        ],
        &[("HERALD_HUB", &hub.url(""))],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(out.trim())["loss"], 0, "{out}");
}

/// Without --anonymous the hub refuses the anonymous subscriptions, and the error says what was
/// sent and which flag to use; a wrong subscriber key is named as such.
#[test]
fn bench_says_why_the_hub_refuses_its_subscriptions() {
    let hub = Hub::start_raw(&[
        "--publisher-jwt-key",
        "publisher-secret",
        "--subscriber-jwt-key",
        "subscriber-secret",
        "--store",
        "memory:",
    ]);
    let env = [("HERALD_HUB", hub.url(""))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let base = [
        "bench",
        "--subscribers",
        "2",
        "--duration",
        "1s",
        "--key",
        "publisher-secret",
    ];
    let (code, _, stderr) = run_cli(&base, &env);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("sent no token"), "{stderr}");
    assert!(stderr.contains("--subscriber-key"), "{stderr}");
    assert!(stderr.contains("--anonymous"), "{stderr}");
    let (code, _, stderr) = run_cli(
        &[&base[..], &["--subscriber-key", "publisher-secret"]].concat(),
        &env,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("minted from --subscriber-key"), "{stderr}");
}

/// Every --mode delivers everything: HTTP/1.1 after a warm-up request on the same connection,
/// h2c with many streams per connection, and HTTP/2 over TLS trusting the hub's certificate.
#[tokio::test]
async fn bench_modes_deliver_everything() {
    let bench = |hub: String, mode: &'static str, extra: Vec<String>| {
        let mut args: Vec<String> = [
            "bench",
            "--subscribers",
            "25",
            "--topics",
            "2",
            "--streams-per-connection",
            "10",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--json",
            "--mode",
            mode,
            "--hub",
            &hub,
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, stderr) = run_cli(&args, &[("HERALD_KEY", KEY)]);
        assert_eq!(code, 0, "{mode}: {stderr}");
        let report = json(out.trim());
        assert_eq!(report["mode"], mode, "{report}");
        assert_eq!(report["connections"], 25, "{mode}: {report}");
        assert_eq!(report["expected"], 250, "{mode}: {report}");
        assert_eq!(report["delivered"], 250, "{mode}: {report}");
        assert_eq!(report["duplicates"], 0, "{mode}: {report}");
    };
    let hub = Hub::start(&[]);
    bench(hub.url(""), "h1-reuse", vec![]);
    bench(hub.url(""), "h2c", vec![]);
    // Worker processes inherit the mode.
    bench(
        hub.url(""),
        "h2c",
        vec!["--per-process".into(), "12".into()],
    );

    let dir = TempDir::new("bench-tls");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let cert = cert.to_str().unwrap().to_owned();
    let tls = Hub::start(&["--tls-cert", &cert, "--tls-key", key.to_str().unwrap()]);
    let https = format!("https://{}", tls.addr);
    bench(https.clone(), "h2-tls", vec!["--ca".into(), cert]);
    bench(https, "h2-tls", vec!["--insecure".into()]);
}

/// A publish endpoint that stopped answering does not hold `herald bench` for a publish timeout
/// per publish: past `--duration` + 10 s it sends no more, and counts what it did not send as
/// publish errors, with the reason.
#[tokio::test]
async fn bench_stops_publishing_to_a_server_that_stopped_answering() {
    let hub = Hub::start(&[]);
    // Connections complete in the backlog, and no request is ever read or answered.
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let publish_hub = format!("http://{}", black_hole.local_addr().unwrap());
    let started = Instant::now();
    let (code, out, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(
            &[
                "bench",
                "--hub",
                &hub.url(""),
                "--publish-hub",
                &publish_hub,
                "--subscribers",
                "2",
                "--rate",
                "20",
                "--duration",
                "1s",
                "--concurrency",
                "1",
                "--json",
            ],
            &[("HERALD_KEY", KEY)],
        )
    })
    .await
    .unwrap();
    let took = started.elapsed();
    drop(black_hole);
    assert_eq!(code, 0, "{stderr}");
    let report = json(out.trim());
    assert_eq!(report["published"], 0, "{report}");
    assert_eq!(report["publish_errors"], 20, "{report}");
    let error = report["first_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("timed out") || error.contains("fell behind"),
        "{report}"
    );
    // Two publish timeouts (the second one sent just before the limit), not twenty.
    assert!(took < Duration::from_secs(45), "the run took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// The library against hubs that restart, end, refuse, or break.

/// A hub on a port chosen by the test, so it can be restarted at the same address.
struct FixedHub {
    child: Child,
}

impl FixedHub {
    fn start(addr: SocketAddr, store: &str) -> FixedHub {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", &addr.to_string(), "--jwt-key", KEY])
            .args(["--anonymous", "--store", store])
            .env("HERALD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn herald serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("no banner").expect("read banner");
        assert!(first.starts_with("herald listening on"), "{first}");
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        FixedHub { child }
    }

    /// SIGTERM, and wait for the exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the hub did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FixedHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn next_ok(subscriber: &mut Subscriber) -> Event {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), subscriber.next()).await {
            Ok(Some(Ok(event))) => return event,
            Ok(Some(Err(error))) if !error.is_fatal() => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// Waits until a hub reports `n` live subscriptions on `/healthz`.
async fn wait_subscriptions(base: &str, n: u64) {
    let deadline = Instant::now() + SOON;
    loop {
        let response = reqwest::get(format!("{base}/healthz")).await.unwrap();
        let health: serde_json::Value = response.json().await.unwrap();
        if health["subscriptions"] == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} subscriptions: {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Multi-threaded: the publisher's pool must see the old hub's connections close while the
// test blocks on the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_loses_nothing_across_a_hub_restart() {
    let dir = TempDir::new("client-restart");
    let addr = free_addr();
    let base = format!("http://{addr}");
    let hub = FixedHub::start(addr, dir.str());
    let publisher = Publisher::new(&base)
        .unwrap()
        .with_token(token(&["*"], &[]));
    let mut subscriber = Subscriber::builder(base.as_str())
        .topic("orders")
        .retry(Duration::from_millis(1500))
        .max_backoff(Duration::from_secs(2))
        .build()
        .unwrap();
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(item) = subscriber.next().await {
            let _ = sender.send(item);
        }
    });
    wait_subscriptions(&base, 1).await;
    let options = PublishOptions::new();
    let mut published = Vec::new();
    for n in 0..2 {
        let data = format!("before {n}");
        let id = publisher
            .publish(&["orders"], &data, &options)
            .await
            .unwrap();
        published.push((id, data));
    }
    hub.stop();
    let hub = FixedHub::start(addr, dir.str());
    // Published while the subscriber waits to reconnect: only history has them.
    for n in 0..3 {
        let data = format!("after {n}");
        let id = publisher
            .publish(&["orders"], &data, &options)
            .await
            .unwrap();
        published.push((id, data));
    }
    let mut received = Vec::new();
    while received.len() < published.len() {
        match tokio::time::timeout(Duration::from_secs(15), events.recv()).await {
            Ok(Some(Ok(event))) => received.push((event.id, event.data)),
            other => panic!("expected an event, got {other:?} after {received:?}"),
        }
    }
    assert_eq!(received, published, "every update exactly once, in order");
    // And it follows the restarted hub live.
    wait_subscriptions(&base, 1).await;
    let live = publisher
        .publish(&["orders"], "live", &options)
        .await
        .unwrap();
    match tokio::time::timeout(SOON, events.recv()).await {
        Ok(Some(Ok(event))) => assert_eq!(event.id, live),
        other => panic!("expected the live event, got {other:?}"),
    }
    reader.abort();
    drop(hub);
}

// Multi-threaded: the publisher's pool must see the old hub's connections close while the
// test blocks on the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_subscriber_survives_a_restart_without_losing_events() {
    let dir = TempDir::new("cli-restart");
    let addr = free_addr();
    let base = format!("http://{addr}");
    let hub = FixedHub::start(addr, dir.str());
    let publisher = Publisher::new(&base)
        .unwrap()
        .with_token(token(&["*"], &[]));
    let options = PublishOptions::new();
    let sub = SubProcess::start(
        &base,
        &["feed", "--json", "--count", "4", "--timeout", "30s"],
    );
    wait_subscriptions(&base, 1).await;
    let mut ids = Vec::new();
    ids.push(publisher.publish(&["feed"], "1", &options).await.unwrap());
    ids.push(publisher.publish(&["feed"], "2", &options).await.unwrap());
    assert_eq!(json(&sub.line(SOON))["id"], ids[0].as_str());
    assert_eq!(json(&sub.line(SOON))["id"], ids[1].as_str());
    hub.stop();
    let _hub = FixedHub::start(addr, dir.str());
    ids.push(publisher.publish(&["feed"], "3", &options).await.unwrap());
    ids.push(publisher.publish(&["feed"], "4", &options).await.unwrap());
    let wait = Duration::from_secs(15);
    assert_eq!(json(&sub.line(wait))["id"], ids[2].as_str());
    assert_eq!(json(&sub.line(wait))["id"], ids[3].as_str());
    let (code, stderr) = sub.finish(SOON);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
}

#[tokio::test]
async fn the_subscriber_stops_on_401_and_says_why() {
    let hub = Hub::start_raw(&["--jwt-key", KEY, "--store", "memory:"]);
    let mut subscriber = Subscriber::builder(hub.url(""))
        .topic("secret")
        .build()
        .unwrap();
    let item = tokio::time::timeout(SOON, subscriber.next()).await.unwrap();
    match item {
        Some(Err(ClientError::Unauthorized {
            detail: Some(detail),
        })) => {
            assert!(!detail.is_empty());
        }
        other => panic!("expected Unauthorized with a detail, got {other:?}"),
    }
    assert!(subscriber.next().await.is_none(), "the stream ends");

    // A token for the wrong key is refused the same way; a good one gets events.
    let bad = crate::util::token_with("another-key", &[], &["secret"], None);
    let mut subscriber = Subscriber::builder(hub.url("/.well-known/mercure"))
        .topic("secret")
        .token(bad)
        .build()
        .unwrap();
    let error = subscriber.next().await.unwrap().unwrap_err();
    assert_eq!(error.status(), Some(401), "{error}");
    assert!(error.is_fatal());
}

/// A fake hub: answers each connection with the next canned response and reports the request
/// heads it received.
fn fake_hub(responses: Vec<String>) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (sender, requests) = mpsc::channel();
    std::thread::spawn(move || {
        for response in responses {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = sender.send(String::from_utf8_lossy(&head).into_owned());
            let _ = stream.write_all(response.as_bytes());
            // Dropping the stream closes the connection.
        }
    });
    (base, requests)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn the_subscriber_stops_on_204() {
    let (base, requests) = fake_hub(vec![
        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_owned(),
    ]);
    let mut subscriber = Subscriber::builder(base)
        .topic("a/b")
        .topic("c")
        .token("tok")
        .header("X-Tenant", "blue")
        .last_event_id("e-7")
        .build()
        .unwrap();
    let item = tokio::time::timeout(SOON, subscriber.next()).await.unwrap();
    assert!(matches!(item, Some(Err(ClientError::Ended))), "{item:?}");
    assert!(subscriber.next().await.is_none());
    let head = requests.recv_timeout(SOON).unwrap();
    assert!(
        head.starts_with("GET /.well-known/mercure?topic=a%2Fb&topic=c HTTP/1.1"),
        "{head}"
    );
    assert_eq!(header(&head, "accept"), Some("text/event-stream"));
    assert_eq!(header(&head, "authorization"), Some("Bearer tok"));
    assert_eq!(header(&head, "x-tenant"), Some("blue"));
    assert_eq!(header(&head, "last-event-id"), Some("e-7"));
}

#[tokio::test]
async fn the_subscriber_retries_honours_retry_and_resends_the_last_event_id() {
    let problem = r#"{"status":503,"detail":"the hub is shutting down"}"#;
    let (base, requests) = fake_hub(vec![
        // A failing hub: retried.
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{problem}",
            problem.len()
        ),
        // Events, a short retry, then the connection drops in the middle of an event.
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
         retry: 50\nid: 1\ndata: one\n\n: comment\nid: 2\nevent: tick\ndata: two\n\n\
         id: 3\ndata: cut off"
            .to_owned(),
        // The reconnection: then stop.
        "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_owned(),
    ]);
    let mut subscriber = Subscriber::builder(base)
        .topic("t")
        .retry(Duration::from_millis(100))
        .report_reconnects(true)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut items = Vec::new();
    while let Some(item) = tokio::time::timeout(SOON, subscriber.next()).await.unwrap() {
        items.push(item);
    }
    let elapsed = started.elapsed();
    assert!(
        matches!(&items[0], Err(ClientError::Status { status: 503, detail: Some(d) }) if d == "the hub is shutting down"),
        "{items:?}"
    );
    let events: Vec<(&str, &str, &str)> = items
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .map(|e| (e.id.as_str(), e.event_type.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(events, [("1", "message", "one"), ("2", "tick", "two")]);
    let first = items.iter().find_map(|item| item.as_ref().ok()).unwrap();
    assert_eq!(first.retry, Some(Duration::from_millis(50)));
    assert!(
        matches!(items.last(), Some(Err(ClientError::Ended))),
        "{items:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "waited {elapsed:?}");

    let heads: Vec<String> = requests.try_iter().collect();
    assert_eq!(heads.len(), 3);
    assert_eq!(header(&heads[0], "last-event-id"), None);
    assert_eq!(header(&heads[1], "last-event-id"), None);
    // The cut-off event's id does not count: resume after 2.
    assert_eq!(header(&heads[2], "last-event-id"), Some("2"));
    assert_eq!(subscriber.last_event_id().as_deref(), Some("2"));
}

#[tokio::test]
async fn the_publisher_sends_every_option_and_reports_problems() {
    let hub = Hub::start(&[]);
    let base = hub.url("");
    let mut subscriber = Subscriber::builder(base.as_str())
        .topic("p/{n}")
        .token(token(&[], &["p/1"]))
        .build()
        .unwrap();
    let publisher = Publisher::new(&base).unwrap();
    let options = PublishOptions::new()
        .id("opt-1")
        .event_type("kind")
        .retry(Duration::from_millis(2500))
        .private(true)
        .token(token(&["p/1", "other"], &[]));
    let waiter = tokio::spawn(async move { next_ok(&mut subscriber).await });
    hub.wait_subscriptions(1).await;
    let id = publisher
        .publish(&["p/1", "other"], "x\ny", &options)
        .await
        .unwrap();
    assert_eq!(id, "opt-1");
    let event = waiter.await.unwrap();
    assert_eq!(
        (
            event.id.as_str(),
            event.event_type.as_str(),
            event.data.as_str()
        ),
        ("opt-1", "kind", "x\ny")
    );
    assert_eq!(event.retry, Some(Duration::from_millis(2500)));

    let error = publisher
        .publish(&["p/2"], "x", &options)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(403), "{error}");
    assert!(error.detail().is_some_and(|d| !d.is_empty()), "{error}");
    let error = publisher
        .publish(&["p/2"], "x", &PublishOptions::new())
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(401), "{error}");
    let error = publisher
        .publish::<&str>(&[], "x", &PublishOptions::new())
        .await
        .unwrap_err();
    assert_eq!(error.status(), None);
}

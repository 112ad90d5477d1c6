//! Fixtures: a real `herald serve` process on a random loopback port, tokens, and a stream
//! reader that keeps the raw bytes and parses events with `herald-sse`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use herald::auth::{Algorithm, MintClaims, mint_hmac};
use herald_sse::{Event, Parser};

/// The HMAC secret every test hub uses unless told otherwise.
pub(crate) const KEY: &str = "integration-test-secret";

/// How long a test waits for something that should happen at once.
pub(crate) const SOON: Duration = Duration::from_secs(5);

/// A running hub process, killed when dropped.
pub(crate) struct Hub {
    child: Child,
    pub addr: SocketAddr,
    pub banner: Vec<String>,
}

impl Hub {
    /// `herald serve --listen 127.0.0.1:0 --jwt-key KEY --anonymous --store memory:` plus `extra`.
    pub(crate) fn start(extra: &[&str]) -> Hub {
        let mut args = vec!["--jwt-key", KEY, "--anonymous", "--store", "memory:"];
        args.extend_from_slice(extra);
        Hub::start_raw(&args)
    }

    /// `herald serve --listen 127.0.0.1:0` plus exactly `args`.
    pub(crate) fn start_raw(args: &[&str]) -> Hub {
        Hub::start_with_env(args, &[])
    }

    /// As [`Hub::start_raw`] with extra environment variables.
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Hub {
        Hub::start_in(args, env, None)
    }

    /// As [`Hub::start_with_env`], in a working directory.
    pub(crate) fn start_in(
        args: &[&str],
        env: &[(&str, &str)],
        cwd: Option<&std::path::Path>,
    ) -> Hub {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .env(
                "HERALD_LOG",
                std::env::var("TEST_HERALD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn herald");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .expect("herald printed nothing")
            .expect("read stdout");
        let addr = first
            .strip_prefix("herald listening on http://")
            .or_else(|| first.strip_prefix("herald listening on https://"))
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .expect("address");
        let mut banner = vec![first];
        // The banner is a handful of lines; read them on a thread so stdout never blocks.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_millis(300);
        while let Ok(line) =
            receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            banner.push(line);
        }
        Hub {
            child,
            addr,
            banner,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `KILL`, `INT`).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Publishes a form with a token allowed to publish anywhere; returns (status, body).
    pub(crate) async fn publish(&self, form: &[(&str, &str)]) -> (u16, String) {
        let response = client()
            .post(self.url("/.well-known/mercure"))
            .bearer_auth(token(&["*"], &[]))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(form))
            .send()
            .await
            .expect("publish");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// Publishes and asserts 200; returns the id.
    pub(crate) async fn publish_ok(&self, form: &[(&str, &str)]) -> String {
        let (status, body) = self.publish(form).await;
        assert_eq!(status, 200, "publish failed: {body}");
        body
    }

    /// Opens a subscription on `path_and_query` with extra headers.
    pub(crate) async fn subscribe(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Stream {
        let mut request = client().get(self.url(path_and_query));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tokio::time::timeout(SOON, request.send())
            .await
            .expect("subscribe timed out")
            .expect("subscribe");
        Stream::new(response)
    }

    /// A metric's value from `/metrics` (first line that starts with `name`).
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let text = client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
            .and_then(|line| {
                if name.contains('{') {
                    line.rsplit(' ').next()
                } else {
                    line.strip_prefix(name)
                        .filter(|rest| rest.starts_with(' '))
                        .and_then(|rest| rest.trim().split(' ').next())
                }
            })
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    }

    /// GETs `path` and parses the JSON body (any status).
    pub(crate) async fn get_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(self.url(path))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    /// Live subscriptions, from `/healthz`.
    pub(crate) async fn subscriptions(&self) -> u64 {
        let health = self.get_json("/healthz").await;
        health["subscriptions"].as_u64().expect("subscriptions")
    }

    /// Polls until the hub reports `n` subscriptions.
    pub(crate) async fn wait_subscriptions(&self, n: u64) {
        let deadline = Instant::now() + SOON;
        loop {
            let now = self.subscriptions().await;
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} subscriptions, have {now}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident memory of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc/PID/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The hub's resident memory once the garbage of the last requests has been given back: the
/// smallest of samples over two and a half seconds, each after a small request (an allocator
/// gives freed memory back after a delay, jemalloc's about a second, or on later allocations).
pub(crate) async fn settled_rss_kib(hub: &Hub) -> u64 {
    let mut smallest = u64::MAX;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let _ = hub.subscriptions().await;
        smallest = smallest.min(rss_kib(hub.pid()));
    }
    smallest
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

/// A client without connection pooling surprises.
pub(crate) fn client() -> reqwest::Client {
    // reqwest is built without a crypto provider of its own (see src/auth/jwks.rs).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// A HS256 token signed with [`KEY`].
pub(crate) fn token(publish: &[&str], subscribe: &[&str]) -> String {
    token_with(KEY, publish, subscribe, None)
}

/// A HS256 token with a key and optional lifetime.
pub(crate) fn token_with(
    key: &str,
    publish: &[&str],
    subscribe: &[&str],
    ttl: Option<Duration>,
) -> String {
    mint_hmac(
        key.as_bytes(),
        Algorithm::HS256,
        &MintClaims {
            publish: publish.iter().map(|s| s.to_string()).collect(),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            payload: None,
            ttl,
        },
    )
    .expect("mint")
}

/// `application/x-www-form-urlencoded`.
pub(crate) fn encode_form(form: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// An open event stream: the response head, the raw body bytes read so far, and parsed events.
pub(crate) struct Stream {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: Option<futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>>,
    pub raw: Vec<u8>,
    parser: Parser,
    pub ended: bool,
}

impl Stream {
    /// A stream over a response obtained some other way (another method, another client).
    pub(crate) fn from_response(response: reqwest::Response) -> Stream {
        Stream::new(response)
    }

    pub(crate) fn new(response: reqwest::Response) -> Stream {
        Stream {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: Some(response.bytes_stream().boxed()),
            raw: Vec::new(),
            parser: Parser::new(),
            ended: false,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads one more chunk; false at the end of the stream or after `limit`.
    pub(crate) async fn read_chunk(&mut self, limit: Duration) -> bool {
        let Some(body) = self.body.as_mut() else {
            return false;
        };
        match tokio::time::timeout(limit, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                self.raw.extend_from_slice(&chunk);
                self.parser.feed(&chunk);
                true
            }
            Ok(Some(Err(_))) | Ok(None) => {
                self.ended = true;
                self.body = None;
                false
            }
            Err(_) => false,
        }
    }

    /// The next event, waiting at most `limit`.
    pub(crate) async fn next_event_within(&mut self, limit: Duration) -> Option<Event> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(event) = self.parser.next_event() {
                return Some(event);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_chunk(left).await {
                return self.parser.next_event();
            }
        }
    }

    /// The next event; panics if none arrives soon.
    pub(crate) async fn next_event(&mut self) -> Event {
        self.next_event_within(SOON)
            .await
            .expect("expected an event, none arrived")
    }

    /// Asserts no event arrives within `quiet`.
    pub(crate) async fn expect_silence(&mut self, quiet: Duration) {
        if let Some(event) = self.next_event_within(quiet).await {
            panic!("expected no event, got {event:?}");
        }
    }

    /// Reads until the raw bytes contain `needle`.
    pub(crate) async fn read_until(&mut self, needle: &[u8], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.raw.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_chunk(left).await {
                return self.raw.windows(needle.len()).any(|w| w == needle);
            }
        }
    }

    /// Reads until the stream ends; true if it ended within `limit`.
    pub(crate) async fn read_to_end(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.read_chunk(left).await;
        }
        true
    }

    /// Collects `n` events.
    pub(crate) async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next_event().await);
        }
        events
    }
}

/// A directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("herald-test-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub(crate) fn str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `herald` with arguments; returns (exit code, stdout, stderr).
pub(crate) fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.args(args).stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run herald");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A problem+json body's fields.
pub(crate) async fn problem(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let body: serde_json::Value = response.json().await.expect("problem json");
    assert_eq!(body["status"].as_u64(), Some(u64::from(status)));
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    (status, body)
}

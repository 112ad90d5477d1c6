//! An operator's first deploy (docs/DEPLOY.md): the systemd unit, nginx and Caddy in front of a
//! real hub, and the online backup restored into a second hub and replayed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::auth::{Algorithm, mint_admin};

use crate::util::{Hub, KEY, SOON, Stream, TempDir, client, free_port, problem, run_cli, token};

/// The repository's root (where `contrib/` is).
fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `text` with `from` replaced by `to`; `from` must be there (the file's shape is checked too).
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "expected {from:?} in the shipped file");
    text.replace(from, to)
}

fn admin_token() -> String {
    mint_admin(KEY.as_bytes(), Algorithm::HS256, None).unwrap()
}

fn durable(dir: &TempDir, extra: &[&str]) -> Hub {
    let mut args = vec!["--jwt-key", KEY, "--anonymous", "--store", dir.str()];
    args.extend_from_slice(extra);
    Hub::start_raw(&args)
}

async fn open_stream(url: &str, headers: &[(&str, &str)]) -> Stream {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(SOON, request.send())
        .await
        .expect("subscribe timed out")
        .expect("subscribe");
    Stream::new(response)
}

async fn publish_via(base: &str, topic: &str, data: &str) -> String {
    let response = client()
        .post(format!("{base}/.well-known/mercure"))
        .bearer_auth(token(&["*"], &[]))
        .form(&[("topic", topic), ("data", data)])
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// systemd

/// `key=value` lines of a unit (every occurrence, in order).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

fn unit_value(unit: &str, key: &str) -> String {
    let values = unit_values(unit, key);
    assert_eq!(values.len(), 1, "{key}= once in the unit: {values:?}");
    values[0].clone()
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = read("contrib/systemd/herald.service");
    let dir = TempDir::new("unit");
    // verify checks that ExecStart's binary exists: point it at the one under test.
    let local = replace(
        &unit,
        "/usr/bin/herald ",
        &format!("{} ", env!("CARGO_BIN_EXE_herald")),
    );
    let path = dir.path().join("herald.service");
    std::fs::write(&path, local).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect(
            "systemd-analyze (apt package systemd; scripts/test installs it) must be installed",
        );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "verify failed: {stderr}");
    // Unknown keys and unparsable values are only warnings to systemd: refuse them here.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("herald.service"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze warns: {about_unit:?}"
    );
}

#[test]
fn the_systemd_unit_has_a_user_a_state_directory_limits_and_a_graceful_stop() {
    let unit = read("contrib/systemd/herald.service");
    assert_eq!(unit_value(&unit, "DynamicUser"), "yes");
    assert_eq!(unit_value(&unit, "StateDirectory"), "herald");
    assert_eq!(
        unit_value(&unit, "EnvironmentFile"),
        "-/etc/herald/herald.env"
    );
    let exec = unit_value(&unit, "ExecStart");
    assert!(exec.starts_with("/usr/bin/herald serve "), "{exec}");
    assert!(exec.contains(" --store /var/lib/herald"), "{exec}");
    let nofile: u64 = unit_value(&unit, "LimitNOFILE").parse().unwrap();
    assert!(nofile >= 65_536, "LimitNOFILE={nofile}");
    assert_eq!(unit_value(&unit, "KillSignal"), "SIGTERM");
    // Above the hub's own shutdown grace (5 s), so systemd never SIGKILLs a clean stop.
    let stop = humantime::parse_duration(&unit_value(&unit, "TimeoutStopSec")).unwrap();
    assert!(stop > Duration::from_secs(5), "TimeoutStopSec {stop:?}");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(unit_value(&unit, key), value, "{key}");
    }
    assert_eq!(unit_value(&unit, "CapabilityBoundingSet"), "");
}

/// The unit's command line runs with this build: every flag exists, the key comes from the
/// environment file's variable, and SIGTERM stops it well within TimeoutStopSec.
#[tokio::test]
async fn the_systemd_command_line_serves_and_stops_on_sigterm() {
    let unit = read("contrib/systemd/herald.service");
    let exec = unit_value(&unit, "ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(&words[..2], ["/usr/bin/herald", "serve"]);
    let state = TempDir::new("unit-state");
    let mut args = Vec::new();
    let mut rest = words[2..].iter();
    while let Some(word) = rest.next() {
        match *word {
            "--listen" => {
                rest.next(); // the fixture listens on a free port
            }
            "--store" => {
                assert_eq!(rest.next(), Some(&"/var/lib/herald"));
                args.extend(["--store", state.str()]);
            }
            other => args.push(other),
        }
    }
    let mut hub = Hub::start_with_env(&args, &[("HERALD_JWT_KEY", KEY)]);
    let id = hub.publish_ok(&[("topic", "unit"), ("data", "up")]).await;
    assert!(!id.is_empty());
    assert!(state.path().join("herald.redb").exists());
    let started = Instant::now();
    hub.signal("TERM");
    let status = hub.wait_exit(Duration::from_secs(10)).expect("stopped");
    assert!(status.success(), "{status:?}");
    let stop = humantime::parse_duration(&unit_value(&unit, "TimeoutStopSec")).unwrap();
    assert!(
        started.elapsed() < stop,
        "stopped in {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Reverse proxies

/// A proxy process, killed when dropped.
struct Proxy {
    child: Child,
    base: String,
    _dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts connections on `port`. `Err` with the proxy's log when it
/// exited first (its free port was taken meanwhile by another test, most often).
fn wait_port(port: u16, child: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!(
                "the proxy exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the proxy did not listen on {port}");
}

/// Starts a proxy with `start` (on a fresh free port each time), three tries at most.
fn start_proxy(start: impl Fn() -> Result<Proxy, String>) -> Proxy {
    let mut errors = Vec::new();
    for _ in 0..3 {
        match start() {
            Ok(proxy) => return proxy,
            Err(error) => errors.push(error),
        }
    }
    panic!("the proxy did not start: {errors:#?}");
}

/// nginx (Debian's, /usr/sbin/nginx) with contrib/nginx/herald.conf, in front of `hub`.
fn nginx(hub: &Hub) -> Proxy {
    start_proxy(|| try_nginx(hub))
}

fn try_nginx(hub: &Hub) -> Result<Proxy, String> {
    let dir = TempDir::new("nginx");
    let port = free_port();
    let site = read("contrib/nginx/herald.conf");
    let site = replace(
        &site,
        "server 127.0.0.1:8088;",
        &format!("server {};", hub.addr),
    );
    let site = replace(&site, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    std::fs::write(dir.path().join("herald.conf"), site).unwrap();
    let prefix = dir.str();
    let config = format!(
        "daemon off;\nmaster_process off;\nerror_log {prefix}/error.log warn;\npid {prefix}/nginx.pid;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
         fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n\
         include {prefix}/herald.conf;\n}}\n"
    );
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.path().join("error.log");
    let mut child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx must be installed (/usr/sbin/nginx, Debian's nginx)");
    wait_port(port, &mut child, &log)?;
    Ok(Proxy {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    })
}

/// Caddy (Debian's) with contrib/caddy/Caddyfile, plain HTTP on a loopback port.
fn caddy(hub: &Hub) -> Proxy {
    start_proxy(|| try_caddy(hub))
}

fn try_caddy(hub: &Hub) -> Result<Proxy, String> {
    let dir = TempDir::new("caddy");
    let port = free_port();
    let site = read("contrib/caddy/Caddyfile");
    let site = replace(
        &site,
        "herald.example.com {",
        &format!("http://127.0.0.1:{port} {{"),
    );
    let site = replace(
        &site,
        "reverse_proxy 127.0.0.1:8088 {",
        &format!("reverse_proxy {} {{", hub.addr),
    );
    let config = format!(
        "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {}/data\n}}\n\n{site}",
        dir.str()
    );
    let config_path = dir.path().join("Caddyfile");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.path().join("caddy.log");
    let mut child = Command::new("caddy")
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("--adapter")
        .arg("caddyfile")
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("caddy must be installed (Debian's caddy; scripts/test installs it)");
    wait_port(port, &mut child, &log)?;
    Ok(Proxy {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    })
}

/// Subscribe through the proxy, publish through it, each event arrives at once; a resume with
/// `Last-Event-ID` (header, then query parameter) through it replays exactly what was missed.
async fn streams_through(proxy: &Proxy) {
    let base = &proxy.base;
    let mut stream = open_stream(&format!("{base}/.well-known/mercure?topic=deploy"), &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    // The hub's opening comment comes through at once: nothing holds the response back.
    assert!(
        stream.read_chunk(SOON).await,
        "no opening bytes through the proxy"
    );

    for n in 0..3 {
        let sent = Instant::now();
        let id = publish_via(base, "deploy", &format!("event {n}")).await;
        let event = stream
            .next_event_within(Duration::from_secs(2))
            .await
            .expect("the event did not come through the proxy");
        let took = sent.elapsed();
        assert_eq!(
            (event.id.as_str(), event.data.clone()),
            (id.as_str(), format!("event {n}"))
        );
        assert!(took < Duration::from_secs(1), "buffered: took {took:?}");
    }
    drop(stream);

    let first = publish_via(base, "deploy", "resume from here").await;
    let missed = [
        publish_via(base, "deploy", "missed 1").await,
        publish_via(base, "deploy", "missed 2").await,
    ];
    let url = format!("{base}/.well-known/mercure?topic=deploy");
    let mut resumed = open_stream(&url, &[("last-event-id", &first)]).await;
    let events = resumed.events(2).await;
    assert_eq!([events[0].id.clone(), events[1].id.clone()], missed);
    let mut resumed = open_stream(&format!("{url}&lastEventID={first}"), &[]).await;
    let events = resumed.events(2).await;
    assert_eq!([events[0].id.clone(), events[1].id.clone()], missed);
    assert_eq!(events[1].data, "missed 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_streams_and_resumes_with_the_shipped_config() {
    let dir = TempDir::new("behind-nginx");
    let hub = durable(&dir, &[]);
    let proxy = nginx(&hub);
    streams_through(&proxy).await;

    // The backup location is kept to loopback; from there, it goes through (with a token).
    let out = dir.path().join("via-nginx.redb");
    let base = proxy.base.clone();
    let out_text = out.to_str().unwrap().to_owned();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(&["backup", "--hub", &base, "--key", KEY, &out_text], &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("6 updates"), "{stdout}");
    // From any other address nginx refuses it before the hub sees it (127.0.0.2 stands for
    // "not the proxy's own machine").
    let outsider = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let refused = outsider
        .post(format!("{}/admin/backup", proxy.base))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // While subscribing from there goes through.
    let response = outsider
        .get(format!(
            "{}/.well-known/mercure?topic=deploy&lastEventID=earliest",
            proxy.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_streams_and_resumes_with_the_shipped_config() {
    let hub = Hub::start(&[]);
    let proxy = caddy(&hub);
    streams_through(&proxy).await;
    // The shipped Caddyfile keeps the backup endpoint off the public side.
    let response = client()
        .post(format!("{}/admin/backup", proxy.base))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[test]
fn the_proxy_configs_carry_what_event_streams_need() {
    let nginx = read("contrib/nginx/herald.conf");
    for line in [
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "proxy_read_timeout 1h;",
        "keepalive 32;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ] {
        assert!(nginx.contains(line), "nginx config lacks {line}");
    }
    let caddy = read("contrib/caddy/Caddyfile");
    assert!(caddy.contains("flush_interval -1"));
    assert!(caddy.contains("reverse_proxy 127.0.0.1:8088"));
}

// ---------------------------------------------------------------------------------------------
// Backup

/// Ids of every event a fresh subscriber replays from the oldest kept, until `last`.
async fn replay_until(hub: &Hub, last: &str) -> Vec<String> {
    let mut stream = hub
        .subscribe("/.well-known/mercure?topic=*&lastEventID=earliest", &[])
        .await;
    let mut ids = Vec::new();
    loop {
        let event = stream.next_event().await;
        let done = event.id == last;
        ids.push(event.id);
        if done {
            return ids;
        }
    }
}

/// A hub with history keeps publishing while `herald backup` runs; the snapshot, restored as a
/// second hub's store, replays the first hub's history up to the snapshot's point, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_into_a_second_hub_and_replays_in_order() {
    let dir = TempDir::new("backup-src");
    let hub = durable(&dir, &["--history-size", "100000"]);
    let payload = "x".repeat(512);
    // History first: 8 publishers, 600 updates.
    let mut fill = Vec::new();
    for p in 0..8 {
        let url = hub.url("/.well-known/mercure");
        let payload = payload.clone();
        fill.push(tokio::spawn(async move {
            let (client, bearer) = (client(), token(&["*"], &[]));
            let mut ids = Vec::new();
            for n in 0..75 {
                let response = client
                    .post(&url)
                    .bearer_auth(&bearer)
                    .form(&[
                        ("topic", format!("t{p}")),
                        ("data", format!("{n} {payload}")),
                    ])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                ids.push(response.text().await.unwrap());
            }
            ids
        }));
    }
    let mut before: HashSet<String> = HashSet::new();
    for task in fill {
        before.extend(task.await.unwrap());
    }
    // Publishing goes on during the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let during: Arc<Mutex<Vec<String>>> = Arc::default();
    let publisher = {
        let (url, stop, during) = (
            hub.url("/.well-known/mercure"),
            Arc::clone(&stop),
            Arc::clone(&during),
        );
        tokio::spawn(async move {
            let (client, bearer) = (client(), token(&["*"], &[]));
            while !stop.load(Ordering::Relaxed) {
                let response = client
                    .post(&url)
                    .bearer_auth(&bearer)
                    .form(&[("topic", "live"), ("data", "during the backup")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let id = response.text().await.unwrap();
                during.lock().unwrap().push(id);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let backups = TempDir::new("backups");
    let out = backups.path().join("herald-backup.redb");
    let admin = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["token", "--admin", "--key", KEY])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let published_at_start = during.lock().unwrap().len();
    let (hub_url, out_text) = (hub.url(""), out.to_str().unwrap().to_owned());
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(
            &["backup", "--hub", &hub_url, &out_text],
            &[("HERALD_ADMIN_TOKEN", admin.trim())],
        )
    })
    .await
    .unwrap();
    let published_at_end = during.lock().unwrap().len();
    eprintln!(
        "backup: {} publishes acknowledged while it ran; {}",
        published_at_end - published_at_start,
        stdout.trim()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        published_at_end > published_at_start,
        "publishing went on during the backup"
    );
    // "herald: wrote OUT: N bytes (…), R updates, newest event id ID"
    let records: usize = stdout
        .split(", ")
        .find_map(|part| part.strip_suffix(" updates"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no update count in {stdout:?}"));
    let newest = stdout.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(records >= before.len(), "{records} < {}", before.len());
    // Only OUT is left beside it (the partial file was renamed).
    let names: Vec<_> = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("herald-backup.redb")]);

    // The source hub's history, up to the snapshot's point.
    let original = replay_until(&hub, &newest).await;
    assert_eq!(original.len(), records);

    // A second hub on a copy: the snapshot as herald.redb.
    let restored_dir = TempDir::new("backup-dst");
    std::fs::copy(&out, restored_dir.path().join("herald.redb")).unwrap();
    let restored = durable(&restored_dir, &["--history-size", "100000"]);
    let mut stream = restored
        .subscribe("/.well-known/mercure?topic=*&lastEventID=earliest", &[])
        .await;
    let replayed: Vec<String> = stream
        .events(records)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        replayed, original,
        "the snapshot replays the source's history in order"
    );
    assert!(before.iter().all(|id| replayed.contains(id)));
    // Nothing after the snapshot's point; and the restored hub takes new updates.
    stream.expect_silence(Duration::from_millis(300)).await;
    let next = restored
        .publish_ok(&[("topic", "t0"), ("data", "after restore")])
        .await;
    assert_eq!(stream.next_event().await.id, next);
    assert!(!during.lock().unwrap().contains(&next));
}

#[tokio::test]
async fn backup_needs_an_admin_token_in_the_authorization_header() {
    let dir = TempDir::new("backup-auth");
    let hub = durable(&dir, &[]);
    let url = hub.url("/admin/backup");
    let (status, body) = problem(client().post(&url).send().await.unwrap()).await;
    assert_eq!(status, 401, "{body}");
    let publisher = token(&["*"], &["*"]);
    let (status, body) = problem(
        client()
            .post(&url)
            .bearer_auth(&publisher)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("--admin"),
        "{body}"
    );
    let foreign = mint_admin(b"another key", Algorithm::HS256, None).unwrap();
    let (status, _) = problem(
        client()
            .post(&url)
            .bearer_auth(&foreign)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = problem(
        client()
            .post(format!("{url}?authorization={}", admin_token()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = problem(client().get(&url).send().await.unwrap()).await;
    assert_eq!(status, 405);
    let expired = mint_admin(
        KEY.as_bytes(),
        Algorithm::HS256,
        Some(Duration::from_secs(1)),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _) = problem(
        client()
            .post(&url)
            .bearer_auth(&expired)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let response = client()
        .post(&url)
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.herald.redb"
    );
    let length = response.content_length().unwrap();
    assert_eq!(response.bytes().await.unwrap().len() as u64, length);
}

#[tokio::test]
async fn a_hub_without_a_history_file_says_what_to_do_instead() {
    let hub = Hub::start(&[]);
    let response = client()
        .post(hub.url("/admin/backup"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, 404);
    assert!(
        body["detail"].as_str().unwrap().contains("memory"),
        "{body}"
    );

    // The CLI says so in one line, exits 1 and leaves OUT as it was.
    let dir = TempDir::new("backup-refused");
    let out = dir.path().join("old.redb");
    std::fs::write(&out, "the previous backup").unwrap();
    let hub_url = hub.url("");
    let out_text = out.to_str().unwrap().to_owned();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(&["backup", "--hub", &hub_url, "--key", KEY, &out_text], &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("memory"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "the previous backup"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // A hub that is not there: one line, exit 1, nothing written.
    let down = format!("http://127.0.0.1:{}", free_port());
    let missing = dir.path().join("new.redb");
    let missing_text = missing.to_str().unwrap().to_owned();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(
            &["backup", "--hub", &down, "--key", KEY, &missing_text],
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(stderr.len() < 200, "{stderr}");
    assert!(!missing.exists());

    // Without a token or key: a usage error.
    let (code, _, stderr) = run_cli(&["backup", "--hub", &hub.url(""), "out.redb"], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("herald token --admin"), "{stderr}");
}

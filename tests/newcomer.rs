//! The first ten minutes (issue 18): commands printed by the banner, the `/` page and the README
//! work when pasted into bash; `--demo` keeps a development secret; `herald sub` fails and
//! retries like `herald pub`; listen addresses, flag typos, boolean environment values, logs,
//! `herald bench` output, and every documented metric present from start-up.

use std::time::Duration;

use crate::util::{Hub, KEY, TempDir, client, run_cli};

/// The metric names of the "Endpoints for operators" table of docs/OPERATIONS.md.
fn documented_metrics() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text
        .split("## Endpoints for operators")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let names: Vec<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `herald_"))
        .map(|rest| {
            let name = rest.split(['`', '{']).next().unwrap();
            format!("herald_{name}")
        })
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

#[tokio::test]
async fn every_documented_metric_is_described_and_present_at_start_up() {
    let hub = Hub::start(&[]);
    let text = client()
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in documented_metrics() {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP line for {name} in:\n{text}"
        );
        let sample = text.lines().any(|line| {
            !line.starts_with('#')
                && [name.clone(), format!("{name}_count")]
                    .iter()
                    .any(|family| {
                        line.strip_prefix(family.as_str())
                            .is_some_and(|rest| rest.starts_with([' ', '{']))
                    })
        });
        assert!(sample, "no value for {name} at start-up in:\n{text}");
    }
    // Every herald_* family that has samples is described.
    for line in text.lines().filter(|line| line.starts_with("herald_")) {
        let family = line.split([' ', '{']).next().unwrap();
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| family.strip_suffix(suffix))
            .filter(|base| text.contains(&format!("# HELP {base} ")))
            .unwrap_or(family);
        assert!(
            text.contains(&format!("# HELP {base} ")),
            "{family} has no HELP line"
        );
    }
}

#[test]
fn a_flag_typo_suggests_the_flag_and_the_subcommand_help() {
    let (code, _, stderr) = run_cli(&["serve", "--jwt-kye", "x"], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("did you mean `--jwt-key`?"), "{stderr}");
    assert!(stderr.contains("herald serve --help"), "{stderr}");
    let (code, _, stderr) = run_cli(&["sub", "--jsn", "a"], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("`--json`"), "{stderr}");
    assert!(stderr.contains("herald sub --help"), "{stderr}");
}

#[tokio::test]
async fn boolean_environment_values_take_the_usual_spellings() {
    for (value, anonymous) in [
        ("yes", true),
        ("on", true),
        ("1", true),
        ("no", false),
        ("off", false),
        ("0", false),
    ] {
        let hub = Hub::start_with_env(
            &["--store", "memory:", "--jwt-key", KEY],
            &[("HERALD_ANONYMOUS", value)],
        );
        let response = client()
            .get(hub.url("/.well-known/mercure?topic=a"))
            .send()
            .await
            .unwrap();
        let expected = if anonymous { 200 } else { 401 };
        assert_eq!(
            response.status().as_u16(),
            expected,
            "HERALD_ANONYMOUS={value}"
        );
    }
    let (code, _, stderr) = run_cli(
        &["serve", "--listen", "127.0.0.1:0", "--store", "memory:"],
        &[("HERALD_ANONYMOUS", "maybe")],
    );
    assert_eq!(code, 64, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("HERALD_ANONYMOUS=\"maybe\""), "{stderr}");
    assert!(stderr.contains("yes/no"), "{stderr}");
    assert!(!stderr.contains("--help"), "one hint, not two: {stderr}");
}

/// A hub whose stderr goes to a file (not a terminal), and whose stdout lines are all kept.
struct LoggedHub {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    log: std::path::PathBuf,
    banner: Vec<String>,
    _dir: TempDir,
}

impl LoggedHub {
    fn start(args: &[&str], env: &[(&str, &str)]) -> LoggedHub {
        use std::io::BufRead;
        let dir = TempDir::new("logged");
        let log = dir.path().join("stderr.log");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .arg("serve")
            .args(args)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().expect("a banner").unwrap();
        let addr = first
            .strip_prefix("herald listening on http://")
            .unwrap_or_else(|| panic!("{first}"))
            .parse()
            .unwrap();
        // The banner is a handful of lines; the rest of stdout is drained on a thread.
        let mut banner = vec![first];
        for line in lines.by_ref().map_while(Result::ok) {
            let last = line.trim_start().starts_with("publish:");
            banner.push(line);
            if last {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        LoggedHub {
            child,
            addr,
            log,
            banner,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for LoggedHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn refused_requests_are_logged_with_their_reason_rate_limited_and_without_colours() {
    let hub = LoggedHub::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory:",
            "--jwt-key",
            KEY,
        ],
        &[("HERALD_LOG", "info")],
    );
    let get = |path: &str| client().get(hub.url(path)).send();
    assert_eq!(
        get("/.well-known/mercure?topic=a").await.unwrap().status(),
        401
    );
    let forbidden = client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(crate::util::token(&["other"], &[]))
        .form(&[("topic", "a"), ("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A burst, at once: at most 10 lines a second, the rest counted and summed up later.
    let burst = (0..40).map(|_| get("/.well-known/mercure?topic=a"));
    for response in futures_util::future::join_all(burst).await {
        assert_eq!(response.unwrap().status(), 401);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get("/.well-known/mercure?topic=b").await.unwrap().status(),
        401
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = hub.log();
    assert!(!log.contains('\u{1b}'), "colours in a file:\n{log}");
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("request refused"))
        .collect();
    assert!(
        refused.iter().any(
            |line| line.contains("status=401") && line.contains("reason=\"a JWT is required\"")
        ),
        "{log}"
    );
    assert!(
        refused
            .iter()
            .any(|line| line.contains("status=403") && line.contains("mercure.publish")),
        "{log}"
    );
    let not_logged: u64 = log
        .lines()
        .filter_map(|line| line.split("not_logged=").nth(1))
        .map(|count| count.trim().parse::<u64>().unwrap())
        .sum();
    assert!(not_logged >= 1, "the burst was not limited:\n{log}");
    // Every refusal is either logged or counted.
    assert_eq!(refused.len() as u64 + not_logged, 43, "{log}");
}

#[test]
fn serve_help_documents_herald_log() {
    let (code, stdout, _) = run_cli(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("HERALD_LOG"), "{stdout}");
    assert!(stdout.contains("nats://"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Commands printed for pasting: run with bash, as printed.

/// `PATH` with the directory of the `herald` under test first, as after `cargo install`.
fn path_with_herald() -> String {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_herald"))
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

/// Runs `script` with `bash -c` (set -eu -o pipefail); returns (exit code, stdout, stderr).
fn bash(script: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = std::process::Command::new("bash");
    command
        .arg("-c")
        .arg(format!("set -eu -o pipefail\n{script}"))
        .stdin(std::process::Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A command left running (a `curl -N` subscriber): its stdout collected, killed when dropped.
struct Background {
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Background {
    /// `exec SCRIPT`: the command replaces bash, so killing it ends the command itself.
    fn start(script: &str, env: &[(&str, &str)]) -> Background {
        Background::start_in(&format!("exec {script}"), env, None)
    }

    /// Runs `script` as is (its last command should `exec`), in `cwd`.
    fn start_in(script: &str, env: &[(&str, &str)], cwd: Option<&std::path::Path>) -> Background {
        use std::io::Read;
        let mut command = std::process::Command::new("bash");
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        command
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Background { child, output }
    }

    /// Waits until the output contains `needle`, at most 5 s.
    async fn wait_for(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + crate::util::SOON;
        while std::time::Instant::now() < deadline {
            if self.output.lock().unwrap().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `label:` commands of a banner, in order.
fn banner_commands(banner: &[String]) -> Vec<(String, String)> {
    banner
        .iter()
        .filter_map(|line| {
            let (label, command) = line.trim_start().split_once(':')?;
            matches!(label, "subscribe" | "private" | "publish")
                .then(|| (label.to_owned(), command.trim().to_owned()))
        })
        .collect()
}

fn command<'a>(commands: &'a [(String, String)], label: &str) -> &'a str {
    &commands
        .iter()
        .find(|(name, _)| name == label)
        .unwrap_or_else(|| panic!("no {label} command in {commands:?}"))
        .1
}

#[tokio::test]
async fn the_banner_commands_work_when_pasted_with_the_key_given_as_a_flag() {
    // The issue's case: `--jwt-key` on the command line (so no HERALD_JWT_KEY in any shell).
    for anonymous in [true, false] {
        let mut args = vec!["--jwt-key", KEY, "--store", "memory:"];
        if anonymous {
            args.push("--anonymous");
        }
        let hub = Hub::start_raw(&args);
        let banner = hub.banner.join("\n");
        assert!(
            !banner.contains(KEY),
            "the banner prints the key:\n{banner}"
        );
        assert!(
            banner.contains("export HERALD_KEY=<your --jwt-key>"),
            "{banner}"
        );
        let commands = banner_commands(&hub.banner);
        // What the `keys:` line asks for, and nothing else: not even herald on the PATH.
        let env = [("HERALD_KEY", KEY)];
        let subscriber = Background::start(command(&commands, "subscribe"), &env);
        hub.wait_subscriptions(1).await;
        let (code, stdout, stderr) = bash(command(&commands, "publish"), &env);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.starts_with("urn:uuid:"), "{stdout}");
        assert!(
            subscriber.wait_for("data: hello").await,
            "anonymous {anonymous}: {}\n{banner}",
            subscriber.output()
        );
    }
}

#[tokio::test]
async fn demo_keeps_a_development_secret_and_prints_a_subscriber_token() {
    let dir = TempDir::new("demo-secret");
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let hub = Hub::start_raw(&["--demo", "--store", data_arg]);
    let banner = hub.banner.join("\n");
    let file = data.join("dev-secret");
    assert!(banner.contains(&file.display().to_string()), "{banner}");
    let secret = std::fs::read_to_string(&file).unwrap();
    assert!(secret.trim().len() >= 32, "{secret}");
    assert!(
        !banner.contains(secret.trim()),
        "the banner prints the secret"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    let commands = banner_commands(&hub.banner);
    let public = Background::start(command(&commands, "subscribe"), &[]);
    let private = Background::start(command(&commands, "private"), &[]);
    hub.wait_subscriptions(2).await;
    let (code, stdout, stderr) = bash(command(&commands, "publish"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("urn:uuid:"), "{stdout}");
    assert!(public.wait_for("data: hello").await, "{}", public.output());
    assert!(
        private.wait_for("data: hello").await,
        "{}",
        private.output()
    );
    // The printed subscriber token receives private updates; the anonymous one does not.
    let private_publish = format!(
        "{} -d private=on",
        command(&commands, "publish").replace("data=hello", "data=secret-news")
    );
    let (code, _, stderr) = bash(&private_publish, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        private.wait_for("data: secret-news").await,
        "{}",
        private.output()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !public.output().contains("secret-news"),
        "{}",
        public.output()
    );
    let old_publish = command(&commands, "publish").to_owned();
    let old_addr = hub.addr.to_string();
    drop((public, private, hub));

    // A restart keeps the secret: the tokens printed before still work.
    let hub = Hub::start_raw(&["--demo", "--store", data_arg]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), secret);
    let again = banner_commands(&hub.banner);
    assert_eq!(
        command(&again, "publish").replace(&hub.addr.to_string(), "ADDR"),
        old_publish.replace(&old_addr, "ADDR")
    );
    let (code, _, stderr) = bash(&old_publish.replace(&old_addr, &hub.addr.to_string()), &[]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn no_development_secret_is_written_without_demo_or_without_a_directory() {
    let dir = TempDir::new("no-secret");
    let data = dir.path().join("data");
    let hub = Hub::start_raw(&["--store", data.to_str().unwrap()]);
    assert!(
        hub.banner
            .join("\n")
            .contains("random HS256 secret for this run")
    );
    assert!(data.join("herald.redb").exists());
    assert!(!data.join("dev-secret").exists());
    drop(hub);
    let hub = Hub::start_in(&["--demo", "--store", "memory:"], &[], Some(dir.path()));
    let banner = hub.banner.join("\n");
    assert!(
        banner.contains("random HS256 secret for this run"),
        "{banner}"
    );
    assert!(banner.contains("private:"), "{banner}");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

/// The text of `<code id="ID">` in `html`, unescaped.
fn code_block(html: &str, id: &str) -> String {
    let start = html.find(&format!("<code id=\"{id}\">")).unwrap();
    let text = &html[start..];
    let text = &text[text.find('>').unwrap() + 1..text.find("</code>").unwrap()];
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn the_index_page_commands_work_when_pasted() {
    let hub = Hub::start(&[]);
    let html = client()
        .get(hub.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // What the page's script does to its code samples.
    let origin = format!("http://{}", hub.addr);
    let subscribe = code_block(&html, "quick-start").replace("http://HOST", &origin);
    let publish = code_block(&html, "quick-publish").replace("http://HOST", &origin);
    let path = path_with_herald();
    let env = [("HERALD_KEY", KEY), ("PATH", path.as_str())];
    let subscriber = Background::start(&subscribe, &env);
    hub.wait_subscriptions(1).await;
    let (code, stdout, stderr) = bash(&publish, &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("urn:uuid:"), "{stdout}");
    assert!(
        subscriber.wait_for("data: hello").await,
        "{}",
        subscriber.output()
    );
}

#[tokio::test]
async fn listen_takes_the_forms_people_type_and_the_banner_says_what_was_bound() {
    // `:PORT` binds every interface: the first line says so, the next one where to connect.
    let hub = LoggedHub::start(
        &["--listen", ":0", "--store", "memory:", "--anonymous"],
        &[],
    );
    assert!(hub.addr.ip().is_unspecified(), "{}", hub.addr);
    let port = hub.addr.port();
    let reachable = format!("http://127.0.0.1:{port}");
    let banner = hub.banner.join("\n");
    assert!(
        banner.contains(&format!("  reachable: {reachable} (this machine)")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("curl -N '{reachable}/.well-known/mercure")),
        "{banner}"
    );
    let health = client()
        .get(format!("{reachable}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    drop(hub);
    // A bare port and `localhost:PORT` are loopback.
    for form in ["0", "localhost:0"] {
        let hub = LoggedHub::start(&["--listen", form, "--store", "memory:"], &[]);
        assert_eq!(hub.addr.ip().to_string(), "127.0.0.1", "{form}");
        assert!(!hub.banner.join("\n").contains("reachable:"), "{form}");
        let health = client().get(hub.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200, "{form}");
    }
    let (code, _, stderr) = run_cli(&["serve", "--listen", "localhost"], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("--listen") && stderr.contains(":PORT"),
        "{stderr}"
    );
}

/// The ```sh blocks of a README section, each as its lines (continuations joined, comments and
/// blank lines dropped).
fn sh_blocks(section: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(start) = rest.find("```sh\n") {
        let body = &rest[start + 6..];
        let end = body.find("```").unwrap();
        let mut lines = Vec::new();
        let mut pending = String::new();
        for line in body[..end].lines() {
            let line = line.trim_end();
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            pending.push_str(line);
            let joined = std::mem::take(&mut pending);
            let code = joined.trim();
            if !code.is_empty() && !code.starts_with('#') {
                lines.push(code.to_owned());
            }
        }
        blocks.push(lines);
        rest = &body[end + 3..];
    }
    blocks
}

#[tokio::test]
async fn the_readme_tour_works_when_pasted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // `cargo install --path .` is the README's first step: the test puts the binary under test
    // on the PATH instead.
    assert!(
        readme.contains("cargo install --path ."),
        "README: no cargo install"
    );
    let rust_version = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = \""))
        .map(|version| version.trim_end_matches('"').to_owned())
        .unwrap();
    assert!(
        readme.contains(&format!("{rust_version} or later")),
        "README: no minimum Rust"
    );
    let tour = readme
        .split("## A one-minute tour")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let blocks = sh_blocks(tour);
    assert!(blocks.len() >= 4, "{blocks:?}");
    let dir = TempDir::new("tour");
    let path = path_with_herald();
    let env = [("PATH", path.as_str())];
    let mut hub: Option<(Background, String)> = None;
    let mut subscribers = Vec::new();
    let mut scripts = 0;
    let mut delivered = false;
    for block in &blocks {
        let script = block.join("\n");
        if let [only] = block.as_slice()
            && only.starts_with("herald serve")
        {
            // A later `herald serve` replaces the first (stopped as with Ctrl-C: it holds the
            // store), once what was published through it has arrived.
            if let Some((previous, _)) = hub.take() {
                check_tour_deliveries(&subscribers).await;
                delivered = true;
                subscribers.clear();
                drop(previous);
            }
            // Started as printed, on a random port and in an empty directory.
            let started = Background::start_in(
                &format!("exec {only} --listen 127.0.0.1:0"),
                &env,
                Some(dir.path()),
            );
            assert!(
                started.wait_for("  publish:").await,
                "{only}: {}",
                started.output()
            );
            let first = started.output().lines().next().unwrap().to_owned();
            let addr = first
                .strip_prefix("herald listening on http://")
                .unwrap()
                .to_owned();
            hub = Some((started, addr));
            continue;
        }
        let addr = &hub.as_ref().expect("a hub first").1;
        let script = script.replace("127.0.0.1:8088", addr);
        if script.starts_with("curl -N") {
            let subscriber = Background::start(&script, &env);
            subscribers.push(subscriber);
            // Wait for the subscription before publishing.
            let deadline = std::time::Instant::now() + crate::util::SOON;
            loop {
                let text = client()
                    .get(format!("http://{addr}/metrics"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                if text
                    .lines()
                    .any(|line| line == format!("herald_subscriptions {}", subscribers.len()))
                {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{script}: never subscribed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        }
        let (code, _, stderr) = bash(&script, &env);
        assert_eq!(code, 0, "{script}\n{stderr}");
        scripts += 1;
    }
    assert!(scripts >= 1);
    assert!(delivered, "no subscriber was checked");
    let (last, addr) = hub.unwrap();
    // The CORS variant answers a browser of the origin it names.
    let response = client()
        .get(format!("http://{addr}/.well-known/mercure?topic=demo"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|value| value.to_str().unwrap().to_owned()),
        Some("http://localhost:3000".to_owned()),
        "{}",
        last.output()
    );
}

/// The tour's subscriber printed both updates of the tour.
async fn check_tour_deliveries(subscribers: &[Background]) {
    let subscriber = subscribers.first().expect("a subscriber");
    assert!(
        subscriber.wait_for("data: hello").await,
        "{}",
        subscriber.output()
    );
    assert!(
        subscriber.wait_for(r#"data: {"count":1}"#).await,
        "{}",
        subscriber.output()
    );
}

// ---------------------------------------------------------------------------------------------
// herald sub, like herald pub

#[test]
fn sub_against_a_hub_that_is_down_retries_with_backoff_in_short_lines_then_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hub = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let (code, out, stderr) = run_cli(&["sub", "t", "--hub", &hub, "--timeout", "3s"], &[]);
    assert_eq!((code, out.as_str()), (1, ""), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(6));
    let lines: Vec<&str> = stderr.lines().collect();
    let retries = lines
        .iter()
        .filter(|line| line.contains("reconnecting"))
        .count();
    // Backoff: a handful of attempts in 3 s, not a busy loop.
    assert!((1..=6).contains(&retries), "{stderr}");
    for line in &lines {
        assert!(line.chars().count() < 160, "{} chars: {line}", line.len());
    }
    assert!(
        lines
            .last()
            .unwrap()
            .contains("never accepted a connection"),
        "{stderr}"
    );
}

#[test]
fn sub_stops_at_once_on_404_and_400() {
    let hub = Hub::start(&["--max-topic-length", "5"]);
    for (args, status, mention) in [
        (
            vec!["sub", "t", "--hub", &hub.url("/no/such/hub")],
            "404",
            "--hub",
        ),
        (
            vec!["sub", "much-too-long", "--hub", &hub.url("")],
            "400",
            "topic",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--timeout", "20s"]);
        let started = std::time::Instant::now();
        let (code, _, stderr) = run_cli(&args, &[]);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} was retried"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(status) && stderr.contains(mention),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn sub_takes_a_token_or_a_key_like_pub_and_hints_at_both_on_401() {
    let hub = Hub::start_raw(&["--jwt-key", KEY, "--store", "memory:"]);
    let base = hub.url("");
    let (code, _, stderr) = run_cli(&["sub", "t", "--hub", &base, "--timeout", "10s"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("--token") && stderr.contains("--key"),
        "{stderr}"
    );
    let (code, _, stderr) = run_cli(
        &[
            "sub",
            "t",
            "--hub",
            &base,
            "--key",
            "wrong",
            "--timeout",
            "10s",
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--token") && stderr.contains("--key"),
        "{stderr}"
    );

    let subscriber_token = crate::util::token(&[], &["t"]);
    let publisher_token = crate::util::token(&["*"], &[]);
    for (label, args, env) in [
        ("--key", vec!["--key", KEY], vec![]),
        ("HERALD_KEY", vec![], vec![("HERALD_KEY", KEY)]),
        (
            "HERALD_TOKEN",
            vec![],
            vec![("HERALD_TOKEN", subscriber_token.as_str())],
        ),
        (
            "HERALD_SUBSCRIBER_TOKEN",
            vec![],
            vec![("HERALD_SUBSCRIBER_TOKEN", subscriber_token.as_str())],
        ),
        (
            // A publisher token in HERALD_TOKEN, the subscriber's in the specific variable.
            "both variables",
            vec![],
            vec![
                ("HERALD_TOKEN", publisher_token.as_str()),
                ("HERALD_SUBSCRIBER_TOKEN", subscriber_token.as_str()),
            ],
        ),
    ] {
        let mut full = vec![
            "sub",
            "t",
            "--hub",
            &base,
            "--count",
            "1",
            "--timeout",
            "10s",
        ];
        full.extend(args);
        let env = env.clone();
        let child = std::thread::spawn({
            let full: Vec<String> = full.iter().map(|arg| (*arg).to_owned()).collect();
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect();
            move || {
                let full: Vec<&str> = full.iter().map(String::as_str).collect();
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                run_cli(&full, &env)
            }
        });
        hub.wait_subscriptions(1).await;
        // A private update: only a token whose subscribe claim covers `t` receives it.
        hub.publish_ok(&[("topic", "t"), ("data", label), ("private", "on")])
            .await;
        let (code, out, stderr) = child.join().unwrap();
        assert_eq!(code, 0, "{label}: {stderr}");
        assert!(out.contains(label), "{label}: {out}");
        hub.wait_subscriptions(0).await;
    }
}

// ---------------------------------------------------------------------------------------------
// herald bench

#[test]
fn bench_output_is_consistent_and_its_help_says_where_topics_go() {
    let hub = Hub::start(&[]);
    let (code, out, stderr) = run_cli(
        &[
            "bench",
            "--subscribers",
            "3",
            "--topics",
            "1",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--topic-prefix",
            "bench-check",
            "--key",
            KEY,
        ],
        &[("HERALD_HUB", &hub.url(""))],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains("3 subscribers on 1 topic of"), "{out}");
    assert!(!out.contains("1 topics"), "{out}");
    let latency = out
        .lines()
        .find(|line| line.trim_start().starts_with("latency"))
        .unwrap();
    let value = |name: &str| -> f64 {
        latency
            .split(&format!("{name} "))
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let (p50, p90, p99, max) = (value("p50"), value("p90"), value("p99"), value("max"));
    assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "{latency}");

    let (code, help, _) = run_cli(&["bench", "--help"], &[]);
    assert_eq!(code, 0);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("/topics"), "{help}");
    assert!(help.contains("history"), "{help}");
    assert!(help.contains("--topic-prefix"), "{help}");
}

#[tokio::test]
async fn the_readme_cli_examples_work_when_pasted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## CLI and client")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let lines = sh_blocks(section).into_iter().next().unwrap();
    let key = lines[0]
        .strip_prefix("export HERALD_KEY=")
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the block starts by exporting the key");
    let hub = Hub::start_raw(&["--jwt-key", key, "--anonymous", "--store", "memory:"]);
    let base = hub.url("");
    let path = path_with_herald();
    // The examples talk to the default hub; HERALD_HUB points them at this one.
    let env = [("PATH", path.as_str()), ("HERALD_HUB", base.as_str())];
    let export = &lines[0];
    let with_key = |line: &str| format!("{export}\n{line}");

    let publishes: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("herald pub"))
        .collect();
    assert_eq!(publishes.len(), 2, "{lines:?}");
    for line in &publishes {
        let (code, stdout, stderr) = bash(&with_key(line), &env);
        assert_eq!(code, 0, "{line}\n{stderr}");
        assert!(!stdout.trim().is_empty(), "{line}: no id");
    }
    let subs: Vec<&String> = lines
        .iter()
        .filter(|line| line.starts_with("herald sub"))
        .collect();
    assert_eq!(subs.len(), 2, "{lines:?}");
    // `--count 10`: it exits 0 after ten updates.
    let counted = {
        let script = with_key(subs[0]);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        std::thread::spawn(move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            bash(&script, &env)
        })
    };
    hub.wait_subscriptions(1).await;
    // The second replays history from the start, and follows.
    let templated = Background::start_in(&format!("{export}\nexec {}", subs[1]), &env, None);
    hub.wait_subscriptions(2).await;
    for n in 0..10 {
        hub_publish(&base, key, &[("topic", "news"), ("data", &format!("n{n}"))]).await;
    }
    hub_publish(&base, key, &[("topic", "books/1"), ("data", "a book")]).await;
    let (code, stdout, stderr) = counted.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 10, "{stdout}");
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["topic"], "news", "{line}");
    }
    assert!(templated.wait_for("a book").await, "{}", templated.output());
    // The bench line is a 10,000-subscriber load test: `herald bench` runs in client.rs and
    // above, at a size this suite can afford.
    assert!(lines.iter().any(|line| line.starts_with("herald bench")));
}

/// Publishes with a token minted from `key`; asserts 200.
async fn hub_publish(base: &str, key: &str, form: &[(&str, &str)]) {
    let token = herald::auth::mint_hmac(
        key.as_bytes(),
        herald::auth::Algorithm::HS256,
        &herald::auth::MintClaims {
            publish: vec!["*".into()],
            subscribe: vec![],
            payload: None,
            ttl: None,
        },
    )
    .unwrap();
    let response = client()
        .post(format!("{base}/.well-known/mercure"))
        .bearer_auth(token)
        .body(crate::util::encode_form(form))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The README's "Mercure 1.0 clients" section, pasted block by block: a hub that trusts an
/// issuer, a URL-Pattern subscriber, and a publish with a minted 1.0 access token.
#[tokio::test]
async fn the_readme_mercure_1_0_section_works_when_pasted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Mercure 1.0 clients")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let blocks = sh_blocks(section);
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    let path = path_with_herald();
    let env = [("PATH", path.as_str())];
    let [serve] = blocks[0].as_slice() else {
        panic!("the first block starts the hub: {:?}", blocks[0]);
    };
    assert!(serve.starts_with("herald serve"), "{serve}");
    let dir = TempDir::new("tour-1.0");
    let hub = Background::start_in(
        &format!("exec {serve} --listen 127.0.0.1:0"),
        &env,
        Some(dir.path()),
    );
    assert!(hub.wait_for("  publish:").await, "{}", hub.output());
    let first = hub.output().lines().next().unwrap().to_owned();
    let addr = first
        .strip_prefix("herald listening on http://")
        .unwrap()
        .to_owned();
    let subscribe = blocks[1].join("\n").replace("127.0.0.1:8088", &addr);
    assert!(subscribe.starts_with("curl -N"), "{subscribe}");
    let subscriber = Background::start(&subscribe, &env);
    let deadline = std::time::Instant::now() + crate::util::SOON;
    loop {
        let text = client()
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.lines().any(|line| line == "herald_subscriptions 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let publish = blocks[2].join("\n").replace("127.0.0.1:8088", &addr);
    let (code, out, stderr) = bash(&publish, &env);
    assert_eq!(code, 0, "{publish}\n{stderr}");
    assert!(out.starts_with("urn:uuid:"), "the hub answered {out}");
    assert!(
        subscriber.wait_for("data: hi").await,
        "{}",
        subscriber.output()
    );
}

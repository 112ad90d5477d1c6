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
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        LoggedHub {
            child,
            addr,
            log,
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

//! The first ten minutes (issue 18): commands printed by the banner, the `/` page and the README
//! work when pasted into bash; `--demo` keeps a development secret; `herald sub` fails and
//! retries like `herald pub`; listen addresses, flag typos, boolean environment values, logs,
//! `herald bench` output, and every documented metric present from start-up.

use std::time::Duration;

use crate::util::{Hub, KEY, client, run_cli};

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

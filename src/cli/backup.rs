//! `herald backup --hub URL OUT`: an online backup of a running hub's redb store.
//!
//! The hub takes the snapshot (`POST /admin/backup`: it holds the store's lock) and streams it;
//! this command writes it to `OUT.partial-<pid>` beside OUT, syncs it, checks that it opens as a
//! herald store of the schema this build reads, and only then renames it over OUT. So OUT is
//! either the previous file or a complete snapshot, never half of one. Restoring is copying OUT
//! to `STORE/herald.redb` while no hub runs on STORE (docs/DEPLOY.md).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;

use crate::auth::{Algorithm, mint_admin};
use crate::http::backup as endpoint;
use crate::store::redb::inspect;

use super::publish::{DEFAULT_HUB, runtime};
use super::{root_cause, usage};

/// `herald backup` options.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the snapshot (a redb file; restore it as STORE/herald.redb)
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// The hub: its base URL (or its /.well-known/mercure URL)
    #[arg(long, env = "HERALD_HUB", default_value = DEFAULT_HUB)]
    pub hub: String,
    /// An admin token: a JWT with {"herald": {"admin": true}} signed with the hub's publisher
    /// key (`herald token --admin`; wins over --key)
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The hub's HMAC publisher secret (its --jwt-key): an admin token is minted for this run
    #[arg(long, env = "HERALD_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// Takes the backup. Exit 0 when OUT holds a checked snapshot, 1 when the hub refuses or the
/// transfer fails (OUT untouched), 64 for bad usage.
pub(super) fn run(args: &BackupArgs) -> anyhow::Result<()> {
    let token = match (&args.token, &args.key) {
        (Some(token), _) if !token.is_empty() => token.clone(),
        (_, Some(key)) if !key.is_empty() => mint_admin(
            key.as_bytes(),
            Algorithm::HS256,
            Some(Duration::from_secs(3600)),
        )
        .map_err(|error| usage(format!("cannot mint a token from --key: {error}")))?,
        _ => {
            return Err(usage(
                "an admin token is needed: give --token (herald token --admin) or --key, or set HERALD_ADMIN_TOKEN or HERALD_KEY",
            ));
        }
    };
    let url = backup_url(&args.hub);
    let report = runtime()?
        .block_on(fetch(&url, &token, &args.out))
        .context("backup failed")?;
    println!("{report}");
    Ok(())
}

/// `{hub}/admin/backup`, from a base URL or the hub's `/.well-known/mercure` URL.
fn backup_url(hub: &str) -> String {
    let base = hub.trim_end_matches('/');
    let base = base
        .strip_suffix(crate::http::router::MERCURE_PATH)
        .unwrap_or(base);
    format!("{base}{}", endpoint::PATH)
}

/// The temporary file beside `out`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(format!(".partial-{}", std::process::id()));
    PathBuf::from(name)
}

async fn fetch(url: &str, token: &str, out: &Path) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| anyhow!("cannot build the HTTP client: {error}"))?;
    let mut response = client
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|error| anyhow!("cannot reach {url}: {}", root_cause(&error)))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
            .unwrap_or(body);
        let hint = match status.as_u16() {
            401 | 403 => " (an admin token: herald token --admin --key <publisher key>)",
            _ => "",
        };
        bail!("{url} answered {status}: {detail}{hint}");
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let expected = response.content_length();
    let last_id = header(endpoint::LAST_EVENT_ID_HEADER);

    let partial = partial_path(out);
    let result = async {
        let mut file = std::fs::File::create(&partial)
            .map_err(|error| anyhow!("cannot create {}: {error}", partial.display()))?;
        let progress = std::io::stderr().is_terminal();
        let mut received: u64 = 0;
        let mut shown = Instant::now();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| anyhow!("the transfer broke off: {}", root_cause(&error)))?
        {
            file.write_all(&chunk)
                .map_err(|error| anyhow!("cannot write {}: {error}", partial.display()))?;
            received += chunk.len() as u64;
            if progress && shown.elapsed() >= Duration::from_millis(500) {
                shown = Instant::now();
                eprint!(
                    "\rherald: received {} of {}",
                    mib(received),
                    mib(expected.unwrap_or(0))
                );
            }
        }
        if progress {
            eprintln!();
        }
        if let Some(expected) = expected
            && received != expected
        {
            bail!("the transfer broke off after {received} of {expected} bytes");
        }
        file.sync_all()
            .map_err(|error| anyhow!("cannot sync {}: {error}", partial.display()))?;
        drop(file);
        let summary =
            inspect(&partial).map_err(|error| anyhow!("the snapshot is unusable: {error}"))?;
        std::fs::rename(&partial, out)
            .map_err(|error| anyhow!("cannot move the snapshot to {}: {error}", out.display()))?;
        // The rename itself is durable once the directory is synced.
        if let Some(dir) = out.parent().filter(|dir| !dir.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
        anyhow::Ok((received, summary))
    }
    .await;
    let (bytes, summary) = match result {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    Ok(format!(
        "herald: wrote {}: {bytes} bytes ({}), {} updates, newest event id {}",
        out.display(),
        mib(bytes),
        summary.records,
        summary
            .newest_id
            .or(last_id)
            .unwrap_or_else(|| "(none: history is empty)".into())
    ))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_backup_url_comes_from_a_base_or_the_hub_url() {
        assert_eq!(backup_url("http://h:1"), "http://h:1/admin/backup");
        assert_eq!(backup_url("http://h:1/"), "http://h:1/admin/backup");
        assert_eq!(
            backup_url("https://h/.well-known/mercure"),
            "https://h/admin/backup"
        );
    }

    #[test]
    fn the_partial_file_sits_beside_the_output() {
        let partial = partial_path(Path::new("/var/backups/herald.redb"));
        assert_eq!(partial.parent(), Some(Path::new("/var/backups")));
        assert!(partial.to_string_lossy().contains("herald.redb.partial-"));
    }
}

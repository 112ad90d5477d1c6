//! `herald pub`: publish one update from the command line and print its id.
//!
//! Also home of what the client subcommands share: the `--hub` default, publisher
//! authentication (`--token` or `--key`), and a small runtime. The HTTP itself is
//! `herald-client`'s [`Publisher`]; nothing here touches the hub's internals.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use herald_client::{PublishOptions, Publisher};

use crate::auth::{Algorithm, MintClaims, mint_hmac};

use super::usage;

/// Where the client subcommands look for the hub unless told otherwise (`herald bench`'s own
/// crate keeps the same).
pub(super) const DEFAULT_HUB: &str = herald_bench::DEFAULT_HUB;

/// How a publisher proves it may publish: a ready token, or the hub's key to mint one.
#[derive(Debug, Clone, Args)]
pub struct PublisherAuth {
    /// A JWT whose mercure.publish claim covers the topics (wins over --key)
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The hub's HMAC secret (its --jwt-key): a HS256 token is minted for this run
    #[arg(long, env = "HERALD_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

impl PublisherAuth {
    /// The token to send: `--token` as given, or one minted from `--key` with these claims.
    pub fn resolve(&self, publish: &[&str], subscribe: &[&str]) -> Result<Option<String>, String> {
        if let Some(token) = self.token.as_deref().filter(|token| !token.is_empty()) {
            return Ok(Some(token.to_owned()));
        }
        let Some(key) = self.key.as_deref().filter(|key| !key.is_empty()) else {
            return Ok(None);
        };
        mint_for_run(key, publish, subscribe)
            .map(Some)
            .map_err(|error| format!("cannot mint a token from --key: {error}"))
    }
}

/// A HS256 token for one run of a client subcommand, valid for a day: `herald pub`, `sub`, and
/// `herald bench` (its [`herald_bench::Mint`]).
pub(super) fn mint_for_run(
    key: &str,
    publish: &[&str],
    subscribe: &[&str],
) -> Result<String, String> {
    let claims = MintClaims {
        publish: publish.iter().map(|s| (*s).to_owned()).collect(),
        subscribe: subscribe.iter().map(|s| (*s).to_owned()).collect(),
        payload: None,
        ttl: Some(Duration::from_secs(24 * 3600)),
    };
    mint_hmac(key.as_bytes(), Algorithm::HS256, &claims).map_err(|error| error.to_string())
}

/// `herald pub` options.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// The update's topics (the first is its canonical topic)
    #[arg(required = true, value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// The hub: its base URL, or the full hub URL
    #[arg(long, env = "HERALD_HUB", default_value = DEFAULT_HUB)]
    pub hub: String,
    /// The data [default: read from stdin]
    #[arg(long, value_name = "DATA", conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Read the data from this file (one trailing line ending is dropped)
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// The update's id [default: chosen by the hub]
    #[arg(long)]
    pub id: Option<String>,
    /// The SSE event type [default: message]
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Reconnection time for subscribers: milliseconds, or a duration like `5s`
    #[arg(long, value_name = "MS")]
    pub retry: Option<String>,
    /// Only subscribers allowed by their token receive it
    #[arg(long)]
    pub private: bool,
    #[command(flatten)]
    pub auth: PublisherAuth,
}

/// Publishes and prints the id. Exit 0 on success, 1 when the hub refuses or cannot be
/// reached, 64 for bad usage.
pub(super) fn run(args: &PubArgs) -> anyhow::Result<()> {
    let retry = args
        .retry
        .as_deref()
        .map(parse_millis)
        .transpose()
        .map_err(|error| usage(format!("invalid --retry: {error}")))?;
    let data = read_data(args)?;
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    let token = args.auth.resolve(&["*"], &[]).map_err(usage)?;
    let mut publisher = Publisher::new(&args.hub).map_err(usage)?;
    if let Some(token) = token {
        publisher = publisher.with_token(token);
    }
    let mut options = PublishOptions::new().private(args.private);
    options.id = args.id.clone();
    options.event_type = args.event_type.clone();
    options.retry = retry;
    let id = runtime()?
        .block_on(publisher.publish(&topics, &data, &options))
        .map_err(|error| {
            let hint = match error.status() {
                Some(401) if args.auth.token.is_none() && args.auth.key.is_none() => {
                    " (give --token or --key, or set HERALD_TOKEN or HERALD_KEY)"
                }
                _ => "",
            };
            anyhow!("publish failed: {error}{hint}")
        })?;
    println!("{id}");
    Ok(())
}

/// `--data`, else `--data-file`, else stdin; one trailing line ending dropped from the last two.
fn read_data(args: &PubArgs) -> anyhow::Result<String> {
    if let Some(data) = &args.data {
        return Ok(data.clone());
    }
    let mut text = match &args.data_file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read_to_string(path).map_err(|error| {
                usage(format!(
                    "cannot read --data-file {}: {error}",
                    path.display()
                ))
            })?
        }
        _ => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("herald: reading the data from stdin (end with Ctrl-D)");
            }
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|error| usage(format!("cannot read the data from stdin: {error}")))?;
            text
        }
    };
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Milliseconds (`5000`) or a human duration (`5s`).
pub(super) fn parse_millis(text: &str) -> Result<Duration, humantime::DurationError> {
    match text.parse::<u64>() {
        Ok(millis) => Ok(Duration::from_millis(millis)),
        Err(_) => humantime::parse_duration(text),
    }
}

/// A runtime for one client command.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| anyhow!("cannot start the runtime: {error}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn retry_takes_milliseconds_or_a_duration() {
        assert_eq!(parse_millis("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_millis("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_millis("soon").is_err());
    }

    #[test]
    fn a_token_wins_over_a_key_and_a_key_mints_one() {
        let auth = PublisherAuth {
            token: Some("given".into()),
            key: Some("secret".into()),
        };
        assert_eq!(auth.resolve(&["*"], &[]).unwrap().as_deref(), Some("given"));
        let auth = PublisherAuth {
            token: None,
            key: Some("secret".into()),
        };
        let token = auth.resolve(&["*"], &[]).unwrap().unwrap();
        assert_eq!(token.split('.').count(), 3);
        let none = PublisherAuth {
            token: None,
            key: None,
        };
        assert_eq!(none.resolve(&["*"], &[]).unwrap(), None);
    }
}

//! `herald sub`: subscribe and print events, readable or as JSON lines, surviving hub restarts.
//!
//! Built on `herald-client`'s [`Subscriber`]: reconnection, backoff and `Last-Event-ID` are
//! the client's job; this file only turns flags into a builder and events into lines.

use std::io::Write;

use anyhow::{anyhow, bail};
use clap::Args;
use futures_util::StreamExt;
use herald_client::{ClientError, Event, Subscriber};
use serde::Serialize;

use super::publish::{DEFAULT_HUB, PublisherAuth, runtime};
use super::{root_cause, usage};

/// Longest line printed about a reconnection.
const MAX_RETRY_LINE: usize = 159;

/// `herald sub` options.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Topic selectors: exact topics, `*`, or URI templates (Mercure 0.x)
    #[arg(value_name = "TOPIC", required_unless_present_any = ["matches", "match_urlpatterns"])]
    pub topics: Vec<String>,
    /// Mercure 1.0: a topic matched byte for byte (repeatable; `*` for all)
    #[arg(long = "match", value_name = "TOPIC", conflicts_with = "topics")]
    pub matches: Vec<String>,
    /// Mercure 1.0: a URL Pattern such as `/books/:id` (repeatable)
    #[arg(
        long = "match-urlpattern",
        value_name = "PATTERN",
        conflicts_with = "topics"
    )]
    pub match_urlpatterns: Vec<String>,
    /// The hub: its base URL, or the full hub URL
    #[arg(long, env = "HERALD_HUB", default_value = DEFAULT_HUB)]
    pub hub: String,
    /// Resume after this event id (`earliest`: all history the hub keeps)
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<String>,
    #[command(flatten)]
    pub auth: SubscriberAuth,
    /// An extra request header, `'Name: value'` (repeatable)
    #[arg(long = "header", short = 'H', value_name = "'K: V'")]
    pub headers: Vec<String>,
    /// One JSON object per event: {"id", "type", "data", "topic"?}
    #[arg(long)]
    pub json: bool,
    /// Exit 0 after this many events
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit after this long, e.g. `30s`: 0 if the hub was reached, 1 if it never was
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Say nothing on stderr about reconnections
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// How a subscriber proves it may subscribe: the same flags and variables as `herald pub`.
#[derive(Debug, Clone, Args)]
pub struct SubscriberAuth {
    /// A JWT for private updates or hubs without anonymous access (wins over --key);
    /// HERALD_SUBSCRIBER_TOKEN is also read, and wins over HERALD_TOKEN
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The hub's HMAC secret (its --jwt-key): a HS256 token whose mercure.subscribe claim holds
    /// the TOPIC selectors is minted for this run
    #[arg(long, env = "HERALD_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// The older name of the subscriber token variable, still read.
const SUBSCRIBER_TOKEN_VARIABLE: &str = "HERALD_SUBSCRIBER_TOKEN";

impl SubscriberAuth {
    /// The token to send: `--token`; else `HERALD_SUBSCRIBER_TOKEN`, then `HERALD_TOKEN`; else
    /// one minted from `--key` for `topics`. `env` reads a variable.
    fn resolve(
        &self,
        topics: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<String>> {
        let from_env = |name: &str| env(name).filter(|value| !value.is_empty());
        let token = self.token.clone().filter(|token| !token.is_empty());
        let token = match (token, from_env(SUBSCRIBER_TOKEN_VARIABLE)) {
            // The token came from HERALD_TOKEN: the subscriber-specific variable wins.
            (Some(token), Some(specific)) if from_env("HERALD_TOKEN") == Some(token.clone()) => {
                Some(specific)
            }
            (Some(token), _) => Some(token),
            (None, specific) => specific,
        };
        if token.is_some() {
            return Ok(token);
        }
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let minting = PublisherAuth {
            token: None,
            key: self.key.clone(),
        };
        minting.resolve(&[], &topics).map_err(usage)
    }
}

/// One `--json` line.
#[derive(Serialize)]
struct JsonEvent<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
}

/// Subscribes until `--count`, `--timeout`, or a refusal. Exit 0 on a normal stop (count,
/// timeout once connected, or the hub ending the stream with 204); 1 on 400, 401, 403 or 404
/// (not retried) and at `--timeout` when the hub was never reached; 64 for bad usage.
pub(super) fn run(args: &SubArgs) -> anyhow::Result<()> {
    let timeout = args
        .timeout
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|error| usage(format!("invalid --timeout: {error}")))?;
    let mut builder = Subscriber::builder(args.hub.clone())
        .topics(args.topics.iter().cloned())
        .report_reconnects(true);
    for topic in &args.matches {
        builder = builder.match_exact(topic.clone());
    }
    for pattern in &args.match_urlpatterns {
        builder = builder.match_urlpattern(pattern.clone());
    }
    let token = args
        .auth
        .resolve(&args.topics, |name| std::env::var(name).ok())?;
    let has_credentials = token.is_some();
    if let Some(token) = token {
        builder = builder.token(token);
    }
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id.clone());
    }
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err(usage(format!(
                "invalid --header {header:?}: use 'Name: value'"
            )));
        };
        builder = builder.header(name.trim(), value.trim());
    }
    let mut subscriber = builder.build().map_err(usage)?;
    // The topic of every event is known only when there is one exact topic.
    let topic = match (args.topics.as_slice(), args.matches.as_slice()) {
        ([only], []) if !only.contains(['{', '*']) => Some(only.as_str()),
        ([], [only]) if args.match_urlpatterns.is_empty() && only != "*" => Some(only.as_str()),
        _ => None,
    };
    runtime()?.block_on(async {
        let receive = receive(&mut subscriber, args, topic, has_credentials);
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, receive).await {
                Ok(result) => result,
                Err(_) if subscriber.has_connected() => Ok(()),
                Err(_) => Err(anyhow!(
                    "no subscription within --timeout {}: the hub never accepted a connection",
                    args.timeout.as_deref().unwrap_or_default()
                )),
            },
            None => receive.await,
        }
    })
}

async fn receive(
    subscriber: &mut Subscriber,
    args: &SubArgs,
    topic: Option<&str>,
    has_credentials: bool,
) -> anyhow::Result<()> {
    let mut attempts = 0u32;
    let mut received = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    while let Some(item) = subscriber.next().await {
        match item {
            Ok(event) => {
                attempts = 0;
                if print(&event, args.json, topic).is_err() {
                    // stdout is gone (a closed pipe): nothing more to do.
                    return Ok(());
                }
                received += 1;
                if args.count.is_some_and(|count| received >= count) {
                    return Ok(());
                }
            }
            Err(ClientError::Ended) => {
                if !args.quiet {
                    eprintln!("herald: the hub ended the subscription (204 No Content)");
                }
                return Ok(());
            }
            Err(error) if error.is_fatal() || matches!(error.status(), Some(400 | 404)) => {
                bail!("{error}{}", hint(&error, has_credentials));
            }
            Err(error) => {
                attempts = attempts.saturating_add(1);
                if !args.quiet {
                    eprintln!("{}", retry_line(&error, attempts));
                }
            }
        }
    }
    Ok(())
}

/// What to do about a final refusal, said after it on the same line.
fn hint(error: &ClientError, has_credentials: bool) -> &'static str {
    match error.status() {
        Some(401) if has_credentials => " (check --token, or that --key is the hub's --jwt-key)",
        Some(401) => " (give --token or --key, or set HERALD_TOKEN or HERALD_KEY)",
        Some(403) => {
            " (the token's mercure.subscribe claim does not cover these topics: give --token \
             or --key for one that does)"
        }
        Some(404) => " (is --hub right? give the hub's base URL or its /.well-known/mercure URL)",
        _ => "",
    }
}

/// One short line about a failed attempt, before the client retries with backoff.
fn retry_line(error: &ClientError, attempt: u32) -> String {
    let reason = match error {
        ClientError::Connect(source) => format!("cannot reach the hub ({})", root_cause(source)),
        ClientError::Disconnected(source) => {
            format!("the connection was lost ({})", root_cause(source))
        }
        other => other.to_string(),
    };
    let line = format!("herald: {reason}; reconnecting with backoff (attempt {attempt})");
    if line.chars().count() <= MAX_RETRY_LINE {
        return line;
    }
    let mut short: String = line.chars().take(MAX_RETRY_LINE - 1).collect();
    short.push('…');
    short
}

fn print(event: &Event, json: bool, topic: Option<&str>) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if json {
        let line = JsonEvent {
            id: &event.id,
            event_type: &event.event_type,
            data: &event.data,
            topic,
        };
        serde_json::to_writer(&mut stdout, &line)?;
        writeln!(stdout)?;
    } else {
        writeln!(
            stdout,
            "[{}] {}: {}",
            event.id, event.event_type, event.data
        )?;
    }
    stdout.flush()
}

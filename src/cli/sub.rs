//! `herald sub`: subscribe and print events, readable or as JSON lines, surviving hub restarts.
//!
//! Built on `herald-client`'s [`Subscriber`]: reconnection, backoff and `Last-Event-ID` are
//! the client's job; this file only turns flags into a builder and events into lines.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use futures_util::StreamExt;
use herald_client::{ClientError, Event, Subscriber};
use serde::Serialize;

use super::config_error;
use super::publish::{DEFAULT_HUB, runtime};

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
    /// A JWT for private updates or hubs without anonymous access
    #[arg(long, env = "HERALD_SUBSCRIBER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An extra request header, `'Name: value'` (repeatable)
    #[arg(long = "header", short = 'H', value_name = "'K: V'")]
    pub headers: Vec<String>,
    /// One JSON object per event: {"id", "type", "data", "topic"?}
    #[arg(long)]
    pub json: bool,
    /// Exit 0 after this many events
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit 0 after this long, e.g. `30s`
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Say nothing on stderr about reconnections
    #[arg(long, short = 'q')]
    pub quiet: bool,
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
/// timeout, or the hub ending the stream with 204), 1 on 401/403, 64 for bad usage.
pub fn run(args: &SubArgs) -> ExitCode {
    let timeout = match args
        .timeout
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
    {
        Ok(timeout) => timeout,
        Err(error) => return config_error(format!("invalid --timeout: {error}")),
    };
    let mut builder = Subscriber::builder(args.hub.clone())
        .topics(args.topics.iter().cloned())
        .report_reconnects(true);
    for topic in &args.matches {
        builder = builder.match_exact(topic.clone());
    }
    for pattern in &args.match_urlpatterns {
        builder = builder.match_urlpattern(pattern.clone());
    }
    if let Some(token) = &args.token {
        builder = builder.token(token.clone());
    }
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id.clone());
    }
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            return config_error(format!("invalid --header {header:?}: use 'Name: value'"));
        };
        builder = builder.header(name.trim(), value.trim());
    }
    let subscriber = match builder.build() {
        Ok(subscriber) => subscriber,
        Err(error) => return config_error(error),
    };
    // The topic of every event is known only when there is one exact topic.
    let topic = match (args.topics.as_slice(), args.matches.as_slice()) {
        ([only], []) if !only.contains(['{', '*']) => Some(only.as_str()),
        ([], [only]) if args.match_urlpatterns.is_empty() && only != "*" => Some(only.as_str()),
        _ => None,
    };
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let receive = receive(subscriber, args, topic);
        match timeout {
            Some(limit) => tokio::time::timeout(limit, receive)
                .await
                .unwrap_or(ExitCode::SUCCESS),
            None => receive.await,
        }
    })
}

async fn receive(mut subscriber: Subscriber, args: &SubArgs, topic: Option<&str>) -> ExitCode {
    let mut received = 0u64;
    if args.count == Some(0) {
        return ExitCode::SUCCESS;
    }
    while let Some(item) = subscriber.next().await {
        match item {
            Ok(event) => {
                if print(&event, args.json, topic).is_err() {
                    // stdout is gone (a closed pipe): nothing more to do.
                    return ExitCode::SUCCESS;
                }
                received += 1;
                if args.count.is_some_and(|count| received >= count) {
                    return ExitCode::SUCCESS;
                }
            }
            Err(ClientError::Ended) => {
                if !args.quiet {
                    eprintln!("herald: the hub ended the subscription (204 No Content)");
                }
                return ExitCode::SUCCESS;
            }
            Err(error) if error.is_fatal() => {
                eprintln!("herald: {error}");
                return ExitCode::FAILURE;
            }
            Err(error) => {
                if !args.quiet {
                    eprintln!("herald: {error}; reconnecting");
                }
            }
        }
    }
    ExitCode::SUCCESS
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

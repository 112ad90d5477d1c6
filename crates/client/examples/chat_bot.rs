//! A chat bot for the hub's demo chat room (`herald serve --demo`, page `/chat`).
//!
//! It follows topic `chat` (messages are JSON `{"name", "message", "at"}`), answers `!ping`
//! with `pong` and `!time` with the hub-independent Unix time, and survives hub restarts: the
//! subscriber reconnects with `Last-Event-ID` by itself.
//!
//! ```sh
//! export HERALD_HUB=http://127.0.0.1:8088            # the default
//! export HERALD_TOKEN=$(herald token --key "$KEY" --publish chat)
//! cargo run -p herald-client --example chat_bot
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use herald_client::{ClientError, PublishOptions, Publisher, Subscriber};
use serde_json::{Value, json};

const NAME: &str = "herald-bot";
const TOPIC: &str = "chat";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = std::env::var("HERALD_HUB").unwrap_or_else(|_| "http://127.0.0.1:8088".into());
    let token = std::env::var("HERALD_TOKEN")
        .map_err(|_| "set HERALD_TOKEN to a token that may publish to `chat`")?;
    let publisher = Publisher::new(&hub)?.with_token(token);
    let mut messages = Subscriber::builder(hub.as_str())
        .topic(TOPIC)
        .report_reconnects(true)
        .build()?;
    eprintln!("{NAME}: listening on {hub} topic {TOPIC:?}; say !ping or !time in the chat");

    while let Some(item) = messages.next().await {
        let event = match item {
            Ok(event) => event,
            Err(error @ ClientError::Ended) => {
                eprintln!("{NAME}: {error}");
                return Ok(());
            }
            Err(error) if error.is_fatal() => return Err(error.into()),
            Err(error) => {
                eprintln!("{NAME}: {error}; reconnecting");
                continue;
            }
        };
        let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
            continue;
        };
        if message["name"] == NAME {
            continue; // never answer ourselves
        }
        let reply = match message["message"].as_str().map(str::trim) {
            Some("!ping") => "pong".to_owned(),
            Some("!time") => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
                format!("it is {now} seconds since 1970")
            }
            _ => continue,
        };
        let data = json!({ "name": NAME, "message": reply }).to_string();
        match publisher
            .publish(&[TOPIC], &data, &PublishOptions::new())
            .await
        {
            Ok(id) => eprintln!("{NAME}: answered {} with {id}", event.id),
            Err(error) => eprintln!("{NAME}: cannot answer: {error}"),
        }
    }
    Ok(())
}

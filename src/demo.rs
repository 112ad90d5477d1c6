//! The demo's server side (`--demo`): the clock that publishes the time to topic `clock` every
//! three seconds, and the shape of a chat message on topic `chat`.
//!
//! Demo updates go through the writer like any publisher's, so they are stored, replayed and
//! fanned out exactly as real ones. This module knows no HTTP (the send endpoint lives in
//! `http::pages`) and no subscribers.

use std::time::{Duration, UNIX_EPOCH};

use tokio::time::MissedTickBehavior;

use crate::store::StoreError;
use crate::store::writer::Writer;
use crate::update::{Draft, Update, now_ms};

/// The topic of the chat room.
pub(crate) const CHAT_TOPIC: &str = "chat";
/// The topic the clock publishes to.
pub(crate) const CLOCK_TOPIC: &str = "clock";
/// How often the clock ticks.
pub(crate) const CLOCK_PERIOD: Duration = Duration::from_secs(3);
/// The longest display name a chat message may carry, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 40;
/// The longest chat message, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 2000;
/// The name of a sender who gave none.
pub(crate) const ANONYMOUS_NAME: &str = "anonymous";

/// The clock, to run as a background task ([`crate::shutdown::Tasks::spawn`]): publishes
/// `{"message":"Current time is HH:MM:SS"}` (UTC) to `clock` at once and then every
/// [`CLOCK_PERIOD`], until the writer closes.
pub(crate) async fn run_clock(writer: Writer) {
    let mut ticker = tokio::time::interval(CLOCK_PERIOD);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let update = match Update::from_draft(clock_draft(now_ms())) {
            Ok(update) => update,
            Err(error) => {
                tracing::error!(%error, "clock tick is not a valid update");
                return;
            }
        };
        match writer.submit(update).await {
            Ok(_) => {}
            Err(StoreError::Closed) => return,
            Err(error) => tracing::warn!(%error, "clock tick not published"),
        }
    }
}

/// The clock's update for a moment (milliseconds since the epoch).
pub(crate) fn clock_draft(at_ms: u64) -> Draft {
    let data = serde_json::json!({ "message": format!("Current time is {}", time_of_day(at_ms)) });
    Draft {
        topics: vec![CLOCK_TOPIC.to_owned()],
        data: data.to_string(),
        ..Draft::default()
    }
}

/// `HH:MM:SS` (UTC) of a moment in milliseconds since the epoch.
pub(crate) fn time_of_day(at_ms: u64) -> String {
    let seconds = (at_ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        (seconds / 60) % 60,
        seconds % 60
    )
}

/// Why a chat message was refused. Each is a 400 at the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChatError {
    #[error("the message is empty")]
    EmptyMessage,
    #[error("the message is longer than {MAX_MESSAGE_CHARS} characters")]
    MessageTooLong,
    #[error("the name is longer than {MAX_NAME_CHARS} characters")]
    NameTooLong,
}

/// The update for one chat message: JSON `{"name", "message", "at"}` on topic `chat`. Surrounding
/// whitespace is trimmed; an empty name becomes [`ANONYMOUS_NAME`].
pub(crate) fn chat_draft(name: &str, message: &str, at_ms: u64) -> Result<Draft, ChatError> {
    let message = message.trim();
    if message.is_empty() {
        return Err(ChatError::EmptyMessage);
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ChatError::MessageTooLong);
    }
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ChatError::NameTooLong);
    }
    let name = if name.is_empty() {
        ANONYMOUS_NAME
    } else {
        name
    };
    let at = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at_ms));
    let data = serde_json::json!({ "name": name, "message": message, "at": at.to_string() });
    Ok(Draft {
        topics: vec![CHAT_TOPIC.to_owned()],
        data: data.to_string(),
        ..Draft::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_is_utc_hh_mm_ss() {
        assert_eq!(time_of_day(0), "00:00:00");
        // 2024-01-02T13:04:05.678Z
        assert_eq!(time_of_day(1_704_200_645_678), "13:04:05");
    }

    #[test]
    fn clock_update_has_the_documented_shape() {
        let draft = clock_draft(1_704_200_645_678);
        assert_eq!(draft.topics, ["clock"]);
        assert_eq!(draft.data, r#"{"message":"Current time is 13:04:05"}"#);
        assert!(Update::from_draft(draft).is_ok());
    }

    #[test]
    fn chat_messages_are_trimmed_validated_and_json_encoded() {
        let draft = chat_draft("  Ada ", " hello <b>\"you\"</b> ", 1_704_200_645_678).unwrap();
        assert_eq!(draft.topics, ["chat"]);
        let data: serde_json::Value = serde_json::from_str(&draft.data).unwrap();
        assert_eq!(data["name"], "Ada");
        assert_eq!(data["message"], "hello <b>\"you\"</b>");
        assert_eq!(data["at"], "2024-01-02T13:04:05.678Z");

        let anonymous = chat_draft("", "hi", 0).unwrap();
        assert!(anonymous.data.contains(r#""name":"anonymous""#));
        assert_eq!(
            chat_draft("a", " \n ", 0).err(),
            Some(ChatError::EmptyMessage)
        );
        let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        assert_eq!(
            chat_draft("a", &long, 0).err(),
            Some(ChatError::MessageTooLong)
        );
        let name = "é".repeat(MAX_NAME_CHARS + 1);
        assert_eq!(
            chat_draft(&name, "hi", 0).err(),
            Some(ChatError::NameTooLong)
        );
        assert!(chat_draft(&"é".repeat(MAX_NAME_CHARS), "hi", 0).is_ok());
    }
}

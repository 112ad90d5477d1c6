//! The errors of this crate, and reading an RFC 9457 problem (`application/problem+json`) body.
//!
//! [`ClientError`] is what a [`Subscriber`](crate::Subscriber) yields; [`PublishError`] is what
//! [`Publisher::publish`](crate::Publisher::publish) returns. Both carry the HTTP status and the
//! problem's `detail` when the hub sent one, so a caller can say *why* without parsing strings.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Why a subscription failed or stopped.
///
/// [`is_fatal`](ClientError::is_fatal) errors end the stream; the others are only seen when
/// [`SubscriberBuilder::report_reconnects`](crate::SubscriberBuilder::report_reconnects) is on,
/// and the subscriber reconnects after them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The builder was given something unusable (a bad URL, header or id). Fatal.
    #[error("invalid subscriber configuration: {0}")]
    Config(String),
    /// The hub answered `204 No Content`: it asks the client to stop. Fatal.
    #[error("the hub ended the subscription (204 No Content)")]
    Ended,
    /// The hub answered `401 Unauthorized`: no token, or an invalid or expired one. Fatal.
    #[error("the hub refused the subscription: 401 Unauthorized{}", Suffix(.detail))]
    Unauthorized {
        /// The problem's `detail`, if the hub sent one.
        detail: Option<String>,
    },
    /// The hub answered `403 Forbidden`: the token does not allow this subscription. Fatal.
    #[error("the hub refused the subscription: 403 Forbidden{}", Suffix(.detail))]
    Forbidden {
        /// The problem's `detail`, if the hub sent one.
        detail: Option<String>,
    },
    /// Any other non-200 status. The subscriber retries.
    #[error("the hub answered {}{}", StatusText(*.status), Suffix(.detail))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The problem's `detail`, if the hub sent one.
        detail: Option<String>,
    },
    /// A 200 response that is not `text/event-stream`. The subscriber retries.
    #[error("the response is not an event stream (content-type {0:?})")]
    NotEventStream(String),
    /// The hub could not be reached or the request failed. The subscriber retries.
    #[error("cannot connect to the hub: {}", Chain(.0))]
    Connect(#[source] reqwest::Error),
    /// The stream broke while reading. The subscriber retries.
    #[error("the connection was lost: {}", Chain(.0))]
    Disconnected(#[source] reqwest::Error),
    /// The hub closed the stream cleanly. The subscriber retries.
    #[error("the hub closed the stream")]
    Closed,
    /// Nothing (not even a heartbeat) arrived for this long. The subscriber retries.
    #[error("no data from the hub for {0:?}")]
    IdleTimeout(Duration),
}

impl ClientError {
    /// True when the stream ends after this error (no reconnection).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ClientError::Config(_)
                | ClientError::Ended
                | ClientError::Unauthorized { .. }
                | ClientError::Forbidden { .. }
        )
    }

    /// The HTTP status the hub answered, when the error comes from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Ended => Some(204),
            ClientError::Unauthorized { .. } => Some(401),
            ClientError::Forbidden { .. } => Some(403),
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem's `detail` (or a short plain-text body), when the hub sent one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            ClientError::Unauthorized { detail }
            | ClientError::Forbidden { detail }
            | ClientError::Status { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The request could not be built (a bad hub URL or token). Nothing was sent.
    #[error("invalid publish request: {0}")]
    Invalid(String),
    /// The hub answered with a non-200 status.
    #[error("the hub answered {}{}", StatusText(*.status), Suffix(.detail))]
    Http {
        /// The HTTP status code (401 no or bad token, 403 not allowed, 400 bad input, …).
        status: u16,
        /// The problem's `detail`, if the hub sent one.
        detail: Option<String>,
    },
    /// The hub could not be reached, or the connection failed before an answer.
    #[error("cannot reach the hub: {}", Chain(.0))]
    Network(#[source] reqwest::Error),
}

impl PublishError {
    /// The HTTP status the hub answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PublishError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem's `detail`, if the hub sent one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            PublishError::Http { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }
}

/// An RFC 9457 problem document, as the hub sends with its error statuses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// A URI naming the problem type (often `about:blank`).
    #[serde(default, rename = "type")]
    pub problem_type: Option<String>,
    /// A short summary of the problem type.
    #[serde(default)]
    pub title: Option<String>,
    /// The HTTP status.
    #[serde(default)]
    pub status: Option<u16>,
    /// This occurrence, in words.
    #[serde(default)]
    pub detail: Option<String>,
}

/// The most useful words in an error body: the problem's `detail` (or `title`) for
/// problem+json, the trimmed text for a short `text/plain` body, nothing otherwise.
pub(crate) fn error_detail(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let media = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media == "application/problem+json" || media == "application/json" {
        let problem: Problem = serde_json::from_slice(body).ok()?;
        return problem
            .detail
            .or(problem.title)
            .filter(|text| !text.is_empty());
    }
    if media.starts_with("text/plain") || media.is_empty() {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if !text.is_empty() && text.len() <= 500 && !text.contains('\n') {
            return Some(text.to_owned());
        }
    }
    None
}

/// `403 Forbidden`.
struct StatusText(u16);

impl fmt::Display for StatusText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = reqwest::StatusCode::from_u16(self.0)
            .ok()
            .and_then(|status| status.canonical_reason());
        match reason {
            Some(reason) => write!(f, "{} {reason}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// `": detail"` or nothing.
struct Suffix<'a>(&'a Option<String>);

impl fmt::Display for Suffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(detail) => write!(f, ": {detail}"),
            None => Ok(()),
        }
    }
}

/// An error and its sources on one line (reqwest's own message hides the cause).
struct Chain<'a>(&'a reqwest::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        let mut last = String::new();
        while let Some(error) = source {
            let text = error.to_string();
            if text != last {
                write!(f, ": {text}")?;
            }
            last = text;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_detail_is_preferred() {
        let body = br#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"the token has expired"}"#;
        assert_eq!(
            error_detail(Some("application/problem+json"), body).as_deref(),
            Some("the token has expired")
        );
        assert_eq!(
            error_detail(
                Some("application/problem+json"),
                br#"{"title":"Forbidden"}"#
            )
            .as_deref(),
            Some("Forbidden")
        );
        assert_eq!(
            error_detail(Some("application/problem+json"), b"nope"),
            None
        );
        assert_eq!(
            error_detail(Some("text/plain; charset=utf-8"), b" short reason \n").as_deref(),
            Some("short reason")
        );
        assert_eq!(error_detail(Some("text/html"), b"<html>"), None);
    }

    #[test]
    fn messages_say_why() {
        let error = ClientError::Unauthorized {
            detail: Some("missing token".into()),
        };
        assert_eq!(
            error.to_string(),
            "the hub refused the subscription: 401 Unauthorized: missing token"
        );
        assert!(error.is_fatal());
        assert_eq!(error.status(), Some(401));
        assert!(!ClientError::Closed.is_fatal());
        let error = PublishError::Http {
            status: 403,
            detail: None,
        };
        assert_eq!(error.to_string(), "the hub answered 403 Forbidden");
        assert_eq!(error.status(), Some(403));
    }
}

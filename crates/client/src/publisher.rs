//! The publisher: one form-encoded `POST` per update, answered with the update's id.
//!
//! It does no retrying of its own: a publish that failed may or may not have been stored (the
//! connection can break after the commit), so whether to try again is the caller's call. Give
//! updates an explicit [`id`](PublishOptions::id) to make retries safe to spot downstream.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use crate::error::PublishError;
use crate::hub_endpoint;
use crate::subscriber::read_detail;

/// The optional fields of one update.
///
/// ```
/// use herald_client::PublishOptions;
///
/// let options = PublishOptions::new().event_type("price").id("tick-42").private(true);
/// assert_eq!(options.event_type.as_deref(), Some("price"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct PublishOptions {
    /// The update's id (the hub makes a `urn:uuid:` one when absent).
    pub id: Option<String>,
    /// The SSE event type (`message` when absent).
    pub event_type: Option<String>,
    /// The reconnection time to send to subscribers with this update.
    pub retry: Option<Duration>,
    /// Only subscribers whose token allows one of the update's topics receive it.
    pub private: bool,
    /// A token for this publish only, instead of the publisher's.
    pub token: Option<String>,
}

impl PublishOptions {
    /// No options: a public `message` with an id chosen by the hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the event type.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Sets the reconnection time sent to subscribers.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Makes the update private (or public with `false`).
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// Uses this token for this publish.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// Publishes updates to a hub.
///
/// Cheap to clone: clones share one connection pool.
///
/// ```no_run
/// use herald_client::{PublishOptions, Publisher};
///
/// # async fn run() -> Result<(), herald_client::PublishError> {
/// let publisher = Publisher::new("http://127.0.0.1:8088")?.with_token("eyJhbGciOiJIUzI1NiJ9…");
/// let id = publisher
///     .publish(&["https://example.com/books/1"], r#"{"stock": 3}"#, &PublishOptions::new())
///     .await?;
/// println!("published {id}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Publisher {
    client: reqwest::Client,
    url: reqwest::Url,
    token: Option<String>,
}

impl Publisher {
    /// A publisher for `hub`: the server's base URL (`/.well-known/mercure` is appended) or the
    /// full hub URL.
    pub fn new(hub: &str) -> Result<Self, PublishError> {
        let client = crate::client_builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| PublishError::Invalid(format!("cannot build the client: {error}")))?;
        Self::with_client(hub, client)
    }

    /// As [`new`](Self::new) with a given `reqwest` client.
    pub fn with_client(hub: &str, client: reqwest::Client) -> Result<Self, PublishError> {
        let url = hub_endpoint(hub).map_err(PublishError::Invalid)?;
        Ok(Self {
            client,
            url,
            token: None,
        })
    }

    /// Sends this JWT (its `mercure.publish` claim must cover the topics) with every publish.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The URL publishes are posted to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Publishes `data` to every topic in `topics`; returns the update's id once the hub has
    /// stored it and handed it to subscribers.
    pub async fn publish<T: AsRef<str>>(
        &self,
        topics: &[T],
        data: &str,
        options: &PublishOptions,
    ) -> Result<String, PublishError> {
        if topics.is_empty() {
            return Err(PublishError::Invalid("give at least one topic".into()));
        }
        let mut form = reqwest::Url::parse("http://form.invalid/")
            .map_err(|error| PublishError::Invalid(error.to_string()))?;
        {
            let mut pairs = form.query_pairs_mut();
            for topic in topics {
                pairs.append_pair("topic", topic.as_ref());
            }
            pairs.append_pair("data", data);
            if let Some(id) = &options.id {
                pairs.append_pair("id", id);
            }
            if let Some(event_type) = &options.event_type {
                pairs.append_pair("type", event_type);
            }
            if let Some(retry) = options.retry {
                pairs.append_pair("retry", &retry.as_millis().to_string());
            }
            if options.private {
                pairs.append_pair("private", "on");
            }
        }
        let body = form.query().unwrap_or_default().to_owned();
        let mut request = self
            .client
            .post(self.url.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(body);
        if let Some(token) = options.token.as_ref().or(self.token.as_ref()) {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                PublishError::Invalid("the token is not a valid header value".into())
            })?;
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(PublishError::Network)?;
        let status = response.status().as_u16();
        if status == 200 {
            let id = response.text().await.map_err(PublishError::Network)?;
            return Ok(id.trim().to_owned());
        }
        let detail = read_detail(response).await;
        Err(PublishError::Http { status, detail })
    }
}

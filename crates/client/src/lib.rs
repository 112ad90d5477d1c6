//! `herald-client`: a reconnecting Server-Sent Events subscriber and a publisher for
//! Herald and other hubs that speak the Mercure protocol.
//!
//! - [`Subscriber`] is a [`Stream`](futures_util::Stream) of [`Event`]s that survives hub
//!   restarts: it reconnects with jittered, capped exponential [`Backoff`], honours the hub's
//!   `retry:`, and resends `Last-Event-ID` so a hub with history replays what was missed. It
//!   stops when the hub answers 204, 401 or 403, and says why ([`ClientError`]).
//! - [`Publisher`] posts one update and returns its id, or a [`PublishError`] with the status
//!   and the hub's problem detail.
//!
//! The event-stream parsing is `herald-sse`; HTTP is `reqwest`. No dependency on the server.
//!
//! # Features
//! - `rustls` (off): `https://` hubs, with rustls and its ring provider (installed as the
//!   process default unless one is already). Without it the crate speaks plain HTTP; for TLS
//!   you can also pass your own [`reqwest::Client`] to [`SubscriberBuilder::client`] and
//!   [`Publisher::with_client`]. (If something else in your build turns on reqwest's
//!   `rustls-no-provider` feature, enable `rustls` here or install a rustls crypto provider
//!   before building a subscriber or publisher: reqwest panics otherwise.)
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use herald_client::{PublishOptions, Publisher, Subscriber};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = "http://127.0.0.1:8088";
//! let mut events = Subscriber::builder(hub).topic("chat/lobby").build()?;
//!
//! let publisher = Publisher::new(hub)?.with_token(std::env::var("HERALD_TOKEN")?);
//! publisher.publish(&["chat/lobby"], "hello", &PublishOptions::new()).await?;
//!
//! if let Some(event) = events.next().await {
//!     let event = event?;
//!     assert_eq!(event.data, "hello");
//! }
//! # Ok(())
//! # }
//! ```

mod backoff;
mod error;
mod publisher;
mod subscriber;

/// The HTTP client this crate is built on, for [`SubscriberBuilder::client`] and
/// [`Publisher::with_client`].
pub use reqwest;

pub use backoff::Backoff;
pub use error::{ClientError, Problem, PublishError};
pub use publisher::{PublishOptions, Publisher};
pub use subscriber::{DEFAULT_MAX_BACKOFF, DEFAULT_RETRY, Event, Subscriber, SubscriberBuilder};

/// Compiles the README's example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// A `reqwest` client builder with a TLS provider in place when the `rustls` feature is on.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    #[cfg(feature = "rustls")]
    {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
}

/// The well-known path of a Mercure hub.
pub const HUB_PATH: &str = "/.well-known/mercure";

/// The hub URL for `hub`: a base URL (`http://host:port` or `http://host:port/`) gets
/// [`HUB_PATH`]; a URL with another path is used as it is.
///
/// ```
/// assert_eq!(
///     herald_client::hub_endpoint("http://127.0.0.1:8088").unwrap().as_str(),
///     "http://127.0.0.1:8088/.well-known/mercure"
/// );
/// assert_eq!(
///     herald_client::hub_endpoint("http://example.com/hub").unwrap().path(),
///     "/hub"
/// );
/// assert!(herald_client::hub_endpoint("127.0.0.1:8088").is_err());
/// ```
pub fn hub_endpoint(hub: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(hub.trim())
        .map_err(|error| format!("invalid hub URL {hub:?}: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("invalid hub URL {hub:?}: use http:// or https://"));
    }
    if url.host_str().is_none() {
        return Err(format!("invalid hub URL {hub:?}: no host"));
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path(HUB_PATH);
    }
    Ok(url)
}

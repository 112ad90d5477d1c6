//! The server under test: Herald (or any Mercure hub), or nginx with the nchan module, for
//! side-by-side figures. What differs is where a subscription goes, how topics are named and
//! how an update is published; the wire and the counting are the same, since both answer with
//! an SSE stream whose `data` is the payload as published (nchan's `id: <time>:<tag>` lines and
//! `:` comments are ignored like any id or comment).

use std::borrow::Cow;

use herald_client::reqwest::{Client, Url, header::CONTENT_TYPE};
use herald_client::{PublishOptions, Publisher, hub_endpoint};
use serde::Serialize;

/// Which kind of server `--hub` is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    /// Herald or another Mercure hub: subscribe with `GET <hub>?topic=T`, publish a form to
    /// `POST <hub>` with a token
    #[default]
    Herald,
    /// nginx with nchan: subscribe with `GET <base>/sub/T`, publish with `POST <base>/pub/T`
    /// whose body is the data; topics are `PREFIX-0 .. PREFIX-(K-1)`, no token
    Nchan,
}

impl Server {
    /// The name `--server` takes.
    pub(super) fn name(self) -> &'static str {
        match self {
            Server::Herald => "herald",
            Server::Nchan => "nchan",
        }
    }

    /// The topic prefix when `--topic-prefix` is not given: unique per run.
    pub(super) fn default_prefix(self) -> String {
        let tag = rand::random::<u32>();
        match self {
            Server::Herald => format!("herald-bench/{tag:08x}"),
            Server::Nchan => format!("herald-bench-{tag:08x}"),
        }
    }

    /// Checks a topic prefix: nchan takes its channel id from the request path.
    pub(super) fn check_prefix(self, prefix: &str) -> Result<(), String> {
        if self == Server::Nchan && !path_safe(prefix) {
            return Err(format!(
                "--topic-prefix {prefix:?}: nchan channel ids come from the path, \
                 use only letters, digits, '-', '.', '_' and '~'"
            ));
        }
        Ok(())
    }

    /// Topic `k` under `prefix`.
    pub(super) fn topic(self, prefix: &str, k: usize) -> String {
        match self {
            Server::Herald => format!("{prefix}/{k}"),
            Server::Nchan => format!("{prefix}-{k}"),
        }
    }

    /// The URL subscriptions and publishes are made against: the hub endpoint for Herald
    /// (`/.well-known/mercure` when `hub` is a base URL), the base URL as given for nchan.
    pub(super) fn endpoint(self, hub: &str) -> Result<Url, String> {
        match self {
            Server::Herald => hub_endpoint(hub),
            Server::Nchan => {
                let url = Url::parse(hub.trim())
                    .map_err(|error| format!("invalid base URL {hub:?}: {error}"))?;
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(format!(
                        "invalid base URL {hub:?}: nchan takes a base URL with no query"
                    ));
                }
                Ok(url)
            }
        }
    }

    /// The request target of a subscription up to the topic.
    pub(super) fn subscribe_target(self, url: &Url) -> String {
        match self {
            Server::Herald => {
                let mut target = url.path().to_owned();
                target.push('?');
                if let Some(query) = url.query().filter(|query| !query.is_empty()) {
                    target.push_str(query);
                    target.push('&');
                }
                target.push_str("topic=");
                target
            }
            Server::Nchan => format!("{}/sub/", url.path().trim_end_matches('/')),
        }
    }

    /// A topic as it goes after [`Server::subscribe_target`].
    pub(super) fn encode_topic(self, topic: &str) -> Cow<'_, str> {
        match self {
            Server::Herald => {
                Cow::Owned(form_urlencoded::byte_serialize(topic.as_bytes()).collect())
            }
            // Checked path-safe by `check_prefix`.
            Server::Nchan => Cow::Borrowed(topic),
        }
    }

    /// Where updates go: the hub as given for Herald (the publisher finds the endpoint), the
    /// URL a topic is appended to for nchan.
    pub(super) fn publish_base(self, hub: &str, url: &Url) -> String {
        match self {
            Server::Herald => hub.to_owned(),
            Server::Nchan => format!("{}/pub/", url.as_str().trim_end_matches('/')),
        }
    }

    /// What to tell the user when publishing is refused (401 or 403).
    pub(super) fn refused_hint(self) -> &'static str {
        match self {
            Server::Herald => "give --token or --key",
            Server::Nchan => "is /pub/ an nchan_publisher location open to this client?",
        }
    }
}

/// Unreserved URI characters only (RFC 3986), so a name is the same in the path and in nchan.
pub(super) fn path_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'))
}

/// Why a publish failed: the HTTP status when there was an answer, and a message.
pub(super) type PublishFailure = (Option<u16>, String);

/// Where the lead publishes.
pub(super) enum Sink {
    /// Herald's publishing API, through `herald-client`.
    Mercure(Publisher),
    /// `POST <base><topic>` with the data as the body.
    Nchan { client: Client, base: String },
}

impl Sink {
    pub(super) fn new(
        server: Server,
        base: &str,
        token: Option<&str>,
        client: Client,
    ) -> Result<Sink, String> {
        Ok(match server {
            Server::Herald => {
                let mut publisher =
                    Publisher::with_client(base, client).map_err(|error| error.to_string())?;
                if let Some(token) = token {
                    publisher = publisher.with_token(token.to_owned());
                }
                Sink::Mercure(publisher)
            }
            Server::Nchan => Sink::Nchan {
                client,
                base: base.to_owned(),
            },
        })
    }

    /// Publishes `data` to `topic`.
    pub(super) async fn publish(&self, topic: String, data: String) -> Result<(), PublishFailure> {
        match self {
            Sink::Mercure(publisher) => publisher
                .publish(&[topic], &data, &PublishOptions::new())
                .await
                .map(drop)
                .map_err(|error| (error.status(), error.to_string())),
            Sink::Nchan { client, base } => {
                let response = client
                    .post(format!("{base}{topic}"))
                    .header(CONTENT_TYPE, "text/plain")
                    .body(data)
                    .send()
                    .await
                    .map_err(|error| (None, format!("POST {base}{topic}: {error}")))?;
                let status = response.status();
                // Read the body (nchan's channel summary) so the connection is reused.
                let body = response.text().await.unwrap_or_default();
                if status.is_success() {
                    Ok(())
                } else {
                    let body = body.lines().next().unwrap_or_default();
                    Err((
                        Some(status.as_u16()),
                        format!("POST {base}{topic}: {status} {body}"),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_unreserved_characters_are_path_safe() {
        for name in ["bench", "herald-bench-0a1b2c3d", "a.b_c~d-9"] {
            assert!(path_safe(name), "{name}");
        }
        for name in ["", "a/b", "a b", "a?b", "a%2Fb", "é", "a#b"] {
            assert!(!path_safe(name), "{name}");
        }
        assert!(Server::Nchan.check_prefix("herald-bench/x").is_err());
        assert!(Server::Herald.check_prefix("herald-bench/x").is_ok());
    }

    #[test]
    fn default_prefixes_fit_their_server() {
        assert!(Server::Herald.default_prefix().starts_with("herald-bench/"));
        let nchan = Server::Nchan.default_prefix();
        assert!(path_safe(&nchan), "{nchan}");
        assert_eq!(Server::Nchan.topic(&nchan, 3), format!("{nchan}-3"));
        assert_eq!(Server::Herald.topic("p", 3), "p/3");
    }

    #[test]
    fn nchan_urls_come_from_the_base_url() {
        let url = Server::Nchan.endpoint("http://127.0.0.1:9").unwrap();
        assert_eq!(Server::Nchan.subscribe_target(&url), "/sub/");
        assert_eq!(
            Server::Nchan.publish_base("http://127.0.0.1:9", &url),
            "http://127.0.0.1:9/pub/"
        );
        let url = Server::Nchan.endpoint(" http://h:9/push/ ").unwrap();
        assert_eq!(Server::Nchan.subscribe_target(&url), "/push/sub/");
        assert_eq!(Server::Nchan.publish_base("", &url), "http://h:9/push/pub/");
        assert!(Server::Nchan.endpoint("http://h:9/?a=b").is_err());
        assert!(Server::Nchan.endpoint("not a url").is_err());
    }

    #[test]
    fn herald_urls_are_the_mercure_endpoint() {
        let url = Server::Herald.endpoint("http://127.0.0.1:9").unwrap();
        assert_eq!(
            Server::Herald.subscribe_target(&url),
            "/.well-known/mercure?topic="
        );
        let url = Server::Herald.endpoint("http://h/events?x=1").unwrap();
        assert_eq!(Server::Herald.subscribe_target(&url), "/events?x=1&topic=");
        assert_eq!(Server::Herald.encode_topic("a/b c"), "a%2Fb+c");
        assert_eq!(Server::Nchan.encode_topic("a-1"), "a-1");
    }
}

//! Who the bench is to the hub: the publisher's token (`--token`, or minted from `--key`) and
//! the subscribers' (`--subscriber-token`, or minted from `--subscriber-key`; anonymous
//! otherwise, so that a hub whose subscriber key differs from its publisher key is benched as
//! its browsers would reach it). Minting is the caller's: this crate never links the server.

use clap::Args;

/// Mints an HS256 token for a run from a key: `(key, publish topics, subscribe topics)`.
pub type Mint = fn(&str, &[&str], &[&str]) -> Result<String, String>;

/// The credentials flags of `herald bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchAuth {
    /// A JWT whose mercure.publish claim covers the topics (wins over --key)
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The hub's HMAC secret (its --jwt-key): a HS256 token is minted for this run
    #[arg(long, env = "HERALD_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// A JWT the subscriptions send (wins over --subscriber-key) [default: subscribe
    /// anonymously, which needs a hub started with --anonymous]
    #[arg(
        long,
        env = "HERALD_SUBSCRIBER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub subscriber_token: Option<String>,
    /// The hub's subscriber HMAC secret (its --subscriber-jwt-key, or --jwt-key): a HS256 token
    /// whose mercure.subscribe claim is `*` is minted for the subscriptions
    #[arg(
        long,
        env = "HERALD_SUBSCRIBER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub subscriber_key: Option<String>,
}

/// The tokens of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Tokens {
    pub(super) publisher: Option<String>,
    pub(super) subscriber: Option<String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|value| !value.is_empty())
}

impl BenchAuth {
    /// The publisher's and the subscribers' tokens.
    pub(super) fn tokens(&self, mint: Mint) -> Result<Tokens, String> {
        let publisher = match (given(&self.token), given(&self.key)) {
            (Some(token), _) => Some(token.to_owned()),
            (None, Some(key)) => Some(
                mint(key, &["*"], &[])
                    .map_err(|error| format!("cannot mint a token from --key: {error}"))?,
            ),
            (None, None) => None,
        };
        let subscriber =
            match (given(&self.subscriber_token), given(&self.subscriber_key)) {
                (Some(token), _) => Some(token.to_owned()),
                (None, Some(key)) => Some(mint(key, &[], &["*"]).map_err(|error| {
                    format!("cannot mint a token from --subscriber-key: {error}")
                })?),
                (None, None) => None,
            };
        Ok(Tokens {
            publisher,
            subscriber,
        })
    }

    /// What the subscriptions sent, and what to do when the hub refuses them.
    pub(super) fn subscribe_refused_hint(&self) -> &'static str {
        if given(&self.subscriber_token).is_some() {
            "the subscriptions sent --subscriber-token: does its mercure.subscribe claim cover \
             the topics, and is it signed with the hub's subscriber key?"
        } else if given(&self.subscriber_key).is_some() {
            "the subscriptions sent a token minted from --subscriber-key: is it the hub's \
             --subscriber-jwt-key (or its --jwt-key)?"
        } else {
            "the subscriptions sent no token (anonymous; --key only signs the publisher's \
             token): start the hub with --anonymous, or give --subscriber-key (the hub's \
             --subscriber-jwt-key, or its --jwt-key) or --subscriber-token"
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fake_mint(key: &str, publish: &[&str], subscribe: &[&str]) -> Result<String, String> {
        Ok(format!(
            "{key}:{}:{}",
            publish.join(","),
            subscribe.join(",")
        ))
    }

    fn auth(token: &str, key: &str, subscriber_token: &str, subscriber_key: &str) -> BenchAuth {
        let some = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        BenchAuth {
            token: some(token),
            key: some(key),
            subscriber_token: some(subscriber_token),
            subscriber_key: some(subscriber_key),
        }
    }

    #[test]
    fn the_key_signs_only_the_publisher_and_subscriptions_stay_anonymous() {
        let tokens = auth("", "k", "", "").tokens(fake_mint).unwrap();
        assert_eq!(tokens.publisher.as_deref(), Some("k:*:"));
        assert_eq!(tokens.subscriber, None);
        let hint = auth("", "k", "", "").subscribe_refused_hint();
        assert!(
            hint.contains("no token") && hint.contains("--subscriber-key"),
            "{hint}"
        );
    }

    #[test]
    fn subscriber_credentials_are_their_own() {
        let tokens = auth("", "pk", "", "sk").tokens(fake_mint).unwrap();
        assert_eq!(tokens.publisher.as_deref(), Some("pk:*:"));
        assert_eq!(tokens.subscriber.as_deref(), Some("sk::*"));
        let tokens = auth("p", "pk", "s", "sk").tokens(fake_mint).unwrap();
        assert_eq!(tokens.publisher.as_deref(), Some("p"));
        assert_eq!(tokens.subscriber.as_deref(), Some("s"));
        assert_eq!(
            auth("", "", "", "").tokens(fake_mint).unwrap(),
            Tokens::default()
        );
        assert!(
            auth("", "", "s", "")
                .subscribe_refused_hint()
                .contains("--subscriber-token")
        );
        assert!(
            auth("", "", "", "k")
                .subscribe_refused_hint()
                .contains("--subscriber-key")
        );
    }
}

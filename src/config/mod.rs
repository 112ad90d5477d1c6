//! Configuration: the `herald serve` flags (each also a `HERALD_*` environment variable and a key
//! of an optional TOML file), merged and validated into a [`Config`] before any socket is bound.
//!
//! Precedence: command line, then environment, then `--config` file, then built-in defaults.
//! Every problem is a [`ConfigError`] with one clear line; `main` maps it to exit code 64.

mod file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::{Algorithm, KeyConfig};
use crate::store::Retention;

/// Default address: loopback only, so a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8088";
/// Default publish body limit.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Default history size (updates kept).
pub const DEFAULT_HISTORY_SIZE: usize = 10_000;
/// Default per-subscriber queue (frames waiting to be written).
pub const DEFAULT_QUEUE_SIZE: usize = 1024;

/// `herald serve` options. Every option is also an environment variable and a TOML key.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on (HTTP/1.1 and HTTP/2 cleartext on the same port)
    /// [default: 127.0.0.1:8088]
    #[arg(long, env = "HERALD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// History store: a directory for the durable embedded store (`PATH/herald.redb`, survives
    /// restarts and crashes), `memory:` (a bounded in-process ring, lost on restart), or
    /// `redis://host:port/[db]` (Redis Streams, shared by every node using the same Redis and
    /// prefix) [default: ./herald-data]
    #[arg(long, env = "HERALD_STORE", value_name = "PATH|memory:|redis://…")]
    pub store: Option<String>,

    /// Prefix of the Redis keys (`PREFIX:log`, `PREFIX:ids`, …); nodes sharing a prefix share
    /// history and updates [default: herald]
    #[arg(long, env = "HERALD_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,

    /// JWT key for both publishers and subscribers (HS*: the secret; RS*/ES*/EdDSA: a PEM public
    /// key or the path to one). Without any key, a random secret is made for this run and a
    /// token is printed.
    #[arg(
        long,
        env = "HERALD_JWT_KEY",
        value_name = "KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub jwt_key: Option<String>,

    /// JWT key for publishers only (overrides --jwt-key for them)
    #[arg(
        long,
        env = "HERALD_PUBLISHER_JWT_KEY",
        value_name = "KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub publisher_jwt_key: Option<String>,

    /// JWT key for subscribers only (overrides --jwt-key for them)
    #[arg(
        long,
        env = "HERALD_SUBSCRIBER_JWT_KEY",
        value_name = "KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub subscriber_jwt_key: Option<String>,

    /// URL of a JWKS (JSON Web Key Set) whose keys verify both publishers and subscribers,
    /// fetched at start-up, cached, refreshed every 5 minutes and on an unknown key id
    #[arg(long, env = "HERALD_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// JWKS URL for publishers only
    #[arg(long, env = "HERALD_PUBLISHER_JWKS_URL", value_name = "URL")]
    pub publisher_jwks_url: Option<String>,

    /// JWKS URL for subscribers only
    #[arg(long, env = "HERALD_SUBSCRIBER_JWKS_URL", value_name = "URL")]
    pub subscriber_jwks_url: Option<String>,

    /// JWT algorithm: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256,
    /// ES384, EdDSA. Tokens signed with any other algorithm are refused. [default: HS256]
    #[arg(long, env = "HERALD_JWT_ALGORITHM", value_name = "ALG")]
    pub jwt_algorithm: Option<String>,

    /// Let subscribers without a token receive public updates
    #[arg(long, env = "HERALD_ANONYMOUS")]
    pub anonymous: bool,

    /// Origin allowed to subscribe and publish from a browser (repeatable, or comma-separated;
    /// `*` allows any origin but then without credentials)
    #[arg(
        long = "cors-origin",
        env = "HERALD_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Origin allowed to publish with the cookie (repeatable, or comma-separated; `*` for any).
    /// Defaults to the --cors-origin list.
    #[arg(
        long = "publish-origin",
        env = "HERALD_PUBLISH_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub publish_origins: Vec<String>,

    /// Interval of `:` heartbeat comments on quiet streams, e.g. `15s`, `1s`, `500ms`
    /// [default: 15s]
    #[arg(long, env = "HERALD_HEARTBEAT", value_name = "DURATION")]
    pub heartbeat: Option<String>,

    /// Updates kept in history for replay (0 keeps none) [default: 10000]
    #[arg(long, env = "HERALD_HISTORY_SIZE", value_name = "N")]
    pub history_size: Option<usize>,

    /// Drop history older than this, e.g. `1h`, `7d` [default: keep regardless of age]
    #[arg(long, env = "HERALD_HISTORY_MAX_AGE", value_name = "DURATION")]
    pub history_max_age: Option<String>,

    /// Publish subscription events and serve the subscriptions API
    #[arg(long, env = "HERALD_SUBSCRIPTIONS")]
    pub subscriptions: bool,

    /// Serve the demo pages (/chat, /clock, /console); implies --anonymous
    #[arg(long, env = "HERALD_DEMO")]
    pub demo: bool,

    /// Largest accepted publish body, e.g. `1MiB`, `64KiB`, or bytes [default: 1MiB]
    #[arg(long, env = "HERALD_MAX_BODY", value_name = "SIZE")]
    pub max_body: Option<String>,

    /// Frames queued per subscriber before it counts as lagging and catches up from history
    /// [default: 1024]
    #[arg(long, env = "HERALD_QUEUE_SIZE", value_name = "N")]
    pub queue_size: Option<usize>,

    /// TLS certificate chain (PEM); needs --tls-key
    #[arg(long, env = "HERALD_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM); needs --tls-cert
    #[arg(long, env = "HERALD_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Log format: `text` or `json` [default: text]
    #[arg(long, env = "HERALD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// TOML file with any of these options as keys (`listen = "0.0.0.0:8088"`,
    /// `cors-origin = ["https://a.example"]`); flags and environment win over it
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where history lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The in-process ring.
    Memory,
    /// The durable redb store in this directory.
    Path(PathBuf),
    /// Redis Streams at this URL, keys under this prefix (shared by several nodes).
    Redis { url: String, prefix: String },
}

/// The default prefix of the Redis keys.
pub const DEFAULT_REDIS_PREFIX: &str = "herald";

/// The default store directory.
pub const DEFAULT_STORE: &str = "./herald-data";

/// Which browser origins get CORS headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// No cross-origin access.
    #[default]
    None,
    /// Any origin, without credentials.
    Any,
    /// These origins, with credentials.
    List(Vec<String>),
}

impl OriginPolicy {
    fn from_list(origins: Vec<String>) -> OriginPolicy {
        if origins.iter().any(|origin| origin == "*") {
            OriginPolicy::Any
        } else if origins.is_empty() {
            OriginPolicy::None
        } else {
            OriginPolicy::List(origins)
        }
    }

    /// Is `origin` allowed?
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            OriginPolicy::None => false,
            OriginPolicy::Any => true,
            OriginPolicy::List(origins) => origins.iter().any(|allowed| allowed == origin),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreSpec,
    pub keys: KeyConfig,
    /// JWKS URLs: (publishers, subscribers).
    pub jwks: (Option<String>, Option<String>),
    pub anonymous: bool,
    pub cors: OriginPolicy,
    pub publish_origins: OriginPolicy,
    pub heartbeat: Duration,
    pub retention: Retention,
    pub subscriptions: bool,
    pub demo: bool,
    pub max_body: usize,
    pub queue_size: usize,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub log_format: LogFormat,
}

/// A configuration problem, said in one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --{flag} {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Other(String),
}

fn invalid(flag: &'static str, value: &str, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}

impl Config {
    /// Merges the flags with the optional TOML file and validates everything.
    pub fn from_args(args: ServeArgs) -> Result<Config, ConfigError> {
        let args = match &args.config {
            Some(path) => file::merge(args.clone(), &file::read(path)?),
            None => args,
        };
        Config::validate(args)
    }

    fn validate(args: ServeArgs) -> Result<Config, ConfigError> {
        let listen_text = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|e| invalid("listen", listen_text, e))?;

        let store = match args.store.as_deref().unwrap_or(DEFAULT_STORE) {
            "memory:" | "memory" => StoreSpec::Memory,
            "" => return Err(invalid("store", "", "give a directory or `memory:`")),
            url if url.starts_with("redis://") => {
                if let Err(error) = ::redis::Client::open(url) {
                    return Err(invalid("store", url, error));
                }
                let prefix = args
                    .redis_prefix
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned());
                if prefix.is_empty() {
                    return Err(invalid("redis-prefix", "", "must not be empty"));
                }
                StoreSpec::Redis {
                    url: url.to_owned(),
                    prefix,
                }
            }
            other if other.contains("://") => {
                return Err(invalid(
                    "store",
                    other,
                    "unknown store URL: use redis://host:port/[db], a directory, or `memory:`",
                ));
            }
            path => StoreSpec::Path(PathBuf::from(path)),
        };

        let algorithm = match &args.jwt_algorithm {
            Some(text) => text
                .parse::<Algorithm>()
                .map_err(|e| invalid("jwt-algorithm", text, e))?,
            None => Algorithm::default(),
        };
        let non_empty = |flag: &'static str, key: Option<String>| match key {
            Some(key) if key.is_empty() => Err(invalid(flag, "", "must not be empty")),
            other => Ok(other),
        };
        let shared = non_empty("jwt-key", args.jwt_key)?;
        let keys = KeyConfig {
            publisher_key: non_empty("publisher-jwt-key", args.publisher_jwt_key)?
                .or_else(|| shared.clone()),
            subscriber_key: non_empty("subscriber-jwt-key", args.subscriber_jwt_key)?.or(shared),
            algorithm,
        };

        for url in [
            &args.jwks_url,
            &args.publisher_jwks_url,
            &args.subscriber_jwks_url,
        ]
        .into_iter()
        .flatten()
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "jwks-url",
                    url,
                    "expected an http:// or https:// URL",
                ));
            }
        }
        let jwks = (
            args.publisher_jwks_url.or_else(|| args.jwks_url.clone()),
            args.subscriber_jwks_url.or(args.jwks_url),
        );
        let heartbeat = match &args.heartbeat {
            Some(text) => parse_duration("heartbeat", text)?,
            None => Duration::from_secs(15),
        };
        if heartbeat.is_zero() {
            return Err(invalid("heartbeat", "0", "must be above zero"));
        }
        let max_age = args
            .history_max_age
            .as_deref()
            .map(|text| parse_duration("history-max-age", text))
            .transpose()?;
        if max_age.is_some_and(|age| age.is_zero()) {
            return Err(invalid("history-max-age", "0", "must be above zero"));
        }
        let max_body = match &args.max_body {
            Some(text) => parse_size("max-body", text)?,
            None => DEFAULT_MAX_BODY,
        };
        let queue_size = args.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
        if queue_size == 0 {
            return Err(invalid("queue-size", "0", "must be at least 1"));
        }
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Other(
                    "--tls-cert and --tls-key must be given together".into(),
                ));
            }
        };
        if tls.is_some() {
            return Err(ConfigError::Other(
                "TLS is not supported by this build yet; put a TLS proxy in front".into(),
            ));
        }
        let log_format = match args.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(invalid("log-format", other, "expected `text` or `json`")),
        };
        for origin in args.cors_origins.iter().chain(&args.publish_origins) {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    "cors-origin",
                    origin,
                    "an origin looks like `https://example.com` (scheme, host, optional port)",
                ));
            }
        }
        let publish_origins = if args.publish_origins.is_empty() {
            args.cors_origins.clone()
        } else {
            args.publish_origins
        };

        Ok(Config {
            listen,
            store,
            keys,
            jwks,
            anonymous: args.anonymous || args.demo,
            cors: OriginPolicy::from_list(args.cors_origins),
            publish_origins: OriginPolicy::from_list(publish_origins),
            heartbeat,
            retention: Retention {
                max_events: args.history_size.unwrap_or(DEFAULT_HISTORY_SIZE),
                max_age,
            },
            subscriptions: args.subscriptions,
            demo: args.demo,
            max_body,
            queue_size,
            tls,
            log_format,
        })
    }
}

fn parse_duration(flag: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| invalid(flag, text, e))
}

/// Parses `1048576`, `64KiB`, `1MiB`, `1MB`, `512k`.
fn parse_size(flag: &'static str, text: &str) -> Result<usize, ConfigError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: usize = digits
        .parse()
        .map_err(|_| invalid(flag, text, "expected a size such as 1MiB or 65536"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(invalid(flag, text, "unknown unit (use KiB or MiB)")),
    };
    number
        .checked_mul(factor)
        .filter(|size| *size > 0)
        .ok_or_else(|| invalid(flag, text, "must be above zero and fit in memory"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let config = Config::from_args(ServeArgs::default()).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.heartbeat, Duration::from_secs(15));
        assert_eq!(config.max_body, DEFAULT_MAX_BODY);
        assert!(!config.anonymous);
        assert_eq!(config.cors, OriginPolicy::None);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let error = Config::from_args(ServeArgs {
            heartbeat: Some("soon".into()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("--heartbeat"), "{error}");
        let error = Config::from_args(ServeArgs {
            listen: Some("nowhere".into()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("--listen"), "{error}");
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("max-body", "64KiB").unwrap(), 65536);
        assert_eq!(parse_size("max-body", "1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("max-body", "100").unwrap(), 100);
        assert!(parse_size("max-body", "0").is_err());
        assert!(parse_size("max-body", "3 parsecs").is_err());
    }

    #[test]
    fn star_origin_means_any_without_credentials() {
        let config = Config::from_args(ServeArgs {
            cors_origins: vec!["*".into()],
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.cors, OriginPolicy::Any);
        assert_eq!(config.publish_origins, OriginPolicy::Any);
    }
}

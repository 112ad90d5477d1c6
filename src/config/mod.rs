//! Configuration: the `herald serve` flags (each also a `HERALD_*` environment variable and a key
//! of an optional TOML file), merged and validated into a [`Config`] before any socket is bound.
//!
//! Precedence: command line, then environment, then `--config` file, then built-in defaults.
//! Every problem is a [`ConfigError`] with one clear line; `main` maps it to exit code 64.
//!
//! The options are declared once, in [`ServeArgs`] (`args.rs`); `file.rs` layers the TOML file
//! under them, `validate.rs` turns them into a [`Config`] section by section, `parse.rs` reads
//! the values.

mod args;
mod file;
mod parse;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{Algorithm, KeyConfig};
use crate::store::Retention;

pub use args::ServeArgs;
pub(crate) use parse::{default_max_connections, open_file_limit, parse_listen};

/// Default address: loopback only, so a first run exposes nothing.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8088";
/// Default publish body limit.
pub(crate) const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Default history size (updates kept).
pub(crate) const DEFAULT_HISTORY_SIZE: usize = 10_000;
/// `--history-per-topic` with `--demo` (memory: and PATH stores): the chat's last messages
/// survive the clock's ticks. Off (0) otherwise by default: see [`ServeArgs::history_per_topic`].
pub(crate) const DEMO_HISTORY_PER_TOPIC: usize = 10;
/// Default per-subscriber queue (frames waiting to be written).
pub(crate) const DEFAULT_QUEUE_SIZE: usize = 1024;
/// Default most selectors in one subscription.
pub(crate) const DEFAULT_MAX_TOPICS_PER_SUBSCRIPTION: usize = 100;
/// Default longest topic or selector, in bytes.
pub(crate) const DEFAULT_MAX_TOPIC_LENGTH: usize = 2048;
/// Default longest event id or type, in bytes.
pub(crate) const DEFAULT_MAX_ID_LENGTH: usize = 256;
/// Default bytes of frames one subscriber may have queued before it catches up from history.
pub(crate) const DEFAULT_QUEUE_BYTES: usize = 1024 * 1024;
/// Default time a write may wait for a client's socket to drain before the connection is closed.
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client has to send its request headers (slowloris).
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total complexity of the URI templates of one subscription (see
/// `topic::template::Template::complexity`): room for about ten ordinary templates.
pub(crate) const DEFAULT_MAX_TEMPLATE_COMPLEXITY: usize = 256;
/// Default time shutdown may take before the process exits anyway.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default connection limit when the open-file limit cannot be read.
pub(crate) const FALLBACK_MAX_CONNECTIONS: usize = 10_000;
/// File descriptors always kept free below the open-file limit: the listener, the store, and
/// refused connections while they are being answered.
pub(crate) const MIN_FD_RESERVE: usize = 32;
/// The largest descriptor reserve the default connection limit keeps.
pub(crate) const MAX_FD_RESERVE: usize = 512;

/// A Mercure 1.0 issuer verified with its own key only.
#[derive(Clone)]
pub struct IssuerKey {
    pub issuer: String,
    /// HS*: the secret; others: PEM text or a path to a PEM file.
    pub key: String,
    pub algorithm: Algorithm,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKey")
            .field("issuer", &self.issuer)
            .field("key", &"[redacted]")
            .field("algorithm", &self.algorithm)
            .finish()
    }
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
    /// A NATS JetStream stream named after this prefix (shared by several nodes).
    Nats { url: String, prefix: String },
}

/// The default prefix of the Redis keys.
pub(crate) const DEFAULT_REDIS_PREFIX: &str = "herald";
/// The default NATS stream prefix (the stream is `HERALD`).
pub(crate) const DEFAULT_NATS_PREFIX: &str = "herald";

/// The default store directory.
pub(crate) const DEFAULT_STORE: &str = "./herald-data";

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
    pub(crate) fn allows(&self, origin: &str) -> bool {
        match self {
            OriginPolicy::None => false,
            OriginPolicy::Any => true,
            OriginPolicy::List(origins) => origins.iter().any(|allowed| allowed == origin),
        }
    }
}

/// The publish rate limit: `burst` publishes at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishRate {
    pub per_second: f64,
    pub burst: u32,
}

impl std::fmt::Display for PublishRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (amount, unit) = if self.per_second >= 1.0 {
            (self.per_second, "s")
        } else if self.per_second * 60.0 >= 1.0 {
            (self.per_second * 60.0, "min")
        } else {
            (self.per_second * 3600.0, "h")
        };
        let amount = (amount * 100.0).round() / 100.0;
        write!(f, "{amount}/{unit} (burst {})", self.burst)
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
    /// Trusted issuers of Mercure 1.0 access tokens.
    pub jwt_issuers: Vec<String>,
    /// The hub's resource identifier (Mercure 1.0); `None`: derived per request.
    pub resource_identifier: Option<url::Url>,
    /// Name of the Mercure 1.0 access token cookie.
    pub cookie_name: String,
    /// Issuers with their own key (TOML `issuer-keys`); they are trusted too.
    pub issuer_keys: Vec<IssuerKey>,
    pub cors: OriginPolicy,
    pub publish_origins: OriginPolicy,
    pub heartbeat: Duration,
    pub retention: Retention,
    pub subscriptions: bool,
    pub demo: bool,
    pub max_body: usize,
    pub queue_size: usize,
    /// Bytes of frames one subscriber may have queued.
    pub queue_bytes: usize,
    /// Deadline for a write to a client's socket.
    pub write_timeout: Duration,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub log_format: LogFormat,
    /// Most open connections.
    pub max_connections: usize,
    /// Most open connections per client address; 0: no limit.
    pub max_connections_per_ip: usize,
    pub max_topics_per_subscription: usize,
    pub max_topic_length: usize,
    /// `None`: publishes are not rate-limited.
    pub publish_rate: Option<PublishRate>,
    /// Deadline for a request head (and a new connection's first request).
    pub header_timeout: Duration,
    /// Longest event id or type a publisher may set, in bytes.
    pub max_id_length: usize,
    /// Where `/metrics` is served instead of the main port; `None`: on the main port.
    pub metrics_listen: Option<SocketAddr>,
    /// Most total complexity of one subscription's URI templates.
    pub max_template_complexity: usize,
    /// Longest a shutdown may take before the process exits anyway.
    pub shutdown_timeout: Duration,
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
    /// A key that cannot be used (an empty secret, an unreadable or unusable PEM).
    #[error(transparent)]
    Keys(#[from] crate::auth::KeyError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
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
            Some(path) => file::layer(args.clone(), path)?,
            None => args,
        };
        validate::validate(args)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

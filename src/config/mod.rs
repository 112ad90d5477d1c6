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
/// `--history-per-topic` with `--demo` (memory: and PATH stores): the chat's last messages
/// survive the clock's ticks. Off (0) otherwise by default: see [`ServeArgs::history_per_topic`].
pub const DEMO_HISTORY_PER_TOPIC: usize = 10;
/// Default per-subscriber queue (frames waiting to be written).
pub const DEFAULT_QUEUE_SIZE: usize = 1024;
/// Default most selectors in one subscription.
pub const DEFAULT_MAX_TOPICS_PER_SUBSCRIPTION: usize = 100;
/// Default longest topic or selector, in bytes.
pub const DEFAULT_MAX_TOPIC_LENGTH: usize = 2048;
/// Default longest event id or type, in bytes.
pub const DEFAULT_MAX_ID_LENGTH: usize = 256;
/// Default bytes of frames one subscriber may have queued before it catches up from history.
pub const DEFAULT_QUEUE_BYTES: usize = 1024 * 1024;
/// Default time a write may wait for a client's socket to drain before the connection is closed.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client has to send its request headers (slowloris).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total complexity of the URI templates of one subscription (see
/// `topic::template::Template::complexity`): room for about ten ordinary templates.
pub const DEFAULT_MAX_TEMPLATE_COMPLEXITY: usize = 256;
/// Default time shutdown may take before the process exits anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default connection limit when the open-file limit cannot be read.
pub const FALLBACK_MAX_CONNECTIONS: usize = 10_000;
/// File descriptors always kept free below the open-file limit: the listener, the store, and
/// refused connections while they are being answered.
pub const MIN_FD_RESERVE: usize = 32;
/// The largest descriptor reserve the default connection limit keeps.
pub const MAX_FD_RESERVE: usize = 512;

/// `herald serve` options. Every option is also an environment variable and a TOML key.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on (HTTP/1.1 and HTTP/2 cleartext on the same port): `IP:PORT`,
    /// `HOST:PORT` (e.g. `localhost:8088`), `:PORT` (every interface, like `0.0.0.0:PORT`) or
    /// `PORT` (loopback only) [default: 127.0.0.1:8088]
    #[arg(long, env = "HERALD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// History store: a directory for the durable embedded store (`PATH/herald.redb`, survives
    /// restarts and crashes), `memory:` (a bounded in-process ring, lost on restart), or
    /// `redis://host:port/[db]` (Redis Streams, shared by every node using the same Redis and
    /// prefix, see --redis-prefix), or `nats://host:port/` (a NATS JetStream stream, shared by
    /// every node using the same server and prefix, see --nats-prefix) [default: ./herald-data]
    #[arg(
        long,
        env = "HERALD_STORE",
        value_name = "PATH|memory:|redis://…|nats://…"
    )]
    pub store: Option<String>,

    /// Prefix of the Redis keys (`PREFIX:log`, `PREFIX:ids`, …); nodes sharing a prefix share
    /// history and updates [default: herald]
    #[arg(long, env = "HERALD_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,

    /// Name of the NATS JetStream stream (upper-cased) and prefix of its subjects
    /// (`PREFIX.updates.>`); nodes sharing it share history and updates [default: herald]
    #[arg(long, env = "HERALD_NATS_PREFIX", value_name = "PREFIX")]
    pub nats_prefix: Option<String>,

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
    #[arg(long, env = "HERALD_ANONYMOUS", value_parser = boolish())]
    pub anonymous: bool,

    /// Mercure 1.0: an issuer (`iss`) whose access tokens (`typ: at+jwt`) are trusted, verified
    /// with the hub's keys (repeatable, or comma-separated)
    #[arg(
        long = "jwt-issuer",
        env = "HERALD_JWT_ISSUER",
        value_name = "ISS",
        value_delimiter = ','
    )]
    pub jwt_issuers: Vec<String>,

    /// Mercure 1.0: the hub's resource identifier, an absolute URL such as
    /// `https://example.com/.well-known/mercure`: access tokens' `aud` must contain it, and
    /// relative topics and patterns resolve against it [default: derived per request from the
    /// URL the client contacted]
    #[arg(long, env = "HERALD_RESOURCE_IDENTIFIER", value_name = "URL")]
    pub resource_identifier: Option<String>,

    /// Mercure 1.0: name of the cookie that carries an access token
    /// [default: __Secure-mercure_access_token]
    #[arg(long, env = "HERALD_COOKIE_NAME", value_name = "NAME")]
    pub cookie_name: Option<String>,

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

    /// Also keep each topic's newest N updates when --history-size trims: the last
    /// --history-size updates stay as before, and an older one stays while it is among the
    /// newest N of one of its topics (N above --history-size counts as --history-size). Past
    /// 2 x --history-size in all, the oldest go first: that limit wins. --history-max-age
    /// applies to every update. memory: and PATH stores only (refused with redis:// and
    /// nats://) [default: 0 (off); 10 with --demo]
    #[arg(long, env = "HERALD_HISTORY_PER_TOPIC", value_name = "N")]
    pub history_per_topic: Option<usize>,

    /// Publish subscription events and serve the subscriptions API
    #[arg(long, env = "HERALD_SUBSCRIPTIONS", value_parser = boolish())]
    pub subscriptions: bool,

    /// Serve the demo pages (/chat, /clock, /console); implies --anonymous
    #[arg(long, env = "HERALD_DEMO", value_parser = boolish())]
    pub demo: bool,

    /// Largest accepted publish body, e.g. `1MiB`, `64KiB`, or bytes [default: 1MiB]
    #[arg(long, env = "HERALD_MAX_BODY", value_name = "SIZE")]
    pub max_body: Option<String>,

    /// Frames queued per subscriber before it counts as lagging and catches up from history
    /// [default: 1024]
    #[arg(long, env = "HERALD_QUEUE_SIZE", value_name = "N")]
    pub queue_size: Option<usize>,

    /// Bytes of frames queued per subscriber (whichever of this and --queue-size comes first)
    /// before it catches up from history, e.g. `1MiB` [default: 1MiB]
    #[arg(long, env = "HERALD_QUEUE_BYTES", value_name = "SIZE")]
    pub queue_bytes: Option<String>,

    /// A connection whose socket has not taken a write within this time (a client that stopped
    /// reading) is closed, e.g. `30s` [default: 30s]
    #[arg(long, env = "HERALD_WRITE_TIMEOUT", value_name = "DURATION")]
    pub write_timeout: Option<String>,

    /// TLS certificate chain (PEM); needs --tls-key
    #[arg(long, env = "HERALD_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM); needs --tls-cert
    #[arg(long, env = "HERALD_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Log format: `text` or `json` [default: text]
    #[arg(long, env = "HERALD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Most open client connections; past it a new connection is answered 503 (problem+json,
    /// Retry-After) and closed [default: the open-file limit minus a reserve of 1/32 of it,
    /// 32 to 512 descriptors; 19,488 with `ulimit -n` 20000]
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Most open connections from one client address (IPv6: one /64); past it a new connection
    /// is answered 429. 0 turns the limit off; leave it off behind a proxy, where every client
    /// has the proxy's address [default: 0]
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Most topic selectors in one subscription (400 above) [default: 100]
    #[arg(long, env = "HERALD_MAX_TOPICS_PER_SUBSCRIPTION", value_name = "N")]
    pub max_topics_per_subscription: Option<usize>,

    /// Longest topic selector of a subscription, or topic of an update, in bytes (400 above)
    /// [default: 2048]
    #[arg(long, env = "HERALD_MAX_TOPIC_LENGTH", value_name = "BYTES")]
    pub max_topic_length: Option<usize>,

    /// Publishes allowed per token (its `sub` claim, or the token itself), e.g. `10/s`,
    /// `600/min`, `100/h`; past it 429 with Retry-After [default: unlimited]
    #[arg(long, env = "HERALD_PUBLISH_RATE", value_name = "RATE")]
    pub publish_rate: Option<String>,

    /// Publishes a token may make at once before --publish-rate applies [default: the rate per
    /// second, at least 1]
    #[arg(long, env = "HERALD_PUBLISH_BURST", value_name = "N")]
    pub publish_burst: Option<u32>,

    /// Time a client has to send a complete request head (and a new connection its first
    /// request) before it is cut off, e.g. `10s` [default: 10s]
    #[arg(long, env = "HERALD_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,

    /// Longest event id or event type a publisher may set, in bytes (400 above). Ids come back
    /// in `Last-Event-ID` request headers, so an id too long for a header would make its
    /// subscribers unable to resume [default: 256]
    #[arg(long, env = "HERALD_MAX_ID_LENGTH", value_name = "BYTES")]
    pub max_id_length: Option<usize>,

    /// Serve `/metrics` on this separate address only (typically loopback, e.g.
    /// `127.0.0.1:9090`); the main port then answers 404 for it. Without it, `/metrics` is on
    /// the main port, open to anyone who reaches it [default: none]
    #[arg(long, env = "HERALD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Most total complexity of the URI templates of one subscription (400 above): one unit per
    /// literal byte after a template's first expression, 3 to 8 per variable; matching one topic
    /// costs at most complexity × topic length steps [default: 256]
    #[arg(long, env = "HERALD_MAX_TEMPLATE_COMPLEXITY", value_name = "N")]
    pub max_template_complexity: Option<usize>,

    /// Longest a shutdown (SIGTERM, SIGINT) may take: streams are ended and connections given
    /// this long to close, then the process exits whatever is still running, e.g. `5s`
    /// [default: 5s]
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,

    /// TOML file with any of these options as keys (`listen = "0.0.0.0:8088"`,
    /// `cors-origin = ["https://a.example"]`); flags and environment win over it
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Mercure 1.0 issuers bound to their own key (TOML only: `[issuer-keys."ISS"]` with `key`
    /// and an optional `algorithm`): (issuer, key, algorithm).
    #[arg(skip)]
    pub issuer_keys: Vec<(String, String, Option<String>)>,
}

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

/// Boolean flags read `1/0`, `true/false`, `yes/no`, `on/off` from the environment.
fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
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
pub const DEFAULT_REDIS_PREFIX: &str = "herald";
/// The default NATS stream prefix (the stream is `HERALD`).
pub const DEFAULT_NATS_PREFIX: &str = "herald";

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
        let listen = parse_listen(listen_text)?;

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
            url if url.starts_with("nats://") => {
                let prefix = args
                    .nats_prefix
                    .clone()
                    .unwrap_or_else(|| DEFAULT_NATS_PREFIX.to_owned());
                let valid = !prefix.is_empty()
                    && prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    return Err(invalid(
                        "nats-prefix",
                        &prefix,
                        "use letters, digits, `-` and `_` only",
                    ));
                }
                StoreSpec::Nats {
                    url: url.to_owned(),
                    prefix,
                }
            }
            other if other.contains("://") => {
                return Err(invalid(
                    "store",
                    other,
                    "unknown store URL: use redis://host:port/[db], nats://host:port/, a directory, or `memory:`",
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
        let per_topic = match (args.history_per_topic, &store) {
            (Some(0), _) => 0,
            (Some(n), StoreSpec::Redis { .. } | StoreSpec::Nats { .. }) => {
                return Err(invalid(
                    "history-per-topic",
                    &n.to_string(),
                    "only memory: and PATH stores support it (redis:// and nats:// keep one \
                     shared ring; leave it unset or 0)",
                ));
            }
            (Some(n), _) => n,
            (None, StoreSpec::Memory | StoreSpec::Path(_)) if args.demo => DEMO_HISTORY_PER_TOPIC,
            (None, _) => 0,
        };
        // The newest --history-size updates stay anyway: a topic whose newest N all fit in
        // them needs no extra place, so with N capped there the extra places go to the topics
        // the busy ones pushed out (the demo's chat beside its clock, even at --history-size 5).
        let history_size = args.history_size.unwrap_or(DEFAULT_HISTORY_SIZE);
        let per_topic = per_topic.min(history_size);
        let max_body = match &args.max_body {
            Some(text) => parse_size("max-body", text)?,
            None => DEFAULT_MAX_BODY,
        };
        let queue_size = args.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
        if queue_size == 0 {
            return Err(invalid("queue-size", "0", "must be at least 1"));
        }
        let queue_bytes = match &args.queue_bytes {
            Some(text) => parse_size("queue-bytes", text)?,
            None => DEFAULT_QUEUE_BYTES,
        };
        let write_timeout = match &args.write_timeout {
            Some(text) => parse_duration("write-timeout", text)?,
            None => DEFAULT_WRITE_TIMEOUT,
        };
        if write_timeout.is_zero() {
            return Err(invalid("write-timeout", "0", "must be above zero"));
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
        let max_connections = match args.max_connections {
            Some(0) => return Err(invalid("max-connections", "0", "must be at least 1")),
            Some(max) => {
                if let Some(files) = open_file_limit()
                    && max.saturating_add(MIN_FD_RESERVE) > files
                {
                    return Err(invalid(
                        "max-connections",
                        &max.to_string(),
                        format!(
                            "above the open-file limit ({files}) minus a reserve of \
                             {MIN_FD_RESERVE}: raise `ulimit -n` or lower the limit"
                        ),
                    ));
                }
                max
            }
            None => default_max_connections(open_file_limit()),
        };
        let max_topics_per_subscription = args
            .max_topics_per_subscription
            .unwrap_or(DEFAULT_MAX_TOPICS_PER_SUBSCRIPTION);
        if max_topics_per_subscription == 0 {
            return Err(invalid(
                "max-topics-per-subscription",
                "0",
                "must be at least 1",
            ));
        }
        let max_topic_length = args.max_topic_length.unwrap_or(DEFAULT_MAX_TOPIC_LENGTH);
        if max_topic_length == 0 {
            return Err(invalid("max-topic-length", "0", "must be at least 1"));
        }
        let publish_rate = args
            .publish_rate
            .as_deref()
            .map(|text| parse_rate(text, args.publish_burst))
            .transpose()?;
        if args.publish_burst == Some(0) {
            return Err(invalid("publish-burst", "0", "must be at least 1"));
        }
        let header_timeout = match &args.header_timeout {
            Some(text) => parse_duration("header-timeout", text)?,
            None => DEFAULT_HEADER_TIMEOUT,
        };
        if header_timeout.is_zero() {
            return Err(invalid("header-timeout", "0", "must be above zero"));
        }
        let max_id_length = args.max_id_length.unwrap_or(DEFAULT_MAX_ID_LENGTH);
        if max_id_length == 0 {
            return Err(invalid("max-id-length", "0", "must be at least 1"));
        }
        let metrics_listen = args
            .metrics_listen
            .as_deref()
            .map(|text| {
                text.parse::<SocketAddr>()
                    .map_err(|e| invalid("metrics-listen", text, e))
            })
            .transpose()?;
        if metrics_listen == Some(listen) {
            return Err(invalid(
                "metrics-listen",
                &listen.to_string(),
                "must differ from --listen",
            ));
        }
        let max_template_complexity = args
            .max_template_complexity
            .unwrap_or(DEFAULT_MAX_TEMPLATE_COMPLEXITY);
        if max_template_complexity == 0 {
            return Err(invalid(
                "max-template-complexity",
                "0",
                "must be at least 1",
            ));
        }
        let shutdown_timeout = match &args.shutdown_timeout {
            Some(text) => parse_duration("shutdown-timeout", text)?,
            None => DEFAULT_SHUTDOWN_TIMEOUT,
        };
        if shutdown_timeout.is_zero() {
            return Err(invalid("shutdown-timeout", "0", "must be above zero"));
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
        let jwt_issuers: Vec<String> = args
            .jwt_issuers
            .iter()
            .map(|issuer| issuer.trim().to_owned())
            .filter(|issuer| !issuer.is_empty())
            .collect();
        let mut issuer_keys = Vec::new();
        for (issuer, key, algorithm) in &args.issuer_keys {
            let algorithm = match algorithm {
                Some(text) => text
                    .parse::<Algorithm>()
                    .map_err(|e| invalid("config issuer-keys algorithm", text, e))?,
                None => keys.algorithm,
            };
            if key.is_empty() {
                return Err(invalid(
                    "config issuer-keys key",
                    issuer,
                    "the key is empty",
                ));
            }
            issuer_keys.push(IssuerKey {
                issuer: issuer.clone(),
                key: key.clone(),
                algorithm,
            });
        }
        let resource_identifier = match &args.resource_identifier {
            Some(text) => match url::Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
                _ => {
                    return Err(invalid(
                        "resource-identifier",
                        text,
                        "expected an absolute http:// or https:// URL",
                    ));
                }
            },
            None => None,
        };
        let cookie_name = args
            .cookie_name
            .clone()
            .unwrap_or_else(|| crate::auth::ACCESS_COOKIE.to_owned());
        if cookie_name.is_empty()
            || !cookie_name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            return Err(invalid(
                "cookie-name",
                &cookie_name,
                "not a valid cookie name",
            ));
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
            jwt_issuers,
            resource_identifier,
            cookie_name,
            issuer_keys,
            cors: OriginPolicy::from_list(args.cors_origins),
            publish_origins: OriginPolicy::from_list(publish_origins),
            heartbeat,
            retention: Retention {
                max_events: history_size,
                max_age,
                per_topic,
            },
            subscriptions: args.subscriptions,
            demo: args.demo,
            max_body,
            queue_size,
            queue_bytes,
            write_timeout,
            tls,
            log_format,
            max_connections,
            max_connections_per_ip: args.max_connections_per_ip.unwrap_or(0),
            max_topics_per_subscription,
            max_topic_length,
            publish_rate,
            header_timeout,
            max_id_length,
            metrics_listen,
            max_template_complexity,
            shutdown_timeout,
        })
    }
}

/// `--listen`: `IP:PORT`, `[IPv6]:PORT`, `HOST:PORT` (resolved now, IPv4 first, e.g.
/// `localhost:8088`), `:PORT` (every interface, as in Go and Caddy) or `PORT` (loopback).
pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::{Ipv4Addr, ToSocketAddrs};
    let trimmed = text.trim();
    if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = |digits: &str| {
        digits
            .parse::<u16>()
            .map_err(|_| invalid("listen", text, "the port must be a number from 0 to 65535"))
    };
    if let Some(digits) = trimmed.strip_prefix(':') {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port(digits)?)));
    }
    if !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port(trimmed)?)));
    }
    let Some((host, digits)) = trimmed.rsplit_once(':') else {
        return Err(invalid(
            "listen",
            text,
            "expected HOST:PORT, IP:PORT, :PORT (every interface) or PORT (loopback)",
        ));
    };
    let port = port(digits)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(invalid("listen", text, "expected HOST:PORT"));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| invalid("listen", text, format!("cannot resolve {host}: {error}")))?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| invalid("listen", text, format!("{host} has no address")))
}

fn parse_duration(flag: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| invalid(flag, text, e))
}

/// The soft open-file limit of this process (`ulimit -n`), from `/proc/self/limits` (Linux).
pub fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The default connection limit: the open-file limit minus a reserve of 1/32 of it (at least
/// 32, at most 512 descriptors).
pub fn default_max_connections(open_files: Option<usize>) -> usize {
    match open_files {
        Some(files) => {
            let reserve = (files / 32).clamp(MIN_FD_RESERVE, MAX_FD_RESERVE);
            files.saturating_sub(reserve).max(1)
        }
        None => FALLBACK_MAX_CONNECTIONS,
    }
}

/// Parses `10/s`, `600/min`, `100/h` or a bare number (per second); the burst defaults to the
/// rate per second, at least 1.
fn parse_rate(text: &str, burst: Option<u32>) -> Result<PublishRate, ConfigError> {
    let bad = || {
        invalid(
            "publish-rate",
            text,
            "expected a rate such as 10/s, 600/min or 100/h",
        )
    };
    let (amount, unit) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
    let amount: f64 = amount.trim().parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(bad()),
    };
    let per_second = amount / seconds;
    if !per_second.is_finite() || per_second * 3600.0 < 1.0 {
        return Err(invalid("publish-rate", text, "must be at least 1 per hour"));
    }
    let burst = burst.unwrap_or_else(|| per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
    Ok(PublishRate { per_second, burst })
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
    fn listen_takes_the_forms_people_type() {
        let listen = |text: &str| parse_listen(text).map(|addr| addr.to_string());
        assert_eq!(listen("0.0.0.0:8088").unwrap(), "0.0.0.0:8088");
        assert_eq!(listen(":8088").unwrap(), "0.0.0.0:8088");
        assert_eq!(listen("8088").unwrap(), "127.0.0.1:8088");
        assert_eq!(listen("localhost:8088").unwrap(), "127.0.0.1:8088");
        assert_eq!(listen("[::1]:8088").unwrap(), "[::1]:8088");
        for bad in [
            "",
            ":",
            "99999",
            ":http",
            "localhost",
            "no such host:1",
            "a:b:c",
        ] {
            let error = listen(bad).unwrap_err().to_string();
            assert!(error.contains("--listen"), "{bad}: {error}");
        }
    }

    #[test]
    fn cluster_stores_take_a_url_and_a_prefix() {
        let store = |store: &str, redis: Option<&str>, nats: Option<&str>| {
            Config::from_args(ServeArgs {
                store: Some(store.into()),
                redis_prefix: redis.map(str::to_owned),
                nats_prefix: nats.map(str::to_owned),
                ..ServeArgs::default()
            })
            .map(|config| config.store)
        };
        assert_eq!(
            store("redis://127.0.0.1:6379/2", None, None).unwrap(),
            StoreSpec::Redis {
                url: "redis://127.0.0.1:6379/2".into(),
                prefix: DEFAULT_REDIS_PREFIX.into()
            }
        );
        assert_eq!(
            store("nats://127.0.0.1:4222/", None, Some("app-1")).unwrap(),
            StoreSpec::Nats {
                url: "nats://127.0.0.1:4222/".into(),
                prefix: "app-1".into()
            }
        );
        let error = store("nats://127.0.0.1:4222/", None, Some("a.b")).unwrap_err();
        assert!(error.to_string().contains("--nats-prefix"), "{error}");
        let error = store("redis://127.0.0.1/", Some(""), None).unwrap_err();
        assert!(error.to_string().contains("--redis-prefix"), "{error}");
        let error = store("kafka://127.0.0.1/", None, None).unwrap_err();
        assert!(error.to_string().contains("--store"), "{error}");
    }

    #[test]
    fn history_per_topic_is_off_by_default_on_with_demo_and_refused_by_shared_stores() {
        let per_topic = |store: &str, value: Option<usize>, demo: bool| {
            Config::from_args(ServeArgs {
                store: Some(store.into()),
                history_per_topic: value,
                demo,
                ..ServeArgs::default()
            })
            .map(|config| config.retention.per_topic)
        };
        assert_eq!(per_topic("memory:", None, false).unwrap(), 0);
        assert_eq!(per_topic("/tmp/x", None, false).unwrap(), 0);
        assert_eq!(
            per_topic("memory:", None, true).unwrap(),
            DEMO_HISTORY_PER_TOPIC
        );
        assert_eq!(per_topic("memory:", Some(0), true).unwrap(), 0);
        assert_eq!(per_topic("/tmp/x", Some(3), false).unwrap(), 3);
        // Capped at --history-size.
        let capped = Config::from_args(ServeArgs {
            store: Some("memory:".into()),
            history_size: Some(5),
            demo: true,
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(capped.retention.per_topic, 5);
        // The demo on a shared store keeps the plain ring rather than failing.
        assert_eq!(per_topic("redis://127.0.0.1/", None, true).unwrap(), 0);
        assert_eq!(per_topic("nats://127.0.0.1/", Some(0), false).unwrap(), 0);
        for store in ["redis://127.0.0.1/", "nats://127.0.0.1/"] {
            let error = per_topic(store, Some(3), false).unwrap_err().to_string();
            assert!(error.contains("--history-per-topic"), "{error}");
            assert!(error.contains("memory: and PATH"), "{error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn limits_have_documented_defaults() {
        let config = Config::from_args(ServeArgs::default()).unwrap();
        assert_eq!(config.max_connections_per_ip, 0);
        assert_eq!(config.max_topics_per_subscription, 100);
        assert_eq!(config.max_topic_length, 2048);
        assert_eq!(config.publish_rate, None);
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.queue_bytes, 1 << 20);
        assert_eq!(config.write_timeout, Duration::from_secs(30));
        assert_eq!(config.max_template_complexity, 256);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(default_max_connections(Some(20_000)), 19_488);
        assert_eq!(default_max_connections(Some(1024)), 992);
        assert_eq!(default_max_connections(Some(100_000)), 99_488);
        assert_eq!(default_max_connections(None), FALLBACK_MAX_CONNECTIONS);
        assert_eq!(
            config.max_connections,
            default_max_connections(open_file_limit())
        );
    }

    #[test]
    fn rates_parse_with_units_and_a_default_burst() {
        let rate = parse_rate("10/s", None).unwrap();
        assert_eq!((rate.per_second, rate.burst), (10.0, 10));
        let rate = parse_rate("600/min", Some(5)).unwrap();
        assert_eq!((rate.per_second, rate.burst), (10.0, 5));
        let rate = parse_rate("30/h", None).unwrap();
        assert_eq!(rate.burst, 1);
        assert_eq!(rate.to_string(), "30/h (burst 1)");
        assert_eq!(
            parse_rate("90/min", None).unwrap().to_string(),
            "1.5/s (burst 2)"
        );
        assert_eq!(parse_rate("2.5", None).unwrap().per_second, 2.5);
        for bad in ["fast", "10/week", "0/s", "-1/s", "NaN/s", "0.5/h"] {
            assert!(parse_rate(bad, None).is_err(), "{bad}");
        }
        let error = Config::from_args(ServeArgs {
            max_connections: Some(usize::MAX - 1),
            ..ServeArgs::default()
        });
        if open_file_limit().is_some() {
            assert!(error.unwrap_err().to_string().contains("--max-connections"));
        }
    }

    #[test]
    fn slow_consumer_limits_parse_and_refuse_zero() {
        let config = Config::from_args(ServeArgs {
            queue_bytes: Some("256KiB".into()),
            write_timeout: Some("2s".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.queue_bytes, 256 * 1024);
        assert_eq!(config.write_timeout, Duration::from_secs(2));
        for (args, flag) in [
            (
                ServeArgs {
                    queue_bytes: Some("0".into()),
                    ..ServeArgs::default()
                },
                "--queue-bytes",
            ),
            (
                ServeArgs {
                    write_timeout: Some("0s".into()),
                    ..ServeArgs::default()
                },
                "--write-timeout",
            ),
            (
                ServeArgs {
                    write_timeout: Some("soon".into()),
                    ..ServeArgs::default()
                },
                "--write-timeout",
            ),
        ] {
            let error = Config::from_args(args).unwrap_err();
            assert!(error.to_string().contains(flag), "{error}");
        }
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

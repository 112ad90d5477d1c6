//! The `herald serve` options, declared once: each field is a flag (clap), a `HERALD_*`
//! environment variable (clap) and a key of the `--config` TOML file (serde), under the flag's
//! long name. [`super::file`] layers the file under the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::file::{one_or_many, size_text};

/// `herald serve` options. Every option is also an environment variable and a TOML key.
///
/// The file's keys are the serde names: kebab-case field names, renamed where the flag's long
/// name differs (`cors-origin`), so that every key is its flag's name (a test holds them to it).
/// Unknown keys are refused, so typos do not pass silently.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
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
    #[serde(rename = "jwt-issuer", deserialize_with = "one_or_many")]
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
    #[serde(rename = "cors-origin", deserialize_with = "one_or_many")]
    pub cors_origins: Vec<String>,

    /// Origin allowed to publish with the cookie (repeatable, or comma-separated; `*` for any).
    /// Defaults to the --cors-origin list.
    #[arg(
        long = "publish-origin",
        env = "HERALD_PUBLISH_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(rename = "publish-origin", deserialize_with = "one_or_many")]
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
    #[serde(deserialize_with = "size_text")]
    pub max_body: Option<String>,

    /// Frames queued per subscriber before it counts as lagging and catches up from history
    /// [default: 1024]
    #[arg(long, env = "HERALD_QUEUE_SIZE", value_name = "N")]
    pub queue_size: Option<usize>,

    /// Bytes of frames queued per subscriber (whichever of this and --queue-size comes first)
    /// before it catches up from history, e.g. `1MiB` [default: 1MiB]
    #[arg(long, env = "HERALD_QUEUE_BYTES", value_name = "SIZE")]
    #[serde(deserialize_with = "size_text")]
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
    /// `127.0.0.1:9090`, or `9090`: the forms of --listen); the main port then answers 404 for it. Without it, `/metrics` is on
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
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Mercure 1.0 issuers bound to their own key, by issuer (TOML only:
    /// `[issuer-keys."ISS"]` with `key` and an optional `algorithm`).
    #[arg(skip)]
    pub issuer_keys: BTreeMap<String, IssuerKeyEntry>,
}

/// `[issuer-keys."https://issuer.example"]`: one issuer's own key, as the file gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKeyEntry {
    /// HS*: the secret; others: PEM text or a path to a PEM file.
    pub key: String,
    /// [default: --jwt-algorithm]
    pub algorithm: Option<String>,
}

/// Boolean flags read `1/0`, `true/false`, `yes/no`, `on/off` from the environment.
fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

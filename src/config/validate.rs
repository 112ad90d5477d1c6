//! [`ServeArgs`] to [`Config`], one section at a time (network, store and history, keys,
//! timing, limits, browsers), then the files the configuration names (keys, TLS), so that
//! every mistake the operator can fix is reported before the store is opened or a port bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::parse::{parse_duration, parse_rate, parse_size};
use super::*;
use crate::auth::{Algorithm, Authorizer, KeyConfig};

/// Checks every option and builds the configuration.
pub(super) fn validate(args: ServeArgs) -> Result<Config, ConfigError> {
    let network = network(&args)?;
    let (store, retention) = store_and_history(&args)?;
    let auth = auth(&args)?;
    let timing = timing(&args)?;
    let limits = limits(&args)?;
    let (cors, publish_origins) = origins(&args)?;
    let log_format = match args.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => return Err(invalid("log-format", other, "expected `text` or `json`")),
    };
    let config = Config {
        listen: network.listen,
        store,
        keys: auth.keys,
        jwks: auth.jwks,
        anonymous: args.anonymous || args.demo,
        jwt_issuers: auth.jwt_issuers,
        resource_identifier: auth.resource_identifier,
        cookie_name: auth.cookie_name,
        issuer_keys: auth.issuer_keys,
        cors,
        publish_origins,
        heartbeat: timing.heartbeat,
        retention,
        subscriptions: args.subscriptions,
        demo: args.demo,
        max_body: limits.max_body,
        queue_size: limits.queue_size,
        queue_bytes: limits.queue_bytes,
        write_timeout: timing.write_timeout,
        tls: network.tls,
        log_format,
        max_connections: limits.max_connections,
        max_connections_per_ip: limits.max_connections_per_ip,
        max_topics_per_subscription: limits.max_topics_per_subscription,
        max_topic_length: limits.max_topic_length,
        publish_rate: limits.publish_rate,
        header_timeout: timing.header_timeout,
        max_id_length: limits.max_id_length,
        metrics_listen: network.metrics_listen,
        max_template_complexity: limits.max_template_complexity,
        shutdown_timeout: timing.shutdown_timeout,
    };
    check_files(&config)?;
    Ok(config)
}

/// Where the hub listens, and how.
struct Network {
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    tls: Option<(PathBuf, PathBuf)>,
}

/// `--listen`, `--metrics-listen`, `--tls-cert` and `--tls-key`.
fn network(args: &ServeArgs) -> Result<Network, ConfigError> {
    let listen = parse_listen(args.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
    let metrics_listen = args
        .metrics_listen
        .as_deref()
        .map(|text| super::parse::parse_address("metrics-listen", text))
        .transpose()?;
    if metrics_listen == Some(listen) {
        return Err(invalid(
            "metrics-listen",
            &listen.to_string(),
            "must differ from --listen",
        ));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Other(
                "--tls-cert and --tls-key must be given together".into(),
            ));
        }
    };
    Ok(Network {
        listen,
        metrics_listen,
        tls,
    })
}

/// `--store` with its `--redis-prefix` or `--nats-prefix`, and the `--history-*` retention.
fn store_and_history(args: &ServeArgs) -> Result<(StoreSpec, Retention), ConfigError> {
    let store = store(args)?;
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
    // The newest --history-size updates stay anyway: a topic whose newest N all fit in them
    // needs no extra place, so with N capped there the extra places go to the topics the busy
    // ones pushed out (the demo's chat beside its clock, even at --history-size 5).
    let max_events = args.history_size.unwrap_or(DEFAULT_HISTORY_SIZE);
    let retention = Retention {
        max_events,
        max_age,
        per_topic: per_topic.min(max_events),
    };
    Ok((store, retention))
}

/// `--store`: a directory, `memory:`, `redis://…` or `nats://…`.
fn store(args: &ServeArgs) -> Result<StoreSpec, ConfigError> {
    Ok(match args.store.as_deref().unwrap_or(DEFAULT_STORE) {
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
    })
}

/// Who may publish and subscribe: keys, JWKS, Mercure 1.0 issuers.
struct Auth {
    keys: KeyConfig,
    jwks: (Option<String>, Option<String>),
    jwt_issuers: Vec<String>,
    issuer_keys: Vec<IssuerKey>,
    resource_identifier: Option<url::Url>,
    cookie_name: String,
}

/// `--jwt-algorithm`, the `--*jwt-key`s and `--*jwks-url`s, then the Mercure 1.0 options.
fn auth(args: &ServeArgs) -> Result<Auth, ConfigError> {
    let algorithm = match &args.jwt_algorithm {
        Some(text) => text
            .parse::<Algorithm>()
            .map_err(|e| invalid("jwt-algorithm", text, e))?,
        None => Algorithm::default(),
    };
    let non_empty = |flag: &'static str, key: &Option<String>| match key {
        Some(key) if key.is_empty() => Err(invalid(flag, "", "must not be empty")),
        other => Ok(other.clone()),
    };
    let shared = non_empty("jwt-key", &args.jwt_key)?;
    let keys = KeyConfig {
        publisher_key: non_empty("publisher-jwt-key", &args.publisher_jwt_key)?
            .or_else(|| shared.clone()),
        subscriber_key: non_empty("subscriber-jwt-key", &args.subscriber_jwt_key)?.or(shared),
        algorithm,
    };
    let jwks = jwks(args)?;
    let no_key = keys.publisher_key.is_none() && keys.subscriber_key.is_none();
    // Without any key the hub makes an HMAC secret: other algorithms need the operator's key.
    if no_key && jwks == (None, None) && !algorithm.is_hmac() {
        return Err(ConfigError::Other(format!(
            "--jwt-algorithm {algorithm} needs --jwt-key (a PEM public key)"
        )));
    }
    let jwt_issuers = args
        .jwt_issuers
        .iter()
        .map(|issuer| issuer.trim().to_owned())
        .filter(|issuer| !issuer.is_empty())
        .collect();
    Ok(Auth {
        issuer_keys: issuer_keys(args, algorithm)?,
        keys,
        jwks,
        jwt_issuers,
        resource_identifier: resource_identifier(args)?,
        cookie_name: cookie_name(args)?,
    })
}

/// The JWKS URLs: (publishers, subscribers).
fn jwks(args: &ServeArgs) -> Result<(Option<String>, Option<String>), ConfigError> {
    let urls = [
        ("jwks-url", &args.jwks_url),
        ("publisher-jwks-url", &args.publisher_jwks_url),
        ("subscriber-jwks-url", &args.subscriber_jwks_url),
    ];
    for (flag, url) in urls {
        let Some(url) = url else { continue };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(flag, url, "expected an http:// or https:// URL"));
        }
    }
    Ok((
        args.publisher_jwks_url.clone().or(args.jwks_url.clone()),
        args.subscriber_jwks_url.clone().or(args.jwks_url.clone()),
    ))
}

/// The TOML `[issuer-keys."ISS"]` tables; an issuer's algorithm defaults to `algorithm`.
fn issuer_keys(args: &ServeArgs, algorithm: Algorithm) -> Result<Vec<IssuerKey>, ConfigError> {
    let mut issuer_keys = Vec::new();
    for (issuer, entry) in &args.issuer_keys {
        let algorithm = match &entry.algorithm {
            Some(text) => text
                .parse::<Algorithm>()
                .map_err(|e| invalid("config issuer-keys algorithm", text, e))?,
            None => algorithm,
        };
        if entry.key.is_empty() {
            return Err(invalid(
                "config issuer-keys key",
                issuer,
                "the key is empty",
            ));
        }
        issuer_keys.push(IssuerKey {
            issuer: issuer.clone(),
            key: entry.key.clone(),
            algorithm,
        });
    }
    Ok(issuer_keys)
}

/// `--resource-identifier`: an absolute http(s) URL, or `None` (derived per request).
fn resource_identifier(args: &ServeArgs) -> Result<Option<url::Url>, ConfigError> {
    let Some(text) = &args.resource_identifier else {
        return Ok(None);
    };
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(Some(url)),
        _ => Err(invalid(
            "resource-identifier",
            text,
            "expected an absolute http:// or https:// URL",
        )),
    }
}

/// `--cookie-name`: a cookie name (RFC 6265 token).
fn cookie_name(args: &ServeArgs) -> Result<String, ConfigError> {
    let cookie_name = args
        .cookie_name
        .clone()
        .unwrap_or_else(|| crate::auth::ACCESS_COOKIE.to_owned());
    let token = !cookie_name.is_empty()
        && cookie_name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !token {
        return Err(invalid(
            "cookie-name",
            &cookie_name,
            "not a valid cookie name",
        ));
    }
    Ok(cookie_name)
}

/// The durations, each above zero.
struct Timing {
    heartbeat: Duration,
    write_timeout: Duration,
    header_timeout: Duration,
    shutdown_timeout: Duration,
}

fn timing(args: &ServeArgs) -> Result<Timing, ConfigError> {
    let duration = |flag: &'static str, text: &Option<String>, default: Duration| {
        let duration = match text {
            Some(text) => parse_duration(flag, text)?,
            None => default,
        };
        if duration.is_zero() {
            return Err(invalid(flag, "0", "must be above zero"));
        }
        Ok(duration)
    };
    Ok(Timing {
        heartbeat: duration("heartbeat", &args.heartbeat, Duration::from_secs(15))?,
        write_timeout: duration("write-timeout", &args.write_timeout, DEFAULT_WRITE_TIMEOUT)?,
        header_timeout: duration(
            "header-timeout",
            &args.header_timeout,
            DEFAULT_HEADER_TIMEOUT,
        )?,
        shutdown_timeout: duration(
            "shutdown-timeout",
            &args.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
        )?,
    })
}

/// What one client, one subscription or one publish may take.
struct Limits {
    max_body: usize,
    queue_size: usize,
    queue_bytes: usize,
    max_connections: usize,
    max_connections_per_ip: usize,
    max_topics_per_subscription: usize,
    max_topic_length: usize,
    publish_rate: Option<PublishRate>,
    max_id_length: usize,
    max_template_complexity: usize,
}

fn limits(args: &ServeArgs) -> Result<Limits, ConfigError> {
    let at_least_one =
        |flag: &'static str, value: Option<usize>, default: usize| match value.unwrap_or(default) {
            0 => Err(invalid(flag, "0", "must be at least 1")),
            value => Ok(value),
        };
    let size = |flag: &'static str, text: &Option<String>, default: usize| match text {
        Some(text) => parse_size(flag, text),
        None => Ok(default),
    };
    let publish_rate = args
        .publish_rate
        .as_deref()
        .map(|text| parse_rate(text, args.publish_burst))
        .transpose()?;
    if args.publish_burst == Some(0) {
        return Err(invalid("publish-burst", "0", "must be at least 1"));
    }
    Ok(Limits {
        max_body: size("max-body", &args.max_body, DEFAULT_MAX_BODY)?,
        queue_size: at_least_one("queue-size", args.queue_size, DEFAULT_QUEUE_SIZE)?,
        queue_bytes: size("queue-bytes", &args.queue_bytes, DEFAULT_QUEUE_BYTES)?,
        max_connections: max_connections(args.max_connections)?,
        max_connections_per_ip: args.max_connections_per_ip.unwrap_or(0),
        max_topics_per_subscription: at_least_one(
            "max-topics-per-subscription",
            args.max_topics_per_subscription,
            DEFAULT_MAX_TOPICS_PER_SUBSCRIPTION,
        )?,
        max_topic_length: at_least_one(
            "max-topic-length",
            args.max_topic_length,
            DEFAULT_MAX_TOPIC_LENGTH,
        )?,
        publish_rate,
        max_id_length: at_least_one("max-id-length", args.max_id_length, DEFAULT_MAX_ID_LENGTH)?,
        max_template_complexity: at_least_one(
            "max-template-complexity",
            args.max_template_complexity,
            DEFAULT_MAX_TEMPLATE_COMPLEXITY,
        )?,
    })
}

/// `--max-connections`: at least 1, and room left below the open-file limit.
fn max_connections(max: Option<usize>) -> Result<usize, ConfigError> {
    let Some(max) = max else {
        return Ok(default_max_connections(open_file_limit()));
    };
    if max == 0 {
        return Err(invalid("max-connections", "0", "must be at least 1"));
    }
    if let Some(files) = open_file_limit()
        && max.saturating_add(MIN_FD_RESERVE) > files
    {
        return Err(invalid(
            "max-connections",
            &max.to_string(),
            format!(
                "above the open-file limit ({files}) minus a reserve of {MIN_FD_RESERVE}: raise \
                 `ulimit -n` or lower the limit"
            ),
        ));
    }
    Ok(max)
}

/// `--cors-origin` and `--publish-origin` (which defaults to the former).
fn origins(args: &ServeArgs) -> Result<(OriginPolicy, OriginPolicy), ConfigError> {
    let cors = args
        .cors_origins
        .iter()
        .map(|origin| ("cors-origin", origin));
    let publish = args
        .publish_origins
        .iter()
        .map(|origin| ("publish-origin", origin));
    for (flag, origin) in cors.chain(publish) {
        if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(invalid(
                flag,
                origin,
                "an origin looks like `https://example.com` (scheme, host, optional port)",
            ));
        }
    }
    let publish_origins = if args.publish_origins.is_empty() {
        &args.cors_origins
    } else {
        &args.publish_origins
    };
    Ok((
        OriginPolicy::from_list(args.cors_origins.clone()),
        OriginPolicy::from_list(publish_origins.clone()),
    ))
}

/// Loads what the configuration names on disk, as the hub will, and drops it: a key that
/// cannot be read or used, or a certificate that does not match its key, is refused now.
fn check_files(config: &Config) -> Result<(), ConfigError> {
    let mut auth = Authorizer::new(&config.keys)?;
    for issuer in &config.issuer_keys {
        auth = auth.with_issuer_key(&issuer.issuer, &issuer.key, issuer.algorithm)?;
    }
    if let Some((cert, key)) = &config.tls {
        crate::http::tls::acceptor(cert, key)?;
    }
    Ok(())
}

//! The optional `--config` TOML file: same option names as the flags (`jwt-key` or `jwt_key`).

use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, ServeArgs};
use crate::serde_util::OneOrMany;

/// The file's options; unknown keys are an error, so typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileOptions {
    listen: Option<String>,
    store: Option<String>,
    redis_prefix: Option<String>,
    nats_prefix: Option<String>,
    jwt_key: Option<String>,
    publisher_jwt_key: Option<String>,
    subscriber_jwt_key: Option<String>,
    jwt_algorithm: Option<String>,
    jwks_url: Option<String>,
    publisher_jwks_url: Option<String>,
    subscriber_jwks_url: Option<String>,
    anonymous: Option<bool>,
    jwt_issuer: Option<OneOrMany>,
    issuer_keys: Option<std::collections::BTreeMap<String, IssuerKeyFile>>,
    resource_identifier: Option<String>,
    cookie_name: Option<String>,
    cors_origin: Option<OneOrMany>,
    publish_origin: Option<OneOrMany>,
    heartbeat: Option<String>,
    history_size: Option<usize>,
    history_max_age: Option<String>,
    history_per_topic: Option<usize>,
    subscriptions: Option<bool>,
    demo: Option<bool>,
    max_body: Option<SizeValue>,
    queue_size: Option<usize>,
    queue_bytes: Option<SizeValue>,
    write_timeout: Option<String>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
    log_format: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_topics_per_subscription: Option<usize>,
    max_topic_length: Option<usize>,
    publish_rate: Option<String>,
    publish_burst: Option<u32>,
    header_timeout: Option<String>,
    max_id_length: Option<usize>,
    metrics_listen: Option<String>,
    max_template_complexity: Option<usize>,
    shutdown_timeout: Option<String>,
}

/// `[issuer-keys."https://issuer.example"]`: one issuer's own key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerKeyFile {
    key: String,
    algorithm: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// Reads and parses the file. Keys may use `-` or `_`.
pub fn read(path: &Path) -> Result<FileOptions, ConfigError> {
    let fail = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| fail(one_line(&e.to_string())))?;
    let normalized: toml::Table = table
        .into_iter()
        .map(|(key, value)| (key.replace('_', "-"), value))
        .collect();
    FileOptions::deserialize(normalized).map_err(|e| fail(one_line(&e.to_string())))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Fills every option the command line and environment left unset from the file.
pub fn merge(mut args: ServeArgs, file: &FileOptions) -> ServeArgs {
    fn fill<T: Clone>(slot: &mut Option<T>, from: &Option<T>) {
        if slot.is_none() {
            slot.clone_from(from);
        }
    }
    fill(&mut args.listen, &file.listen);
    fill(&mut args.store, &file.store);
    fill(&mut args.redis_prefix, &file.redis_prefix);
    fill(&mut args.nats_prefix, &file.nats_prefix);
    fill(&mut args.jwt_key, &file.jwt_key);
    fill(&mut args.publisher_jwt_key, &file.publisher_jwt_key);
    fill(&mut args.subscriber_jwt_key, &file.subscriber_jwt_key);
    fill(&mut args.jwt_algorithm, &file.jwt_algorithm);
    fill(&mut args.jwks_url, &file.jwks_url);
    fill(&mut args.publisher_jwks_url, &file.publisher_jwks_url);
    fill(&mut args.subscriber_jwks_url, &file.subscriber_jwks_url);
    fill(&mut args.heartbeat, &file.heartbeat);
    fill(&mut args.history_size, &file.history_size);
    fill(&mut args.history_max_age, &file.history_max_age);
    fill(&mut args.history_per_topic, &file.history_per_topic);
    fill(&mut args.queue_size, &file.queue_size);
    fill(&mut args.write_timeout, &file.write_timeout);
    fill(&mut args.tls_cert, &file.tls_cert);
    fill(&mut args.tls_key, &file.tls_key);
    fill(&mut args.log_format, &file.log_format);
    fill(&mut args.max_connections, &file.max_connections);
    fill(
        &mut args.max_connections_per_ip,
        &file.max_connections_per_ip,
    );
    fill(
        &mut args.max_topics_per_subscription,
        &file.max_topics_per_subscription,
    );
    fill(&mut args.max_topic_length, &file.max_topic_length);
    fill(&mut args.publish_rate, &file.publish_rate);
    fill(&mut args.publish_burst, &file.publish_burst);
    fill(&mut args.header_timeout, &file.header_timeout);
    fill(&mut args.max_id_length, &file.max_id_length);
    fill(&mut args.metrics_listen, &file.metrics_listen);
    let size_text = |size: &SizeValue| match size {
        SizeValue::Bytes(bytes) => bytes.to_string(),
        SizeValue::Text(text) => text.clone(),
    };
    fill(
        &mut args.max_template_complexity,
        &file.max_template_complexity,
    );
    fill(&mut args.shutdown_timeout, &file.shutdown_timeout);
    fill(&mut args.resource_identifier, &file.resource_identifier);
    fill(&mut args.cookie_name, &file.cookie_name);
    if let (true, Some(issuers)) = (args.jwt_issuers.is_empty(), &file.jwt_issuer) {
        args.jwt_issuers = clone_list(issuers);
    }
    if let Some(keys) = &file.issuer_keys {
        args.issuer_keys = keys
            .iter()
            .map(|(issuer, key)| (issuer.clone(), key.key.clone(), key.algorithm.clone()))
            .collect();
    }
    if args.max_body.is_none() {
        args.max_body = file.max_body.as_ref().map(size_text);
    }
    if args.queue_bytes.is_none() {
        args.queue_bytes = file.queue_bytes.as_ref().map(size_text);
    }
    args.anonymous |= file.anonymous.unwrap_or(false);
    args.subscriptions |= file.subscriptions.unwrap_or(false);
    args.demo |= file.demo.unwrap_or(false);
    if let (true, Some(origins)) = (args.cors_origins.is_empty(), &file.cors_origin) {
        args.cors_origins = clone_list(origins);
    }
    if let (true, Some(origins)) = (args.publish_origins.is_empty(), &file.publish_origin) {
        args.publish_origins = clone_list(origins);
    }
    args
}

fn clone_list(list: &OneOrMany) -> Vec<String> {
    match list {
        OneOrMany::One(one) => vec![one.clone()],
        OneOrMany::Many(many) => many.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn file_fills_what_flags_left_unset() {
        let dir = std::env::temp_dir().join(format!("herald-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("herald.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nheartbeat = \"1s\"\ncors_origin = [\"https://a.example\"]\nanonymous = true\n\
             max-connections-per-ip = 50\npublish_rate = \"5/s\"\nheader-timeout = \"3s\"\n\
             queue-bytes = \"64KiB\"\nwrite_timeout = \"7s\"\nmax-template-complexity = 64\nshutdown_timeout = \"2s\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            heartbeat: Some("2s".into()),
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let config = crate::config::Config::from_args(args).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.heartbeat, std::time::Duration::from_secs(2));
        assert!(config.anonymous);
        assert!(config.cors.allows("https://a.example"));
        assert_eq!(config.max_connections_per_ip, 50);
        assert_eq!(config.publish_rate.map(|rate| rate.burst), Some(5));
        assert_eq!(config.header_timeout, std::time::Duration::from_secs(3));
        assert_eq!(config.queue_bytes, 64 * 1024);
        assert_eq!(config.write_timeout, std::time::Duration::from_secs(7));
        assert_eq!(config.max_template_complexity, 64);
        assert_eq!(config.shutdown_timeout, std::time::Duration::from_secs(2));

        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("lisen"), "{error}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

//! Unit tests of the validation: defaults, bad values naming their flag, parsers.

use super::parse::{parse_rate, parse_size};
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
    // A sibling flag is named itself, not the flag it defaults to.
    let error = Config::from_args(ServeArgs {
        subscriber_jwks_url: Some("ftp://keys".into()),
        ..ServeArgs::default()
    })
    .unwrap_err();
    assert!(
        error.to_string().contains("--subscriber-jwks-url"),
        "{error}"
    );
    let error = Config::from_args(ServeArgs {
        publish_origins: vec!["example.com".into()],
        ..ServeArgs::default()
    })
    .unwrap_err();
    assert!(error.to_string().contains("--publish-origin"), "{error}");
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
    let metrics = |text: &str| {
        Config::from_args(ServeArgs {
            metrics_listen: Some(text.into()),
            ..ServeArgs::default()
        })
        .map(|config| config.metrics_listen.map(|addr| addr.to_string()))
    };
    assert_eq!(metrics("9090").unwrap().as_deref(), Some("127.0.0.1:9090"));
    assert_eq!(metrics(":9090").unwrap().as_deref(), Some("0.0.0.0:9090"));
    let error = metrics("nowhere").unwrap_err();
    assert!(error.to_string().contains("--metrics-listen"), "{error}");
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

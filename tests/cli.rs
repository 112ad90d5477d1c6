//! The command line: help, bad configuration, environment, the config file, the banner, tokens.

use std::time::Duration;

use crate::util::{Hub, KEY, client, run_cli};

#[test]
fn serve_help_explains_every_flag() {
    let (code, stdout, _) = run_cli(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "--listen",
        "--store",
        "--jwt-key",
        "--publisher-jwt-key",
        "--subscriber-jwt-key",
        "--jwt-algorithm",
        "--anonymous",
        "--cors-origin",
        "--publish-origin",
        "--heartbeat",
        "--history-size",
        "--history-max-age",
        "--history-per-topic",
        "HERALD_HISTORY_PER_TOPIC",
        "--subscriptions",
        "--demo",
        "--max-body",
        "--config",
        "HERALD_LISTEN",
        "HERALD_JWT_KEY",
    ] {
        assert!(stdout.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn bad_configuration_exits_64_with_one_line_before_binding() {
    // Hold a port: a config error must be reported without trying to bind it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().to_string();
    for (args, mentions) in [
        (
            vec!["serve", "--listen", &port, "--heartbeat", "soon"],
            "--heartbeat",
        ),
        (vec!["serve", "--listen", "not-an-address"], "--listen"),
        (
            vec!["serve", "--listen", &port, "--jwt-algorithm", "HS999"],
            "--jwt-algorithm",
        ),
        (
            vec!["serve", "--listen", &port, "--max-body", "lots"],
            "--max-body",
        ),
        (
            vec!["serve", "--listen", &port, "--no-such-flag"],
            "--no-such-flag",
        ),
        (
            vec![
                "serve",
                "--listen",
                &port,
                "--jwt-key",
                "not a pem",
                "--jwt-algorithm",
                "RS256",
            ],
            "key",
        ),
        (
            vec![
                "serve",
                "--listen",
                &port,
                "--store",
                "nats://127.0.0.1:1/",
                "--history-per-topic",
                "3",
            ],
            "--history-per-topic",
        ),
        (
            vec!["serve", "--listen", &port, "--history-per-topic", "many"],
            "--history-per-topic",
        ),
    ] {
        let (code, _, stderr) = run_cli(&args, &[]);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
    }
}

#[test]
fn a_port_in_use_is_a_clear_runtime_error() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().to_string();
    let (code, _, stderr) = run_cli(&["serve", "--listen", &port, "--store", "memory:"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[tokio::test]
async fn environment_variables_configure_the_hub() {
    let hub = Hub::start_with_env(
        &["--store", "memory:"],
        &[
            ("HERALD_JWT_KEY", KEY),
            ("HERALD_ANONYMOUS", "true"),
            ("HERALD_MAX_BODY", "100"),
        ],
    );
    let mut stream = hub.subscribe("/.well-known/mercure?topic=a", &[]).await;
    assert_eq!(stream.status, 200, "HERALD_ANONYMOUS");
    hub.wait_subscriptions(1).await;
    hub.publish_ok(&[("topic", "a"), ("data", "via env key")])
        .await;
    assert_eq!(stream.next_event().await.data, "via env key");
    let (status, _) = hub
        .publish(&[("topic", "a"), ("data", &"x".repeat(200))])
        .await;
    assert_eq!(status, 413, "HERALD_MAX_BODY");
}

#[tokio::test]
async fn a_config_file_configures_the_hub_and_flags_win() {
    let dir = std::env::temp_dir().join(format!("herald-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("herald.toml");
    std::fs::write(
        &path,
        format!("jwt-key = \"{KEY}\"\nanonymous = true\nheartbeat = \"60s\"\ncors-origin = [\"https://a.example\"]\n"),
    )
    .unwrap();
    let hub = Hub::start_raw(&["--config", path.to_str().unwrap(), "--heartbeat", "200ms"]);
    let mut stream = hub
        .subscribe(
            "/.well-known/mercure?topic=a",
            &[("origin", "https://a.example")],
        )
        .await;
    assert_eq!(
        stream.header("access-control-allow-origin"),
        Some("https://a.example")
    );
    // The flag's 200ms heartbeat, not the file's 60s.
    assert!(stream.read_until(b":\n:\n", Duration::from_secs(3)).await);
    std::fs::write(&path, "jwt-kee = \"typo\"\n").unwrap();
    let (code, _, stderr) = run_cli(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 64);
    assert!(stderr.contains("jwt-kee"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The same option given in up to three places, each a value `validate` refuses naming it: the
/// refusal shows which one won. Command line over environment over file (over defaults, which
/// apply when none is given: `config::tests`).
#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = crate::util::TempDir::new("precedence");
    let file = dir.path().join("herald.toml");
    for (key, variable) in [
        ("heartbeat", "HERALD_HEARTBEAT"),
        ("max-body", "HERALD_MAX_BODY"),
        ("log-format", "HERALD_LOG_FORMAT"),
        ("cors-origin", "HERALD_CORS_ORIGIN"),
    ] {
        std::fs::write(&file, format!("{key} = \"from-file\"\n")).unwrap();
        let flag = format!("--{key}");
        let args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory:",
            "--config",
            file.to_str().unwrap(),
        ];
        let env = [(variable, "from-env")];
        for (extra, env, winner) in [
            (vec![flag.as_str(), "from-flag"], &env[..], "from-flag"),
            (vec![], &env[..], "from-env"),
            (vec![], &[][..], "from-file"),
        ] {
            let mut args = args.clone();
            args.extend(extra);
            let (code, _, stderr) = run_cli(&args, env);
            assert_eq!(code, 64, "{args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("--{key} \"{winner}\"")),
                "{args:?} {env:?}: {stderr}"
            );
        }
    }
}

/// Keys, issuer keys and TLS files are checked with the rest of the configuration: a bad one
/// exits 64 before the store directory is made or a JWKS fetched.
#[test]
fn unusable_keys_and_certificates_exit_64_before_anything_is_opened() {
    let dir = crate::util::TempDir::new("early-keys");
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let jwks = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    jwks.set_nonblocking(true).unwrap();
    let jwks_url = format!("http://{}/jwks.json", jwks.local_addr().unwrap());
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        format!("[issuer-keys.\"https://partner.example\"]\nkey = \"{missing}\"\nalgorithm = \"RS256\"\n"),
    )
    .unwrap();
    let common = ["serve", "--listen", "127.0.0.1:0", "--store", store];
    for (extra, mentions) in [
        (vec!["--jwt-algorithm", "ES256"], "needs --jwt-key"),
        (
            vec!["--jwt-algorithm", "RS256", "--jwt-key", missing],
            "missing.pem",
        ),
        (
            vec!["--jwks-url", &jwks_url, "--config", file.to_str().unwrap()],
            "missing.pem",
        ),
        (
            vec!["--tls-cert", missing, "--tls-key", missing],
            "TLS certificate",
        ),
    ] {
        let mut args = common.to_vec();
        args.extend(extra);
        let (code, _, stderr) = run_cli(&args, &[]);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
        assert!(
            !std::path::Path::new(store).exists(),
            "{args:?} made the store"
        );
    }
    let contacted = jwks.accept();
    assert!(
        matches!(&contacted, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
        "the JWKS was fetched: {contacted:?}"
    );
}

#[tokio::test]
async fn the_banner_prints_a_working_curl_pair() {
    // No key given: a random secret is made and a usable token printed.
    let hub = Hub::start_raw(&["--store", "memory:"]);
    let banner = hub.banner.join("\n");
    assert!(banner.contains("subscribe: curl -N"), "{banner}");
    let publish = hub
        .banner
        .iter()
        .find(|line| line.contains("publish:"))
        .expect("a publish line");
    let token = publish
        .split("Bearer ")
        .nth(1)
        .and_then(|rest| rest.split(['\'', '"']).next())
        .expect("a token in the publish line");
    let subscribe_line = hub
        .banner
        .iter()
        .find(|l| l.contains("subscribe:"))
        .unwrap();
    let sub_token = subscribe_line
        .split("Bearer ")
        .nth(1)
        .and_then(|rest| rest.split(['\'', '"']).next())
        .expect("a subscriber token: the hub is not anonymous");
    let mut stream = hub
        .subscribe(
            "/.well-known/mercure?topic=demo",
            &[("authorization", &format!("Bearer {sub_token}"))],
        )
        .await;
    assert_eq!(stream.status, 200);
    hub.wait_subscriptions(1).await;
    let response = client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(token)
        .form(&[("topic", "demo"), ("data", "hello")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(stream.next_event().await.data, "hello");
}

#[tokio::test]
async fn herald_token_mints_a_token_the_hub_accepts() {
    let (code, stdout, stderr) = run_cli(
        &["token", "--key", KEY, "--publish", "a", "--ttl", "1h"],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let token = stdout.trim();
    let hub = Hub::start(&[]);
    let publish = |topic: &'static str| {
        client()
            .post(hub.url("/.well-known/mercure"))
            .bearer_auth(token)
            .form(&[("topic", topic), ("data", "x")])
            .send()
    };
    assert_eq!(publish("a").await.unwrap().status(), 200);
    assert_eq!(publish("b").await.unwrap().status(), 403);
    let (code, _, stderr) = run_cli(&["token", "--key", KEY], &[]);
    assert_eq!(code, 64, "{stderr}");
}

//! The file layered under the command line: every flag is a key, the flags win, typos are
//! refused.

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

/// Long names of flags that are deliberately not file keys.
const NOT_FILE_KEYS: &[&str] = &[
    // A file does not name another file.
    "config",
];

/// File keys that are no flag: tables a command line cannot say.
const FILE_ONLY_KEYS: &[&str] = &["issuer-keys"];

/// `herald serve`'s options as clap parses them, blind to the environment of the test.
fn serve_command() -> clap::Command {
    use clap::Args;
    ServeArgs::augment_args(clap::Command::new("serve")).mut_args(|arg| arg.env(None))
}

fn from_command_line(words: &[&str]) -> ServeArgs {
    use clap::FromArgMatches;
    let mut line = vec!["serve"];
    line.extend_from_slice(words);
    let matches = serve_command().try_get_matches_from(line).unwrap();
    ServeArgs::from_arg_matches(&matches).unwrap()
}

fn from_file(args: ServeArgs, text: &str) -> Result<ServeArgs, String> {
    fill_unset(args, parse(text)?)
}

fn same(a: &ServeArgs, b: &ServeArgs) -> bool {
    serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
}

#[test]
fn every_flag_is_a_file_key_that_sets_what_the_flag_sets() {
    let mut checked = 0;
    for arg in serve_command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_FILE_KEYS.contains(&long) || long == "help" {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        let flag = format!("--{long}");
        let expected = if takes_value {
            from_command_line(&[&flag, "7"])
        } else {
            from_command_line(&[&flag])
        };
        assert!(
            !same(&expected, &ServeArgs::default()),
            "{flag} sets nothing"
        );
        // A number where the option is one, text otherwise.
        let candidates = if takes_value {
            vec![format!("{long} = 7"), format!("{long} = \"7\"")]
        } else {
            vec![format!("{long} = true")]
        };
        let accepted: Vec<ServeArgs> = candidates
            .iter()
            .filter_map(|text| from_file(ServeArgs::default(), text).ok())
            .collect();
        assert!(!accepted.is_empty(), "the file refuses `{long}`");
        assert!(
            accepted.iter().any(|args| same(args, &expected)),
            "`{long}` in the file does not set what {flag} sets"
        );
        checked += 1;
    }
    assert!(checked > 40, "only {checked} flags");

    for excluded in NOT_FILE_KEYS {
        let error = from_file(ServeArgs::default(), &format!("{excluded} = \"x\"")).unwrap_err();
        assert!(error.contains("unknown field"), "{excluded}: {error}");
    }
}

#[test]
fn every_file_key_is_a_flag_or_a_table() {
    let longs: Vec<String> = serve_command()
        .get_arguments()
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect();
    let serde_json::Value::Object(keys) = serde_json::to_value(ServeArgs::default()).unwrap()
    else {
        panic!("ServeArgs is not a table");
    };
    for key in keys.keys() {
        assert!(
            longs.contains(key) || FILE_ONLY_KEYS.contains(&key.as_str()),
            "file key `{key}` is no flag"
        );
    }
}

#[test]
fn the_command_line_wins_over_the_file_which_wins_over_defaults() {
    let file = "heartbeat = \"60s\"\nhistory-size = 5\ncors-origin = [\"https://file.example\"]\n\
                max-body = 100\nsubscriptions = true\n";
    // Given on the command line (or in the environment, which clap folds in): kept.
    let given = from_command_line(&[
        "--heartbeat",
        "1s",
        "--history-size",
        "0",
        "--cors-origin",
        "https://flag.example",
    ]);
    let layered = from_file(given, file).unwrap();
    assert_eq!(layered.heartbeat.as_deref(), Some("1s"));
    assert_eq!(layered.history_size, Some(0), "0 is a value, not unset");
    assert_eq!(layered.cors_origins, ["https://flag.example"]);
    // Left unset: the file's.
    assert_eq!(layered.max_body.as_deref(), Some("100"));
    assert!(layered.subscriptions);
    // Neither: the default.
    let config = crate::config::Config::from_args(layered).unwrap();
    assert_eq!(config.write_timeout, crate::config::DEFAULT_WRITE_TIMEOUT);
    assert_eq!(config.max_body, 100);
    // A switch the file turns on stays on: a flag can only turn switches on.
    let layered = from_file(ServeArgs::default(), "anonymous = true\n").unwrap();
    assert!(layered.anonymous);
    // One origin or a list.
    let layered = from_file(
        ServeArgs::default(),
        "cors-origin = \"https://a.example\"\n",
    );
    assert_eq!(layered.unwrap().cors_origins, ["https://a.example"]);
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_in_one_line() {
    for (text, says) in [
        ("lisen = \"x\"", "unknown field `lisen`"),
        ("history-size = \"ten\"", "invalid type"),
        (
            "[issuer-keys.\"https://i.example\"]\nkee = \"k\"",
            "unknown field `kee`",
        ),
        ("anonymous = \"yes\"", "invalid type"),
        ("listen = ", "expected"),
    ] {
        let error = parse(text).unwrap_err();
        assert!(error.contains(says), "{text}: {error}");
        assert!(!error.contains('\n'), "{error}");
    }
}

#[test]
fn issuer_keys_come_from_their_tables() {
    let text = "[issuer-keys.\"https://b.example\"]\nkey = \"kb\"\nalgorithm = \"HS512\"\n\
                [issuer-keys.\"https://a.example\"]\nkey = \"ka\"\n";
    let args = from_file(ServeArgs::default(), text).unwrap();
    let config = crate::config::Config::from_args(args).unwrap();
    let issuers: Vec<(&str, crate::auth::Algorithm)> = config
        .issuer_keys
        .iter()
        .map(|issuer| (issuer.issuer.as_str(), issuer.algorithm))
        .collect();
    assert_eq!(
        issuers,
        [
            ("https://a.example", crate::auth::Algorithm::HS256),
            ("https://b.example", crate::auth::Algorithm::HS512)
        ]
    );
}

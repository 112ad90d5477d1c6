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

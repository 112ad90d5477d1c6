//! `herald serve`: validate the configuration, bind, print where to connect, run until a signal.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::auth::{MintClaims, mint_hmac};
use crate::config::{Config, ServeArgs, StoreSpec};
use crate::server::Server;
use crate::telemetry;

use super::config_error;

/// Runs the hub.
pub(super) fn run(args: ServeArgs) -> ExitCode {
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(error) => return config_error(error),
    };
    telemetry::init_tracing(config.log_format);
    let shutdown_timeout = config.shutdown_timeout;
    let shutdown_started = std::sync::Arc::new(std::sync::OnceLock::new());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::sync::Arc::clone(&shutdown_started);
    let code = runtime.block_on(async {
        let server = match Server::bind(config).await {
            Ok(server) => server,
            Err(error) if error.is_config() => return config_error(error),
            Err(error) => {
                eprintln!("herald: {error}");
                return ExitCode::FAILURE;
            }
        };
        print_banner(&server);
        server
            .run(async {
                shutdown_signal().await;
                let _ = started.set(Instant::now());
                exit_after(shutdown_timeout);
            })
            .await;
        ExitCode::SUCCESS
    });
    // Whatever is still running (a task that does not yield, a blocking call) gets what is left
    // of the timeout, then is abandoned: the process exits when this function returns.
    let left = shutdown_started.get().map_or(Duration::ZERO, |at| {
        shutdown_timeout.saturating_sub(at.elapsed())
    });
    runtime.shutdown_timeout(left);
    if shutdown_started.get().is_some() {
        tracing::info!("stopped");
    }
    code
}

/// Ends the process `timeout` from now, from a thread of its own, in case the graceful path
/// (which normally finishes first) is held up by work that does not stop.
fn exit_after(timeout: Duration) {
    let watchdog = std::thread::Builder::new()
        .name("herald-shutdown".into())
        .spawn(move || {
            std::thread::sleep(timeout);
            tracing::warn!("shutdown did not finish within {timeout:?}: exiting now");
            std::process::exit(0);
        });
    if let Err(error) = watchdog {
        tracing::warn!(%error, "cannot start the shutdown watchdog");
    }
}

/// Where the hub listens, and subscribe/publish commands that work when pasted into bash as
/// printed (a test runs them): literal tokens when the hub made its own secret; otherwise
/// `herald token` with the key from a variable the `keys:` line asks for (a key given by the
/// operator is never printed).
fn print_banner(server: &Server) {
    let Some(addr) = server.local_addr() else {
        return;
    };
    let config = server.config();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // The first line says what was bound (tests and scripts parse it); commands use an address
    // a client can reach.
    println!("herald listening on {scheme}://{addr}");
    let base = format!("{scheme}://{}", reachable(addr));
    if addr.ip().is_unspecified() {
        let mut reach = format!("{base} (this machine)");
        if let Some(ip) = network_ip(addr) {
            reach.push_str(&format!(
                ", {scheme}://{} (other machines)",
                SocketAddr::new(ip, addr.port())
            ));
        }
        println!("  reachable: {reach}");
    }
    let per_topic = match config.retention.per_topic {
        0 => String::new(),
        n => format!(" and each topic's newest {n}"),
    };
    let store = match &config.store {
        StoreSpec::Memory => format!(
            "memory: (last {} updates{per_topic}, lost on restart)",
            config.retention.max_events
        ),
        StoreSpec::Path(dir) => format!(
            "{} (durable, last {} updates{per_topic})",
            dir.join("herald.redb").display(),
            config.retention.max_events
        ),
        StoreSpec::Redis { url, prefix } => format!(
            "{} keys {prefix}:* (shared, last {} updates)",
            crate::store::redis::redact(url),
            config.retention.max_events
        ),
        StoreSpec::Nats { url, prefix } => format!(
            "{} stream {} (shared, last {} updates)",
            crate::store::redis::redact(url),
            prefix.to_uppercase(),
            config.retention.max_events
        ),
    };
    println!("  store:     {store}");
    let herald = herald_command();
    let algorithm = match config.keys.algorithm {
        crate::auth::Algorithm::HS256 => String::new(),
        other => format!(" --algorithm {other}"),
    };
    let (publisher_token, subscriber_token) = match server.generated_secret() {
        Some(secret) => {
            match server.secret_file() {
                Some(path) => println!(
                    "  keys:      none given: the --demo development secret (HS256) kept in {} \
                     (the same after a restart; delete the file for a new one)",
                    path.display()
                ),
                None if config.demo => println!(
                    "  keys:      none given: a random HS256 secret for this run (the --store \
                     keeps no file: tokens change on restart; give --jwt-key to keep them)"
                ),
                None => println!(
                    "  keys:      none given: a random HS256 secret for this run (give \
                     --jwt-key to keep tokens valid across restarts)"
                ),
            }
            (
                mint(secret, config, vec!["*".into()], vec![]),
                mint(secret, config, vec![], vec!["*".into()]),
            )
        }
        None if config.keys.algorithm.is_hmac() && config.jwks == (None, None) => {
            let split = config.keys.publisher_key != config.keys.subscriber_key;
            if split {
                println!(
                    "  keys:      yours; for the commands below, first: export \
                     HERALD_KEY=<your --publisher-jwt-key> HERALD_SUBSCRIBER_KEY=<your \
                     --subscriber-jwt-key>"
                );
            } else {
                println!(
                    "  keys:      yours; for the commands below, first: export \
                     HERALD_KEY=<your --jwt-key>"
                );
            }
            let subscriber_key = if split {
                "HERALD_SUBSCRIBER_KEY"
            } else {
                "HERALD_KEY"
            };
            (
                format!("$({herald} token --key \"$HERALD_KEY\"{algorithm} --publish '*')"),
                format!("$({herald} token --key \"${subscriber_key}\"{algorithm} --subscribe '*')"),
            )
        }
        None => {
            println!(
                "  keys:      yours ({}): sign tokens with your private key; for the commands \
                 below, first: export HERALD_TOKEN=<a publisher token> \
                 HERALD_SUBSCRIBER_TOKEN=<a subscriber token>",
                config.keys.algorithm
            );
            (
                "$HERALD_TOKEN".to_owned(),
                "$HERALD_SUBSCRIBER_TOKEN".to_owned(),
            )
        }
    };
    println!("  page:      {base}/");
    if let Some(metrics) = server.metrics_addr() {
        println!("  metrics:   http://{metrics}/metrics (only there)");
    }
    let subscribe_url = format!("'{base}/.well-known/mercure?topic=demo'");
    if config.anonymous {
        println!("  subscribe: curl -N {subscribe_url}");
        // Anonymous subscribers get public updates only: show the token for private ones too.
        if server.generated_secret().is_some() {
            println!(
                "  private:   curl -N -H \"Authorization: Bearer {subscriber_token}\" {subscribe_url}"
            );
            println!("             (a subscriber token, subscribe [\"*\"]: private updates too)");
        }
    } else {
        println!(
            "  subscribe: curl -N -H \"Authorization: Bearer {subscriber_token}\" {subscribe_url}"
        );
    }
    println!(
        "  publish:   curl -H \"Authorization: Bearer {publisher_token}\" -d topic=demo -d data=hello {base}/.well-known/mercure"
    );
}

fn mint(secret: &str, config: &Config, publish: Vec<String>, subscribe: Vec<String>) -> String {
    let claims = MintClaims {
        publish,
        subscribe,
        payload: None,
        ttl: None,
    };
    mint_hmac(secret.as_bytes(), config.keys.algorithm, &claims)
        .unwrap_or_else(|_| "$HERALD_TOKEN".to_owned())
}

/// How to run this binary from a shell: `herald` when that is what `PATH` finds, else its full
/// path (quoted for bash when needed), so a printed command works before `cargo install`.
fn herald_command() -> String {
    let Ok(exe) = std::env::current_exe().and_then(|exe| exe.canonicalize()) else {
        return "herald".to_owned();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join("herald")
                .canonicalize()
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        return "herald".to_owned();
    }
    shell_quote(&exe.to_string_lossy())
}

/// A word bash reads back as `text`.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&byte));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `0.0.0.0` is not something to paste into curl: loopback instead.
fn reachable(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let loopback = if addr.is_ipv4() { "127.0.0.1" } else { "[::1]" };
        format!("{loopback}:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// The address other machines likely reach this one at: the source address the kernel would
/// pick for an outside destination (a UDP `connect` sends no packet).
fn network_ip(addr: SocketAddr) -> Option<std::net::IpAddr> {
    let (bind, probe): (SocketAddr, SocketAddr) = if addr.is_ipv4() {
        (([0, 0, 0, 0], 0).into(), ([192, 0, 2, 1], 9).into())
    } else {
        (
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            (std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into(),
        )
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(probe).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_survive_bash() {
        assert_eq!(shell_quote("/usr/bin/herald"), "/usr/bin/herald");
        assert_eq!(shell_quote("/a b/herald"), "'/a b/herald'");
        assert_eq!(shell_quote("/it's/herald"), r"'/it'\''s/herald'");
    }
}

//! `herald serve`: validate the configuration, bind, print where to connect, run until a signal.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::auth::{MintClaims, mint_hmac};
use crate::config::{Config, ServeArgs, StoreSpec};
use crate::server::Server;
use crate::telemetry;

use super::config_error;

/// Runs the hub.
pub fn run(args: ServeArgs) -> ExitCode {
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(error) => return config_error(error),
    };
    telemetry::init_tracing(config.log_format);
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
    runtime.block_on(async {
        let server = match Server::bind(config).await {
            Ok(server) => server,
            Err(error) if error.is_config() => return config_error(error),
            Err(error) => {
                eprintln!("herald: {error}");
                return ExitCode::FAILURE;
            }
        };
        print_banner(&server);
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Where the hub listens, and a ready-to-paste subscribe/publish pair.
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
    let base = format!("{scheme}://{}", display_addr(addr));
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
    let (publisher_token, subscriber_token) = match server.generated_secret() {
        Some(secret) => (
            mint(secret, config, vec!["*".into()], vec![]),
            mint(secret, config, vec![], vec!["*".into()]),
        ),
        None => (
            "$HERALD_TOKEN".to_owned(),
            "$HERALD_SUBSCRIBER_TOKEN".to_owned(),
        ),
    };
    println!("herald listening on {base}");
    println!("  store:     {store}");
    if server.generated_secret().is_some() {
        println!("  keys:      none given: a random HS256 secret was made for this run");
    }
    println!("  page:      {base}/");
    let auth_header = if config.anonymous {
        String::new()
    } else {
        format!(" -H 'Authorization: Bearer {subscriber_token}'")
    };
    println!("  subscribe: curl -N{auth_header} '{base}/.well-known/mercure?topic=demo'");
    println!(
        "  publish:   curl -H 'Authorization: Bearer {publisher_token}' -d topic=demo -d data=hello {base}/.well-known/mercure"
    );
    if server.generated_secret().is_none() {
        println!(
            "             (mint a token with: herald token --key \"$HERALD_JWT_KEY\" --publish '*')"
        );
    }
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

/// `0.0.0.0` is not something to paste into curl: show loopback instead.
fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let loopback = if addr.is_ipv4() { "127.0.0.1" } else { "[::1]" };
        format!("{loopback}:{}", addr.port())
    } else {
        addr.to_string()
    }
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

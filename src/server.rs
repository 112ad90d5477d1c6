//! Wiring: builds the store, the writer, the hub and the keys from a [`Config`], binds the
//! listener, and runs until shutdown. The one place that knows how the parts connect.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};

use crate::auth::jwks::Jwks;
use crate::auth::{Authorizer, KeyError, random_secret};
use crate::cluster::{Feed, FeedSink};
use crate::config::{Config, StoreSpec};
use crate::http::{AppState, serve};
use crate::hub::Hub;
use crate::shutdown::{TaskWatch, Tasks};
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::nats::NatsStore;
use crate::store::redb::RedbStore;
use crate::store::redis::RedisStore;
use crate::store::writer::{CommitMetrics, OnCommit, Writer};
use crate::telemetry::{self, names};
use crate::update::Update;

/// Pending connections the kernel queues for us: enough for a reconnect storm.
const LISTEN_BACKLOG: u32 = 4096;
/// Most updates committed in one batch.
const MAX_BATCH: usize = 1024;

/// The file of the store directory that keeps the `--demo` development secret.
pub(crate) const DEV_SECRET_FILE: &str = "dev-secret";

/// Reads the development secret at `path`, or makes one and writes it there (owner-only).
fn dev_secret(path: &std::path::Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret = random_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    Ok(secret)
}

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration problem (exit 64).
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A configuration problem (exit 64).
    #[error("{0}")]
    Config(String),
    /// The TLS certificate or key is unusable (exit 64).
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
    /// The store could not be opened (damaged, foreign, locked).
    #[error(transparent)]
    Store(#[from] crate::store::redb::OpenError),
    /// The shared store could not be reached.
    #[error(transparent)]
    Redis(#[from] crate::store::redis::ConnectError),
    /// The shared store could not be reached.
    #[error(transparent)]
    Nats(#[from] crate::store::nats::ConnectError),
    /// The `--demo` development secret could not be read or written.
    #[error("cannot keep the development secret in {path}: {source}")]
    DevSecret {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    /// True when the fix is in the configuration.
    pub(crate) fn is_config(&self) -> bool {
        matches!(
            self,
            StartError::Keys(_) | StartError::Config(_) | StartError::Tls(_)
        )
    }
}

/// A bound, ready hub.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    /// The secret made for this run when no key was configured.
    generated_secret: Option<String>,
    /// Where that secret is kept (`--demo` with a store directory), so it survives restarts.
    secret_file: Option<std::path::PathBuf>,
    /// TLS for every connection, when configured.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The separate `/metrics` listener (`--metrics-listen`).
    metrics_listener: Option<TcpListener>,
    /// Every background task: the writer, the feed, the tickers, the refreshers.
    tasks: Tasks,
}

impl Server {
    /// Validates keys, opens the store, binds the listener and starts the writer and heartbeat.
    pub async fn bind(mut config: Config) -> Result<Server, StartError> {
        // Dropped on an early return: whatever was started stops.
        let tasks = Tasks::new();
        let no_jwks = config.jwks.0.is_none() && config.jwks.1.is_none();
        let mut secret_file = None;
        let generated_secret = if no_jwks
            && config.keys.publisher_key.is_none()
            && config.keys.subscriber_key.is_none()
        {
            // `Config::validate` refused a non-HMAC algorithm without a key.
            let (secret, file) = match (&config.store, config.demo) {
                // Only with --demo: a development secret kept beside the history it protects.
                (StoreSpec::Path(dir), true) => {
                    let path = dir.join(DEV_SECRET_FILE);
                    let secret = dev_secret(&path).map_err(|source| StartError::DevSecret {
                        path: path.clone(),
                        source,
                    })?;
                    (secret, Some(path))
                }
                _ => (random_secret(), None),
            };
            config.keys.publisher_key = Some(secret.clone());
            config.keys.subscriber_key = Some(secret.clone());
            secret_file = file;
            Some(secret)
        } else {
            None
        };
        let auth = Authorizer::new(&config.keys)?;
        let tls = match &config.tls {
            Some((cert, key)) => Some(crate::http::tls::acceptor(cert, key)?),
            None => None,
        };
        let publisher_set = key_set(config.jwks.0.as_deref(), &tasks).await?;
        let subscriber_set = if config.jwks.1 == config.jwks.0 {
            publisher_set.clone()
        } else {
            key_set(config.jwks.1.as_deref(), &tasks).await?
        };
        let mut auth = auth
            .with_jwks(publisher_set, subscriber_set)
            .with_issuers(config.jwt_issuers.clone());
        for issuer in &config.issuer_keys {
            auth = auth.with_issuer_key(&issuer.issuer, &issuer.key, issuer.algorithm)?;
        }
        let metrics = telemetry::prometheus();
        // A shared store comes with the cluster feed that follows its log.
        let mut memory_store = None;
        let (store, feed): (Arc<dyn Store>, Option<Feed>) = match &config.store {
            StoreSpec::Memory => {
                let store = Arc::new(MemoryStore::new(config.retention));
                memory_store = Some(Arc::clone(&store));
                (store, None)
            }
            StoreSpec::Path(dir) => (Arc::new(RedbStore::open(dir, config.retention)?), None),
            StoreSpec::Redis { url, prefix } => {
                let store = RedisStore::connect(url, prefix, config.retention).await?;
                let feed = Feed::redis(&store);
                (Arc::new(store), Some(feed))
            }
            StoreSpec::Nats { url, prefix } => {
                let store = NatsStore::connect(url, prefix, config.retention).await?;
                let feed = Feed::nats(&store);
                (Arc::new(store), Some(feed))
            }
        };
        let listener = bind_listener(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;

        let metrics_listener = match config.metrics_listen {
            Some(addr) => {
                Some(bind_listener(addr).map_err(|source| StartError::Bind { addr, source })?)
            }
            None => None,
        };

        let hub = Hub::with_budget(config.queue_size, config.queue_bytes);
        // A shared store feeds every node from its log (the same order everywhere); otherwise
        // the writer fans out what it commits.
        let on_commit: OnCommit = match feed {
            Some(feed) => {
                tasks.adopt(feed.spawn(Arc::new(HubSink(Arc::clone(&hub)))));
                Arc::new(|_: &[Arc<Update>]| {})
            }
            None => {
                let fan_out = Arc::clone(&hub);
                Arc::new(move |batch: &[Arc<Update>]| fan_out.fan_out(batch))
            }
        };
        let commit_metrics = CommitMetrics {
            commit_seconds: metrics::histogram!(names::STORE_COMMIT_SECONDS),
            publishes: metrics::counter!(names::PUBLISHES_TOTAL),
        };
        // The memory store has nothing to make durable: no group commit, no writer task.
        let writer = match memory_store {
            Some(memory) => Writer::inline_in(&tasks, memory, on_commit, commit_metrics),
            None => Writer::spawn_in(
                &tasks,
                Arc::clone(&store),
                on_commit,
                commit_metrics,
                MAX_BATCH,
            ),
        };
        if config.subscriptions {
            let (hook, events_task) = crate::subscriptions::lifecycle_publisher(writer.clone());
            hub.set_lifecycle(hook);
            tasks.spawn(events_task);
        }
        tasks.spawn(hub.heartbeats(config.heartbeat));
        if config.demo {
            tasks.spawn(crate::demo::run_clock(writer.clone()));
        }
        tasks.spawn(hub.expiry_ticks());
        tasks.spawn(hub.buffer_sweeps());
        let limits = crate::http::limits::Limits::new(&config);
        let state = Arc::new(AppState {
            limits,
            config,
            hub,
            store,
            writer,
            auth,
            metrics,
        });
        Ok(Server {
            listener,
            state,
            generated_secret,
            secret_file,
            tls,
            metrics_listener,
            tasks,
        })
    }

    /// A view of the background tasks that outlives [`Server::run`]: after it returns, none is
    /// running (unless one overran `--shutdown-timeout`).
    pub fn tasks(&self) -> TaskWatch {
        self.tasks.watch()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The configuration in force.
    pub(crate) fn config(&self) -> &Config {
        &self.state.config
    }

    /// The secret made when no key was configured: random for this run, or with `--demo` and
    /// a store directory, the development secret kept in [`Server::secret_file`].
    pub(crate) fn generated_secret(&self) -> Option<&str> {
        self.generated_secret.as_deref()
    }

    /// The address of the separate `/metrics` listener, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The file that keeps the `--demo` development secret across restarts, if any.
    pub(crate) fn secret_file(&self) -> Option<&std::path::Path> {
        self.secret_file.as_deref()
    }

    /// Serves until `shutdown` completes, then ends every stream, stops the background tasks
    /// and returns, within `--shutdown-timeout`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        if let Some(listener) = self.metrics_listener {
            self.tasks.spawn(crate::http::ops::serve_metrics(
                listener,
                self.state.metrics.clone(),
                self.state.config.header_timeout,
            ));
        }
        let timeout = self.state.config.shutdown_timeout;
        let began = std::sync::OnceLock::new();
        let shutdown = async {
            shutdown.await;
            let _ = began.set(std::time::Instant::now());
        };
        serve(self.listener, self.state, self.tls, shutdown).await;
        let left = began
            .get()
            .map_or(timeout, |at| timeout.saturating_sub(at.elapsed()));
        self.tasks.shutdown(left).await;
    }
}

/// A JWKS cache for `url`, fetched once now and kept fresh.
async fn key_set(url: Option<&str>, tasks: &Tasks) -> Result<Option<Arc<Jwks>>, StartError> {
    let Some(url) = url else { return Ok(None) };
    let jwks = Arc::new(Jwks::new(url.to_owned()).map_err(StartError::Config)?);
    match jwks.fetch().await {
        Ok(count) => tracing::info!(url, count, "JWKS loaded"),
        Err(error) => tracing::warn!(%error, "JWKS not loaded yet; tokens fail until it is"),
    }
    tasks.spawn(Arc::clone(&jwks).keep_fresh());
    Ok(Some(jwks))
}

/// The hub, as the destination of a shared store's feed.
struct HubSink(Arc<Hub>);

impl FeedSink for HubSink {
    fn deliver(&self, updates: &[Arc<Update>]) {
        self.0.fan_out(updates);
    }

    fn gap(&self) {
        // Every live stream may have missed something: end them after what they have queued;
        // their clients reconnect with Last-Event-ID and get a herald-gap notice.
        self.0
            .for_each_subscriber(|subscriber| subscriber.mailbox.close());
    }
}

fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

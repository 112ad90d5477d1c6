//! `herald bench` past one process's open-file limit: child processes (`herald bench
//! --worker`) each hold a share of the subscriptions and talk to the lead in JSON lines (status
//! on stdout every 250 ms, `ready` once connected, the result after `stop` on stdin). [`Shard`]
//! hides whether a share lives in this process or in a child.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Plan;
use super::measure::ShardResult;
use super::wire::LocalShard;

/// A line from a worker on its stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum WorkerLine {
    Status {
        connected: usize,
        failed: usize,
        delivered: u64,
    },
    /// Every subscription is open or failed: how many are open on each topic.
    Ready(Vec<u64>),
    Result(ShardResult),
}

/// `herald bench --worker`: hold `count` subscriptions, report on stdout, finish on stdin EOF
/// or a `stop` line.
pub(super) async fn worker(plan: Plan, first: usize, count: usize) -> ExitCode {
    let plan = Arc::new(plan);
    let mut shard = LocalShard::start(&plan, first, count);
    let (stop_sender, mut stop) = mpsc::unbounded_channel::<()>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(line) if line.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = stop_sender.send(());
    });
    let send = |line: &WorkerLine| -> bool {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, line).is_ok()
            && writeln!(stdout).is_ok()
            && stdout.flush().is_ok()
    };
    let mut ready = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = ticker.tick() => {
                let counters = &shard.counters;
                let status = WorkerLine::Status {
                    connected: counters.connected.load(Relaxed),
                    failed: counters.failed.load(Relaxed),
                    delivered: counters.delivered.load(Relaxed),
                };
                if !send(&status) {
                    break;
                }
                if !ready && shard.settled() >= shard.count {
                    ready = true;
                    if !send(&WorkerLine::Ready(shard.counters.topic_subscribers())) {
                        break;
                    }
                }
            }
        }
    }
    let result = shard.counters.result();
    shard.tasks.abort_all();
    if send(&WorkerLine::Result(result)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The lead's handle on one worker process.
pub(super) struct RemoteShard {
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) count: usize,
    pub(super) connected: Arc<AtomicUsize>,
    pub(super) failed: Arc<AtomicUsize>,
    pub(super) delivered: Arc<AtomicU64>,
    /// Subscriptions per topic, once the worker is ready (or an empty list if it died).
    pub(super) ready: Arc<Mutex<Option<Vec<u64>>>>,
    pub(super) result: mpsc::UnboundedReceiver<ShardResult>,
}

impl RemoteShard {
    pub(super) fn spawn(plan: &Plan, first: usize, count: usize) -> Result<Self, String> {
        let exe = std::env::current_exe()
            .map_err(|error| format!("cannot find the herald executable: {error}"))?;
        let mut command = Command::new(exe);
        command
            .arg("bench")
            .arg("--worker")
            .arg("--hub")
            .arg(&plan.hub)
            .arg("--server")
            .arg(plan.server.name())
            .arg("--subscribers")
            .arg(count.to_string())
            .arg("--first")
            .arg(first.to_string())
            .arg("--topics")
            .arg(plan.topics.len().to_string())
            .arg("--topic-prefix")
            .arg(&plan.prefix)
            .arg("--mode")
            .arg(plan.mode.name())
            .arg("--streams-per-connection")
            .arg(plan.streams_per_connection.to_string())
            .env_remove("HERALD_KEY")
            .env_remove("HERALD_TOKEN")
            .env_remove("HERALD_SUBSCRIBER_KEY")
            .env_remove("HERALD_SUBSCRIBER_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(token) = &plan.subscriber_token {
            command.env("HERALD_SUBSCRIBER_TOKEN", token);
        }
        if let Some(ca) = &plan.ca {
            command.arg("--ca").arg(ca);
        }
        if plan.tls.as_ref().is_some_and(|tls| tls.insecure) {
            command.arg("--insecure");
        }
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start a worker process: {error}"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or("a worker process has no stdout")?;
        let connected = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let delivered = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(Mutex::new(None));
        let (sender, result) = mpsc::unbounded_channel();
        {
            let (connected, failed, delivered, ready) = (
                Arc::clone(&connected),
                Arc::clone(&failed),
                Arc::clone(&delivered),
                Arc::clone(&ready),
            );
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    match serde_json::from_str::<WorkerLine>(&line) {
                        Ok(WorkerLine::Status {
                            connected: c,
                            failed: f,
                            delivered: d,
                        }) => {
                            connected.store(c, Relaxed);
                            failed.store(f, Relaxed);
                            delivered.store(d, Relaxed);
                        }
                        Ok(WorkerLine::Ready(topics)) => {
                            *ready.lock().unwrap_or_else(PoisonError::into_inner) = Some(topics);
                        }
                        Ok(WorkerLine::Result(result)) => {
                            let _ = sender.send(result);
                        }
                        Err(_) => {}
                    }
                }
                // The worker is gone: whatever it has is all there is.
                let mut ready = ready.lock().unwrap_or_else(PoisonError::into_inner);
                if ready.is_none() {
                    *ready = Some(Vec::new());
                }
            });
        }
        Ok(Self {
            child,
            stdin,
            count,
            connected,
            failed,
            delivered,
            ready,
            result,
        })
    }

    pub(super) async fn finish(mut self) -> ShardResult {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let result = tokio::time::timeout(Duration::from_secs(10), self.result.recv()).await;
        let _ = self.child.kill();
        let _ = self.child.wait();
        match result {
            Ok(Some(result)) => result,
            _ => ShardResult {
                failed: self.count,
                first_error: Some("a worker process gave no result".into()),
                ..ShardResult::default()
            },
        }
    }
}

impl Drop for RemoteShard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The subscriptions, wherever they live.
pub(super) enum Shard {
    Local(LocalShard),
    Remote(RemoteShard),
}

impl Shard {
    pub(super) fn connected(&self) -> usize {
        match self {
            Shard::Local(shard) => shard.counters.connected.load(Relaxed),
            Shard::Remote(shard) => shard.connected.load(Relaxed),
        }
    }

    pub(super) fn failed(&self) -> usize {
        match self {
            Shard::Local(shard) => shard.counters.failed.load(Relaxed),
            Shard::Remote(shard) => shard.failed.load(Relaxed),
        }
    }

    pub(super) fn ready(&self) -> bool {
        match self {
            Shard::Local(shard) => shard.settled() >= shard.count,
            Shard::Remote(shard) => shard
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some(),
        }
    }

    /// Open subscriptions per topic (known once ready).
    pub(super) fn topic_subscribers(&self) -> Vec<u64> {
        match self {
            Shard::Local(shard) => shard.counters.topic_subscribers(),
            Shard::Remote(shard) => shard
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default(),
        }
    }

    pub(super) fn delivered(&self) -> u64 {
        match self {
            Shard::Local(shard) => shard.counters.delivered.load(Relaxed),
            Shard::Remote(shard) => shard.delivered.load(Relaxed),
        }
    }

    pub(super) async fn finish(self) -> ShardResult {
        match self {
            Shard::Local(mut shard) => {
                let result = shard.counters.result();
                shard.tasks.abort_all();
                result
            }
            Shard::Remote(shard) => shard.finish().await,
        }
    }
}

//! Herald: a Server-Sent Events hub that speaks the Mercure protocol.
//!
//! Back ends publish with an HTTP POST; browsers subscribe with the native `EventSource`. Each
//! update is encoded once and shared by every subscriber; history makes `Last-Event-ID` resume
//! exact.
//!
//! # Layout
//! - [`config`]: the `serve` flags, environment and TOML file, validated into a `Config`.
//! - [`server`]: wiring: store + writer + hub + keys + listener.
//! - [`shutdown`]: owns every background task; shutdown signals them and waits, with a deadline.
//! - [`http`]: accept loop, routes, subscribe, publish, CORS, the SSE body, JSON views, the
//!   online backup endpoint, errors.
//! - [`hub`]: subscriber registry, bounded per-subscriber queues, fan-out, heartbeat.
//! - [`stream`]: one subscriber's stream: replay, live, catch-up, coalescing.
//! - [`subscriptions`]: Mercure subscription events and the subscriptions API documents.
//! - [`topic`]: selectors (exact, `*`, URI templates) compiled into matchers.
//! - [`update`]: the `Update` value and its single SSE encoding.
//! - [`store`]: the `Store` trait, its backends (redb, memory ring, Redis, NATS), the
//!   group-commit writer.
//! - [`cluster`]: on a node with a shared store, the feed that follows the shared log (Redis
//!   Streams, NATS JetStream) and hands every update to the hub; one reconnect loop for both.
//! - [`auth`]: JWT keys and claims.
//! - `serde_util`: shapes shared by the JSON and TOML readers (`OneOrMany`).
//! - [`visibility`]: the one rule of who may see an update (fan-out, replay, cursors, views).
//! - [`telemetry`]: metrics recorder and logs; every metric's name (`telemetry::names`).
//! - [`cli`]: the `herald` subcommands (`bench` runs the `herald-bench` crate, `crates/bench`).
//! - [`demo`]: the `--demo` clock and the shape of chat messages (pages are in `http::pages`).
//! - `fuzzing` (hidden): what the fuzz targets drive, re-exported in one place.
//!
//! # Public surface
//! Everything is `pub(crate)` unless the binary (`main.rs`), the integration tests, the
//! benchmarks or the fuzz targets need it; `unreachable_pub` (workspace lints) keeps it so. The
//! public modules are the ones those callers name: [`auth`] (minting test tokens), [`cli`],
//! [`config`], [`server`], [`shutdown`], [`store`] (backends and the writer, for the store
//! benchmarks and the cluster tests), [`hub`] and [`topic`] (the fan-out benchmark),
//! [`update`], [`subscriptions`] (the topic encoding the tests check).
//!
//! The SSE framing itself lives in the `herald-sse` crate (`crates/sse`); the client library in
//! `herald-client` (`crates/client`); the load generator in `herald-bench` (`crates/bench`), a
//! client that never links this crate.

pub mod auth;
pub mod cli;
pub(crate) mod cluster;
pub mod config;
pub(crate) mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http;
pub mod hub;
pub(crate) mod serde_util;
pub mod server;
pub mod shutdown;
pub mod store;
pub(crate) mod stream;
pub mod subscriptions;
pub(crate) mod telemetry;
pub mod topic;
pub mod update;
pub(crate) mod visibility;

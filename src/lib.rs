//! Herald: a Server-Sent Events hub that speaks the Mercure protocol.
//!
//! Back ends publish with an HTTP POST; browsers subscribe with the native `EventSource`. Each
//! update is encoded once and shared by every subscriber; history makes `Last-Event-ID` resume
//! exact.
//!
//! # Layout
//! - [`config`]: the `serve` flags, environment and TOML file, validated into a `Config`.
//! - [`server`]: wiring: store + writer + hub + keys + listener.
//! - [`http`]: accept loop, routes, subscribe, publish, CORS, the SSE body, JSON views, the
//!   online backup endpoint, errors.
//! - [`hub`]: subscriber registry, bounded per-subscriber queues, fan-out, heartbeat.
//! - [`stream`]: one subscriber's stream: replay, live, catch-up, coalescing.
//! - [`subscriptions`]: Mercure subscription events and the subscriptions API documents.
//! - [`topic`]: selectors (exact, `*`, URI templates) compiled into matchers.
//! - [`update`]: the `Update` value and its single SSE encoding.
//! - [`store`]: the `Store` trait, the memory ring, the group-commit writer.
//! - [`auth`]: JWT keys and claims.
//! - [`visibility`]: the one rule of who may see an update (fan-out, replay, cursors, views).
//! - [`telemetry`]: metrics recorder and logs.
//! - [`cli`]: the `herald` subcommands (`bench` runs the `herald-bench` crate, `crates/bench`).
//! - [`demo`]: the `--demo` clock and the shape of chat messages (pages are in `http::pages`).
//!
//! The SSE framing itself lives in the `herald-sse` crate (`crates/sse`); the client library in
//! `herald-client` (`crates/client`); the load generator in `herald-bench` (`crates/bench`), a
//! client that never links this crate.

pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod hub;
pub mod server;
pub mod store;
pub mod stream;
pub mod subscriptions;
pub mod telemetry;
pub mod topic;
pub mod update;
pub mod visibility;

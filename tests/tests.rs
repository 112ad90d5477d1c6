//! The integration suite: every test starts a real `herald serve` on a random loopback port and
//! asserts on what goes over the wire. One binary; each topic in its own file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

mod auth;
mod cli;
mod client;
mod cluster;
mod conformance;
mod cors;
mod deploy;
mod durable;
mod h1;
mod h2_idle;
mod hardening;
mod herald_js;
mod history;
mod jwks;
mod lagging;
mod leaks;
mod mercure;
mod mercure1;
mod newcomer;
mod ops;
mod pages;
mod publish;
mod shutdown;
mod slow;
mod subscribe;
mod templates;
mod tls;
mod topics;

//! The `herald` command line: `serve`, `token`, and the client side: `pub`, `sub`, `bench`
//! (built on the `herald-client` crate, never on the hub's internals).
//!
//! Usage errors and bad configuration exit 64 (EX_USAGE) with one clear line on stderr;
//! runtime failures exit 1.

mod bench;
mod publish;
mod serve;
mod sub;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad usage or configuration (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// Herald: a Server-Sent Events hub that speaks the Mercure protocol.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub
    Serve(Box<crate::config::ServeArgs>),
    /// Mint a JWT for development (HS256/384/512)
    Token(Box<token::TokenArgs>),
    /// Publish one update and print its id
    #[command(name = "pub")]
    Pub(Box<publish::PubArgs>),
    /// Subscribe and print events (reconnects with Last-Event-ID)
    Sub(Box<sub::SubArgs>),
    /// Load-test a running hub (Herald, or nginx+nchan): loss, latency, memory, CPU
    Bench(Box<bench::BenchArgs>),
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    // reqwest is built without a TLS crypto provider of its own: ring serves every client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Token(args) => token::run(&args),
        Command::Pub(args) => publish::run(&args),
        Command::Sub(args) => sub::run(&args),
        Command::Bench(args) => bench::run(&args),
    }
}

fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            // Everything clap says before the usage block, folded into one line.
            let rendered = error.render().to_string();
            let line = rendered
                .lines()
                .take_while(|line| !line.starts_with("Usage:"))
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with("tip:"))
                .collect::<Vec<_>>()
                .join(" ");
            let line = line.trim_start_matches("error: ");
            eprintln!("herald: {line} (see herald --help)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Prints one line and returns the usage exit code.
fn config_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("herald: {message}");
    ExitCode::from(EXIT_USAGE)
}

//! The `herald` command line: `serve`, `token`, and the client side: `pub`, `sub`, `bench`,
//! `backup`
//! (built on the `herald-client` crate, never on the hub's internals).
//!
//! Usage errors and bad configuration exit 64 (EX_USAGE) with one clear line on stderr;
//! runtime failures exit 1. The client subcommands return `anyhow::Result`; a [`UsageError`]
//! in the chain marks the user's mistake, and [`exit_code`] (called by `main.rs`) is the one
//! place that turns an error into its exit code.

mod backup;
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

/// The end of `herald serve --help`: what is not a flag.
const SERVE_AFTER_HELP: &str = "\
Logs go to stderr, coloured only on a terminal. HERALD_LOG (or RUST_LOG) sets the level and \
filter: error, warn, info (the default: start-up, shutdown, and one line per refused request, \
401/403/429/503 with its reason, at most 10 a second), debug, trace, or per module, e.g. \
HERALD_LOG=info,herald::http=debug. --log-format json writes one JSON object per line.

Boolean variables (HERALD_ANONYMOUS, HERALD_DEMO, ...) take 1/0, true/false, yes/no or on/off.";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve(Box<crate::config::ServeArgs>),
    /// Mint a JWT for development (HS256/384/512)
    Token(Box<token::TokenArgs>),
    /// Publish one update and print its id
    #[command(name = "pub")]
    Pub(Box<publish::PubArgs>),
    /// Subscribe and print events (reconnects with Last-Event-ID)
    Sub(Box<sub::SubArgs>),
    /// Load-test a running hub (Herald, or nginx+nchan): loss, latency, memory, CPU
    Bench(Box<herald_bench::BenchArgs>),
    /// Save a consistent snapshot of a running hub's history (needs an admin token)
    Backup(Box<backup::BackupArgs>),
}

/// A mistake in the command line or in what it names (a bad value, a missing option, an
/// unreadable data file): exits 64 ([`EXIT_USAGE`]). Any other error exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// A [`UsageError`] saying `message`.
pub fn usage(message: impl std::fmt::Display) -> anyhow::Error {
    UsageError(message.to_string()).into()
}

/// The exit code for an error a subcommand returned: 64 for a [`UsageError`], else 1.
pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    if error.is::<UsageError>() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::FAILURE
    }
}

/// The innermost cause of an error, as one line: `Connection refused (os error 111)`, not
/// reqwest's chain, which repeats itself.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Parses the command line and runs the subcommand. `Ok` carries the exit code of a command
/// that has said everything itself (`serve`, `bench`, `--help`); an error is for the caller to
/// print (`herald: {error:#}`, one line) and to map with [`exit_code`].
pub fn run() -> anyhow::Result<ExitCode> {
    // reqwest is built without a TLS crypto provider of its own: ring serves every client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_error(&error),
    };
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Serve(args) => Ok(serve::run(*args)),
        Command::Token(args) => done(token::run(&args)),
        Command::Pub(args) => done(publish::run(&args)),
        Command::Sub(args) => done(sub::run(&args)),
        Command::Bench(args) => Ok(herald_bench::run(&args, publish::mint_for_run)),
        Command::Backup(args) => done(backup::run(&args)),
    }
}

/// Help and version are printed by clap; any other parse error becomes one [`usage_line`].
fn clap_error(error: &clap::Error) -> anyhow::Result<ExitCode> {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            Ok(ExitCode::SUCCESS)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            Ok(ExitCode::from(EXIT_USAGE))
        }
        _ => {
            let args: Vec<String> = std::env::args().collect();
            Err(usage(usage_line(error, &args, |name| {
                std::env::var(name).ok()
            })))
        }
    }
}

/// A clap error in one line: what is wrong, the nearest flag or subcommand when clap found one,
/// and the help of the subcommand concerned (`herald serve --help`, not `herald --help`). A bad
/// value that came from the environment names the variable, not the flag. `env` reads a
/// variable (a parameter, so tests need not change the process environment); `args` is the
/// command line, for the subcommand when clap's error does not say.
fn usage_line(
    error: &clap::Error,
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> String {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let text = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        Some(ContextValue::Strings(texts)) => texts.first().cloned(),
        Some(ContextValue::StyledStr(text)) => Some(text.to_string()),
        _ => None,
    };
    // "Usage: herald serve [OPTIONS]" names the subcommand.
    let command = text(ContextKind::Usage)
        .and_then(|usage| {
            let usage = usage.trim().trim_start_matches("Usage:").trim().to_owned();
            let words: Vec<&str> = usage
                .split_whitespace()
                .take_while(|word| !word.starts_with(['[', '<', '-']))
                .collect();
            (!words.is_empty()).then(|| words.join(" "))
        })
        .or_else(|| {
            let name = args.get(1)?;
            Cli::command()
                .find_subcommand(name)
                .map(|sub| format!("herald {}", sub.get_name()))
        })
        .unwrap_or_else(|| "herald".to_owned());
    let help = format!("see `{command} --help`");

    if let (Some(flag), Some(value)) = (
        text(ContextKind::InvalidArg),
        text(ContextKind::InvalidValue),
    ) {
        let name = flag
            .trim_start_matches('-')
            .split([' ', '='])
            .next()
            .unwrap_or_default()
            .replace('-', "_")
            .to_uppercase();
        let variable = format!("HERALD_{name}");
        if env(&variable).as_deref() == Some(value.as_str()) {
            let flag = flag.split([' ', '=']).next().unwrap_or_default();
            let switch = Cli::command().get_subcommands().any(|sub| {
                sub.get_arguments().any(|arg| {
                    arg.get_long() == Some(flag.trim_start_matches('-'))
                        && matches!(arg.get_action(), clap::ArgAction::SetTrue)
                })
            });
            let reason = if switch {
                "expected 1/0, true/false, yes/no or on/off".to_owned()
            } else {
                clap_reason(error)
            };
            return format!(
                "invalid {variable}={value:?} (the environment form of {flag}): {reason}"
            );
        }
    }

    let line = clap_reason(error);
    let suggestion =
        text(ContextKind::SuggestedArg).or_else(|| text(ContextKind::SuggestedSubcommand));
    match suggestion {
        Some(suggested) => format!("{line}; did you mean `{suggested}`? ({help})"),
        None => format!("{line} ({help})"),
    }
}

/// Everything clap says before the usage block, folded into one line, without its tips.
fn clap_reason(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let line = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("tip:")
                && !line.starts_with("For more information")
        })
        .collect::<Vec<_>>()
        .join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_owned()
}

/// Prints one line and returns the usage exit code (for `bench`, which still prints its own
/// errors; the other subcommands return a [`UsageError`]).
fn config_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("herald: {message}");
    ExitCode::from(EXIT_USAGE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use clap::CommandFactory;

    fn line(args: &[&str], env: &[(&str, &str)]) -> String {
        let error = Cli::try_parse_from(args).unwrap_err();
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        usage_line(&error, &args, |name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn a_typo_gets_the_nearest_flag_and_the_subcommand_help() {
        let text = line(&["herald", "serve", "--jwt-kye", "x"], &[]);
        assert!(text.contains("did you mean `--jwt-key`?"), "{text}");
        assert!(text.contains("see `herald serve --help`"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        let text = line(&["herald", "serv"], &[]);
        assert!(text.contains("did you mean `serve`?"), "{text}");
        assert!(text.contains("see `herald --help`"), "{text}");
        let text = line(&["herald", "serve", "--heartbeat"], &[]);
        assert!(text.contains("see `herald serve --help`"), "{text}");
    }

    #[test]
    fn every_boolean_serve_flag_takes_the_usual_spellings() {
        let command = Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        let mut checked = 0;
        for arg in serve.get_arguments() {
            if !matches!(arg.get_action(), clap::ArgAction::SetTrue) || arg.get_env().is_none() {
                continue;
            }
            let accepted: Vec<String> = arg
                .get_value_parser()
                .possible_values()
                .map(|values| values.map(|value| value.get_name().to_owned()).collect())
                .unwrap_or_default();
            for spelling in ["1", "0", "true", "false", "yes", "no", "on", "off"] {
                assert!(
                    accepted.iter().any(|value| value == spelling),
                    "--{} refuses {spelling} in the environment: {accepted:?}",
                    arg.get_id()
                );
            }
            checked += 1;
        }
        assert!(checked >= 3, "{checked}");
    }
}

//! The `herald` binary: wiring only. Tunes the global allocator ([`allocator`]), parses the
//! command line and hands over to [`herald::cli`]; an error it returns is printed as one line and
//! mapped to its exit code (64 for bad usage or configuration, 1 otherwise).

mod allocator;

use std::process::ExitCode;

fn main() -> ExitCode {
    if let Err(error) = allocator::tune() {
        eprintln!("herald: warning: {error}; the allocator keeps its defaults");
    }
    match herald::cli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("herald: {error:#}");
            herald::cli::exit_code(&error)
        }
    }
}

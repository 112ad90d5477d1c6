//! The `herald` binary: wiring only. Parses the command line and hands over to [`herald::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    herald::cli::main()
}

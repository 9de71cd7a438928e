//! The `colloquy` binary: parse the command line and hand over to `cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    colloquy::cli::run(colloquy::cli::Cli::parse())
}

//! `cargo xtask`: the workspace's build and test orchestration, in Rust instead of shell.
//!
//! `.cargo/config.toml` aliases `cargo xtask` to `cargo run --package xtask --quiet --`.
//! This crate depends on `anyhow`; for `bench`, `demo` and `serve` (which run the s3s-fs
//! server in this process) on s3-testkit, tokio, tempfile, nix and sha2; for `tidy` on
//! serde_json and toml. It is never a dependency of another crate (the tidy test checks
//! that).
//!
//! # Layout
//!
//! One module per command, each with a `run` function; `flags` turns the command line
//! into a [`flags::Command`]; `step` runs and prints external commands. Most tidy checks
//! (`tidy`) are ordinary `#[test]`s, so `cargo test --workspace` runs them too; the rest
//! is a clippy step that `test` runs as well.
//!
//! # Adding a command
//!
//! Add a module `src/<command>.rs` with `pub(crate) fn run(..) -> anyhow::Result<()>`, a
//! variant in [`flags::Command`] with its parsing in `flags::parse`, a line in
//! [`flags::USAGE`], and a `match` arm in `main`. `cargo xtask <unknown>`
//! prints the usage of what exists and exits with status 2.

mod bench;
mod demo;
mod flags;
mod moto;
mod proptest;
mod serve;
mod step;
mod test;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match flags::parse(&args) {
        Ok(command) => command,
        Err(flags::UsageError(message)) => {
            eprintln!("error: {message}\n\n{}", flags::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match command {
        flags::Command::Help => {
            println!("{}", flags::USAGE);
            Ok(())
        }
        flags::Command::Test => test::run(),
        flags::Command::Tidy => tidy::run(),
        flags::Command::Proptest(options) => proptest::run(&options),
        flags::Command::Demo(options) => demo::run(&options),
        flags::Command::Serve => serve::run(),
        flags::Command::Bench(options) => bench::run(&options),
        flags::Command::Measure(args) => bench::run_wrapper(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

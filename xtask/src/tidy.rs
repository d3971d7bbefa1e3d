//! `cargo xtask tidy`: the architecture's rules, checked by the tools that know the facts.
//!
//! - What the sans-IO crates may not call (the clock, files, sockets, threads,
//!   processes, printing) is written in each one's `clippy.toml` as `disallowed-methods`,
//!   `disallowed-types` and `disallowed-macros`, with the reason. [`clippy_step`] lints
//!   their libraries with those lints forbidden (so no `#[allow]` can excuse a call), and
//!   fails if clippy reports a problem in a `clippy.toml` itself (a misspelled path bans
//!   nothing). Tests and benches of those crates may use what the library may not.
//! - Which crate may depend on which, and which runtime or IO crate a sans-IO crate may
//!   reach through its normal dependencies (transitively), are read from
//!   `cargo metadata`'s resolved graph; the features a crate reached that way has when
//!   the sans-IO crate is built alone come from `cargo tree`. These checks, and a few
//!   about manifests and docs, are `#[test]`s in `tidy/rules.rs`, so `cargo test
//!   --workspace` (and so `cargo xtask test` and CI) runs them too.
//!
//! What the workspace lints (`[workspace.lints]` in the root `Cargo.toml`: unsafe code
//! forbidden, missing docs, `todo!`, `dbg!`, ...) already enforce is not checked again
//! here; `rules.rs` only checks that every crate inherits them.

#[cfg(test)]
mod rules;
#[cfg(test)]
mod workspace;

use crate::step::Step;

/// The crates that do no IO and read no clock, whose libraries are linted with their
/// `clippy.toml`'s bans forbidden.
pub(crate) const SANS_IO_CRATES: &[&str] = &["s3-types", "transfer-core", "s3-protocol"];

/// The clippy lints a `clippy.toml` configures; see [`clippy_step`].
const CONFIGURED_LINTS: &[&str] = &[
    "clippy::disallowed_methods",
    "clippy::disallowed_types",
    "clippy::disallowed_macros",
];

/// Clippy on the sans-IO crates' libraries, warnings denied and the configured lints
/// forbidden; fails too if clippy warns about a `clippy.toml`.
pub(crate) fn clippy_step() -> Step {
    let mut args = vec!["clippy".to_owned()];
    for krate in SANS_IO_CRATES {
        args.extend(["-p".to_owned(), (*krate).to_owned()]);
    }
    args.extend(["--lib", "--", "-D", "warnings"].map(str::to_owned));
    for lint in CONFIGURED_LINTS {
        args.extend(["-F".to_owned(), (*lint).to_owned()]);
    }
    // Clippy only warns about a path in clippy.toml that names nothing, pointing at the
    // file; such a ban would silently ban nothing.
    Step::cargo("clippy sans-IO", args).fail_on_stderr("clippy.toml:")
}

/// The tidy tests, by name (`tidy::` is the module path of every one of them).
fn tests_step() -> Step {
    Step::cargo(
        "tidy tests",
        ["test", "-p", "xtask", "--quiet", "--", "tidy::"],
    )
}

pub(crate) fn run() -> anyhow::Result<()> {
    let steps = [clippy_step(), tests_step()];
    for step in &steps {
        step.run()?;
    }
    println!("==> tidy: all {} steps passed", steps.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tidy_commands() {
        assert_eq!(
            super::clippy_step().to_string(),
            "cargo clippy -p s3-types -p transfer-core -p s3-protocol --lib -- -D warnings \
             -F clippy::disallowed_methods -F clippy::disallowed_types \
             -F clippy::disallowed_macros"
        );
        assert_eq!(
            super::tests_step().to_string(),
            "cargo test -p xtask --quiet -- tidy::"
        );
    }
}

//! `cargo xtask serve`: the embedded S3 server (s3s-fs, verifying signatures) with a
//! bucket `demo`, for trying `s3tm` by hand. It prints the endpoint, the keys and the
//! exact `s3tm` flags and environment, and serves until Ctrl-C.
//!
//! The server is the `serve` example of `cli-demo` (`crates/cli-demo/examples/serve.rs`),
//! built next to the s3tm binary it tells you to use.

use crate::step::Step;

pub(crate) fn run() -> anyhow::Result<()> {
    for step in steps() {
        step.run()?;
    }
    Ok(())
}

fn steps() -> [Step; 2] {
    [
        Step::cargo(
            "build",
            [
                "build",
                "-p",
                "cli-demo",
                "--bin",
                "s3tm",
                "--example",
                "serve",
            ],
        ),
        Step::cargo(
            "serve",
            ["run", "--quiet", "-p", "cli-demo", "--example", "serve"],
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds_s3tm_then_serves() {
        let lines: Vec<String> = super::steps().iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "cargo build -p cli-demo --bin s3tm --example serve",
                "cargo run --quiet -p cli-demo --example serve",
            ]
        );
    }
}

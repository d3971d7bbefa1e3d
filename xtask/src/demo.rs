//! `cargo xtask demo`: the real `s3tm` against an embedded S3 server, interrupted and
//! resumed, verified byte for byte.
//!
//! The work is done by the `demo` example of `cli-demo` (`crates/cli-demo/examples/demo.rs`),
//! which may link the s3s-fs test server through its dev-dependency on s3-testkit; this
//! command only builds s3tm and the example, then runs it, so xtask itself stays free
//! of the transfer stack.

use crate::flags::UsageError;
use crate::step::Step;

/// `cargo xtask demo` options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DemoOptions {
    pub(crate) release: bool,
    pub(crate) size_mib: Option<u64>,
}

pub(crate) fn parse(mut rest: &[String]) -> Result<DemoOptions, UsageError> {
    let mut options = DemoOptions {
        release: false,
        size_mib: None,
    };
    while let Some((arg, tail)) = rest.split_first() {
        rest = tail;
        match arg.as_str() {
            "--release" => options.release = true,
            "--size-mib" => {
                let value = rest.first().map(String::as_str).unwrap_or_default();
                rest = rest.get(1..).unwrap_or_default();
                match value.parse::<u64>() {
                    Ok(n) if n >= 16 => options.size_mib = Some(n),
                    _ => {
                        return Err(UsageError(format!(
                            "`--size-mib` needs a number of MiB, at least 16, got `{value}`"
                        )));
                    }
                }
            }
            other => return Err(UsageError(format!("unknown option `{other}` for `demo`"))),
        }
    }
    Ok(options)
}

pub(crate) fn run(options: &DemoOptions) -> anyhow::Result<()> {
    let profile = if options.release {
        "release build"
    } else {
        "debug build; `cargo xtask demo --release` runs an optimised one"
    };
    println!("==> s3tm and the demo: {profile}");
    for step in steps(options) {
        step.run()?;
    }
    Ok(())
}

fn steps(options: &DemoOptions) -> Vec<Step> {
    let release: &[&str] = if options.release { &["--release"] } else { &[] };
    let mut build = vec!["build"];
    build.extend(release);
    build.extend(["-p", "cli-demo", "--bin", "s3tm", "--example", "demo"]);
    let mut run = vec!["run", "--quiet"];
    run.extend(release);
    run.extend(["-p", "cli-demo", "--example", "demo"]);
    let size = options.size_mib.map(|n| n.to_string());
    if let Some(size) = &size {
        run.extend(["--", "--size-mib", size]);
    }
    vec![Step::cargo("build", build), Step::cargo("demo", run)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_and_commands() {
        let options = parse(&args("--release --size-mib 64")).unwrap();
        assert_eq!(
            options,
            DemoOptions {
                release: true,
                size_mib: Some(64)
            }
        );
        let lines: Vec<String> = steps(&options).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "cargo build --release -p cli-demo --bin s3tm --example demo",
                "cargo run --quiet --release -p cli-demo --example demo -- --size-mib 64",
            ]
        );
        let lines: Vec<String> = steps(&parse(&[]).unwrap())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "cargo build -p cli-demo --bin s3tm --example demo",
                "cargo run --quiet -p cli-demo --example demo",
            ]
        );
        for bad in ["--fast", "--size-mib", "--size-mib 8", "--size-mib lots"] {
            assert!(parse(&args(bad)).is_err(), "`{bad}` should be refused");
        }
    }
}

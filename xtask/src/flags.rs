//! The command line, parsed by hand: a handful of flags do not justify a parser crate in
//! a binary that must build in seconds.

use crate::test::DEFAULT_PROPTEST_CASES;

/// Printed for `help` and after every usage error. Lists only commands that exist.
pub(crate) const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test        cargo fmt --all --check, then cargo clippy --workspace --all-targets
              -- -D warnings, then cargo test --workspace (every test and doctest,
              property tests at PROPTEST_CASES, default 512); stops at the first
              failing step; between clippy and the tests, the same clippy step as `tidy`
  tidy        the architecture's rules alone: clippy on the libraries of s3-types,
              transfer-core and s3-protocol with their clippy.toml bans (clock, files,
              sockets, threads, processes, printing) forbidden, then the tidy tests
              (dependency arrows, runtime crates reached transitively, manifests, docs)
  proptest    the property tests of transfer-core (upload_model, download_model) and
              s3-protocol (properties) with more cases
                --cases N     cases per property (default 512)
                --release     build the tests with optimisations
                -- ARGS       passed on to the test binaries (a name filter, --nocapture)
  bench       s3tm (release build) against aws s3 cp, rclone and curl --aws-sigv4 on
              the embedded s3s-fs server: throughput, client CPU and peak RSS of
              uploads and downloads, scaling (64 MiB, 1 GiB, 4 GiB) and a concurrency
              sweep (1..16); writes docs/benchmarks.md
                --size SIZE        file size of the comparison (default 1GiB)
                --runs N           runs per figure, median reported (default 3)
                --install-peers    install awscli (venv .venv-bench), rclone, curl
                --quick            skip the 4 GiB size, the sweep and micro-benchmarks
  demo        the real s3tm against an embedded S3 server (s3s-fs): uploads a 256 MiB
              file and pauses it with SIGINT, resumes it, downloads it with a kill -9
              and `s3tm resume`, compares SHA-256; prints a table, exits 0 only if all
              verified
                --release       optimised build of s3tm (default: debug)
                --size-mib N    file size in MiB (default 256)
  serve       the embedded S3 server with a bucket `demo`, printing the endpoint, keys
              and s3tm flags to use it by hand; Ctrl-C stops it
  help        this message";

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Help,
    Test,
    Tidy,
    Proptest(ProptestOptions),
    Demo(crate::demo::DemoOptions),
    Serve,
    Bench(crate::bench::BenchOptions),
    /// `__measure`: internal to `bench`, which runs each client under it; not listed.
    Measure(Vec<String>),
}

/// `cargo xtask proptest` options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProptestOptions {
    pub(crate) cases: u32,
    pub(crate) release: bool,
    pub(crate) test_args: Vec<String>,
}

/// A command line that is not understood; the caller prints it with [`USAGE`] and exits
/// with status 2.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

pub(crate) fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some((command, rest)) = args.split_first() else {
        return Err(UsageError("no command given".to_owned()));
    };
    match command.as_str() {
        "help" | "-h" | "--help" => no_options("help", rest).map(|()| Command::Help),
        "test" => no_options("test", rest).map(|()| Command::Test),
        "tidy" => no_options("tidy", rest).map(|()| Command::Tidy),
        "proptest" => parse_proptest(rest).map(Command::Proptest),
        "demo" => crate::demo::parse(rest).map(Command::Demo),
        "serve" => no_options("serve", rest).map(|()| Command::Serve),
        "bench" => crate::bench::parse(rest).map(Command::Bench),
        "__measure" => Ok(Command::Measure(rest.to_vec())),
        other => Err(UsageError(format!("unknown command `{other}`"))),
    }
}

fn no_options(command: &str, rest: &[String]) -> Result<(), UsageError> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(UsageError(format!(
            "`{command}` takes no arguments, got `{arg}`"
        ))),
    }
}

fn parse_proptest(mut rest: &[String]) -> Result<ProptestOptions, UsageError> {
    let mut options = ProptestOptions {
        cases: DEFAULT_PROPTEST_CASES,
        release: false,
        test_args: Vec::new(),
    };
    while let Some((arg, tail)) = rest.split_first() {
        rest = tail;
        match arg.as_str() {
            "--release" => options.release = true,
            "--cases" => {
                let Some((value, tail)) = rest.split_first() else {
                    return Err(UsageError("`--cases` needs a number".to_owned()));
                };
                rest = tail;
                options.cases = parse_cases(value)?;
            }
            "--" => {
                options.test_args = rest.to_vec();
                break;
            }
            other => match other.strip_prefix("--cases=") {
                Some(value) => options.cases = parse_cases(value)?,
                None => {
                    return Err(UsageError(format!(
                        "unknown option `{other}` for `proptest`"
                    )));
                }
            },
        }
    }
    Ok(options)
}

fn parse_cases(value: &str) -> Result<u32, UsageError> {
    match value.parse::<u32>() {
        Ok(cases) if cases > 0 => Ok(cases),
        _ => Err(UsageError(format!(
            "`--cases` needs a positive whole number, got `{value}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    #[test]
    fn commands_that_exist() {
        assert_eq!(parse_str("test"), Ok(Command::Test));
        assert_eq!(parse_str("tidy"), Ok(Command::Tidy));
        assert_eq!(parse_str("help"), Ok(Command::Help));
        assert_eq!(
            parse_str("proptest --cases 4096 --release -- upload --nocapture"),
            Ok(Command::Proptest(ProptestOptions {
                cases: 4096,
                release: true,
                test_args: vec!["upload".to_owned(), "--nocapture".to_owned()],
            }))
        );
        assert_eq!(
            parse_str("proptest --cases=7"),
            Ok(Command::Proptest(ProptestOptions {
                cases: 7,
                release: false,
                test_args: Vec::new(),
            }))
        );
    }

    #[test]
    fn usage_errors() {
        for line in [
            "",
            "demo --fast",
            "bench --size",
            "serve --port 9000",
            "test --fast",
            "tidy --fix",
            "proptest --cases",
            "proptest --cases 0",
            "proptest --cases many",
            "proptest --quick",
        ] {
            assert!(parse_str(line).is_err(), "`{line}` should be a usage error");
        }
    }

    #[test]
    fn usage_lists_only_commands_that_exist() {
        let listed: Vec<&str> = USAGE
            .lines()
            .skip_while(|line| *line != "commands:")
            .skip(1)
            .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert_eq!(
            listed,
            ["test", "tidy", "proptest", "bench", "demo", "serve", "help"]
        );
        for command in listed {
            assert!(
                parse_str(command).is_ok(),
                "`{command}` is listed but not parsed"
            );
        }
    }
}

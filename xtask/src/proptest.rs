//! `cargo xtask proptest --cases N`: the property tests alone, with as many cases as
//! you have patience for. Failures proptest finds are written to the committed
//! `proptest-regressions/` files of the crate, so they are replayed by every later run.

use crate::flags::ProptestOptions;
use crate::step::Step;

/// Every property-test target: (step name, package, test targets).
const TARGETS: &[(&str, &str, &[&str])] = &[
    (
        "transfer-core",
        "transfer-core",
        &["upload_model", "download_model"],
    ),
    ("s3-protocol", "s3-protocol", &["properties"]),
];

pub(crate) fn run(options: &ProptestOptions) -> anyhow::Result<()> {
    for step in steps(options) {
        step.run()?;
    }
    Ok(())
}

fn steps(options: &ProptestOptions) -> Vec<Step> {
    TARGETS
        .iter()
        .map(|(name, package, tests)| {
            let mut args = vec!["test".to_owned()];
            if options.release {
                args.push("--release".to_owned());
            }
            args.extend(["-p".to_owned(), (*package).to_owned()]);
            for test in *tests {
                args.extend(["--test".to_owned(), (*test).to_owned()]);
            }
            if !options.test_args.is_empty() {
                args.push("--".to_owned());
                args.extend(options.test_args.iter().cloned());
            }
            Step::cargo(name, args).env("PROPTEST_CASES", options.cases)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let options = ProptestOptions {
            cases: 10_000,
            release: true,
            test_args: vec!["upload".to_owned()],
        };
        let lines: Vec<String> = steps(&options).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "PROPTEST_CASES=10000 cargo test --release -p transfer-core \
                 --test upload_model --test download_model -- upload",
                "PROPTEST_CASES=10000 cargo test --release -p s3-protocol \
                 --test properties -- upload",
            ]
        );
    }
}

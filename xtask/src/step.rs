//! Running external commands as named steps: print the command, run it with the
//! terminal attached, and turn a failure into an error that names the step.

use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

/// One external command with a short name used in progress and error messages.
pub(crate) struct Step {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    envs: Vec<(&'static str, String)>,
}

impl Step {
    /// A `cargo` invocation. It runs the cargo that runs xtask (`$CARGO`), so the
    /// toolchain cannot change between steps.
    pub(crate) fn cargo<I, S>(name: &'static str, args: I) -> Step
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Step {
            name,
            program: "cargo",
            args: args.into_iter().map(Into::into).collect(),
            envs: Vec::new(),
        }
    }

    pub(crate) fn env(mut self, key: &'static str, value: impl fmt::Display) -> Step {
        self.envs.push((key, value.to_string()));
        self
    }

    /// Prints the command, runs it from the workspace root and fails unless it exits 0.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        println!("==> [{}] {self}", self.name);
        // The child writes straight to the terminal; keep our line ahead of its output.
        let _ = std::io::stdout().flush();
        let started = Instant::now();
        let program = match self.program {
            "cargo" => std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")),
            other => OsString::from(other),
        };
        let status = Command::new(program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(crate::project_root())
            .status()
            .with_context(|| format!("step `{}` could not start `{self}`", self.name))?;
        if !status.success() {
            bail!("step `{}` failed ({status}): `{self}`", self.name);
        }
        println!(
            "==> [{}] ok in {:.1}s",
            self.name,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// The command as one would type it in a shell, environment first.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.envs {
            write!(f, "{key}={value} ")?;
        }
        f.write_str(self.program)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_a_shell_command() {
        let step = Step::cargo("test", ["test", "--workspace"]).env("PROPTEST_CASES", 512);
        assert_eq!(
            step.to_string(),
            "PROPTEST_CASES=512 cargo test --workspace"
        );
    }
}

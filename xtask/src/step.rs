//! Running external commands as named steps: print the command, run it with the
//! terminal attached, and turn a failure into an error that names the step.

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};

/// One external command with a short name used in progress and error messages.
pub(crate) struct Step {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    envs: Vec<(&'static str, String)>,
    /// Fail the step if its standard error has a line containing this.
    fail_on_stderr: Option<&'static str>,
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
            fail_on_stderr: None,
        }
    }

    /// Fails the step, even if the command succeeds, when a line of its standard error
    /// contains `text` (which it still prints as it comes).
    pub(crate) fn fail_on_stderr(mut self, text: &'static str) -> Step {
        self.fail_on_stderr = Some(text);
        self
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
        let mut command = Command::new(program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(crate::project_root());
        if self.fail_on_stderr.is_some() {
            command.stderr(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("step `{}` could not start `{self}`", self.name))?;
        let mut flagged = None;
        if let (Some(text), Some(stderr)) = (self.fail_on_stderr, child.stderr.take()) {
            for line in BufReader::new(stderr).lines() {
                let line = line.with_context(|| format!("step `{}`: reading stderr", self.name))?;
                eprintln!("{line}");
                if flagged.is_none() && line.contains(text) {
                    flagged = Some(line);
                }
            }
        }
        let status = child
            .wait()
            .with_context(|| format!("step `{}`: waiting for `{self}`", self.name))?;
        if !status.success() {
            bail!("step `{}` failed ({status}): `{self}`", self.name);
        }
        if let Some(line) = flagged {
            bail!(
                "step `{}` printed `{}` on stderr, which fails it: {line}",
                self.name,
                self.fail_on_stderr.unwrap_or_default()
            );
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

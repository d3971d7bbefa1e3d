//! What the CLI prints when it fails, and the exit status that goes with it.

use std::fmt;

use transfer_manager::ErrorKind;

use crate::exit;

/// A failure of a command: one line for the user (what failed and what to do) and the
/// exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    /// The command failed (exit 1).
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: exit::FAILED,
        }
    }

    /// The command line cannot work (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: exit::USAGE,
        }
    }

    /// The command failed and has said why already (exit 1, nothing more printed).
    pub(crate) fn silent() -> Failure {
        Failure {
            message: String::new(),
            code: exit::FAILED,
        }
    }

    pub(crate) fn code(&self) -> u8 {
        self.code
    }

    pub(crate) fn print(&self) {
        if self.message.is_empty() {
            return;
        }
        eprintln!("s3tm: error: {}", self.message);
        if self.code == exit::USAGE {
            eprintln!("For more information, try '--help'.");
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<transfer_manager::Error> for Failure {
    fn from(e: transfer_manager::Error) -> Failure {
        Failure::new(explain(&e, None))
    }
}

/// The library's message, plus what to do when the message does not say already.
/// `retry` is the transfer's id and the full command that continues it (with the global
/// flags this run was given), when there is one.
pub(crate) fn explain(e: &transfer_manager::Error, retry: Option<(&str, &str)>) -> String {
    let message = e.to_string();
    let lower = message.to_lowercase();
    let says = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let hint = match e.kind() {
        ErrorKind::Denied if !says(&["check", "credentials", "access key"]) => Some(
            "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, --profile), \
             the region and the bucket's permissions",
        ),
        ErrorKind::NotFound if !says(&["check", "see `s3tm"]) => {
            Some("check the bucket and key, and --region / --endpoint-url")
        }
        ErrorKind::Network if !says(&["check", "is the server"]) => {
            Some("check --endpoint-url and the network")
        }
        ErrorKind::Locked if !says(&["stop", "wait", "s3tm resume", "s3tm cancel"]) => {
            Some("another s3tm is running this transfer; stop it first or wait for it")
        }
        _ => None,
    };
    let mut out = message;
    if let Some(hint) = hint {
        out.push_str("; ");
        out.push_str(hint);
    }
    if let Some((id, command)) = retry {
        // The library names `s3tm resume ID`; with --state-dir or --endpoint-url that
        // command alone would not find the transfer, so name the full one.
        let short = format!("`s3tm resume {id}`");
        let cancel = format!("`s3tm cancel {id}`");
        if out.contains(&short) {
            out = out.replace(&short, &format!("`{command}`"));
        } else if out.contains(&cancel) {
            // The library says the transfer can only be cancelled: name that command in
            // full, and no resume.
            let full = command.replacen(" resume ", " cancel ", 1);
            out = out.replace(&cancel, &format!("`{full}`"));
        } else if e.is_resumable() {
            out.push_str(&format!("; the checkpoint is kept: `{command}` continues"));
        }
    }
    out
}

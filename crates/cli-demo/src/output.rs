//! Everything a transfer prints: progress bars on a terminal, notes on stderr, the
//! summary on stdout, or one JSON object per line with `--json`.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use transfer_manager::{Direction, TransferOutcome, Verified};

use crate::OutputArgs;
use crate::args::human_bytes;

/// How a command reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Notes on stderr, summary on stdout, bars when `bars`.
    Human { bars: bool },
    /// JSON lines on stdout, notes on stderr.
    Json,
    /// Errors only.
    Quiet,
}

/// The reporter shared by the transfers of one command.
pub(crate) struct Output {
    mode: Mode,
    bars: Option<MultiProgress>,
    /// The download streams into stdout itself (`/dev/stdout`, a pipe): the summary and
    /// JSON lines go to stderr, so the bytes stay the object's.
    stdout_is_data: bool,
    /// `--require-verified`: a transfer that completes without being verified counts as
    /// failed (exit status 1).
    require_verified: bool,
}

impl Output {
    pub(crate) fn new(args: &OutputArgs) -> Output {
        let mode = if args.quiet {
            Mode::Quiet
        } else if args.json {
            Mode::Json
        } else {
            Mode::Human {
                bars: !args.no_progress && std::io::stderr().is_terminal(),
            }
        };
        let bars = matches!(mode, Mode::Human { bars: true })
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Output {
            mode,
            bars,
            stdout_is_data: false,
            require_verified: false,
        }
    }

    /// Reports on stderr only: the download's bytes go to stdout.
    pub(crate) fn with_stdout_for_data(mut self, yes: bool) -> Output {
        self.stdout_is_data = yes;
        self
    }

    /// Counts a completed transfer that could not be verified as failed.
    pub(crate) fn with_require_verified(mut self, yes: bool) -> Output {
        self.require_verified = yes;
        self
    }

    pub(crate) fn require_verified(&self) -> bool {
        self.require_verified
    }

    fn println(&self, line: &str) {
        if self.stdout_is_data {
            eprintln!("{line}");
        } else {
            stdout_line(line);
        }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.mode == Mode::Json
    }

    /// A line on stderr (not with `--quiet`), above the bars.
    pub(crate) fn note(&self, line: &str) {
        if self.mode == Mode::Quiet {
            return;
        }
        match &self.bars {
            Some(bars) => bars.suspend(|| eprintln!("s3tm: {line}")),
            None => eprintln!("s3tm: {line}"),
        }
    }

    /// A warning on stderr, whatever the mode: something went wrong beside the work.
    pub(crate) fn warn(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars.suspend(|| eprintln!("s3tm: warning: {line}")),
            None => eprintln!("s3tm: warning: {line}"),
        }
    }

    /// An error line on stderr, whatever the mode.
    pub(crate) fn error(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars.suspend(|| eprintln!("s3tm: error: {line}")),
            None => eprintln!("s3tm: error: {line}"),
        }
    }

    /// The result line on stdout (human mode only).
    pub(crate) fn summary(&self, line: &str) {
        if let Mode::Human { .. } = self.mode {
            match &self.bars {
                Some(bars) => bars.suspend(|| self.println(line)),
                None => self.println(line),
            }
        }
    }

    /// A JSON line on stdout (`--json` only): `{"event": EVENT, ...fields}`.
    pub(crate) fn event(&self, event: &str, fields: Value) {
        if self.mode != Mode::Json {
            return;
        }
        let line = json_line(event, &fields);
        if self.stdout_is_data {
            eprintln!("{line}");
            return;
        }
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (`| head`) is not worth failing a transfer for.
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }

    /// A bar for one transfer, or a hidden one when bars are off.
    pub(crate) fn bar(&self, label: &str, done: u64, total: u64) -> ProgressBar {
        let Some(bars) = &self.bars else {
            return ProgressBar::hidden();
        };
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = ProgressBar::new(total)
            .with_style(style)
            .with_message(label.to_owned())
            .with_position(done);
        bar.enable_steady_tick(Duration::from_millis(200));
        bars.add(bar)
    }
}

/// `{"event": EVENT, ...fields}` with `event` first, so lines read well in a terminal
/// (serde_json's maps are sorted by key).
fn json_line(event: &str, fields: &Value) -> String {
    let head = serde_json::to_string(&json!({ "event": event })).unwrap_or_default();
    match fields {
        Value::Object(map) if !map.is_empty() => {
            let rest = fields.to_string();
            format!("{},{}", head.trim_end_matches('}'), &rest[1..])
        }
        _ => head,
    }
}

pub(crate) fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Upload => "upload",
        Direction::Download => "download",
    }
}

/// What a transfer moves, for messages: `data.bin -> s3://b/k`.
pub(crate) fn route(direction: Direction, bucket: &str, key: &str, path: &Path) -> String {
    match direction {
        Direction::Upload => format!("{} -> s3://{bucket}/{key}", path.display()),
        Direction::Download => format!("s3://{bucket}/{key} -> {}", path.display()),
    }
}

/// Whether the outcome's integrity was checked, and how, in words.
pub(crate) fn verification(v: &Verified) -> (bool, String) {
    match v {
        Verified::ServerChecksums(a) => (true, format!("{a} checksums echoed back by the server")),
        Verified::FullObjectChecksum(a) => (true, format!("full-object {a} checksum matched")),
        Verified::CompositeChecksum { algorithm, parts } => (
            true,
            format!("{algorithm} checksums of all {parts} parts matched"),
        ),
        Verified::Md5Etag => (true, "MD5 matched the ETag".to_owned()),
        Verified::MultipartEtag { parts } => (
            true,
            format!("MD5s of all {parts} parts matched the multipart ETag"),
        ),
        Verified::Unverified { reason } => (false, format!("NOT verified: {reason}")),
        other => (true, format!("{other:?}")),
    }
}

fn mib_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / (1024.0 * 1024.0) / secs
    } else {
        0.0
    }
}

/// The summary line of a finished transfer.
pub(crate) fn summary_line(route: &str, direction: Direction, o: &TransferOutcome) -> String {
    let verb = match direction {
        Direction::Upload => "uploaded",
        Direction::Download => "downloaded",
    };
    let (_, how) = verification(&o.verified);
    let mut line = format!(
        "{verb} {route}: {} in {:.1}s ({:.1} MiB/s), {how}",
        human_bytes(o.bytes_total),
        o.elapsed.as_secs_f64(),
        mib_per_sec(o.bytes_transferred, o.elapsed),
    );
    if o.resumed {
        line.push_str(&format!(", resumed from {}", human_bytes(o.bytes_resumed)));
    }
    if o.bytes_rechecked > 0 {
        line.push_str(&format!(
            ", {} carried over re-read and checked",
            human_bytes(o.bytes_rechecked)
        ));
        if o.bytes_recheck_failed > 0 {
            line.push_str(&format!(
                " ({} no longer matched and moved again)",
                human_bytes(o.bytes_recheck_failed)
            ));
        }
    }
    if o.bytes_resent > 0 {
        line.push_str(&format!(", {} sent again", human_bytes(o.bytes_resent)));
    }
    line
}

/// The fields of a `completed` JSON line.
pub(crate) fn completed_fields(o: &TransferOutcome) -> Value {
    let (verified, verification) = verification(&o.verified);
    json!({
        "id": o.id.as_str(),
        "bytes_total": o.bytes_total,
        "bytes_transferred": o.bytes_transferred,
        "bytes_resent": o.bytes_resent,
        "bytes_resumed": o.bytes_resumed,
        "bytes_rechecked": o.bytes_rechecked,
        "bytes_recheck_failed": o.bytes_recheck_failed,
        "recheck_secs": o.recheck_elapsed.as_secs_f64(),
        "warnings": o.warnings,
        "resumed": o.resumed,
        "elapsed_secs": o.elapsed.as_secs_f64(),
        "mib_per_sec": mib_per_sec(o.bytes_transferred, o.elapsed),
        "verified": verified,
        "verification": verification,
        "checksum": o.checksum,
        "etag": o.etag,
    })
}

/// Writes `line` to stdout; false once stdout is closed (`s3tm ls | head`), which is no
/// reason to panic or to stop the work: the caller may stop printing.
pub(crate) fn stdout_line(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use transfer_manager::{ChecksumAlgorithm, TransferId};

    #[test]
    fn json_lines_start_with_the_event() {
        let line = json_line("paused", &json!({"id": "x", "bytes_done": 5}));
        assert_eq!(line, r#"{"event":"paused","bytes_done":5,"id":"x"}"#);
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["event"], "paused");
        assert_eq!(json_line("done", &json!({})), r#"{"event":"done"}"#);
    }

    #[test]
    fn summary_says_size_rate_check_and_resume() {
        let o = TransferOutcome {
            id: TransferId::new("abc").unwrap(),
            etag: None,
            verified: Verified::ServerChecksums(ChecksumAlgorithm::Crc32),
            checksum: None,
            bytes_total: 256 << 20,
            bytes_transferred: 192 << 20,
            bytes_resent: 0,
            bytes_resumed: 64 << 20,
            bytes_rechecked: 64 << 20,
            bytes_recheck_failed: 8 << 20,
            recheck_elapsed: Duration::from_millis(30),
            warnings: vec![],
            elapsed: Duration::from_secs(2),
            resumed: true,
        };
        assert_eq!(
            summary_line("f -> s3://b/k", Direction::Upload, &o),
            "uploaded f -> s3://b/k: 256.0 MiB in 2.0s (96.0 MiB/s), CRC32 checksums \
             echoed back by the server, resumed from 64.0 MiB, 64.0 MiB carried \
             over re-read and checked (8.0 MiB no longer matched and moved again)"
        );
        let fields = completed_fields(&o);
        assert_eq!(fields["verified"], true);
        assert_eq!(fields["bytes_resumed"], 64 << 20);
        assert_eq!(
            verification(&Verified::Unverified {
                reason: "no checksum".into()
            }),
            (false, "NOT verified: no checksum".to_owned())
        );
    }
}

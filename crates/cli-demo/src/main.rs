//! `s3tm`: resumable, verified, fast S3 transfers from the command line.
//!
//! This file is the command line (clap) and the dispatch; `args` parses values (sizes,
//! ages, `s3://` URLs), `output` draws progress bars and JSON lines, `run` drives
//! transfers and handles Ctrl-C, and `commands` holds one function per subcommand. All
//! transfer behaviour is `transfer_manager`'s.

/// `println!` that does not panic when stdout is closed (`s3tm ls | head`): the rest
/// is not written, and the work goes on.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = $crate::output::stdout_line(&format!($($t)*));
    }};
}

mod args;
mod commands;
mod failure;
mod jobs;
mod output;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit statuses, documented in `--help` and the README.
pub(crate) mod exit {
    /// Every transfer completed and verified.
    pub(crate) const DONE: u8 = 0;
    /// Something failed; the error was printed.
    pub(crate) const FAILED: u8 = 1;
    /// The command line was not understood.
    pub(crate) const USAGE: u8 = 2;
    /// Paused by Ctrl-C or SIGTERM; the transfer can be resumed.
    pub(crate) const PAUSED: u8 = 130;
}

const AFTER_HELP: &str = "\
Credentials, region and endpoint come from the environment and the shared config files,
as for the AWS CLI (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_REGION, AWS_ENDPOINT_URL, AWS_PROFILE, ~/.aws/credentials, ~/.aws/config); the
global flags override them. Checkpoints are kept in --state-dir, else $S3TM_STATE_DIR,
else ~/.local/share/s3tm/transfers.

Exit status:
  0    done: every transfer completed and was verified
  1    failed: the error is printed as `s3tm: error: ...`
  2    usage error
  130  paused by Ctrl-C or SIGTERM: `s3tm resume ID`, or the same `s3tm cp` again,
       continues from the last checkpoint; an upload from standard input (`cp -`)
       stopped so is cancelled instead: its multipart upload is aborted";

/// Resumable, verified, fast S3 transfers.
#[derive(Debug, Parser)]
#[command(name = "s3tm", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Where the server is and where checkpoints live; accepted before or after the command.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// S3-compatible endpoint (http://127.0.0.1:9000, a MinIO, a Ceph RGW); AWS when unset.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) endpoint_url: Option<String>,
    /// Region to sign for (default: AWS_REGION, the profile's region, else us-east-1).
    #[arg(long, global = true)]
    pub(crate) region: Option<String>,
    /// Profile of the shared AWS config and credentials files.
    #[arg(long, global = true)]
    pub(crate) profile: Option<String>,
    /// Path-style addressing (http://host/bucket/key), which most S3-compatible servers
    /// need; chosen automatically for IP addresses and localhost.
    #[arg(long, global = true)]
    pub(crate) path_style: bool,
    /// Directory of the checkpoints.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// PEM file of the certificate authorities to trust instead of the built-in ones, for
    /// a server with a private certificate (default: AWS_CA_BUNDLE, the profile's
    /// ca_bundle).
    #[arg(long, global = true, value_name = "PEM")]
    pub(crate) ca_bundle: Option<PathBuf>,
    /// Log to stderr: -v each transfer's retries and restarts, -vv every request
    /// (operation, status, request id, timing). RUST_LOG, when set, decides instead.
    /// Warnings (a checkpoint that could not be saved) are shown either way; secrets never.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// How long Ctrl-C waits for parts and ranges in flight (default 5s); those still
    /// running then are cut off and sent again on resume.
    #[arg(long, global = true, value_name = "DURATION", value_parser = args::parse_duration)]
    pub(crate) pause_timeout: Option<Duration>,
    /// Cap on the bytes per second all transfers of this command move, uploads and
    /// downloads together: 20MiB, 512KiB/s, 8M (at least 64KiB; default none).
    #[arg(long, global = true, value_name = "RATE", value_parser = args::parse_rate)]
    pub(crate) bwlimit: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upload a file to s3://bucket/key, or download s3://bucket/key to a file.
    ///
    /// A destination that is a directory or ends in `/` keeps the source's file name.
    /// Running the same copy again after an interruption resumes it. `-` is standard
    /// input or output (`tar c . | s3tm cp - s3://b/k`, `s3tm cp s3://b/k - | tar x`),
    /// which cannot be resumed.
    Cp(CpArgs),
    /// Copy what is missing or differs between a directory and a prefix (either way):
    /// sizes, then modification times, as `aws s3 sync`; `--delete` removes the rest.
    Sync(SyncArgs),
    /// Continue paused or interrupted transfers.
    Resume(ResumeArgs),
    /// List paused, interrupted and running transfers.
    Ls(LsArgs),
    /// Stop transfers for good: abort the multipart upload or remove the partial file.
    Cancel(CancelArgs),
    /// List and abort unfinished multipart uploads left in a bucket by any tool.
    Clean(CleanArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CpArgs {
    /// A local file, s3://bucket/key, or `-` for standard input (a pipe; not resumable).
    pub(crate) src: String,
    /// s3://bucket/key (or s3://bucket/prefix/), a local path or directory, or `-` for
    /// standard output.
    pub(crate) dst: String,
    /// With `-` as the source: about how many bytes standard input will hold, so the part
    /// size is chosen for it up front (parts otherwise start at --part-size and grow as
    /// the stream does): 100GiB, 2T.
    #[arg(long, value_name = "SIZE", value_parser = args::parse_size)]
    pub(crate) expected_size: Option<u64>,
    #[command(flatten)]
    pub(crate) tuning: Tuning,
    /// The same as --checksum-algorithm (its first name).
    #[arg(
        long,
        value_enum,
        value_name = "ALGORITHM",
        hide = true,
        conflicts_with = "checksum_algorithm"
    )]
    pub(crate) checksum: Option<ChecksumArg>,
    /// Copy a directory to s3://bucket/prefix/, or every object under a prefix into a
    /// directory, as one resumable job.
    #[arg(short = 'r', long)]
    pub(crate) recursive: bool,
    #[command(flatten)]
    pub(crate) selection: Selection,
    /// Start over even when this copy was interrupted before.
    #[arg(long)]
    pub(crate) no_resume: bool,
    /// Exit with status 1 when the copy completes but could not be verified (the summary
    /// says `NOT verified` and why); the file or object is in place all the same.
    #[arg(long)]
    pub(crate) require_verified: bool,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// How a copy moves its bytes: part size, memory, requests in flight, checksum.
#[derive(Debug, Clone, Args)]
pub(crate) struct Tuning {
    /// Part size of uploads and range size of downloads: 8MiB, 16M, 8388608 (default 8MiB).
    #[arg(long, value_name = "SIZE", value_parser = args::parse_size)]
    pub(crate) part_size: Option<u64>,
    /// Memory the part buffers of an upload may take, whatever the part size (default
    /// 128MiB): fewer parts in flight, and a part larger than this streamed from the file
    /// (from standard input, held alone); also what a download to standard output or a
    /// FIFO holds of the ranges that arrived ahead of their turn.
    #[arg(long, value_name = "SIZE", value_parser = args::parse_size)]
    pub(crate) max_memory: Option<u64>,
    /// Requests in flight for this transfer (default 8 for uploads, 16 for downloads);
    /// with --recursive, for the whole job, across its files (default 64, 32 files).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) concurrency: Option<u16>,
    /// Checksum sent with every uploaded part and checked by the server (default crc32):
    /// the CRCs make a full-object checksum of a multipart upload, the SHAs a composite
    /// one (S3 allows nothing else for them). `cp` also takes it as --checksum.
    #[arg(long, value_enum, value_name = "ALGORITHM")]
    pub(crate) checksum_algorithm: Option<ChecksumArg>,
}

/// Which files a directory job takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Selection {
    /// Directory jobs (--recursive, sync): follow symbolic links (they are left out, and
    /// listed, otherwise).
    #[arg(long)]
    pub(crate) follow_symlinks: bool,
    /// Directory jobs (--recursive, sync): take the files whose path (relative to the
    /// directory, or the key after the prefix) matches GLOB, over the --exclude before
    /// it; `*` matches `/` too, as in aws-cli. Repeatable; the last rule that matches
    /// decides.
    #[arg(long, value_name = "GLOB")]
    pub(crate) include: Vec<String>,
    /// Directory jobs: leave out the files whose path matches GLOB (see --include).
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude: Vec<String>,
    /// --include and --exclude in the order given (true: include).
    #[arg(skip)]
    pub(crate) filters: Vec<(bool, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ChecksumArg {
    Crc32,
    Crc32c,
    Crc64nvme,
    Sha1,
    Sha256,
    None,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct OutputArgs {
    /// No progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Print nothing but errors.
    #[arg(long, short, conflicts_with = "json")]
    pub(crate) quiet: bool,
    /// One JSON object per line on stdout: started, progress, paused, completed, failed.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `s3tm sync SRC DST`.
#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// A local directory or s3://bucket/prefix/.
    pub(crate) src: String,
    /// s3://bucket/prefix/ or a local directory.
    pub(crate) dst: String,
    /// Also remove what the destination holds and the source lacks (within the filters),
    /// once every copy is done; what will go is printed first.
    #[arg(long)]
    pub(crate) delete: bool,
    /// Print what would be copied and deleted, and do nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Compare sizes only, not modification times.
    #[arg(long, conflicts_with = "checksum")]
    pub(crate) size_only: bool,
    /// Compare content, not modification times: a file and an object of the same size
    /// are the same when the file, hashed as the object's checksum (or its MD5 ETag) was,
    /// gives the object's value. Reads every such file and asks for every such object's
    /// checksum; what cannot be compared is copied, and said to be.
    #[arg(long)]
    pub(crate) checksum: bool,
    #[command(flatten)]
    pub(crate) selection: Selection,
    #[command(flatten)]
    pub(crate) tuning: Tuning,
    /// Exit with status 1 if a file copied could not be verified.
    #[arg(long)]
    pub(crate) require_verified: bool,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The transfer's id, as `s3tm ls` shows it.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) id: Option<String>,
    /// Every paused or interrupted transfer.
    #[arg(long)]
    pub(crate) all: bool,
    /// Exit with status 1 when a transfer completes but could not be verified.
    #[arg(long)]
    pub(crate) require_verified: bool,
    /// Memory the part buffers of an upload may take, whatever the part size (default
    /// 128MiB): fewer parts in flight, and a part larger than this streamed from the file.
    #[arg(long, value_name = "SIZE", value_parser = args::parse_size)]
    pub(crate) max_memory: Option<u64>,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// A job's id: list its files, each done, failed (and why) or to do.
    pub(crate) id: Option<String>,
    /// One JSON object per line: id, direction, bucket, key, path, bytes_done,
    /// bytes_total, state, age_secs, created_unix_ms, updated_unix_ms (with an ID: path,
    /// key, bytes, state, error).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// A transfer id, or s3://bucket/key for every saved transfer of that object.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) target: Option<String>,
    /// Every transfer that is not running.
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CleanArgs {
    /// s3://bucket or s3://bucket/prefix.
    pub(crate) url: String,
    /// Only uploads started longer ago than this: 7d, 12h, 30m. The default, 24h, leaves
    /// alone the uploads another tool (or another s3tm) may still be sending; `0` takes
    /// every upload that no saved s3tm transfer here can resume.
    #[arg(long, value_name = "AGE", value_parser = args::parse_age, default_value = "24h")]
    pub(crate) older_than: Duration,
    /// Show what would be aborted, abort nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// The log on stderr: `RUST_LOG` when set, else warnings, `-v` info, `-vv` debug (every
/// request, with its span: transfer id, object, operation).
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let (filter, quiet) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => (EnvFilter::new(spec), false),
        _ => (
            EnvFilter::new(format!("{level},hyper=warn,hyper_util=warn,rustls=warn")),
            verbose == 0,
        ),
    };
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Warnings alone read as messages, not as a timestamped log.
    let _ = if quiet {
        log.without_time().try_init()
    } else {
        log.try_init()
    };
}

/// The `--include` (true) and `--exclude` values of `sub`, in command-line order.
fn ordered_filters(sub: &clap::ArgMatches) -> Vec<(bool, String)> {
    let mut out: Vec<(usize, bool, String)> = Vec::new();
    for (name, include) in [("include", true), ("exclude", false)] {
        let (Ok(Some(values)), Ok(Some(indices))) = (
            sub.try_get_many::<String>(name),
            sub.try_get_raw(name).map(|_| sub.indices_of(name)),
        ) else {
            continue;
        };
        for (v, i) in values.zip(indices) {
            out.push((i, include, v.clone()));
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, inc, v)| (inc, v)).collect()
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // --include and --exclude take effect in the order given, across the two flags.
    if let Some((_, sub)) = matches.subcommand() {
        let filters = ordered_filters(sub);
        match &mut cli.command {
            Command::Cp(a) => a.selection.filters = filters,
            Command::Sync(a) => a.selection.filters = filters,
            _ => {}
        }
    }
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("s3tm: error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Cp(a) => commands::cp(&cli.global, a).await,
            Command::Resume(a) => commands::resume(&cli.global, a).await,
            Command::Ls(a) => commands::ls(&cli.global, &a),
            Command::Cancel(a) => commands::cancel(&cli.global, a).await,
            Command::Clean(a) => commands::clean(&cli.global, a).await,
            Command::Sync(a) => commands::sync(&cli.global, a).await,
        }
    });
    // Nothing left running matters once the command is over (a paused transfer's
    // checkpoint is durable before `run` returns).
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            failure.print();
            ExitCode::from(failure.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `s3tm clean` leaves young uploads alone unless told otherwise: another tool (or
    /// another s3tm) may still be sending them.
    #[test]
    fn clean_defaults_to_uploads_older_than_a_day() {
        let age = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Clean(a) => a.older_than,
            other => panic!("parsed as {other:?}"),
        };
        assert_eq!(
            age(&["s3tm", "clean", "s3://b"]),
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(
            age(&["s3tm", "clean", "s3://b", "--older-than", "0"]),
            Duration::ZERO
        );
    }
}

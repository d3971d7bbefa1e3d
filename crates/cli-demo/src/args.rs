//! Values on the command line: sizes, ages, `s3://` URLs, and the copy's two ends.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `s3://bucket/key`; the key may be empty (`s3://bucket`, `s3://bucket/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Url {
    pub(crate) bucket: String,
    pub(crate) key: String,
}

impl S3Url {
    /// Parses `s3://bucket[/key]`. The key is taken verbatim (no percent-decoding), as
    /// the AWS CLI does.
    pub(crate) fn parse(s: &str) -> Result<S3Url, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{s}` is not an s3:// URL (expected s3://bucket/key)"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{s}` names no bucket (expected s3://bucket/key)"));
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The last segment of the key: the file name a download into a directory takes.
    pub(crate) fn file_name(&self) -> Option<&str> {
        self.key.rsplit('/').next().filter(|name| !name.is_empty())
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// One end of `s3tm cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Local(PathBuf),
    S3(S3Url),
    /// `-`: standard input as a source, standard output as a destination (a file named
    /// `-` is `./-`).
    Std,
}

impl Location {
    pub(crate) fn parse(s: &str) -> Result<Location, String> {
        if s.starts_with("s3://") {
            S3Url::parse(s).map(Location::S3)
        } else if s == "-" {
            Ok(Location::Std)
        } else if s.is_empty() {
            Err("an empty path".to_owned())
        } else {
            Ok(Location::Local(PathBuf::from(s)))
        }
    }
}

/// What `s3tm cp SRC DST` means once both ends are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Copy {
    Upload {
        path: PathBuf,
        to: S3Url,
    },
    Download {
        from: S3Url,
        path: PathBuf,
    },
    /// From standard input, of a length unknown until it ends.
    UploadStdin {
        to: S3Url,
    },
    /// To standard output.
    DownloadStdout {
        from: S3Url,
    },
}

/// Resolves the two ends of a copy as `aws s3 cp` does: an upload to a bucket or to a
/// key ending in `/` appends the file's name; a download into an existing directory or a
/// path ending in `/` keeps the key's file name. `is_dir` is asked about local paths.
pub(crate) fn resolve_copy(
    src: &Location,
    dst: &Location,
    is_dir: impl Fn(&Path) -> bool,
) -> Result<Copy, String> {
    match (src, dst) {
        (Location::Local(path), Location::S3(to)) => {
            if is_dir(path) {
                return Err(format!(
                    "{} is a directory; s3tm copies one file at a time",
                    path.display()
                ));
            }
            let mut to = to.clone();
            if to.key.is_empty() || to.key.ends_with('/') {
                let name = path
                    .file_name()
                    .ok_or_else(|| format!("{} names no file", path.display()))?;
                to.key.push_str(&name.to_string_lossy());
            }
            Ok(Copy::Upload {
                path: path.clone(),
                to,
            })
        }
        (Location::S3(from), Location::Local(path)) => {
            let Some(name) = from.file_name() else {
                return Err(format!(
                    "{from} names no object (the key is empty or ends with `/`)"
                ));
            };
            let into_dir = path.as_os_str().to_string_lossy().ends_with('/') || is_dir(path);
            let path = if into_dir {
                path.join(name)
            } else {
                path.clone()
            };
            Ok(Copy::Download {
                from: from.clone(),
                path,
            })
        }
        (Location::Std, Location::S3(to)) => {
            if to.key.is_empty() || to.key.ends_with('/') {
                return Err(format!(
                    "{to} names no object: standard input has no file name to keep, give the whole key"
                ));
            }
            Ok(Copy::UploadStdin { to: to.clone() })
        }
        (Location::S3(from), Location::Std) => {
            if from.file_name().is_none() {
                return Err(format!(
                    "{from} names no object (the key is empty or ends with `/`)"
                ));
            }
            Ok(Copy::DownloadStdout { from: from.clone() })
        }
        (Location::Std, _) | (_, Location::Std) => {
            Err("`-` (standard input or output) needs an s3:// URL at the other end".to_owned())
        }
        (Location::S3(_), Location::S3(_)) => Err(
            "copies between two s3:// URLs are not supported; one end must be a local file"
                .to_owned(),
        ),
        (Location::Local(_), Location::Local(_)) => {
            Err("one end of a copy must be an s3:// URL (both are local paths)".to_owned())
        }
    }
}

/// Parses a size: a number with an optional unit, `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB` or `T`/`TB`/`TiB`, case-insensitive. Every unit is a power of 1024, as
/// in the AWS CLI's `multipart_chunksize` and rclone's sizes. Decimals are allowed
/// (`1.5GiB`); the result is rounded down to whole bytes.
/// A rate in bytes per second: a size (`20MiB`, `8M`, `512KiB`), with or without `/s`,
/// of at least 64KiB.
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let rate = parse_size(t)?;
    let min = transfer_manager::MIN_BANDWIDTH_LIMIT_BYTES_PER_SEC;
    if rate < min {
        return Err(format!(
            "{s} is below the smallest limit, 64KiB/s ({min} bytes per second)"
        ));
    }
    Ok(rate)
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{}` (use B, KiB, MiB, GiB or TiB)",
                unit.trim()
            ));
        }
    };
    let bad_number = || format!("`{s}` is not a size (examples: 8MiB, 16M, 8388608)");
    if number.is_empty() {
        return Err(bad_number());
    }
    let bytes = if let Ok(n) = number.parse::<u64>() {
        n.checked_mul(1u64 << shift)
    } else {
        let f: f64 = number.parse().map_err(|_| bad_number())?;
        let v = f * (1u64 << shift) as f64;
        (v.is_finite() && v < u64::MAX as f64).then_some(v as u64)
    };
    match bytes {
        Some(0) => Err(format!("`{s}`: a size must be more than zero")),
        Some(n) => Ok(n),
        None => Err(format!("`{s}` is too large")),
    }
}

/// Parses an age: a number with a unit (`7d`, `12h`, `30m`, `2w`, `1h 30m`), as
/// humantime reads durations.
pub(crate) fn parse_age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not an age ({e}; examples: 7d, 12h, 30m)"))
}

/// Parses a duration such as `5s`, `500ms` or `1m`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}; examples: 5s, 500ms, 1m)"))
}

/// Seconds since the Unix epoch of an S3 timestamp (`2024-05-01T12:30:00.000Z`, RFC 3339
/// in UTC, as ListMultipartUploads writes `Initiated`). `None` when it is not one.
pub(crate) fn parse_s3_timestamp(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(s.trim()).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// A byte count for people: `256.0 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = next;
    }
    format!("{v:.1} {unit}")
}

/// An age for people: `45s`, `12m`, `3h`, `2d`.
pub(crate) fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Quotes `s` for a POSIX shell when it needs it, so a printed command can be pasted.
pub(crate) fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20MiB"), Ok(20 * MIB));
        assert_eq!(parse_rate("512KiB/s"), Ok(512 * 1024));
        assert_eq!(parse_rate(" 8M/s "), Ok(8 * MIB));
        assert!(parse_rate("1KiB").unwrap_err().contains("64KiB"));
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB"), Ok(8 * MIB));
        assert_eq!(parse_size("16M"), Ok(16 * MIB));
        assert_eq!(parse_size("16mb"), Ok(16 * MIB));
        assert_eq!(parse_size("8388608"), Ok(8 * MIB));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size(" 5 MiB "), Ok(5 * MIB));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("100B"), Ok(100));
    }

    #[test]
    fn bad_sizes() {
        for s in [
            "",
            "MiB",
            "0",
            "0MiB",
            "8XB",
            "-8M",
            "8 M B",
            "1.2.3M",
            "99999999999T",
        ] {
            assert!(parse_size(s).is_err(), "`{s}` should be refused");
        }
        assert!(parse_size("8XB").unwrap_err().contains("unknown unit `XB`"));
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_age("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_age("1.5d"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_age("1h 30m"), Ok(Duration::from_secs(5400)));
        for s in ["7", "d", "7x", "-1d", "", "soon"] {
            assert!(parse_age(s).is_err(), "`{s}` should be refused");
        }
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            S3Url::parse("s3://bucket/dir/file.bin"),
            Ok(S3Url {
                bucket: "bucket".into(),
                key: "dir/file.bin".into()
            })
        );
        assert_eq!(S3Url::parse("s3://bucket").unwrap().key, "");
        assert_eq!(S3Url::parse("s3://bucket/").unwrap().key, "");
        assert_eq!(
            S3Url::parse("s3://b/a b/%41//x").unwrap().key,
            "a b/%41//x",
            "keys are taken verbatim"
        );
        assert!(S3Url::parse("s3://").is_err());
        assert!(S3Url::parse("s3:///key").is_err());
        assert!(S3Url::parse("https://bucket/key").is_err());
        assert_eq!(
            S3Url::parse("s3://b/dir/f.txt").unwrap().file_name(),
            Some("f.txt")
        );
        assert_eq!(S3Url::parse("s3://b/dir/").unwrap().file_name(), None);
        assert_eq!(S3Url::parse("s3://b/k").unwrap().to_string(), "s3://b/k");
    }

    fn copy(src: &str, dst: &str, dirs: &[&str]) -> Result<Copy, String> {
        let is_dir = |p: &Path| dirs.iter().any(|d| Path::new(d) == p);
        resolve_copy(
            &Location::parse(src).unwrap(),
            &Location::parse(dst).unwrap(),
            is_dir,
        )
    }

    fn url(s: &str) -> S3Url {
        S3Url::parse(s).unwrap()
    }

    #[test]
    fn copy_ends() {
        assert_eq!(
            copy("data/f.bin", "s3://b/k", &[]),
            Ok(Copy::Upload {
                path: "data/f.bin".into(),
                to: url("s3://b/k")
            })
        );
        assert_eq!(
            copy("data/f.bin", "s3://b", &[]),
            Ok(Copy::Upload {
                path: "data/f.bin".into(),
                to: url("s3://b/f.bin")
            })
        );
        assert_eq!(
            copy("data/f.bin", "s3://b/backups/", &[]),
            Ok(Copy::Upload {
                path: "data/f.bin".into(),
                to: url("s3://b/backups/f.bin")
            })
        );
        assert_eq!(
            copy("s3://b/dir/f.bin", "out.bin", &[]),
            Ok(Copy::Download {
                from: url("s3://b/dir/f.bin"),
                path: "out.bin".into()
            })
        );
        assert_eq!(
            copy("s3://b/dir/f.bin", "out/", &[]),
            Ok(Copy::Download {
                from: url("s3://b/dir/f.bin"),
                path: "out/f.bin".into()
            })
        );
        assert_eq!(
            copy("s3://b/dir/f.bin", ".", &["."]),
            Ok(Copy::Download {
                from: url("s3://b/dir/f.bin"),
                path: "./f.bin".into()
            })
        );
        assert_eq!(
            copy("-", "s3://b/backup.tar", &[]),
            Ok(Copy::UploadStdin {
                to: url("s3://b/backup.tar")
            })
        );
        assert_eq!(
            copy("s3://b/dir/f.bin", "-", &[]),
            Ok(Copy::DownloadStdout {
                from: url("s3://b/dir/f.bin")
            })
        );
        assert_eq!(
            copy("./-", "s3://b/k", &[]),
            Ok(Copy::Upload {
                path: "./-".into(),
                to: url("s3://b/k")
            })
        );
        assert!(copy("-", "s3://b/", &[]).unwrap_err().contains("whole key"));
        assert!(copy("-", "-", &[]).is_err());
        assert!(copy("-", "out", &[]).is_err());
        assert!(copy("a", "b", &[]).unwrap_err().contains("s3:// URL"));
        assert!(copy("s3://a/x", "s3://b/y", &[]).is_err());
        assert!(copy("s3://b/dir/", "out", &[]).is_err());
        assert!(copy("somedir", "s3://b/k", &["somedir"]).is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_s3_timestamp("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_s3_timestamp("2024-05-01T12:30:15.000Z"),
            Some(1_714_566_615)
        );
        assert_eq!(
            parse_s3_timestamp("2000-02-29T00:00:00Z"),
            Some(951_782_400)
        );
        assert_eq!(parse_s3_timestamp("yesterday"), None);
        assert_eq!(parse_s3_timestamp("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(256 * MIB), "256.0 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_age(Duration::from_secs(59)), "59s");
        assert_eq!(human_age(Duration::from_secs(7200)), "2h");
        assert_eq!(human_age(Duration::from_secs(3 * 86_400 + 5)), "3d");
        assert_eq!(shell_quote("/tmp/state-1"), "/tmp/state-1");
        assert_eq!(shell_quote("my file"), "'my file'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}

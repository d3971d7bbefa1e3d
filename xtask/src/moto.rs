//! The moto server the multipart tests need (Abort, ListMultipartUploads, ListParts
//! ETags, If-Match 412, InvalidPart), provisioned by `cargo xtask test` itself so that the
//! README's one command runs what CI runs: a venv under `target/` with a pinned
//! `moto[server]`, made once and reused.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The moto release the suite is known to pass against. moto 5.2.1 answers
/// SignatureDoesNotMatch for any key holding a `+` (keys with spaces pass): s3tm sends
/// and signs it as `%2B`, as SigV4 requires for S3 (every byte but the unreserved ones
/// percent-encoded), which s3s-fs and moto 5.2.5 verify; 5.2.1 computes the canonical
/// path otherwise.
pub(crate) const MOTO_VERSION: &str = "5.2.5";

/// moto's optional checksum modules: without `crc32c` it computes CRC32 where CRC32C was
/// asked for (and labels it CRC32C), without `awscrt` CRC32 where CRC64NVME was; with
/// them it computes what S3 computes, so a download's verdict on its objects means what
/// it would on S3.
const MOTO_CHECKSUM_MODULES: [&str; 2] = ["crc32c==2.9.post0", "awscrt==0.38.1"];

/// Where the venv goes (git-ignored, removed by `cargo clean`).
fn venv(root: &Path) -> PathBuf {
    root.join("target").join("moto-venv")
}

/// The `moto_server` the tests should use: `$S3TM_MOTO_SERVER` when set, else the pinned
/// one in the venv, installed first if needed. `None`, after saying why loudly, when
/// it cannot be had and `required` is false (the moto tests then skip, loudly too).
pub(crate) fn provision(root: &Path, required: bool) -> anyhow::Result<Option<PathBuf>> {
    if let Some(explicit) = std::env::var_os("S3TM_MOTO_SERVER") {
        return Ok(Some(PathBuf::from(explicit)));
    }
    match install(&venv(root)) {
        Ok(server) => Ok(Some(server)),
        Err(e) if !required => {
            println!(
                "==> [moto] SKIPPED: cannot provide moto {MOTO_VERSION} ({e:#}); the tests \
                 that need it will say SKIPPED (under CI=true this is an error)"
            );
            Ok(None)
        }
        Err(e) => Err(e.context(format!("CI needs moto {MOTO_VERSION}"))),
    }
}

fn install(venv: &Path) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin").join("python");
    let server = venv.join("bin").join("moto_server");
    if server.is_file() && installed_version(&python).as_deref() == Some(MOTO_VERSION) {
        println!("==> [moto] moto {MOTO_VERSION} in {}", venv.display());
        return Ok(server);
    }
    println!(
        "==> [moto] installing moto[server]=={MOTO_VERSION} into {}",
        venv.display()
    );
    if !python.is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(venv))
            .context("python3 -m venv failed (is python3 installed?)")?;
    }
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("moto[server]=={MOTO_VERSION}"),
        MOTO_CHECKSUM_MODULES[0],
        MOTO_CHECKSUM_MODULES[1],
    ]))
    .context("pip could not install moto")?;
    match installed_version(&python) {
        Some(v) if v == MOTO_VERSION && server.is_file() => Ok(server),
        other => bail!("after pip install, moto is {other:?}, not {MOTO_VERSION}"),
    }
}

fn installed_version(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; m.version('flask'); import crc32c, awscrt.checksums; print(m.version('moto'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    Ok(())
}

//! `cargo xtask serve`: an S3 server (s3s-fs, verifying SigV4 signatures, with
//! s3-testkit's parts shim so that part checksums are echoed and `partNumber` answered as
//! S3 does) on 127.0.0.1 with a bucket `demo`, for trying `s3tm` by hand. It builds s3tm,
//! prints the endpoint, the keys and the exact `s3tm` flags and environment, and serves
//! from this process until Ctrl-C, then deletes what it stored.

use anyhow::Context as _;

use crate::step::Step;

const BUCKET: &str = "demo";

pub(crate) fn run() -> anyhow::Result<()> {
    build_step().run()?;
    let s3tm = crate::bench::target_dir(&crate::project_root())
        .join("debug")
        .join(format!("s3tm{}", std::env::consts::EXE_SUFFIX));
    let runtime = tokio::runtime::Runtime::new().context("cannot start a tokio runtime")?;
    runtime.block_on(async {
        let server = s3_testkit::try_start_s3s_fs_with_parts()
            .await
            .context("cannot start the s3s-fs server")?;
        server
            .create_bucket(BUCKET)
            .context("cannot create the bucket")?;
        let endpoint = server.endpoint();
        println!(
            "\
s3s-fs is serving {endpoint} (SigV4 verified, path-style), bucket `{BUCKET}`
storage: {root}

In another shell:

  export AWS_ACCESS_KEY_ID='{access}'
  export AWS_SECRET_ACCESS_KEY='{secret}'
  export AWS_REGION={region}
  export S3TM_STATE_DIR=\"$(mktemp -d)\"   # optional: keep these checkpoints apart
  alias s3tm=\"{s3tm} --endpoint-url {endpoint} --path-style\"

  head -c 100M /dev/urandom > big.bin
  s3tm cp big.bin s3://{BUCKET}/big.bin       # Ctrl-C part-way, then run it again
  s3tm ls
  s3tm cp s3://{BUCKET}/big.bin copy.bin

Press Ctrl-C here to stop the server.",
            root = server.root().display(),
            access = server.access_key(),
            secret = server.secret_key(),
            region = server.region(),
            s3tm = s3tm.display(),
        );
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        println!("stopping; the stored objects are deleted");
        drop(server);
        Ok(())
    })
}

fn build_step() -> Step {
    Step::cargo("build", ["build", "-p", "cli-demo", "--bin", "s3tm"])
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds_s3tm_then_serves() {
        assert_eq!(
            super::build_step().to_string(),
            "cargo build -p cli-demo --bin s3tm"
        );
    }
}

//! `cargo xtask serve`: an in-process S3 server (s3s-fs, verifying SigV4 signatures, with
//! s3-testkit's parts shim so that part checksums are echoed and `partNumber` answered as
//! S3 does) on 127.0.0.1 with a bucket `demo`, for trying `s3tm` by hand. Stops on Ctrl-C
//! and deletes what it stored.

use s3_testkit::start_s3s_fs_with_parts;

const BUCKET: &str = "demo";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = start_s3s_fs_with_parts().await;
    server.create_bucket(BUCKET)?;
    let endpoint = server.endpoint();
    // `cargo xtask serve` builds s3tm next to this example's directory.
    let exe = std::env::current_exe()?;
    let s3tm = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("s3tm"))
        .filter(|p| p.is_file())
        .map_or_else(|| "s3tm".to_owned(), |p| p.display().to_string());
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
    );
    tokio::signal::ctrl_c().await?;
    println!("stopping; the stored objects are deleted");
    drop(server);
    Ok(())
}

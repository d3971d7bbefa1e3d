//! Uploads of streams whose length is unknown (`upload_stream`, what `s3tm cp -` uses):
//! each stream is fed through a pipe-like duplex in uneven writes, and what the server
//! then holds is compared byte for byte; a stream that fails aborts its upload (moto,
//! which lists multipart uploads).

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};

use common::*;
use s3_testkit::{FaultProxy, moto_or_skip};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use transfer_manager::{ErrorKind, TransferManager};

/// A reader that yields `data` as a pipe would: written by another task in uneven
/// pieces, ending when that task is done.
fn piped(data: Vec<u8>) -> tokio::io::DuplexStream {
    let (mut writer, reader) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let mut at = 0;
        let mut piece = 1;
        while at < data.len() {
            let end = (at + piece).min(data.len());
            writer.write_all(&data[at..end]).await.unwrap();
            at = end;
            piece = piece * 7 % 300_007 + 1;
        }
    });
    reader
}

struct Env {
    server: s3_testkit::S3sFsServer,
    proxy: FaultProxy,
    _dir: tempfile::TempDir,
    tm: TransferManager,
}

/// s3s-fs behind a counting proxy; parts of 5 MiB, threshold 5 MiB, 12 MiB of memory.
async fn env() -> Env {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let tm = manager_with(
        &proxy.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &dir.path().join("state"),
        |c| c.max_memory_bytes = 12 * MIB,
    );
    Env {
        server,
        proxy,
        _dir: dir,
        tm,
    }
}

/// The PutObjects (single, not parts) and UploadParts the server answered with 200.
fn puts_and_parts(proxy: &FaultProxy) -> (usize, Vec<u32>) {
    let puts = proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::PUT && r.status == Some(200))
        .filter(|r| r.part_number().is_none())
        .count();
    (puts, parts_sent(proxy))
}

#[tokio::test]
async fn streams_of_every_awkward_length_arrive_whole() {
    let env = env().await;
    let cases = [
        ("empty", 0, (1, 0)),
        ("one byte", 1, (1, 0)),
        ("just below the threshold", 5 * MIB - 1, (1, 0)),
        ("exactly two parts", 10 * MIB, (0, 2)),
        ("odd, several parts", 23 * MIB + 4321, (0, 5)),
    ];
    for (i, (name, len, (puts, parts))) in cases.into_iter().enumerate() {
        let data = random_bytes(len, 100 + i as u64);
        let before = puts_and_parts(&env.proxy);
        let key = format!("stream-{i}");
        let out = env
            .tm
            .upload_stream("bucket", &key, piped(data.clone()), None)
            .await
            .unwrap()
            .join()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.bytes_total, len, "{name}");
        let stored = std::fs::read(env.server.root().join("bucket").join(&key)).unwrap();
        assert!(
            stored == data,
            "{name}: the server holds {} bytes that differ from the {len} sent",
            stored.len()
        );
        let after = puts_and_parts(&env.proxy);
        let sent = (after.0 - before.0, after.1.len() - before.1.len());
        assert_eq!(sent, (puts, parts), "{name}: (PutObjects, UploadParts)");
    }
    assert!(
        env.tm.list_resumable().unwrap().0.is_empty(),
        "a stream saves no checkpoint"
    );
}

#[tokio::test]
async fn an_expected_size_chooses_the_part_size_up_front() {
    let env = env().await;
    // 100 GiB in 10,000 parts needs parts of 11 MiB: a 30 MiB stream takes 3.
    let data = random_bytes(30 * MIB, 7);
    env.tm
        .upload_stream("bucket", "k", piped(data.clone()), Some(100 << 30))
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert_eq!(puts_and_parts(&env.proxy).1, vec![1, 2, 3]);
    assert!(std::fs::read(env.server.root().join("bucket/k")).unwrap() == data);
}

/// Yields `ok` bytes, then fails.
struct Failing {
    ok: usize,
}

impl AsyncRead for Failing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.ok == 0 {
            return Poll::Ready(Err(std::io::Error::other("the producer crashed")));
        }
        let n = self.ok.min(buf.remaining()).min(100_000);
        buf.put_slice(&vec![9u8; n]);
        self.ok -= n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_stream_that_fails_midway_aborts_its_multipart_upload() {
    let Some(moto) = moto_or_skip("a_stream_that_fails_midway_aborts_its_multipart_upload").await
    else {
        return;
    };
    moto.create_bucket("bucket").await.unwrap();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let tm = manager(
        &proxy.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
    );
    let err = tm
        .upload_stream(
            "bucket",
            "broken",
            Failing {
                ok: 12 * MIB as usize,
            },
            None,
        )
        .await
        .unwrap()
        .join()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the producer crashed"), "{err}");
    assert_eq!(err.kind(), ErrorKind::LocalIo, "{err}");
    assert!(!err.is_resumable(), "{err}");
    let mut parts = parts_sent(&proxy);
    parts.sort_unstable();
    assert_eq!(parts, vec![1, 2], "the two whole parts read went first");
    let aborts = proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::DELETE && r.query.contains("uploadId"))
        .count();
    assert_eq!(aborts, 1, "one AbortMultipartUpload");
    assert!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty(),
        "the upload was left on the server"
    );
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

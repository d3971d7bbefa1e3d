//! Uploads of streams whose length is unknown (`upload_stream`, what `s3tm cp -` uses):
//! each stream is fed through a pipe-like duplex in uneven writes, and what the server
//! then holds is compared byte for byte. (That a stream that fails aborts its upload is
//! in `moto.rs`, where multipart uploads can be listed.)

mod common;

use common::*;
use s3_testkit::FaultProxy;
use tokio::io::AsyncWriteExt;

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

/// s3s-fs behind a counting proxy; parts of 5 MiB, threshold 5 MiB, 12 MiB of memory.
async fn env() -> ProxiedEnv {
    proxied_s3s_env(|c| c.max_memory_bytes = 12 * MIB).await
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

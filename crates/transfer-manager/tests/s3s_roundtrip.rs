//! Uploads and downloads against an in-process s3s-fs server that verifies signatures.

mod common;

use common::*;
use transfer_manager::{ErrorKind, PARTIAL_SUFFIX, Verified};

#[tokio::test]
async fn files_of_every_boundary_size_round_trip_verified() {
    let S3sEnv {
        server: _server,
        dir,
        tm,
    } = s3s_env().await;
    let sizes = [0, 1, 5 * MIB - 1, 5 * MIB, 8 * MIB + 1, 100 * MIB];
    let keys = [
        "plain",
        "with space",
        "ünïcødé/ключ",
        "a+b=c",
        "dir/sub/file.bin",
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let key = format!("{}-{size}", keys[i % keys.len()]);
        let src = random_file(dir.path(), &format!("src-{i}"), size, i as u64 + 1);
        let up = upload(&tm, "bucket", &key, &src).await.unwrap();
        assert_eq!(up.bytes_total, size);
        // s3s-fs echoes (and checks) the checksum of a PutObject but echoes none on
        // UploadPart: a multipart upload is sent with checksums, not confirmed.
        let multipart = size >= 5 * MIB; // the threshold in `manager`
        match &up.verified {
            Verified::ServerChecksums(_) if !multipart => {}
            Verified::Unverified { reason } if multipart => {
                assert!(reason.contains("did not echo"), "{reason}")
            }
            other => panic!("{size} bytes: {other:?}"),
        }

        let dest = dir.path().join(format!("dest-{i}"));
        let down = download(&tm, "bucket", &key, &dest).await.unwrap();
        assert_eq!(down.bytes_total, size);
        assert_eq!(
            sha256(&dest),
            sha256(&src),
            "{key} differs after the round trip"
        );
        assert!(
            !dir.path()
                .join(format!("dest-{i}{PARTIAL_SUFFIX}"))
                .exists()
        );
        assert!(
            !matches!(down.verified, Verified::Unverified { .. }),
            "{key}: {:?}",
            down.verified
        );
    }
    let (left, bad) = tm.list_resumable().unwrap();
    assert!(
        left.is_empty() && bad.is_empty(),
        "finished transfers left records: {left:?}"
    );
}

#[tokio::test]
async fn missing_bucket_and_key_and_wrong_secret_are_clear_errors() {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let tm = manager(
        &server.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &state,
    );
    let src = random_file(dir.path(), "src", 1000, 7);

    // s3s-fs creates buckets on PutObject, so a missing bucket is checked on a download
    // here (and on an upload against moto).
    let err = download(&tm, "no-such-bucket", "k", dir.path().join("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");

    let err = download(&tm, "bucket", "missing", dir.path().join("out"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!dir.path().join("out").exists());

    let bad = manager(
        &server.endpoint(),
        server.access_key(),
        "wrong-secret",
        server.region(),
        &state,
    );
    let err = upload(&bad, "bucket", "k", &src).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    assert!(
        !err.to_string().contains("wrong-secret"),
        "the secret leaked into {err}"
    );
    assert!(
        !err.to_string().contains("s3tm resume"),
        "nothing to resume: {err}"
    );
    let (left, _) = tm.list_resumable().unwrap();
    assert!(
        left.is_empty(),
        "failures on the first request left records: {left:?}"
    );
}

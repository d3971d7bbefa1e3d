//! Every checksum S3 knows, both ways, against real servers: uploads with each algorithm
//! land byte-exact and say how far the server confirmed them; objects other tools wrote
//! (`aws s3api put-object --checksum-algorithm X`, aws-cli's and rclone's multipart
//! uploads without checksums) download verified, or say exactly why not, and are never a
//! false mismatch. The objects are written by the tests themselves, request by request,
//! as those tools write them.

mod common;

use common::*;
use s3_protocol::ChecksumType;
use s3_testkit::moto_or_skip;
use transfer_manager::{ChecksumAlgorithm, Verified};

/// Objects sent in one PutObject with each algorithm's checksum, as `aws s3api
/// put-object --checksum-algorithm` sends them: the download checks the object's own
/// value (the CRCs combined from the ranges, the SHAs on one more read of the file).
#[tokio::test]
async fn single_put_objects_with_every_checksum_download_verified() {
    let env = s3s_env().await;
    let endpoint = env.server.endpoint();
    let server = Server::s3s(&env, &endpoint);
    for (i, algorithm) in ChecksumAlgorithm::ALL.into_iter().enumerate() {
        // 12 MiB: three ranges of the test manager's 5 MiB.
        let data = random_bytes(12 * MIB + 17, 300 + i as u64);
        let key = format!("put-{algorithm}");
        server
            .put_object("bucket", &key, &data, Some(algorithm))
            .await;
        let dest = env.dir.path().join(&key);
        let out = download(&env.tm, "bucket", &key, &dest)
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_eq!(std::fs::read(&dest).unwrap(), data, "{algorithm}");
        assert_eq!(
            out.verified,
            Verified::FullObjectChecksum(algorithm),
            "{algorithm}"
        );
    }
}

/// Multipart objects other tools upload without checksums, on a server that does not
/// tell part sizes (s3s-fs ignores `partNumber`): aws-cli's 8 MiB parts and rclone's
/// 5 MiB parts are found and the multipart ETag verified; parts of no conventional size
/// stay "not verified" (verdicts.rs), never a mismatch.
#[tokio::test]
async fn multipart_etags_of_other_tools_verify_where_the_server_does_not_tell_part_sizes() {
    let env = s3s_env().await;
    let endpoint = env.server.endpoint();
    let server = Server::s3s(&env, &endpoint);
    // (tool, part size, object size): aws-cli's 8 MiB fits 20 MiB in 3 parts and is tried
    // first; 9 MiB in 5 MiB parts fits 8 MiB parts too, so 5 MiB is found on a second read.
    for (tool, part, size) in [
        ("aws-cli", 8 * MIB, 20 * MIB + 5),
        ("rclone", 5 * MIB, 9 * MIB),
    ] {
        let data = random_bytes(size, part);
        let parts: Vec<Vec<u8>> = data.chunks(part as usize).map(<[u8]>::to_vec).collect();
        let key = format!("{tool}-multipart");
        let etag = server.put_parts("bucket", &key, &parts, None).await;
        assert!(
            etag.contains(&format!("-{}", parts.len())),
            "a multipart ETag: {etag}"
        );
        let dest = env.dir.path().join(&key);
        let out = download(&env.tm, "bucket", &key, &dest)
            .await
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert_eq!(std::fs::read(&dest).unwrap(), data, "{tool}");
        assert_eq!(
            out.verified,
            Verified::MultipartEtag {
                parts: parts.len() as u32
            },
            "{tool}"
        );
    }
}

/// Uploads with each algorithm on s3s-fs: single PutObject and multipart (full-object
/// CRCs, composite SHAs); the bytes in the bucket are the file's, and a download of each
/// verifies. s3s-fs echoes no UploadPart checksum, so a multipart upload is honestly
/// "not verified" by the server; a PutObject's checksum it checks and echoes.
#[tokio::test]
async fn uploads_with_every_checksum_round_trip_on_s3s() {
    let env0 = s3s_env().await;
    for (i, algorithm) in ChecksumAlgorithm::ALL.into_iter().enumerate() {
        let tm = manager_with(
            &env0.server.endpoint(),
            env0.server.access_key(),
            env0.server.secret_key(),
            env0.server.region(),
            &env0.dir.path().join("state"),
            |c| c.checksum = Some(algorithm),
        );
        for (size, multipart) in [(3 * MIB, false), (12 * MIB + 3, true)] {
            let key = format!("up-{algorithm}-{size}");
            let src = random_file(env0.dir.path(), &key, size, 400 + i as u64);
            let up = upload(&tm, "bucket", &key, &src)
                .await
                .unwrap_or_else(|e| panic!("{algorithm} {size}: {e}"));
            let stored = env0.server.root().join("bucket").join(&key);
            assert_eq!(
                std::fs::read(&stored).unwrap(),
                std::fs::read(&src).unwrap(),
                "{algorithm} {size}"
            );
            if multipart {
                assert!(
                    matches!(up.verified, Verified::Unverified { .. }),
                    "{algorithm}: {:?}",
                    up.verified
                );
            } else {
                assert_eq!(
                    up.verified,
                    Verified::ServerChecksums(algorithm),
                    "{algorithm} {size}"
                );
            }
            let dest = env0.dir.path().join(format!("{key}.back"));
            download(&tm, "bucket", &key, &dest)
                .await
                .unwrap_or_else(|e| panic!("{algorithm} {size} back: {e}"));
            assert_eq!(
                std::fs::read(&dest).unwrap(),
                std::fs::read(&src).unwrap(),
                "{algorithm} {size}"
            );
        }
    }
}

/// The same on moto, which echoes every part's checksum and reports the object's: a
/// multipart upload with each algorithm is confirmed by the server, and downloads
/// verified.
#[tokio::test]
async fn uploads_with_every_checksum_are_confirmed_by_moto() {
    let Some(moto) = moto_or_skip("uploads_with_every_checksum_are_confirmed_by_moto").await else {
        return;
    };
    moto.create_bucket("bucket").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, algorithm) in ChecksumAlgorithm::ALL.into_iter().enumerate() {
        let tm = manager_with(
            &moto.endpoint(),
            moto.access_key(),
            moto.secret_key(),
            moto.region(),
            &dir.path().join("state"),
            |c| c.checksum = Some(algorithm),
        );
        for size in [3 * MIB, 12 * MIB + 3] {
            let key = format!("up-{algorithm}-{size}");
            let src = random_file(dir.path(), &key, size, 500 + i as u64);
            let up = upload(&tm, "bucket", &key, &src)
                .await
                .unwrap_or_else(|e| panic!("{algorithm} {size}: {e}"));
            assert_eq!(
                up.verified,
                Verified::ServerChecksums(algorithm),
                "{algorithm} {size}"
            );
            let dest = dir.path().join(format!("{key}.back"));
            let down = download(&tm, "bucket", &key, &dest)
                .await
                .unwrap_or_else(|e| panic!("{algorithm} {size} back: {e}"));
            assert_eq!(
                std::fs::read(&dest).unwrap(),
                std::fs::read(&src).unwrap(),
                "{algorithm} {size}"
            );
            assert!(
                !matches!(down.verified, Verified::Unverified { .. }),
                "{algorithm} {size}: {:?}",
                down.verified
            );
        }
    }
    // Multipart objects other clients made part by part, of unequal parts: aws-cli's
    // current default (CRC64NVME, full-object), the SDKs' earlier one (CRC32, composite),
    // full-object CRC32C, and composite SHAs, each verified by its own checksum.
    let endpoint = moto.endpoint();
    let server = Server::moto(&moto, &endpoint);
    let tm = manager(
        &moto.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
    );
    let cases = [
        (ChecksumAlgorithm::Crc64Nvme, ChecksumType::FullObject),
        (ChecksumAlgorithm::Crc32, ChecksumType::Composite),
        (ChecksumAlgorithm::Crc32c, ChecksumType::FullObject),
        (ChecksumAlgorithm::Sha1, ChecksumType::Composite),
        (ChecksumAlgorithm::Sha256, ChecksumType::Composite),
    ];
    for (i, (algorithm, kind)) in cases.into_iter().enumerate() {
        let parts: Vec<Vec<u8>> = [7, 5, 3]
            .iter()
            .enumerate()
            .map(|(p, mib)| random_bytes(mib * MIB + p as u64, 600 + (i * 3 + p) as u64))
            .collect();
        let key = format!("parts-{algorithm}-{}", kind.as_str());
        server
            .put_parts("bucket", &key, &parts, Some((algorithm, kind)))
            .await;
        let dest = dir.path().join(&key);
        let out = download(&tm, "bucket", &key, &dest)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(std::fs::read(&dest).unwrap(), parts.concat(), "{key}");
        let expected = match kind {
            ChecksumType::FullObject => Verified::FullObjectChecksum(algorithm),
            _ => Verified::CompositeChecksum {
                algorithm,
                parts: 3,
            },
        };
        assert_eq!(out.verified, expected, "{key}");
    }
}

/// Downloaded into a stream, which is not read again: what a file gets on a second read
/// (a SHA-256 over several ranges, the multipart ETag over rclone's 5 MiB when 8 MiB was
/// guessed first) is computed as the bytes are written, in order, and verified the same.
#[tokio::test]
async fn a_stream_is_verified_as_a_file_is() {
    let env = s3s_env().await;
    let endpoint = env.server.endpoint();
    let server = Server::s3s(&env, &endpoint);
    let sha = random_bytes(12 * MIB + 5, 700);
    server
        .put_object("bucket", "sha", &sha, Some(ChecksumAlgorithm::Sha256))
        .await;
    let rclone = random_bytes(9 * MIB, 701);
    let parts: Vec<Vec<u8>> = rclone
        .chunks(5 * MIB as usize)
        .map(<[u8]>::to_vec)
        .collect();
    server.put_parts("bucket", "rclone", &parts, None).await;
    let cases = [
        (
            "sha",
            sha,
            Verified::FullObjectChecksum(ChecksumAlgorithm::Sha256),
        ),
        ("rclone", rclone, Verified::MultipartEtag { parts: 2 }),
    ];
    for (key, data, expected) in cases {
        let (client, mut server_side) = tokio::io::duplex(64 * 1024);
        let h = env
            .tm
            .download_to_writer("bucket", key, client)
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server_side, &mut got)
                .await
                .unwrap();
            got
        });
        let out = h.join().await.unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(reader.await.unwrap(), data, "{key}");
        assert_eq!(out.verified, expected, "{key}");
    }
}

//! Uploads from memory and readers, downloads into writers, and the blocking calls.

mod common;

use common::*;
use transfer_manager::ErrorKind;

#[tokio::test]
async fn bytes_and_reader_uploads_and_writer_downloads_round_trip() {
    let S3sEnv {
        server: _server,
        dir,
        tm,
    } = s3s_env().await;
    let src = random_file(dir.path(), "src", 23 * MIB + 17, 31);
    let data = std::fs::read(&src).unwrap();

    let h = tm
        .upload_bytes("bucket", "from-bytes", data.clone().into())
        .await
        .unwrap();
    let err = h.pause().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("cannot be paused"), "{err}");
    h.join().await.unwrap();

    let file = tokio::fs::File::open(&src).await.unwrap();
    tm.upload_reader("bucket", "from-reader", file, data.len() as u64)
        .await
        .unwrap()
        .join()
        .await
        .unwrap();

    for key in ["from-bytes", "from-reader"] {
        let (client, mut server_side) = tokio::io::duplex(1 << 20);
        let h = tm.download_to_writer("bucket", key, client).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server_side, &mut got)
                .await
                .unwrap();
            got
        });
        let out = h.join().await.unwrap();
        assert_eq!(out.bytes_total, data.len() as u64);
        // The writer half was dropped with the transfer, which ends the reader.
        let got = reader.await.unwrap();
        assert!(got == data, "{key}: streamed bytes differ");
    }
    assert!(
        tm.list_resumable().unwrap().0.is_empty(),
        "streams must not leave records"
    );
}

#[tokio::test]
async fn reader_shorter_than_announced_is_a_clear_error() {
    let S3sEnv {
        server: _server,
        dir: _dir,
        tm,
    } = s3s_env().await;
    let short: &'static [u8] = &[7u8; 1000];
    let err = tm
        .upload_reader("bucket", "k", short, 2000)
        .await
        .unwrap()
        .join()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SourceChanged, "{err}");
    assert!(err.to_string().contains("ended before"), "{err}");
}

#[test]
fn blocking_calls_work_without_a_runtime_and_are_refused_inside_one() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(s3_testkit::start_s3s_fs());
    server.create_bucket("bucket").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tm = manager(
        &server.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &dir.path().join("state"),
    );
    let src = random_file(dir.path(), "src", 7 * MIB, 32);
    let up = tm.upload_file_blocking("bucket", "k", &src).unwrap();
    assert_eq!(up.bytes_total, 7 * MIB);
    let dest = dir.path().join("dest");
    tm.download_file_blocking("bucket", "k", &dest).unwrap();
    assert_eq!(sha256(&dest), sha256(&src));

    let err = rt
        .block_on(async { tm.download_file_blocking("bucket", "k", &dest) })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    drop(tm);
    drop(server);
}

#[tokio::test]
async fn writer_download_waits_for_a_slow_first_range_and_keeps_order() {
    let ProxiedEnv {
        server: _server,
        proxy,
        dir,
        tm,
    } = proxied_s3s_env(|c| c.set_max_in_flight(2)).await;
    let src = random_file(dir.path(), "src", 26 * MIB, 33);
    let data = std::fs::read(&src).unwrap();
    tm.upload_bytes("bucket", "k", data.clone().into())
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    // The first range is slow, so the next ones finish first and later ones must wait
    // for the write position instead of piling up in memory.
    let first = s3_testkit::Matcher::ranged_get()
        .when(|r| r.header("range").is_some_and(|v| v.starts_with("bytes=0-")));
    let slow = proxy.delay(first, std::time::Duration::from_millis(400), 1);
    let (client, mut server_side) = tokio::io::duplex(1 << 20);
    let h = tm.download_to_writer("bucket", "k", client).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut server_side, &mut got)
            .await
            .unwrap();
        got
    });
    h.join().await.unwrap();
    assert_eq!(proxy.fired(slow), 1);
    assert!(
        reader.await.unwrap() == data,
        "streamed bytes differ or are out of order"
    );
}

/// `pause_all` and `resume_all` leave streams alone: a stream cannot be read or written
/// again, so pausing one and re-checking what it sent would break it.
#[tokio::test]
async fn pause_all_and_resume_all_leave_a_stream_running() {
    let S3sEnv {
        server: _server,
        dir,
        tm,
    } = s3s_env().await;
    let src = random_file(dir.path(), "src", 23 * MIB, 32);
    let data = std::fs::read(&src).unwrap();
    let file = tokio::fs::File::open(&src).await.unwrap();
    let h = tm
        .upload_reader("bucket", "from-reader", file, data.len() as u64)
        .await
        .unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    let paused = tm.pause_all().await;
    assert_eq!(paused.len(), 1);
    assert_eq!(
        paused[0].1.as_ref().unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    assert!(
        tm.resume_all().await.unwrap().is_empty(),
        "nothing was paused"
    );
    h.join().await.unwrap();
    let dest = dir.path().join("dest");
    download(&tm, "bucket", "from-reader", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
}

//! Multipart semantics that s3s-fs lacks, against moto with SigV4 verification on:
//! abort on cancel (checked with ListMultipartUploads), If-Match 412 on a replaced
//! object, ListParts validation on resume, and a missing bucket.

mod common;

use std::time::Duration;

use common::*;
use s3_testkit::{ALWAYS, FaultProxy, Matcher, moto_or_skip};
use transfer_manager::{ErrorKind, PARTIAL_SUFFIX, TransferManager};

async fn setup(
    test: &str,
) -> Option<(
    s3_testkit::MotoServer,
    FaultProxy,
    tempfile::TempDir,
    TransferManager,
)> {
    let moto = moto_or_skip(test).await?;
    moto.create_bucket("bucket").await.unwrap();
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let tm = manager_with(
        &proxy.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
        |c| {
            c.set_max_in_flight(2);
        },
    );
    Some((moto, proxy, dir, tm))
}

#[tokio::test]
async fn cancel_aborts_the_multipart_upload_on_the_server() {
    let Some((_moto, proxy, dir, tm)) =
        setup("cancel_aborts_the_multipart_upload_on_the_server").await
    else {
        return;
    };
    proxy.delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
    let src = random_file(dir.path(), "src", 30 * MIB, 21);
    let h = tm.upload_file("bucket", "cancel me", &src).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    assert_eq!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .len(),
        1
    );
    h.cancel().unwrap();
    assert_eq!(h.join().await.unwrap_err().kind(), ErrorKind::Cancelled);
    assert!(
        tm.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty(),
        "the upload was not aborted"
    );
    assert!(tm.list_resumable().unwrap().0.is_empty());
}

#[tokio::test]
async fn cancel_of_a_saved_upload_from_another_manager_aborts_it() {
    let Some((moto, proxy, dir, tm)) =
        setup("cancel_of_a_saved_upload_from_another_manager_aborts_it").await
    else {
        return;
    };
    proxy.delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
    let src = random_file(dir.path(), "src", 30 * MIB, 22);
    let h = tm.upload_file("bucket", "k", &src).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    h.pause().await.unwrap();
    let id = h.id().clone();
    drop((h, tm));
    let tm2 = manager(
        &proxy.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
    );
    tm2.cancel_saved(&id).await.unwrap();
    assert!(
        tm2.list_multipart_uploads("bucket", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(tm2.list_resumable().unwrap().0.is_empty());
}

#[tokio::test]
async fn replaced_object_gets_412_and_object_changed() {
    let Some((_moto, proxy, dir, tm)) = setup("replaced_object_gets_412_and_object_changed").await
    else {
        return;
    };
    let v1 = random_file(dir.path(), "v1", 20 * MIB, 23);
    let v2 = random_file(dir.path(), "v2", 20 * MIB, 24);
    upload(&tm, "bucket", "obj", &v1).await.unwrap();
    proxy.delay(
        Matcher::method(http::Method::GET),
        Duration::from_millis(200),
        ALWAYS,
    );
    let dest = dir.path().join("dest");
    let h = tm.download_file("bucket", "obj", &dest).await.unwrap();
    wait_for_progress(&h, 5 * MIB).await;
    h.pause().await.unwrap();
    proxy.clear();
    upload(&tm, "bucket", "obj", &v2).await.unwrap();
    proxy.clear_requests();
    h.resume().unwrap();
    let err = h.join().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ObjectChanged, "{err}");
    let statuses: Vec<Option<u16>> = proxy.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&Some(412)), "moto answered {statuses:?}");
    assert!(!dest.exists());
    assert!(!dir.path().join(format!("dest{PARTIAL_SUFFIX}")).exists());
}

#[tokio::test]
async fn resume_validates_parts_with_list_parts_and_downloads_verify() {
    let Some((moto, proxy, dir, tm)) =
        setup("resume_validates_parts_with_list_parts_and_downloads_verify").await
    else {
        return;
    };
    proxy.delay(Matcher::upload_part(), Duration::from_millis(200), ALWAYS);
    let src = random_file(dir.path(), "src", 24 * MIB, 25);
    let h = tm.upload_file("bucket", "k", &src).await.unwrap();
    wait_for_progress(&h, 10 * MIB).await;
    h.pause().await.unwrap();
    let id = h.id().clone();
    drop((h, tm));
    proxy.clear();
    proxy.clear_requests();
    let tm = manager(
        &proxy.endpoint(),
        moto.access_key(),
        moto.secret_key(),
        moto.region(),
        &dir.path().join("state"),
    );
    let out = tm.resume(&id).await.unwrap().join().await.unwrap();
    assert!(out.bytes_resumed >= 10 * MIB);
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.method == http::Method::GET && r.query_param("uploadId").is_some()),
        "no ListParts on resume"
    );
    let dest = dir.path().join("dest");
    let down = download(&tm, "bucket", "k", &dest).await.unwrap();
    assert_eq!(sha256(&dest), sha256(&src));
    assert!(
        !matches!(down.verified, transfer_manager::Verified::Unverified { .. }),
        "{:?}",
        down.verified
    );
}

#[tokio::test]
async fn upload_to_a_missing_bucket_is_a_clear_not_found() {
    let Some((_moto, _proxy, dir, tm)) =
        setup("upload_to_a_missing_bucket_is_a_clear_not_found").await
    else {
        return;
    };
    let src = random_file(dir.path(), "src", 1000, 26);
    let err = upload(&tm, "no-such-bucket", "k", &src).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

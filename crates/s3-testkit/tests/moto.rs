//! The moto launcher: moto comes up with SigV4 verification on, and serves the multipart
//! operations the transfer-manager tests rely on it for.

use std::time::Instant;

use http::StatusCode;
use s3_protocol::{
    AbortMultipartUpload, CreateBucket, CreateMultipartUpload, Credentials, ListMultipartUploads,
    ListObjectsV2, parse_create_multipart_upload, parse_error, parse_list_multipart_uploads,
};
use s3_testkit::{moto_or_skip, send, send_signed};

#[tokio::test]
async fn moto_verifies_signatures() {
    let started = Instant::now();
    let Some(moto) = moto_or_skip("moto_verifies_signatures").await else {
        return;
    };
    eprintln!("moto up in {:?} at {}", started.elapsed(), moto.endpoint());
    let config = moto.s3_config();
    assert_eq!(moto.region(), "us-east-1");
    assert!(!moto.access_key().is_empty() && !moto.secret_key().is_empty());

    // Right access key, wrong secret: the signature cannot match.
    let request = CreateBucket {
        bucket: "s3tm-wrong-secret".into(),
    }
    .build(&config)
    .unwrap();
    let wrong = Credentials::new(moto.access_key(), "not-the-secret-key", None);
    let response = send_signed(request, &wrong, moto.region()).await.unwrap();
    let error = parse_error(response.status(), response.headers(), response.body());
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{error:?}");
    assert_eq!(
        error.code.as_deref(),
        Some("SignatureDoesNotMatch"),
        "{error:?}"
    );

    // An access key moto never issued.
    let request = CreateBucket {
        bucket: "s3tm-unknown-key".into(),
    }
    .build(&config)
    .unwrap();
    let unknown = Credentials::new("AKIAUNKNOWNKEY000000", moto.secret_key(), None);
    let response = send_signed(request, &unknown, moto.region()).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // No signature at all. moto 5 answers 500 rather than 403 here (it indexes the
    // missing Authorization header); either way it must not succeed.
    let request = CreateBucket {
        bucket: "s3tm-unsigned".into(),
    }
    .build(&config)
    .unwrap();
    let response = send(request).await.unwrap();
    assert!(!response.status().is_success(), "{:?}", response.status());

    // Correctly signed: succeeds, and only this bucket exists.
    moto.create_bucket("s3tm-signed").await.unwrap();
    let list = |bucket: &str| ListObjectsV2::new(bucket).build(&config).unwrap();
    let creds = moto.credentials();
    let ok = send_signed(list("s3tm-signed"), &creds, moto.region())
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let missing = send_signed(list("s3tm-wrong-secret"), &creds, moto.region())
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn moto_lists_and_aborts_multipart_uploads() {
    let Some(moto) = moto_or_skip("moto_lists_and_aborts_multipart_uploads").await else {
        return;
    };
    let config = moto.s3_config();
    let creds = moto.credentials();
    let bucket = "s3tm-multipart";
    moto.create_bucket(bucket).await.unwrap();

    let request = CreateMultipartUpload::new(bucket, "dir/a key+with spaces")
        .build(&config)
        .unwrap();
    let response = send_signed(request, &creds, moto.region()).await.unwrap();
    let created =
        parse_create_multipart_upload(response.status(), response.headers(), response.body())
            .unwrap();

    let list = || async {
        let request = ListMultipartUploads::new(bucket).build(&config).unwrap();
        let response = send_signed(request, &creds, moto.region()).await.unwrap();
        parse_list_multipart_uploads(response.status(), response.headers(), response.body())
            .unwrap()
    };
    let listed = list().await;
    assert_eq!(listed.uploads.len(), 1, "{listed:?}");
    assert_eq!(listed.uploads[0].upload_id, created.upload_id);
    assert_eq!(listed.uploads[0].key, "dir/a key+with spaces");

    let request = AbortMultipartUpload {
        bucket: bucket.into(),
        key: "dir/a key+with spaces".into(),
        upload_id: created.upload_id.clone(),
    }
    .build(&config)
    .unwrap();
    let response = send_signed(request, &creds, moto.region()).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(list().await.uploads.is_empty());
}

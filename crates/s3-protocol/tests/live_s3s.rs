//! Live tests against `s3s-fs` started in-process with signature verification, through a
//! plain hyper-util client: what this crate builds and signs, a real server accepts.
// clippy.toml's bans (no clock, files, sockets, environment) are for the library; tests
// and benches drive it from the outside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::disallowed_macros
)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use s3_protocol::*;
use s3_testkit::{S3sFsServer, start_s3s_fs};

const BUCKET: &str = "live-bucket";

struct Harness {
    server: S3sFsServer,
    config: S3Config,
    creds: Credentials,
    client: Client<HttpConnector, Full<Bytes>>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Harness {
    async fn start() -> Self {
        let server = start_s3s_fs().await;
        server.create_bucket(BUCKET).unwrap();
        let config = S3Config::custom(
            server.region(),
            Endpoint::parse(&server.endpoint()).unwrap(),
            Addressing::Auto,
        );
        let creds = Credentials::new(server.access_key(), server.secret_key(), None);
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            server,
            config,
            creds,
            client,
        }
    }

    /// Signs with `creds` at the current time (the driver's job, done here by hand) and
    /// sends; an `External` body is supplied from `external`.
    async fn send_as(
        &self,
        creds: &Credentials,
        mut req: Request<RequestBody>,
        payload: PayloadHash,
        external: Option<Bytes>,
    ) -> Reply {
        sign(
            &mut req,
            creds,
            self.config.region(),
            SystemTime::now(),
            payload,
        )
        .unwrap();
        let (parts, body) = req.into_parts();
        let bytes = match body {
            RequestBody::Empty => Bytes::new(),
            RequestBody::Bytes(b) => b,
            RequestBody::External { content_length } => {
                let b = external.expect("external body bytes");
                assert_eq!(b.len() as u64, content_length);
                b
            }
        };
        let resp = self
            .client
            .request(Request::from_parts(parts, Full::new(bytes)))
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn send(&self, req: Request<RequestBody>) -> Reply {
        self.send_as(&self.creds, req, PayloadHash::FromBody, None)
            .await
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn signed_put_and_ranged_get_return_the_right_bytes() {
    let h = Harness::start().await;
    let data = pattern(1000, 7);

    let mut put = PutObject::new(BUCKET, "dir/object.bin", RequestBody::Bytes(data.clone()));
    put.content_md5 = Some(s3_types::md5_digest(&data));
    put.checksum = Some(Checksum::of(ChecksumAlgorithm::Crc32, &data));
    put.content_type = Some("application/octet-stream".into());
    let r = h.send(put.build(&h.config).unwrap()).await;
    let out = parse_put_object(r.status, &r.headers, &r.body).unwrap();
    assert_eq!(out.etag.kind(), ETagKind::Md5(s3_types::md5_digest(&data)));

    let get = GetObject {
        range: ByteRange::new(100, 200),
        ..GetObject::new(BUCKET, "dir/object.bin")
    };
    let req = get.build(&h.config).unwrap();
    let r = h.send_as(&h.creds, req, PayloadHash::Unsigned, None).await;
    let out = parse_get_object(r.status, &r.headers, &[]).unwrap();
    assert!(out.partial, "status {}", r.status);
    let cr = out.content_range.unwrap();
    assert_eq!(
        (cr.range.start(), cr.range.end(), cr.total_bytes),
        (100, 200, Some(1000))
    );
    assert_eq!(r.body, data.slice(100..200));

    let r = h
        .send(
            HeadObject::new(BUCKET, "dir/object.bin")
                .build(&h.config)
                .unwrap(),
        )
        .await;
    let head = parse_head_object(r.status, &r.headers, &r.body).unwrap();
    assert_eq!(head.content_length, 1000);
    assert!(head.etag.unwrap().same_as(&out.etag.unwrap()));
}

#[tokio::test]
async fn wrong_secret_is_denied_with_signature_does_not_match() {
    let h = Harness::start().await;
    let wrong = Credentials::new(h.server.access_key(), "not-the-secret", None);
    let put = PutObject::new(BUCKET, "k", RequestBody::Bytes(Bytes::from_static(b"x")));
    let r = h
        .send_as(
            &wrong,
            put.build(&h.config).unwrap(),
            PayloadHash::FromBody,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let err = parse_put_object(r.status, &r.headers, &r.body).unwrap_err();
    let e = err.as_s3_error().expect("service error");
    assert_eq!(e.code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(e.class, ErrorClass::Denied);
    assert!(!err.class().is_retryable());

    // Nothing was written.
    let r = h
        .send(HeadObject::new(BUCKET, "k").build(&h.config).unwrap())
        .await;
    let err = parse_head_object(r.status, &r.headers, &r.body).unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
}

#[tokio::test]
async fn awkward_keys_round_trip() {
    let h = Harness::start().await;
    let keys = [
        "a b/c+d=e&f.txt",
        "unicode/ключ-ü-日本.bin",
        "tilde~and%41percent",
        "semi;colon,comma:colon@at!bang'quote(paren)*star$dollar",
    ];
    for (i, key) in keys.iter().enumerate() {
        let data = pattern(64 + i, i as u8);
        let put = PutObject::new(BUCKET, *key, RequestBody::Bytes(data.clone()));
        let r = h.send(put.build(&h.config).unwrap()).await;
        parse_put_object(r.status, &r.headers, &r.body)
            .unwrap_or_else(|e| panic!("put {key:?}: {e}"));

        let r = h
            .send(GetObject::new(BUCKET, *key).build(&h.config).unwrap())
            .await;
        parse_get_object(r.status, &r.headers, &r.body)
            .unwrap_or_else(|e| panic!("get {key:?}: {e}"));
        assert_eq!(r.body, data, "{key:?}");
    }

    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let list = ListObjectsV2 {
            max_keys: Some(2),
            continuation_token: token.clone(),
            ..ListObjectsV2::new(BUCKET)
        };
        let r = h.send(list.build(&h.config).unwrap()).await;
        let page = parse_list_objects_v2(r.status, &r.headers, &r.body).unwrap();
        listed.extend(page.contents.into_iter().map(|o| o.key));
        if !page.is_truncated {
            break;
        }
        token = page.next_continuation_token;
        assert!(
            token.is_some(),
            "truncated page without a continuation token"
        );
    }
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected);

    let r = h
        .send(
            DeleteObject {
                bucket: BUCKET.into(),
                key: keys[0].into(),
            }
            .build(&h.config)
            .unwrap(),
        )
        .await;
    parse_delete_object(r.status, &r.headers, &r.body).unwrap();
    let r = h
        .send(GetObject::new(BUCKET, keys[0]).build(&h.config).unwrap())
        .await;
    let err = parse_get_object(r.status, &r.headers, &r.body).unwrap_err();
    assert_eq!(
        err.as_s3_error().and_then(|e| e.code.as_deref()),
        Some("NoSuchKey")
    );
    assert_eq!(err.class(), ErrorClass::NotFound);
}

#[tokio::test]
async fn multipart_upload_with_external_bodies_and_checksums() {
    let h = Harness::start().await;
    let key = "multi part/object";
    let alg = ChecksumAlgorithm::Crc32c;
    let create = CreateMultipartUpload {
        checksum_algorithm: Some(alg),
        ..CreateMultipartUpload::new(BUCKET, key)
    };
    let r = h.send(create.build(&h.config).unwrap()).await;
    let upload_id = parse_create_multipart_upload(r.status, &r.headers, &r.body)
        .unwrap()
        .upload_id;

    let part_bytes = [pattern(MIN_PART_SIZE as usize, 1), pattern(1234, 2)];
    let mut completed = Vec::new();
    for (i, bytes) in part_bytes.iter().enumerate() {
        let checksum = Checksum::of(alg, bytes);
        let part = UploadPart {
            bucket: BUCKET.into(),
            key: key.into(),
            upload_id: upload_id.clone(),
            part_number: PartNumber::new(i as u32 + 1).unwrap(),
            body: RequestBody::External {
                content_length: bytes.len() as u64,
            },
            checksum: Some(checksum),
            content_md5: None,
        };
        let r = h
            .send_as(
                &h.creds,
                part.build(&h.config).unwrap(),
                PayloadHash::Unsigned,
                Some(bytes.clone()),
            )
            .await;
        let out = parse_upload_part(r.status, &r.headers, &r.body).unwrap();
        completed.push(CompletedPart {
            part_number: part.part_number,
            etag: out.etag,
            checksum: Some(checksum),
        });
    }

    let r = h
        .send(
            ListParts {
                bucket: BUCKET.into(),
                key: key.into(),
                upload_id: upload_id.clone(),
                max_parts: None,
                part_number_marker: None,
            }
            .build(&h.config)
            .unwrap(),
        )
        .await;
    let listed = parse_list_parts(r.status, &r.headers, &r.body).unwrap();
    assert_eq!(
        listed
            .parts
            .iter()
            .map(|p| (p.part_number, p.size_bytes))
            .collect::<Vec<_>>(),
        vec![(1, MIN_PART_SIZE), (2, 1234)]
    );

    let complete = CompleteMultipartUpload {
        bucket: BUCKET.into(),
        key: key.into(),
        upload_id,
        parts: completed,
        full_object_checksum: None,
    };
    let r = h.send(complete.build(&h.config).unwrap()).await;
    parse_complete_multipart_upload(r.status, &r.headers, &r.body).unwrap();

    let whole: Vec<u8> = part_bytes.concat();
    let r = h
        .send(GetObject::new(BUCKET, key).build(&h.config).unwrap())
        .await;
    parse_get_object(r.status, &r.headers, &r.body).unwrap();
    assert_eq!(r.body.len(), whole.len());
    assert!(r.body == whole);
}

#[tokio::test]
async fn small_first_part_is_entity_too_small() {
    let h = Harness::start().await;
    let r = h
        .send(
            CreateMultipartUpload::new(BUCKET, "small")
                .build(&h.config)
                .unwrap(),
        )
        .await;
    let upload_id = parse_create_multipart_upload(r.status, &r.headers, &r.body)
        .unwrap()
        .upload_id;
    let mut parts = Vec::new();
    for n in 1..=2u32 {
        let part = UploadPart {
            bucket: BUCKET.into(),
            key: "small".into(),
            upload_id: upload_id.clone(),
            part_number: PartNumber::new(n).unwrap(),
            body: RequestBody::Bytes(pattern(10, n as u8)),
            checksum: None,
            content_md5: None,
        };
        let r = h.send(part.build(&h.config).unwrap()).await;
        let etag = parse_upload_part(r.status, &r.headers, &r.body)
            .unwrap()
            .etag;
        parts.push(CompletedPart {
            part_number: part.part_number,
            etag,
            checksum: None,
        });
    }
    let complete = CompleteMultipartUpload {
        bucket: BUCKET.into(),
        key: "small".into(),
        upload_id,
        parts,
        full_object_checksum: None,
    };
    let r = h.send(complete.build(&h.config).unwrap()).await;
    let err = parse_complete_multipart_upload(r.status, &r.headers, &r.body).unwrap_err();
    assert_eq!(
        err.as_s3_error().and_then(|e| e.code.as_deref()),
        Some("EntityTooSmall"),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::InvalidRequest);
}

#[tokio::test]
async fn corrupted_body_is_a_checksum_mismatch() {
    let h = Harness::start().await;
    let mut put = PutObject::new(
        BUCKET,
        "corrupt",
        RequestBody::Bytes(Bytes::from_static(b"what was sent")),
    );
    put.checksum = Some(Checksum::of(ChecksumAlgorithm::Crc32, b"what was read"));
    let r = h.send(put.build(&h.config).unwrap()).await;
    let err = parse_put_object(r.status, &r.headers, &r.body).unwrap_err();
    assert_eq!(err.class(), ErrorClass::ChecksumMismatch, "{err}");
}

#[tokio::test]
async fn presigned_get_works_and_expires() {
    let h = Harness::start().await;
    let data = pattern(300, 9);
    let r = h
        .send(
            PutObject::new(BUCKET, "shared file", RequestBody::Bytes(data.clone()))
                .build(&h.config)
                .unwrap(),
        )
        .await;
    parse_put_object(r.status, &r.headers, &r.body).unwrap();

    let uri = GetObject::new(BUCKET, "shared file")
        .build(&h.config)
        .unwrap()
        .uri()
        .clone();
    let fetch = |signed_at: SystemTime| {
        let url = presign(
            &Method::GET,
            &uri,
            &HeaderMap::new(),
            &h.creds,
            h.config.region(),
            Duration::from_secs(60),
            signed_at,
        )
        .unwrap();
        let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
        h.client.request(req)
    };
    let resp = fetch(SystemTime::now()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), data);

    let resp = fetch(SystemTime::now() - Duration::from_secs(3600))
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let e = parse_error(status, &headers, &body);
    assert_eq!(e.status, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(e.class, ErrorClass::Denied);
}

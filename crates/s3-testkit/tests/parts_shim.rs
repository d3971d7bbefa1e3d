//! The parts fidelity shim over s3s-fs, over HTTP with signed requests: multipart objects
//! answer `partNumber` with their real part boundaries and report S3's checksums. Every
//! expected checksum is computed here with crc32fast / crc32c, not with s3-protocol.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use s3_protocol::{
    Addressing, ByteRange, Checksum, ChecksumAlgorithm, ChecksumType, CompleteMultipartUpload,
    CompletedPart, CreateMultipartUpload, Credentials, ETag, Endpoint, GetObject, HeadObject,
    PartNumber, PutObject, RequestBody, S3Config, UploadId, UploadPart,
    parse_create_multipart_upload, parse_upload_part,
};
use s3_testkit::{S3sFsServer, send_signed, start_s3s_fs, start_s3s_fs_with_parts};

const BUCKET: &str = "parts";
const MIB: usize = 1024 * 1024;

struct Rig {
    server: S3sFsServer,
    config: S3Config,
    creds: Credentials,
}

impl Rig {
    async fn start() -> Self {
        Self::on(start_s3s_fs_with_parts().await)
    }

    fn on(server: S3sFsServer) -> Self {
        server.create_bucket(BUCKET).unwrap();
        let config = S3Config::custom(
            server.region(),
            Endpoint::parse(&server.endpoint()).unwrap(),
            Addressing::PathStyle,
        );
        let creds = Credentials::new(server.access_key(), server.secret_key(), None);
        Self {
            server,
            config,
            creds,
        }
    }

    async fn send(&self, request: http::Request<RequestBody>) -> Response<Bytes> {
        send_signed(request, &self.creds, self.server.region())
            .await
            .unwrap()
    }

    async fn create(
        &self,
        key: &str,
        algorithm: ChecksumAlgorithm,
        ty: Option<ChecksumType>,
    ) -> UploadId {
        let req = CreateMultipartUpload {
            checksum_algorithm: Some(algorithm),
            checksum_type: ty,
            ..CreateMultipartUpload::new(BUCKET, key)
        };
        let resp = self.send(req.build(&self.config).unwrap()).await;
        let (status, headers, body) = parts(&resp);
        parse_create_multipart_upload(status, headers, body)
            .unwrap()
            .upload_id
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &UploadId,
        n: u32,
        data: &[u8],
        checksum: Option<Checksum>,
    ) -> Response<Bytes> {
        self.upload_part_md5(key, upload_id, n, data, checksum, None)
            .await
    }

    async fn upload_part_md5(
        &self,
        key: &str,
        upload_id: &UploadId,
        n: u32,
        data: &[u8],
        checksum: Option<Checksum>,
        content_md5: Option<[u8; 16]>,
    ) -> Response<Bytes> {
        let req = UploadPart {
            bucket: BUCKET.into(),
            key: key.into(),
            upload_id: upload_id.clone(),
            part_number: PartNumber::new(n).unwrap(),
            body: RequestBody::Bytes(Bytes::copy_from_slice(data)),
            checksum,
            content_md5,
        };
        self.send(req.build(&self.config).unwrap()).await
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        full_object_checksum: Option<Checksum>,
    ) -> Response<Bytes> {
        let req = CompleteMultipartUpload {
            bucket: BUCKET.into(),
            key: key.into(),
            upload_id: upload_id.clone(),
            parts,
            full_object_checksum,
        };
        self.send(req.build(&self.config).unwrap()).await
    }

    /// Uploads `sizes`-long parts of `data` with `algorithm` and completes the upload.
    async fn multipart(
        &self,
        key: &str,
        data: &[u8],
        sizes: &[usize],
        algorithm: ChecksumAlgorithm,
        ty: Option<ChecksumType>,
    ) -> Response<Bytes> {
        let upload_id = self.create(key, algorithm, ty).await;
        let mut completed = Vec::new();
        for (i, chunk) in split(data, sizes).into_iter().enumerate() {
            let n = u32::try_from(i + 1).unwrap();
            let checksum = Checksum {
                algorithm,
                value: crc(algorithm, chunk),
            };
            let resp = self
                .upload_part(key, &upload_id, n, chunk, Some(checksum))
                .await;
            assert_eq!(resp.status(), StatusCode::OK, "part {n}: {resp:?}");
            // S3 echoes the part checksum.
            assert_eq!(
                header(&resp, algorithm.header_name()),
                Some(crc(algorithm, chunk).to_base64()),
                "part {n}"
            );
            let (status, headers, body) = parts(&resp);
            let etag = parse_upload_part(status, headers, body).unwrap().etag;
            completed.push(CompletedPart {
                part_number: PartNumber::new(n).unwrap(),
                etag,
                checksum: Some(checksum),
            });
        }
        let full = (ty == Some(ChecksumType::FullObject)).then(|| Checksum {
            algorithm,
            value: crc(algorithm, data),
        });
        self.complete(key, &upload_id, completed, full).await
    }

    async fn head(&self, key: &str, part: Option<u32>, checksum_mode: bool) -> Response<Bytes> {
        let req = HeadObject {
            part_number: part.map(|n| PartNumber::new(n).unwrap()),
            checksum_mode,
            ..HeadObject::new(BUCKET, key)
        };
        self.send(req.build(&self.config).unwrap()).await
    }

    async fn get(&self, req: GetObject) -> Response<Bytes> {
        self.send(req.build(&self.config).unwrap()).await
    }
}

fn parts(resp: &Response<Bytes>) -> (StatusCode, &HeaderMap, &[u8]) {
    (resp.status(), resp.headers(), resp.body())
}

fn header(resp: &Response<Bytes>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn body_text(resp: &Response<Bytes>) -> String {
    String::from_utf8_lossy(resp.body()).into_owned()
}

/// Deterministic, incompressible-looking bytes (xorshift).
/// The response is an S3 error of this status and code.
fn assert_error(resp: &Response<Bytes>, status: StatusCode, code: &str) {
    assert_eq!(resp.status(), status, "{}", body_text(resp));
    let text = body_text(resp);
    assert!(text.contains(&format!("<Code>{code}</Code>")), "{text}");
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

fn split<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    assert_eq!(sizes.iter().sum::<usize>(), data.len());
    let mut rest = data;
    sizes
        .iter()
        .map(|&n| {
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            chunk
        })
        .collect()
}

fn crc(algorithm: ChecksumAlgorithm, data: &[u8]) -> s3_types::ChecksumValue {
    s3_types::checksum(algorithm, data)
}

fn b64(crc: u32) -> String {
    BASE64.encode(crc.to_be_bytes())
}

/// S3's composite CRC32: the CRC of the concatenated big-endian part CRCs, `-<parts>`.
fn composite_crc32(parts: &[&[u8]]) -> String {
    let concatenated: Vec<u8> = parts
        .iter()
        .flat_map(|p| crc32fast::hash(p).to_be_bytes())
        .collect();
    format!("{}-{}", b64(crc32fast::hash(&concatenated)), parts.len())
}

#[tokio::test]
async fn parts_of_different_sizes_answer_part_number_as_s3_does() {
    let rig = Rig::start().await;
    let key = "dir/three-parts.bin";
    let sizes = [5 * MIB, 7 * MIB, 3 * MIB];
    let data = data(15 * MIB, 7);
    let chunks = split(&data, &sizes);
    let composite = composite_crc32(&chunks);

    let resp = rig
        .multipart(
            key,
            &data,
            &sizes,
            ChecksumAlgorithm::Crc32,
            Some(ChecksumType::Composite),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", body_text(&resp));
    let text = body_text(&resp);
    assert!(
        text.contains(&format!("<ChecksumCRC32>{composite}</ChecksumCRC32>")),
        "{text}"
    );
    assert!(
        text.contains("<ChecksumType>COMPOSITE</ChecksumType>"),
        "{text}"
    );

    // The whole object, with checksum mode: the composite value and its type.
    let whole = rig.head(key, None, true).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(
        header(&whole, "content-length"),
        Some((15 * MIB).to_string())
    );
    assert_eq!(
        header(&whole, "x-amz-checksum-crc32"),
        Some(composite.clone())
    );
    assert_eq!(
        header(&whole, "x-amz-checksum-type").as_deref(),
        Some("COMPOSITE")
    );
    assert_eq!(header(&whole, "x-amz-mp-parts-count"), None);
    let etag = header(&whole, "etag").unwrap();
    assert!(etag.ends_with("-3\""), "{etag}");
    // Without checksum mode S3 reports no checksum.
    let plain = rig.head(key, None, false).await;
    assert_eq!(header(&plain, "x-amz-checksum-crc32"), None);

    // Each part: its own length and range, the parts count, the object's ETag, and with
    // checksum mode the part's own CRC.
    let mut start = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap();
        let resp = rig.head(key, Some(n), true).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "part {n}");
        assert_eq!(
            header(&resp, "content-length"),
            Some(chunk.len().to_string()),
            "part {n}"
        );
        assert_eq!(
            header(&resp, "content-range"),
            Some(format!(
                "bytes {}-{}/{}",
                start,
                start + chunk.len() - 1,
                15 * MIB
            )),
            "part {n}"
        );
        assert_eq!(
            header(&resp, "x-amz-mp-parts-count").as_deref(),
            Some("3"),
            "part {n}"
        );
        assert_eq!(
            header(&resp, "etag").as_deref(),
            Some(etag.as_str()),
            "part {n}"
        );
        assert_eq!(
            header(&resp, "x-amz-checksum-crc32"),
            Some(b64(crc32fast::hash(chunk))),
            "part {n}"
        );
        start += chunk.len();
    }

    // GET part 2: exactly bytes [5 MiB, 12 MiB).
    let resp = rig
        .get(GetObject {
            part_number: PartNumber::new(2),
            ..GetObject::new(BUCKET, key)
        })
        .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&resp, "content-range"),
        Some(format!("bytes {}-{}/{}", 5 * MIB, 12 * MIB - 1, 15 * MIB))
    );
    assert_eq!(header(&resp, "x-amz-mp-parts-count").as_deref(), Some("3"));
    assert_eq!(header(&resp, "etag").as_deref(), Some(etag.as_str()));
    assert_eq!(
        header(&resp, "x-amz-checksum-crc32"),
        None,
        "no checksum mode"
    );
    assert!(resp.body()[..] == data[5 * MIB..12 * MIB], "part 2 bytes");

    // GET part 3 with checksum mode reports the part's CRC.
    let resp = rig
        .get(GetObject {
            part_number: PartNumber::new(3),
            checksum_mode: true,
            ..GetObject::new(BUCKET, key)
        })
        .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert!(resp.body()[..] == data[12 * MIB..], "part 3 bytes");
    assert_eq!(
        header(&resp, "x-amz-checksum-crc32"),
        Some(b64(crc32fast::hash(chunks[2])))
    );

    // A whole GET with checksum mode reports the composite value; a ranged GET none.
    let resp = rig
        .get(GetObject {
            checksum_mode: true,
            ..GetObject::new(BUCKET, key)
        })
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "x-amz-checksum-crc32"),
        Some(composite.clone())
    );
    assert!(resp.body()[..] == data[..]);
    let resp = rig
        .get(GetObject {
            checksum_mode: true,
            range: ByteRange::new(0, 10),
            ..GetObject::new(BUCKET, key)
        })
        .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "x-amz-checksum-crc32"), None);
    assert_eq!(header(&resp, "x-amz-checksum-type"), None);

    // Part 4 of 3 is not satisfiable, on HEAD and on GET.
    let resp = rig.head(key, Some(4), true).await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let resp = rig
        .get(GetObject {
            part_number: PartNumber::new(4),
            ..GetObject::new(BUCKET, key)
        })
        .await;
    assert_error(
        &resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "InvalidPartNumber",
    );

    // If-Match on a part is compared with the whole object's ETag.
    let pinned = |etag: &str| GetObject {
        part_number: PartNumber::new(1),
        if_match: Some(ETag::new(etag)),
        ..GetObject::new(BUCKET, key)
    };
    let resp = rig.get(pinned(&etag)).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.body().len(), 5 * MIB);
    let resp = rig
        .get(pinned("\"0123456789abcdef0123456789abcdef-3\""))
        .await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    let resp = rig
        .send(
            HeadObject {
                part_number: PartNumber::new(2),
                if_match: Some(ETag::new("\"0123456789abcdef0123456789abcdef-3\"")),
                ..HeadObject::new(BUCKET, key)
            }
            .build(&rig.config)
            .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn a_part_whose_checksum_differs_is_refused_and_the_part_before_kept() {
    let rig = Rig::start().await;
    let key = "bad-digest";
    // No checksum type: S3's default for an algorithm is COMPOSITE.
    let upload_id = rig.create(key, ChecksumAlgorithm::Crc32, None).await;
    let good = data(5 * MIB, 1);
    let other = data(5 * MIB, 2);
    let tail = data(1000, 3);
    let crc32 = |d: &[u8]| Checksum {
        algorithm: ChecksumAlgorithm::Crc32,
        value: s3_types::ChecksumValue::from_u32(crc32fast::hash(d)),
    };

    let resp = rig
        .upload_part(key, &upload_id, 1, &good, Some(crc32(&good)))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, headers, body) = parts(&resp);
    let etag1 = parse_upload_part(status, headers, body).unwrap().etag;

    // Other bytes under the good bytes' checksum: BadDigest, and part 1 stays as it was.
    let resp = rig
        .upload_part(key, &upload_id, 1, &other, Some(crc32(&good)))
        .await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "BadDigest");
    // So are other bytes under the good bytes' Content-MD5 (and their own CRC32).
    let resp = rig
        .upload_part_md5(
            key,
            &upload_id,
            1,
            &other,
            Some(crc32(&other)),
            Some(s3_types::md5_digest(&good)),
        )
        .await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "BadDigest");
    // A checksum of the other algorithm than the upload's is refused too.
    let crc32c = Checksum {
        algorithm: ChecksumAlgorithm::Crc32c,
        value: s3_types::ChecksumValue::from_u32(crc32c::crc32c(&tail)),
    };
    let resp = rig
        .upload_part(key, &upload_id, 2, &tail, Some(crc32c))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let resp = rig
        .upload_part_md5(
            key,
            &upload_id,
            2,
            &tail,
            Some(crc32(&tail)),
            Some(s3_types::md5_digest(&tail)),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", body_text(&resp));
    let (status, headers, body) = parts(&resp);
    let etag2 = parse_upload_part(status, headers, body).unwrap().etag;

    // A composite upload's Complete must carry each part's checksum, and the right one.
    let completed = |c1: Option<Checksum>| {
        vec![
            CompletedPart {
                part_number: PartNumber::new(1).unwrap(),
                etag: etag1.clone(),
                checksum: c1,
            },
            CompletedPart {
                part_number: PartNumber::new(2).unwrap(),
                etag: etag2.clone(),
                checksum: Some(crc32(&tail)),
            },
        ]
    };
    let resp = rig.complete(key, &upload_id, completed(None), None).await;
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "{}",
        body_text(&resp)
    );
    let resp = rig
        .complete(key, &upload_id, completed(Some(crc32(&other))), None)
        .await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "InvalidPart");

    let resp = rig
        .complete(key, &upload_id, completed(Some(crc32(&good))), None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", body_text(&resp));
    let resp = rig.get(GetObject::new(BUCKET, key)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.body()[..5 * MIB] == good[..],
        "the good part 1 was kept"
    );
    assert!(resp.body()[5 * MIB..] == tail[..]);
    let head = rig.head(key, None, true).await;
    assert_eq!(
        header(&head, "x-amz-checksum-crc32"),
        Some(composite_crc32(&[&good, &tail]))
    );
    assert_eq!(
        header(&head, "x-amz-checksum-type").as_deref(),
        Some("COMPOSITE")
    );
}

#[tokio::test]
async fn a_full_object_upload_reports_the_crc_of_the_whole_object() {
    let rig = Rig::start().await;
    let key = "full-object";
    let sizes = [5 * MIB, MIB + 17];
    let data = data(6 * MIB + 17, 11);
    let whole = b64(crc32c::crc32c(&data));

    // A Complete whose full-object checksum is wrong is refused; the upload survives.
    let upload_id = rig
        .create(
            key,
            ChecksumAlgorithm::Crc32c,
            Some(ChecksumType::FullObject),
        )
        .await;
    let mut completed = Vec::new();
    for (i, chunk) in split(&data, &sizes).into_iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap();
        let resp = rig.upload_part(key, &upload_id, n, chunk, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        // The upload's algorithm is echoed even when the part came without a checksum.
        assert_eq!(
            header(&resp, "x-amz-checksum-crc32c"),
            Some(b64(crc32c::crc32c(chunk)))
        );
        let (status, headers, body) = parts(&resp);
        completed.push(CompletedPart {
            part_number: PartNumber::new(n).unwrap(),
            etag: parse_upload_part(status, headers, body).unwrap().etag,
            checksum: None,
        });
    }
    let wrong = Checksum {
        algorithm: ChecksumAlgorithm::Crc32c,
        value: s3_types::ChecksumValue::from_u32(crc32c::crc32c(&data[1..])),
    };
    let resp = rig
        .complete(key, &upload_id, completed.clone(), Some(wrong))
        .await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "BadDigest");
    let right = Checksum {
        algorithm: ChecksumAlgorithm::Crc32c,
        value: s3_types::ChecksumValue::from_u32(crc32c::crc32c(&data)),
    };
    let resp = rig.complete(key, &upload_id, completed, Some(right)).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", body_text(&resp));
    assert!(body_text(&resp).contains(&format!("<ChecksumCRC32C>{whole}</ChecksumCRC32C>")));

    let head = rig.head(key, None, true).await;
    assert_eq!(header(&head, "x-amz-checksum-crc32c"), Some(whole));
    assert_eq!(
        header(&head, "x-amz-checksum-type").as_deref(),
        Some("FULL_OBJECT")
    );
    // A part of a full-object upload has its boundaries but no checksum of its own.
    let part = rig.head(key, Some(2), true).await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&part, "content-length"),
        Some((MIB + 17).to_string())
    );
    assert_eq!(header(&part, "x-amz-mp-parts-count").as_deref(), Some("2"));
    assert_eq!(header(&part, "x-amz-checksum-crc32c"), None);
}

#[tokio::test]
async fn a_single_part_object_is_its_own_part_one_and_overwriting_forgets_parts() {
    let rig = Rig::start().await;
    let key = "single";
    let sizes = [5 * MIB, MIB];
    let multi = data(6 * MIB, 5);
    let resp = rig
        .multipart(key, &multi, &sizes, ChecksumAlgorithm::Crc32, None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", body_text(&resp));
    assert_eq!(
        header(&rig.head(key, Some(2), false).await, "content-length"),
        Some(MIB.to_string())
    );

    // A PutObject over it: one part, the whole object, no parts count.
    let small = data(1234, 9);
    let put = PutObject {
        checksum: Some(Checksum {
            algorithm: ChecksumAlgorithm::Crc32,
            value: s3_types::ChecksumValue::from_u32(crc32fast::hash(&small)),
        }),
        ..PutObject::new(BUCKET, key, RequestBody::Bytes(Bytes::from(small.clone())))
    };
    assert_eq!(
        rig.send(put.build(&rig.config).unwrap()).await.status(),
        StatusCode::OK
    );

    let resp = rig.head(key, Some(1), true).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-length"), Some("1234".into()));
    assert_eq!(
        header(&resp, "content-range"),
        Some("bytes 0-1233/1234".into())
    );
    assert_eq!(header(&resp, "x-amz-mp-parts-count"), None);
    let resp = rig
        .get(GetObject {
            part_number: PartNumber::new(1),
            ..GetObject::new(BUCKET, key)
        })
        .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert!(resp.body()[..] == small[..]);
    assert_eq!(
        rig.head(key, Some(2), true).await.status(),
        StatusCode::RANGE_NOT_SATISFIABLE
    );

    // Its checksum is a full-object one.
    let head = rig.head(key, None, true).await;
    assert_eq!(
        header(&head, "x-amz-checksum-crc32"),
        Some(b64(crc32fast::hash(&small)))
    );
    assert_eq!(
        header(&head, "x-amz-checksum-type").as_deref(),
        Some("FULL_OBJECT")
    );
}

/// What the shim is for: plain s3s-fs answers a part request with the whole object. If
/// this starts failing, s3s-fs learnt `partNumber` and the shim may be retired.
#[tokio::test]
async fn plain_s3s_fs_ignores_part_number() {
    let rig = Rig::on(start_s3s_fs().await);
    let key = "plain";
    let sizes = [5 * MIB, MIB];
    let data = data(6 * MIB, 13);
    let upload_id = rig.create(key, ChecksumAlgorithm::Crc32, None).await;
    let mut completed = Vec::new();
    for (i, chunk) in split(&data, &sizes).into_iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap();
        let resp = rig.upload_part(key, &upload_id, n, chunk, None).await;
        let (status, headers, body) = parts(&resp);
        completed.push(CompletedPart {
            part_number: PartNumber::new(n).unwrap(),
            etag: parse_upload_part(status, headers, body).unwrap().etag,
            checksum: None,
        });
    }
    let resp = rig.complete(key, &upload_id, completed, None).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", body_text(&resp));

    let resp = rig.head(key, Some(2), true).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), Some((6 * MIB).to_string()));
    assert_eq!(header(&resp, "x-amz-mp-parts-count"), None);
}

/// A key that is only a prefix of others (`dir` while `dir/x` exists) is no object:
/// HEAD and GET answer 404 `NoSuchKey` as S3 does, on both servers (s3s-fs alone fails
/// reading the directory it keeps there with 500, which clients retry for minutes).
#[tokio::test]
async fn a_prefix_is_not_found_as_a_key() {
    for rig in [
        Rig::on(start_s3s_fs().await),
        Rig::on(start_s3s_fs_with_parts().await),
    ] {
        let key = "dir/inside.txt";
        let put = PutObject::new(BUCKET, key, RequestBody::Bytes(Bytes::from_static(b"x")));
        let resp = rig.send(put.build(&rig.config).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", body_text(&resp));
        assert_eq!(
            rig.head("dir", None, false).await.status(),
            StatusCode::NOT_FOUND
        );
        let get = rig.get(GetObject::new(BUCKET, "dir")).await;
        assert_eq!(get.status(), StatusCode::NOT_FOUND);
        assert!(body_text(&get).contains("NoSuchKey"), "{}", body_text(&get));
        assert_eq!(rig.head(key, None, false).await.status(), StatusCode::OK);
    }
}

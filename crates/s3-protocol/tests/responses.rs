//! Parsing real-shaped S3 responses (taken from the shapes in AWS's API reference),
//! including pagination markers, `<Error>` bodies, bodyless errors and 200-with-Error.
// clippy.toml's bans (no clock, files, sockets, environment) are for the library; tests
// and benches drive it from the outside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::disallowed_macros
)]

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use s3_protocol::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

const OK: StatusCode = StatusCode::OK;

#[test]
fn list_parts_with_markers() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket>
  <Key>example-object</Key>
  <UploadId>XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA</UploadId>
  <Initiator>
      <ID>arn:aws:iam::111122223333:user/some-user-11116a31-17b5-4fb7-9df5-b288870f11xx</ID>
      <DisplayName>umat-user-11116a31-17b5-4fb7-9df5-b288870f11xx</DisplayName>
  </Initiator>
  <Owner>
    <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
    <DisplayName>someName</DisplayName>
  </Owner>
  <StorageClass>STANDARD</StorageClass>
  <PartNumberMarker>1</PartNumberMarker>
  <NextPartNumberMarker>3</NextPartNumberMarker>
  <MaxParts>2</MaxParts>
  <IsTruncated>true</IsTruncated>
  <Part>
    <PartNumber>2</PartNumber>
    <LastModified>2010-11-10T20:48:34.000Z</LastModified>
    <ETag>"7778aef83f66abc1fa1e8477f296d394"</ETag>
    <Size>10485760</Size>
    <ChecksumCRC32>y/Q5Jg==</ChecksumCRC32>
  </Part>
  <Part>
    <PartNumber>3</PartNumber>
    <LastModified>2010-11-10T20:48:33.000Z</LastModified>
    <ETag>&quot;aaaa18db4cc2f85cedef654fccc4a4x8&quot;</ETag>
    <Size>10485760</Size>
  </Part>
  <ChecksumAlgorithm>CRC32</ChecksumAlgorithm>
  <ChecksumType>FULL_OBJECT</ChecksumType>
</ListPartsResult>"#;
    let out = parse_list_parts(OK, &HeaderMap::new(), body.as_bytes()).unwrap();
    assert_eq!(out.bucket.as_deref(), Some("example-bucket"));
    assert_eq!(
        out.upload_id.as_ref().map(UploadId::as_str),
        Some("XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA")
    );
    assert_eq!(out.part_number_marker, Some(1));
    assert_eq!(out.next_part_number_marker, Some(3));
    assert_eq!(out.max_parts, Some(2));
    assert!(out.is_truncated);
    assert_eq!(out.checksum_algorithm, Some(ChecksumAlgorithm::Crc32));
    assert_eq!(out.checksum_type, Some(ChecksumType::FullObject));
    assert_eq!(out.parts.len(), 2);
    let p = &out.parts[0];
    assert_eq!((p.part_number, p.size_bytes), (2, 10_485_760));
    assert_eq!(
        p.etag.as_ref().unwrap().as_str(),
        "\"7778aef83f66abc1fa1e8477f296d394\""
    );
    assert_eq!(
        p.checksums.crc(ChecksumAlgorithm::Crc32).unwrap().value,
        ChecksumValue::from_u32(0xCBF4_3926)
    );
    assert_eq!(p.last_modified.as_deref(), Some("2010-11-10T20:48:34.000Z"));
    // Entities decode: the quotes come back as quotes.
    assert_eq!(
        out.parts[1].etag.as_ref().unwrap().unquoted(),
        "aaaa18db4cc2f85cedef654fccc4a4x8"
    );

    // Last page: not truncated, no next marker, an empty element is "absent".
    let last = r#"<ListPartsResult><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId>
      <PartNumberMarker>3</PartNumberMarker><NextPartNumberMarker></NextPartNumberMarker>
      <MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated></ListPartsResult>"#;
    let out = parse_list_parts(OK, &HeaderMap::new(), last.as_bytes()).unwrap();
    assert!(!out.is_truncated);
    assert_eq!(out.next_part_number_marker, None);
    assert!(out.parts.is_empty());

    let unordered = r#"<ListPartsResult><IsTruncated>false</IsTruncated>
      <Part><PartNumber>2</PartNumber><Size>5</Size></Part>
      <Part><PartNumber>1</PartNumber><Size>7</Size></Part></ListPartsResult>"#;
    let out = parse_list_parts(OK, &HeaderMap::new(), unordered.as_bytes()).unwrap();
    let order: Vec<(u32, u64)> = out
        .parts
        .iter()
        .map(|p| (p.part_number, p.size_bytes))
        .collect();
    assert_eq!(order, vec![(1, 7), (2, 5)]);
}

#[test]
fn list_multipart_uploads_with_markers() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>bucket</Bucket>
  <KeyMarker></KeyMarker>
  <UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>my-movie.m2ts</NextKeyMarker>
  <NextUploadIdMarker>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</NextUploadIdMarker>
  <MaxUploads>3</MaxUploads>
  <IsTruncated>true</IsTruncated>
  <Upload>
    <Key>my-divisor</Key>
    <UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
    <Initiator><ID>arn:aws:iam::111122223333:user/user1-11111a31-17b5-4fb7-9df5-b111111f13de</ID><DisplayName>user1-11111a31-17b5-4fb7-9df5-b111111f13de</DisplayName></Initiator>
    <Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID><DisplayName>OwnerDisplayName</DisplayName></Owner>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2010-11-10T20:48:33.000Z</Initiated>
  </Upload>
  <Upload>
    <Key>my-movie.m2ts</Key>
    <UploadId>VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2010-11-10T20:48:33.000Z</Initiated>
    <ChecksumAlgorithm>CRC32C</ChecksumAlgorithm>
  </Upload>
  <CommonPrefixes><Prefix>photos/</Prefix></CommonPrefixes>
</ListMultipartUploadsResult>"#;
    let out = parse_list_multipart_uploads(OK, &HeaderMap::new(), body.as_bytes()).unwrap();
    assert!(out.is_truncated);
    assert_eq!(out.key_marker, None);
    assert_eq!(out.next_key_marker.as_deref(), Some("my-movie.m2ts"));
    assert_eq!(
        out.next_upload_id_marker.as_deref(),
        Some("YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ")
    );
    assert_eq!(out.max_uploads, Some(3));
    assert_eq!(out.uploads.len(), 2);
    assert_eq!(out.uploads[0].key, "my-divisor");
    assert_eq!(
        out.uploads[0].initiated.as_deref(),
        Some("2010-11-10T20:48:33.000Z")
    );
    assert_eq!(
        out.uploads[1].checksum_algorithm,
        Some(ChecksumAlgorithm::Crc32c)
    );
    assert_eq!(out.common_prefixes, vec!["photos/".to_owned()]);
}

#[test]
fn list_objects_v2_with_continuation() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name>
  <Prefix></Prefix>
  <KeyCount>3</KeyCount>
  <MaxKeys>3</MaxKeys>
  <Delimiter>/</Delimiter>
  <IsTruncated>true</IsTruncated>
  <ContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</ContinuationToken>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwN=</NextContinuationToken>
  <Contents>
    <Key>happyface.jpg</Key>
    <LastModified>2014-11-21T19:40:05.000Z</LastModified>
    <ETag>"70ee1738b6b21e2c8a43f3a5ab0eee71"</ETag>
    <Size>11</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>a b+c=&amp;.bin</Key>
    <LastModified>2014-11-21T19:40:05.000Z</LastModified>
    <ETag>"becf17f89c30367a9a44495d62ed521a-1"</ETag>
    <Size>1581</Size>
    <StorageClass>STANDARD</StorageClass>
    <ChecksumAlgorithm>CRC32</ChecksumAlgorithm>
    <ChecksumType>COMPOSITE</ChecksumType>
  </Contents>
  <CommonPrefixes><Prefix>photos/</Prefix></CommonPrefixes>
</ListBucketResult>"#;
    let out = parse_list_objects_v2(OK, &HeaderMap::new(), body.as_bytes()).unwrap();
    assert_eq!(out.name.as_deref(), Some("bucket"));
    assert!(out.is_truncated);
    assert_eq!(out.key_count, Some(3));
    assert_eq!(
        out.next_continuation_token.as_deref(),
        Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwN=")
    );
    assert_eq!(out.contents.len(), 2);
    assert_eq!(out.contents[1].key, "a b+c=&.bin");
    assert_eq!(out.contents[1].size_bytes, 1581);
    assert_eq!(
        out.contents[1].checksum_algorithms,
        vec!["CRC32".to_owned()]
    );
    assert_eq!(out.contents[1].checksum_type, Some(ChecksumType::Composite));
    assert!(matches!(
        out.contents[1].etag.as_ref().unwrap().kind(),
        ETagKind::Multipart { parts: 1, .. }
    ));
    assert_eq!(out.common_prefixes, vec!["photos/".to_owned()]);

    let empty = r#"<ListBucketResult><Name>bucket</Name><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"#;
    let out = parse_list_objects_v2(OK, &HeaderMap::new(), empty.as_bytes()).unwrap();
    assert!(out.contents.is_empty() && !out.is_truncated && out.next_continuation_token.is_none());
}

#[test]
fn create_and_complete_multipart_upload() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket>
  <Key>example-object</Key>
  <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
</InitiateMultipartUploadResult>"#;
    let h = headers(&[("x-amz-checksum-algorithm", "CRC32")]);
    let out = parse_create_multipart_upload(OK, &h, body.as_bytes()).unwrap();
    assert_eq!(
        out.upload_id.as_str(),
        "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"
    );
    assert_eq!(out.checksum_algorithm, Some(ChecksumAlgorithm::Crc32));
    let no_id = "<InitiateMultipartUploadResult><Bucket>b</Bucket></InitiateMultipartUploadResult>";
    assert!(matches!(
        parse_create_multipart_upload(OK, &HeaderMap::new(), no_id.as_bytes()),
        Err(ResponseError::Malformed(_))
    ));

    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Location>http://Example-Bucket.s3.Region.amazonaws.com/Example-Object</Location>
  <Bucket>Example-Bucket</Bucket>
  <Key>Example-Object</Key>
  <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag>
  <ChecksumCRC32>y/Q5Jg==</ChecksumCRC32>
  <ChecksumType>FULL_OBJECT</ChecksumType>
</CompleteMultipartUploadResult>"#;
    let out = parse_complete_multipart_upload(
        OK,
        &headers(&[("x-amz-version-id", "v1")]),
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(out.etag.unquoted(), "3858f62230ac3c915f300c664312c11f-9");
    assert_eq!(
        out.checksums.crc(ChecksumAlgorithm::Crc32),
        Some(CrcValue {
            value: ChecksumValue::from_u32(0xCBF4_3926),
            parts: None
        })
    );
    assert_eq!(out.checksums.checksum_type, Some(ChecksumType::FullObject));
    assert_eq!(out.version_id.as_deref(), Some("v1"));
}

#[test]
fn complete_with_error_inside_200() {
    // S3 keeps the connection alive with whitespace, then reports the failure in a 200.
    let body = "      \n   \n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>656c76696e6727732072657175657374</RequestId><HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId></Error>";
    let err = parse_complete_multipart_upload(OK, &HeaderMap::new(), body.as_bytes()).unwrap_err();
    let e = err.as_s3_error().expect("service error");
    assert_eq!(e.status, OK);
    assert_eq!(e.code.as_deref(), Some("InternalError"));
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(
        e.request_id.as_deref(),
        Some("656c76696e6727732072657175657374")
    );
    assert!(e.host_id.as_deref().unwrap().starts_with("Uuag1LuByRx9"));
    assert!(err.class().is_retryable());

    let invalid_part = "<Error><Code>InvalidPart</Code><Message>One or more of the specified parts could not be found.</Message><UploadId>u</UploadId><PartNumber>2</PartNumber></Error>";
    let err = parse_complete_multipart_upload(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        invalid_part.as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidRequest);

    // A 200 that ends before any document is not a success.
    assert!(matches!(
        parse_complete_multipart_upload(OK, &HeaderMap::new(), b"   \n  "),
        Err(ResponseError::Malformed(_))
    ));
}

#[test]
fn error_bodies_and_classes() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message><AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256
20130524T000000Z</StringToSign><SignatureProvided>f0e8</SignatureProvided><RequestId>4442587FB7D0A2F9</RequestId><HostId>host-id</HostId></Error>"#;
    let e = parse_error(StatusCode::FORBIDDEN, &HeaderMap::new(), body.as_bytes());
    assert_eq!(e.code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(e.class, ErrorClass::Denied);
    assert_eq!(e.request_id.as_deref(), Some("4442587FB7D0A2F9"));
    assert!(e.to_string().contains("secret access key"), "{e}");

    let slow =
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let err = parse_upload_part(
        StatusCode::SERVICE_UNAVAILABLE,
        &HeaderMap::new(),
        slow.as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Throttled);

    let nsk = "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>photos/a.jpg</Key><RequestId>R</RequestId></Error>";
    let err =
        parse_get_object(StatusCode::NOT_FOUND, &HeaderMap::new(), nsk.as_bytes()).unwrap_err();
    let e = err.as_s3_error().unwrap();
    assert_eq!(
        (e.class, e.resource.as_deref()),
        (ErrorClass::NotFound, Some("photos/a.jpg"))
    );

    let small = "<Error><Code>EntityTooSmall</Code><Message>Your proposed upload is smaller than the minimum allowed object size.</Message></Error>";
    let err = parse_complete_multipart_upload(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        small.as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidRequest);
    assert!(err.to_string().contains("5 MiB"), "{err}");

    // A proxy's HTML page: no code, class from status, message from the body.
    let e = parse_error(
        StatusCode::BAD_GATEWAY,
        &HeaderMap::new(),
        b"<html><body>Bad Gateway</body></html>",
    );
    assert_eq!((e.code, e.class), (None, ErrorClass::Transient));
    assert!(e.message.contains("Bad Gateway"));

    let e = parse_error(StatusCode::PRECONDITION_FAILED, &HeaderMap::new(), b"");
    assert_eq!(e.class, ErrorClass::PreconditionFailed);
    let e = parse_error(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"");
    assert_eq!(e.class, ErrorClass::Throttled);
}

#[test]
fn head_object_of_a_part_reports_where_it_lies() {
    let part = |range: &str| {
        let h = headers(&[
            ("content-length", "7340032"),
            ("content-range", range),
            ("x-amz-mp-parts-count", "3"),
        ]);
        parse_head_object(StatusCode::PARTIAL_CONTENT, &h, b"").unwrap()
    };
    let out = part("bytes 5242880-12582911/15728640");
    let r = out.content_range.expect("a Content-Range");
    assert_eq!((r.range.start(), r.range.end()), (5_242_880, 12_582_912));
    assert_eq!(r.total_bytes, Some(15_728_640));
    // HeadObject has no body a bad Content-Range would describe: it is left out.
    assert_eq!(part("bytes five-six/7").content_range, None);
}

#[test]
fn head_object_success_and_bodyless_errors() {
    let h = headers(&[
        ("content-length", "16777216"),
        ("etag", "\"d41d8cd98f00b204e9800998ecf8427e-2\""),
        ("last-modified", "Wed, 12 Oct 2009 17:50:00 GMT"),
        ("content-type", "application/octet-stream"),
        ("x-amz-checksum-crc32c", "yZRlqg==-2"),
        ("x-amz-checksum-type", "COMPOSITE"),
        ("x-amz-mp-parts-count", "2"),
        ("x-amz-meta-origin", "test"),
    ]);
    let out = parse_head_object(OK, &h, b"").unwrap();
    assert_eq!(out.content_length, 16_777_216);
    assert_eq!(out.parts_count, Some(2));
    assert_eq!(out.checksums.checksum_type, Some(ChecksumType::Composite));
    assert_eq!(
        out.checksums.crc(ChecksumAlgorithm::Crc32c).unwrap().parts,
        Some(2)
    );
    assert_eq!(
        out.last_modified.as_deref(),
        Some("Wed, 12 Oct 2009 17:50:00 GMT")
    );
    assert_eq!(out.metadata, vec![("origin".to_owned(), "test".to_owned())]);

    let h = headers(&[("x-amz-request-id", "RID"), ("x-amz-id-2", "HID")]);
    let err = parse_head_object(StatusCode::NOT_FOUND, &h, b"").unwrap_err();
    let e = err.as_s3_error().unwrap();
    assert_eq!((e.class, e.code.as_deref()), (ErrorClass::NotFound, None));
    assert_eq!(
        (e.request_id.as_deref(), e.host_id.as_deref()),
        (Some("RID"), Some("HID"))
    );
    assert!(e.message.contains("Not Found"), "{}", e.message);
    let err = parse_head_object(StatusCode::FORBIDDEN, &HeaderMap::new(), b"").unwrap_err();
    assert_eq!(err.class(), ErrorClass::Denied);

    assert!(matches!(
        parse_head_object(OK, &HeaderMap::new(), b""),
        Err(ResponseError::Malformed(_))
    ));
    let bad = headers(&[("content-length", "12x")]);
    assert!(matches!(
        parse_head_object(OK, &bad, b""),
        Err(ResponseError::Malformed(_))
    ));
}

#[test]
fn get_object_ranges() {
    let h = headers(&[
        ("content-length", "10"),
        ("content-range", "bytes 0-9/443"),
        ("etag", "\"e\""),
    ]);
    let out = parse_get_object(StatusCode::PARTIAL_CONTENT, &h, b"").unwrap();
    assert!(out.partial);
    let cr = out.content_range.unwrap();
    assert_eq!(
        (cr.range.start(), cr.range.end(), cr.total_bytes),
        (0, 10, Some(443))
    );

    // A server that ignored Range answers 200 with the whole object.
    let out = parse_get_object(OK, &headers(&[("content-length", "443")]), b"").unwrap();
    assert!(!out.partial && out.content_range.is_none());
    assert_eq!(out.content_length, Some(443));

    assert!(
        parse_get_object(
            StatusCode::PARTIAL_CONTENT,
            &headers(&[("content-length", "10")]),
            b""
        )
        .is_err()
    );
    let mismatch = headers(&[("content-length", "11"), ("content-range", "bytes 0-9/443")]);
    assert!(parse_get_object(StatusCode::PARTIAL_CONTENT, &mismatch, b"").is_err());

    let invalid_range = "<Error><Code>InvalidRange</Code><Message>The requested range is not satisfiable</Message></Error>";
    let err = parse_get_object(
        StatusCode::RANGE_NOT_SATISFIABLE,
        &headers(&[("content-range", "bytes */443")]),
        invalid_range.as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidRequest);
}

#[test]
fn put_and_upload_part() {
    let h = headers(&[
        ("etag", "\"1b2cf535f27731c974343645a3985328\""),
        ("x-amz-checksum-crc32", "y/Q5Jg=="),
    ]);
    let out = parse_upload_part(OK, &h, b"").unwrap();
    assert_eq!(out.etag.as_str(), "\"1b2cf535f27731c974343645a3985328\"");
    assert_eq!(
        out.checksums.crc(ChecksumAlgorithm::Crc32).unwrap().value,
        ChecksumValue::from_u32(0xCBF4_3926)
    );
    assert!(matches!(
        parse_put_object(OK, &HeaderMap::new(), b""),
        Err(ResponseError::Malformed(_))
    ));
    assert_eq!(
        parse_delete_object(StatusCode::NO_CONTENT, &HeaderMap::new(), b""),
        Ok(())
    );
    assert_eq!(
        parse_abort_multipart_upload(StatusCode::NO_CONTENT, &HeaderMap::new(), b""),
        Ok(())
    );
    let out = parse_create_bucket(OK, &headers(&[("location", "/bucket")]), b"").unwrap();
    assert_eq!(out.location.as_deref(), Some("/bucket"));
}

#[test]
fn malformed_success_bodies_are_typed_errors() {
    let cases: [&[u8]; 6] = [
        b"<ListPartsResult><Part><PartNumber>1</PartNumber>",
        b"<WrongRoot/>",
        b"\xff\xfe<ListPartsResult/>",
        b"<ListPartsResult><IsTruncated>maybe</IsTruncated></ListPartsResult>",
        b"<ListPartsResult><Part><PartNumber>0</PartNumber><Size>1</Size></Part></ListPartsResult>",
        b"<ListPartsResult><Part><PartNumber>1</PartNumber><Size>-5</Size></Part></ListPartsResult>",
    ];
    for body in cases {
        let err = parse_list_parts(OK, &HeaderMap::new(), body).unwrap_err();
        assert!(matches!(err, ResponseError::Malformed(_)), "{err:?}");
        assert!(
            err.to_string().starts_with("malformed ListParts response"),
            "{err}"
        );
    }
}

#[test]
fn list_parts_accepts_motos_response_root_but_not_anything_else() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId>
  <IsTruncated>false</IsTruncated>
  <Part><PartNumber>1</PartNumber><ETag>"abc"</ETag><Size>5242880</Size></Part>
</ListPartsResponse>"#;
    let out = parse_list_parts(OK, &HeaderMap::new(), body.as_bytes()).unwrap();
    assert_eq!(out.parts.len(), 1);
    assert_eq!(out.parts[0].part_number, 1);
    let other = body.replace("ListPartsResponse", "SomethingElse");
    assert!(parse_list_parts(OK, &HeaderMap::new(), other.as_bytes()).is_err());
}

#[test]
fn error_document_without_message_does_not_echo_its_xml() {
    let body = b"<Error><Code>SignatureDoesNotMatch</Code><RequestId>r1</RequestId></Error>";
    let e = s3_protocol::parse_error(http::StatusCode::FORBIDDEN, &HeaderMap::new(), body);
    assert_eq!(e.code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(e.message, "Forbidden");
    assert!(!e.to_string().contains("<Error>"), "{e}");
}

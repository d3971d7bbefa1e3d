//! Property tests: parsers never panic, key encoding round-trips, CRC combination is exact.
// clippy.toml's bans (no clock, files, sockets, environment) are for the library; tests
// and benches drive it from the outside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::disallowed_macros
)]

use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use s3_protocol::*;

type Parser = fn(StatusCode, &HeaderMap, &[u8]) -> Result<(), ResponseError>;

/// Every parser, erased to "did it return".
fn parsers() -> Vec<(&'static str, Parser)> {
    vec![
        ("head", |s, h, b| parse_head_object(s, h, b).map(drop)),
        ("get", |s, h, b| parse_get_object(s, h, b).map(drop)),
        ("put", |s, h, b| parse_put_object(s, h, b).map(drop)),
        ("part", |s, h, b| parse_upload_part(s, h, b).map(drop)),
        ("create", |s, h, b| {
            parse_create_multipart_upload(s, h, b).map(drop)
        }),
        ("complete", |s, h, b| {
            parse_complete_multipart_upload(s, h, b).map(drop)
        }),
        ("abort", parse_abort_multipart_upload),
        ("delete", parse_delete_object),
        ("bucket", |s, h, b| parse_create_bucket(s, h, b).map(drop)),
        ("parts", |s, h, b| parse_list_parts(s, h, b).map(drop)),
        ("uploads", |s, h, b| {
            parse_list_multipart_uploads(s, h, b).map(drop)
        }),
        ("objects", |s, h, b| {
            parse_list_objects_v2(s, h, b).map(drop)
        }),
        ("error", |s, h, b| {
            let _ = parse_error(s, h, b).to_string();
            Ok(())
        }),
    ]
}

/// XML-looking noise built from the element names the parsers look for, so that the
/// generated documents get past the first tag and exercise the deserializers.
fn xmlish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("<ListPartsResult>".to_owned()),
        Just("</ListPartsResult>".to_owned()),
        Just("<ListBucketResult>".to_owned()),
        Just("<ListMultipartUploadsResult>".to_owned()),
        Just("<CompleteMultipartUploadResult>".to_owned()),
        Just("<InitiateMultipartUploadResult>".to_owned()),
        Just("<Error>".to_owned()),
        Just("</Error>".to_owned()),
        Just("<Part>".to_owned()),
        Just("</Part>".to_owned()),
        Just("<Contents>".to_owned()),
        Just("</Contents>".to_owned()),
        Just("<Upload>".to_owned()),
        Just("<PartNumber>".to_owned()),
        Just("</PartNumber>".to_owned()),
        Just("<Size>".to_owned()),
        Just("</Size>".to_owned()),
        Just("<IsTruncated>true</IsTruncated>".to_owned()),
        Just("<Code>SlowDown</Code>".to_owned()),
        Just("<ETag>&quot;x&quot;</ETag>".to_owned()),
        Just("<UploadId>u</UploadId>".to_owned()),
        Just("<Key>k</Key>".to_owned()),
        Just("<CommonPrefixes><Prefix>p</Prefix></CommonPrefixes>".to_owned()),
        Just("<![CDATA[x]]>".to_owned()),
        Just("<!-- c -->".to_owned()),
        Just("<?xml version=\"1.0\"?>".to_owned()),
        Just("&bogus;".to_owned()),
        "[0-9]{1,25}",
        "[ -~]{0,8}",
    ];
    proptest::collection::vec(token, 0..40).prop_map(|v| v.concat().into_bytes())
}

fn status() -> impl Strategy<Value = StatusCode> {
    prop_oneof![
        Just(StatusCode::OK),
        Just(StatusCode::PARTIAL_CONTENT),
        Just(StatusCode::NO_CONTENT),
        (100u16..1000).prop_map(|s| StatusCode::from_u16(s).unwrap()),
    ]
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    let name = prop_oneof![
        Just("content-length"),
        Just("content-range"),
        Just("etag"),
        Just("x-amz-checksum-crc32"),
        Just("x-amz-checksum-crc32c"),
        Just("x-amz-checksum-type"),
        Just("x-amz-mp-parts-count"),
        Just("x-amz-checksum-algorithm"),
        Just("x-amz-meta-x"),
        Just("x-amz-error-code"),
    ];
    let value = prop_oneof![
        "[ -~]{0,30}",
        "[0-9]{1,25}",
        "bytes [0-9]{1,20}-[0-9]{1,20}/[0-9*]{1,20}",
    ];
    proptest::collection::vec((name, value), 0..6).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.append(n, v);
            }
        }
        h
    })
}

/// 512 cases unless `PROPTEST_CASES` (`cargo xtask proptest --cases N`) says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(
        status in status(),
        headers in header_map(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        for (_, parse) in parsers() {
            let _ = parse(status, &headers, &body);
        }
    }

    #[test]
    fn parsers_never_panic_on_xml_like_input(status in status(), headers in header_map(), body in xmlish()) {
        for (name, parse) in parsers() {
            if let Err(e) = parse(status, &headers, &body) {
                // Errors must render; a 2xx failure is either a service error from an
                // <Error> document or a typed malformed-response error.
                let shown = e.to_string();
                prop_assert!(!shown.is_empty(), "{}", name);
            }
        }
    }

    #[test]
    fn header_value_parsers_never_panic(s in "\\PC{0,40}") {
        let _ = ContentRange::parse(&s);
        let _ = ETag::new(s.clone()).kind();
        for a in ChecksumAlgorithm::ALL {
            let _ = CrcValue::parse(a, &s);
        }
        let _ = Checksum::from_base64(ChecksumAlgorithm::Crc32, &s);
    }

    #[test]
    fn key_encoding_round_trips(key in "\\PC{1,60}|[/ +=&?#%~.a-z]{1,30}") {
        let encoded = encode_key(&key);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b)), "{}", encoded);
        let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8().unwrap();
        prop_assert_eq!(decoded.as_ref(), key.as_str());
        prop_assert_eq!(encoded.matches('/').count(), key.matches('/').count());

        // The builders put exactly this path into the request URI.
        let config = S3Config::custom("us-east-1", Endpoint::parse("http://127.0.0.1:9000").unwrap(), Addressing::PathStyle);
        let req = GetObject::new("bucket", key.clone()).build(&config).unwrap();
        prop_assert_eq!(req.uri().path(), format!("/bucket/{encoded}"));
    }
}

//! The per-request and per-byte costs of the wire layer: what signing one request,
//! checksumming one 8 MiB part and parsing the largest ListParts answer cost.
//!
//! Run with `cargo bench -p s3-protocol --bench protocol`. These are micro-benchmarks of
//! pure functions; `cargo xtask bench` measures whole transfers.
// clippy.toml's bans (no clock, files, sockets, environment) are for the library; tests
// and benches drive it from the outside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::disallowed_macros
)]

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use http::{HeaderMap, StatusCode};
use s3_protocol::{
    Addressing, Checksum, ChecksumAlgorithm, ChecksumHasher, Credentials, Endpoint, PartNumber,
    PayloadHash, RequestBody, S3Config, UploadId, UploadPart, parse_list_parts, sign,
};

fn main() {
    divan::main();
}

/// A part size s3tm uses by default.
const PART_BYTES: usize = 8 * 1024 * 1024;

fn config() -> S3Config {
    S3Config::custom(
        "us-east-1",
        Endpoint::parse("http://127.0.0.1:9000").expect("endpoint"),
        Addressing::Auto,
    )
}

fn upload_part(config: &S3Config) -> http::Request<RequestBody> {
    UploadPart {
        bucket: "bench-bucket".into(),
        key: "some/deep/key with spaces/object.bin".into(),
        upload_id: UploadId::new("2~VnQ3b8Yy0nW1l6tq0wJ3cE1mGq0yq7fK"),
        part_number: PartNumber::new(1234).expect("part number"),
        body: RequestBody::External {
            content_length: PART_BYTES as u64,
        },
        checksum: Some(Checksum {
            algorithm: ChecksumAlgorithm::Crc32,
            value: s3_protocol::ChecksumValue::from_u32(0xCBF4_3926),
        }),
        content_md5: None,
    }
    .build(config)
    .expect("request")
}

/// SigV4 header signing of one UploadPart (streamed body, `UNSIGNED-PAYLOAD`): what the
/// driver pays per request on top of building it.
#[divan::bench]
fn sign_upload_part(bencher: Bencher) {
    let config = config();
    let credentials = Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
    );
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    bencher
        .with_inputs(|| upload_part(&config))
        .bench_local_refs(|request| {
            sign(
                request,
                &credentials,
                "us-east-1",
                time,
                PayloadHash::Unsigned,
            )
            .expect("sign")
        });
}

/// Building the same request, for reference: signing cost = the above minus this.
#[divan::bench]
fn build_upload_part(bencher: Bencher) {
    let config = config();
    bencher.bench_local(|| upload_part(&config));
}

/// Throughput of `ChecksumHasher` over one 8 MiB part, fed in 256 KiB slices as the
/// driver feeds it while streaming a body.
#[divan::bench(args = ChecksumAlgorithm::ALL)]
fn checksum_8_mib(bencher: Bencher, algorithm: ChecksumAlgorithm) {
    let data: Vec<u8> = (0..PART_BYTES).map(|i| (i * 131 % 251) as u8).collect();
    bencher
        .counter(BytesCount::new(PART_BYTES))
        .bench_local(|| {
            let mut hasher = ChecksumHasher::new(algorithm);
            for chunk in divan::black_box(&data).chunks(256 * 1024) {
                hasher.update(chunk);
            }
            hasher.value()
        });
}

/// A ListParts answer listing `parts` parts with ETags, sizes and CRC32s, shaped like
/// AWS's (a real server pages at 1,000; 10,000 is the most one upload can have).
fn list_parts_body(parts: u32) -> String {
    let mut xml = String::with_capacity(parts as usize * 260 + 1024);
    xml.push_str(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>bench-bucket</Bucket><Key>some/object.bin</Key>
  <UploadId>2~VnQ3b8Yy0nW1l6tq0wJ3cE1mGq0yq7fK</UploadId>
  <StorageClass>STANDARD</StorageClass><PartNumberMarker>0</PartNumberMarker>
  <NextPartNumberMarker>10000</NextPartNumberMarker><MaxParts>10000</MaxParts>
  <IsTruncated>false</IsTruncated>
"#,
    );
    for n in 1..=parts {
        writeln!(
            xml,
            "  <Part><PartNumber>{n}</PartNumber>\
             <LastModified>2024-11-10T20:48:34.000Z</LastModified>\
             <ETag>&quot;{n:032x}&quot;</ETag><Size>8388608</Size>\
             <ChecksumCRC32>y/Q5Jg==</ChecksumCRC32></Part>"
        )
        .expect("writing to a String");
    }
    xml.push_str(
        "  <ChecksumAlgorithm>CRC32</ChecksumAlgorithm>\
         <ChecksumType>COMPOSITE</ChecksumType>\n</ListPartsResult>",
    );
    xml
}

/// Parsing one ListParts answer of 10,000 parts (a resumed upload at the part limit).
#[divan::bench(sample_count = 50)]
fn parse_list_parts_10000(bencher: Bencher) {
    const PARTS: u32 = 10_000;
    let body = list_parts_body(PARTS);
    let headers = HeaderMap::new();
    bencher.counter(ItemsCount::new(PARTS)).bench_local(|| {
        let out = parse_list_parts(StatusCode::OK, &headers, divan::black_box(body.as_bytes()))
            .expect("parse");
        assert_eq!(out.parts.len(), PARTS as usize);
        out
    });
}

//! SigV4 against the worked examples in AWS's S3 documentation ("Signature Calculations
//! for the Authorization Header" and "Authenticating Requests: Using Query Parameters"):
//! access key AKIAIOSFODNN7EXAMPLE, 2013-05-24T00:00:00Z, us-east-1, bucket examplebucket.
// clippy.toml's bans (no clock, files, sockets, environment) are for the library; tests
// and benches drive it from the outside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::disallowed_macros
)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use s3_protocol::{
    Addressing, ByteRange, Credentials, EMPTY_SHA256, Endpoint, GetObject, PayloadHash,
    RequestBody, S3Config, encode_key, presign, sign,
};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";

fn creds() -> Credentials {
    Credentials::new("AKIAIOSFODNN7EXAMPLE", SECRET, None)
}

/// 2013-05-24T00:00:00Z.
fn time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)
}

/// The global endpoint with virtual-hosted addressing gives examplebucket.s3.amazonaws.com.
fn config() -> S3Config {
    S3Config::custom(
        REGION,
        Endpoint::parse("https://s3.amazonaws.com").unwrap(),
        Addressing::VirtualHosted,
    )
}

fn authorization(req: &Request<RequestBody>) -> &str {
    req.headers()["authorization"].to_str().unwrap()
}

/// AWS prints the header with `,` between components; aws-sigv4 writes `, `. Both are
/// accepted by S3, so the comparison is made on the components themselves.
fn assert_authorization(req: &Request<RequestBody>, documented: &str) {
    fn parts(h: &str) -> Vec<String> {
        let rest = h.strip_prefix("AWS4-HMAC-SHA256 ").expect("algorithm");
        rest.split(',').map(|p| p.trim().to_owned()).collect()
    }
    assert_eq!(
        parts(authorization(req)),
        parts(documented),
        "{}",
        authorization(req)
    );
}

fn get(uri: &str) -> Request<RequestBody> {
    Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(RequestBody::Empty)
        .unwrap()
}

#[test]
fn get_object_with_range() {
    // Built by the crate's own GetObject builder: Host and Range are its only headers.
    let mut req = GetObject {
        range: ByteRange::new(0, 10),
        ..GetObject::new("examplebucket", "test.txt")
    }
    .build(&config())
    .unwrap();
    assert_eq!(
        req.uri().to_string(),
        "https://examplebucket.s3.amazonaws.com/test.txt"
    );
    sign(
        &mut req,
        &creds(),
        REGION,
        time(),
        PayloadHash::Sha256Hex(EMPTY_SHA256.into()),
    )
    .unwrap();
    assert_authorization(
        &req,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
         SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
         Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
    assert_eq!(req.headers()["x-amz-date"], "20130524T000000Z");
    assert_eq!(req.headers()["x-amz-content-sha256"], EMPTY_SHA256);
    assert_eq!(req.headers()["host"], "examplebucket.s3.amazonaws.com");

    // The same request hashed from its (empty) body signs identically.
    let mut again = GetObject {
        range: ByteRange::new(0, 10),
        ..GetObject::new("examplebucket", "test.txt")
    }
    .build(&config())
    .unwrap();
    sign(&mut again, &creds(), REGION, time(), PayloadHash::FromBody).unwrap();
    assert_eq!(authorization(&again), authorization(&req));
}

#[test]
fn put_object_with_payload_hash() {
    let body = Bytes::from_static(b"Welcome to Amazon S3.");
    let uri = format!(
        "https://examplebucket.s3.amazonaws.com/{}",
        encode_key("test$file.text")
    );
    assert_eq!(
        uri,
        "https://examplebucket.s3.amazonaws.com/test%24file.text"
    );
    let mut req = Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header("date", "Fri, 24 May 2013 00:00:00 GMT")
        .header("x-amz-storage-class", "REDUCED_REDUNDANCY")
        .body(RequestBody::Bytes(body))
        .unwrap();
    sign(&mut req, &creds(), REGION, time(), PayloadHash::FromBody).unwrap();
    assert_eq!(
        req.headers()["x-amz-content-sha256"],
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    );
    assert_authorization(
        &req,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
         SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,\
         Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    );
}

#[test]
fn get_bucket_lifecycle() {
    let mut req = get("https://examplebucket.s3.amazonaws.com/?lifecycle");
    sign(&mut req, &creds(), REGION, time(), PayloadHash::FromBody).unwrap();
    assert_authorization(
        &req,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
         SignedHeaders=host;x-amz-content-sha256;x-amz-date,\
         Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    );
}

#[test]
fn get_bucket_list_objects() {
    // Query order on the wire does not matter: the canonical request sorts it.
    for uri in [
        "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
        "https://examplebucket.s3.amazonaws.com/?prefix=J&max-keys=2",
    ] {
        let mut req = get(uri);
        sign(
            &mut req,
            &creds(),
            REGION,
            time(),
            PayloadHash::Sha256Hex(EMPTY_SHA256.into()),
        )
        .unwrap();
        assert_authorization(
            &req,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;x-amz-content-sha256;x-amz-date,\
             Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        );
    }
}

#[test]
fn presigned_get_url() {
    let req = GetObject::new("examplebucket", "test.txt")
        .build(&config())
        .unwrap();
    let url = presign(
        &Method::GET,
        req.uri(),
        &HeaderMap::new(),
        &creds(),
        REGION,
        Duration::from_secs(86_400),
        time(),
    )
    .unwrap();
    assert_eq!(
        url.to_string(),
        "https://examplebucket.s3.amazonaws.com/test.txt\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20130524T000000Z\
         &X-Amz-Expires=86400\
         &X-Amz-SignedHeaders=host\
         &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
}

#[test]
fn presign_expiry_is_bounded() {
    let uri: http::Uri = "https://examplebucket.s3.amazonaws.com/test.txt"
        .parse()
        .unwrap();
    for secs in [0, 604_801] {
        assert!(
            presign(
                &Method::PUT,
                &uri,
                &HeaderMap::new(),
                &creds(),
                REGION,
                Duration::from_secs(secs),
                time()
            )
            .is_err()
        );
    }
    let put = presign(
        &Method::PUT,
        &uri,
        &HeaderMap::new(),
        &creds(),
        REGION,
        Duration::from_secs(604_800),
        time(),
    )
    .unwrap();
    assert!(put.query().unwrap().contains("X-Amz-Expires=604800"));
}

#[test]
fn session_token_and_unsigned_payload() {
    let c = Credentials::new("AKIAIOSFODNN7EXAMPLE", SECRET, Some("TOKEN/+=".into()));
    let mut req = get("https://examplebucket.s3.amazonaws.com/test.txt");
    sign(&mut req, &c, REGION, time(), PayloadHash::Unsigned).unwrap();
    assert_eq!(req.headers()["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
    assert_eq!(req.headers()["x-amz-security-token"], "TOKEN/+=");
    assert!(
        authorization(&req)
            .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,")
    );

    let mut ext = Request::builder()
        .method(Method::PUT)
        .uri("https://examplebucket.s3.amazonaws.com/k")
        .body(RequestBody::External { content_length: 3 })
        .unwrap();
    assert!(sign(&mut ext, &c, REGION, time(), PayloadHash::FromBody).is_err());
    assert!(ext.headers().get("authorization").is_none());

    let mut no_host = Request::builder()
        .uri("/relative")
        .body(RequestBody::Empty)
        .unwrap();
    assert!(sign(&mut no_host, &c, REGION, time(), PayloadHash::Unsigned).is_err());
}

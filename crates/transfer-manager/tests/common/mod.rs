//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use transfer_manager::{Config, Credentials, StateStore, TransferManager, TransferOutcome};

/// A manager for a test server, keeping its checkpoints in `state`.
pub fn manager(
    endpoint: &str,
    access: &str,
    secret: &str,
    region: &str,
    state: &Path,
) -> TransferManager {
    manager_with(endpoint, access, secret, region, state, |_| {})
}

/// [`manager`] with settings adjusted by `tweak`.
pub fn manager_with(
    endpoint: &str,
    access: &str,
    secret: &str,
    region: &str,
    state: &Path,
    tweak: impl FnOnce(&mut Config),
) -> TransferManager {
    let mut cfg = Config::new(region);
    cfg.endpoint_url = Some(endpoint.to_owned());
    cfg.path_style = Some(true);
    cfg.credentials = Some(Credentials::new(access.to_owned(), secret.to_owned(), None));
    cfg.state = StateStore::Dir(state.to_owned());
    cfg.part_size_bytes = 5 << 20;
    cfg.multipart_threshold_bytes = 5 << 20;
    cfg.retry.base_delay = std::time::Duration::from_millis(20);
    cfg.retry.throttle_base_delay = std::time::Duration::from_millis(50);
    cfg.retry.max_delay = std::time::Duration::from_millis(500);
    tweak(&mut cfg);
    TransferManager::new(cfg).expect("manager")
}

/// A file of `size` pseudo-random bytes.
pub fn random_file(dir: &Path, name: &str, size: u64, seed: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, random_bytes(size, seed)).expect("write test file");
    path
}

pub fn sha256(path: &Path) -> String {
    let data = std::fs::read(path).expect("read");
    hex::encode(Sha256::digest(&data))
}

pub const MIB: u64 = 1 << 20;

/// Waits until the transfer has durably done at least `bytes`.
pub async fn wait_for_progress(handle: &transfer_manager::TransferHandle, bytes: u64) {
    let mut rx = handle.progress();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            if rx.borrow_and_update().bytes_done >= bytes {
                return;
            }
            rx.changed()
                .await
                .expect("transfer ended before reaching the wanted progress");
        }
    })
    .await
    .expect("no progress within 60 s");
}

/// Part numbers of the UploadParts the server answered with 200, in order.
pub fn parts_sent(proxy: &s3_testkit::FaultProxy) -> Vec<u32> {
    proxy
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::PUT && r.status == Some(200))
        .filter_map(|r| r.part_number())
        .collect()
}

/// An s3s-fs server with a bucket `bucket`, a temporary directory and a manager for them.
pub struct S3sEnv {
    pub server: s3_testkit::S3sFsServer,
    pub dir: tempfile::TempDir,
    pub tm: TransferManager,
}

pub async fn s3s_env() -> S3sEnv {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tm = manager(
        &server.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &dir.path().join("state"),
    );
    S3sEnv { server, dir, tm }
}

/// An s3s-fs server with a bucket `bucket` behind a fault proxy (which logs every
/// request), a temporary directory and a manager for them through the proxy.
pub struct ProxiedEnv {
    pub server: s3_testkit::S3sFsServer,
    pub proxy: s3_testkit::FaultProxy,
    pub dir: tempfile::TempDir,
    pub tm: TransferManager,
}

/// [`ProxiedEnv`] with the manager's settings adjusted by `tweak`.
pub async fn proxied_s3s_env(tweak: impl FnOnce(&mut Config)) -> ProxiedEnv {
    let server = s3_testkit::start_s3s_fs().await;
    server.create_bucket("bucket").unwrap();
    let proxy = s3_testkit::FaultProxy::start(&server.endpoint()).await;
    let dir = tempfile::tempdir().unwrap();
    let tm = manager_with(
        &proxy.endpoint(),
        server.access_key(),
        server.secret_key(),
        server.region(),
        &dir.path().join("state"),
        tweak,
    );
    ProxiedEnv {
        server,
        proxy,
        dir,
        tm,
    }
}

/// Uploads `src` to `bucket`/`key` and waits for the outcome (the upload must start).
pub async fn upload(
    tm: &TransferManager,
    bucket: &str,
    key: &str,
    src: impl AsRef<Path>,
) -> Result<TransferOutcome, transfer_manager::Error> {
    tm.upload_file(bucket, key, src.as_ref())
        .await
        .expect("the upload starts")
        .join()
        .await
}

/// Downloads `bucket`/`key` to `dest` and waits for the outcome (the download must start).
pub async fn download(
    tm: &TransferManager,
    bucket: &str,
    key: &str,
    dest: impl AsRef<Path>,
) -> Result<TransferOutcome, transfer_manager::Error> {
    tm.download_file(bucket, key, dest.as_ref())
        .await
        .expect("the download starts")
        .join()
        .await
}

/// Uploads `src` to `bucket`/`key`, downloads it to `dest`, and checks the copy is equal.
pub async fn round_trip(tm: &TransferManager, bucket: &str, key: &str, src: &Path, dest: &Path) {
    upload(tm, bucket, key, src).await.unwrap();
    download(tm, bucket, key, dest).await.unwrap();
    assert_eq!(
        sha256(dest),
        sha256(src),
        "the copy differs from the source"
    );
}

/// A server the tests write objects to by hand, with the keys it verifies.
pub struct Server<'a> {
    pub endpoint: &'a str,
    pub access: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
}

impl<'a> Server<'a> {
    /// Writes to the s3s-fs server of `env`.
    pub fn s3s(env: &'a S3sEnv, endpoint: &'a str) -> Self {
        Server {
            endpoint,
            access: env.server.access_key(),
            secret: env.server.secret_key(),
            region: env.server.region(),
        }
    }

    /// Writes to `moto`.
    pub fn moto(moto: &'a s3_testkit::MotoServer, endpoint: &'a str) -> Self {
        Server {
            endpoint,
            access: moto.access_key(),
            secret: moto.secret_key(),
            region: moto.region(),
        }
    }

    async fn send(
        &self,
        req: http::Request<s3_protocol::RequestBody>,
    ) -> http::Response<bytes::Bytes> {
        let creds = s3_protocol::Credentials::new(self.access, self.secret, None);
        s3_testkit::send_signed(req, &creds, self.region)
            .await
            .expect("the test server answers")
    }

    fn config(&self) -> s3_protocol::S3Config {
        s3_protocol::S3Config::custom(
            self.region,
            s3_protocol::Endpoint::parse(self.endpoint).expect("endpoint"),
            s3_protocol::Addressing::PathStyle,
        )
    }

    /// Writes `bucket`/`key` in one PutObject, with its checksum of `checksum` when given
    /// (as `aws s3api put-object --checksum-algorithm` does), and returns the ETag.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        checksum: Option<s3_protocol::ChecksumAlgorithm>,
    ) -> String {
        use s3_protocol as p;
        let body = p::RequestBody::Bytes(bytes::Bytes::from(data.to_vec()));
        let mut put = p::PutObject::new(bucket, key, body);
        put.checksum = checksum.map(|a| p::Checksum::of(a, data));
        let r = self.send(put.build(&self.config()).unwrap()).await;
        p::parse_put_object(r.status(), r.headers(), r.body())
            .expect("PutObject")
            .etag
            .as_str()
            .to_owned()
    }

    /// Writes `bucket`/`key` as a multipart upload of exactly `parts` (which may have any
    /// lengths, as a client sizing parts from a stream makes them), each carrying its
    /// checksum when `checksum` is given, and returns the object's ETag.
    pub async fn put_parts(
        &self,
        bucket: &str,
        key: &str,
        parts: &[Vec<u8>],
        checksum: Option<(s3_protocol::ChecksumAlgorithm, s3_protocol::ChecksumType)>,
    ) -> String {
        use s3_protocol as p;
        let cfg = self.config();
        let mut create = p::CreateMultipartUpload::new(bucket, key);
        create.checksum_algorithm = checksum.map(|(a, _)| a);
        create.checksum_type = checksum.map(|(_, t)| t);
        let r = self.send(create.build(&cfg).unwrap()).await;
        let upload_id = p::parse_create_multipart_upload(r.status(), r.headers(), r.body())
            .expect("CreateMultipartUpload")
            .upload_id;
        let mut completed = Vec::new();
        for (i, bytes) in parts.iter().enumerate() {
            let sum = checksum.map(|(a, _)| s3_protocol::Checksum::of(a, bytes));
            let part = p::UploadPart {
                bucket: bucket.into(),
                key: key.into(),
                upload_id: upload_id.clone(),
                part_number: p::PartNumber::new(i as u32 + 1).unwrap(),
                body: p::RequestBody::Bytes(bytes::Bytes::from(bytes.clone())),
                checksum: sum,
                content_md5: None,
            };
            let r = self.send(part.build(&cfg).unwrap()).await;
            let out = p::parse_upload_part(r.status(), r.headers(), r.body()).expect("UploadPart");
            completed.push(p::CompletedPart {
                part_number: part.part_number,
                etag: out.etag,
                checksum: sum,
            });
        }
        let complete = p::CompleteMultipartUpload {
            bucket: bucket.into(),
            key: key.into(),
            upload_id,
            parts: completed,
            full_object_checksum: None,
        };
        let r = self.send(complete.build(&cfg).unwrap()).await;
        let out = p::parse_complete_multipart_upload(r.status(), r.headers(), r.body())
            .expect("CompleteMultipartUpload");
        out.etag.as_str().to_owned()
    }
}

/// Pseudo-random bytes.
pub fn random_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = Vec::with_capacity(len as usize + 8);
    while (data.len() as u64) < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len as usize);
    data
}

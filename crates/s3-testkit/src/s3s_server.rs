//! An in-process `s3s-fs` server for tests, plain ([`start_s3s_fs`]) or behind the parts
//! fidelity shim ([`start_s3s_fs_with_parts`], see `parts_shim.rs`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{HttpError, HttpResponse, S3};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::parts_shim::{PartsShim, StatusOverride};

const ACCESS_KEY: &str = "S3TMTESTACCESSKEY";
const SECRET_KEY: &str = "s3tm/test+secret=key/for-s3s-fs";
const REGION: &str = "us-east-1";

/// A running `s3s-fs` server. It serves until dropped; dropping it stops the listener and
/// every open connection, then deletes the storage directory.
#[derive(Debug)]
pub struct S3sFsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
    // Declared last so the directory outlives the server task's shutdown.
    root: tempfile::TempDir,
}

/// Short name for [`S3sFsServer`].
pub type S3sFs = S3sFsServer;

impl S3sFsServer {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Access key the server accepts.
    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    /// Secret key the server verifies signatures with. It contains `/`, `+` and `=` on
    /// purpose, as real AWS secrets do.
    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// Region to sign for.
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// Storage directory; each bucket is a subdirectory, each object a file.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Creates a bucket by creating its directory (all `s3s-fs` needs).
    pub fn create_bucket(&self, name: &str) -> io::Result<()> {
        std::fs::create_dir(self.root.path().join(name))
    }

    /// Puts the file at `path` as `bucket`/`key` in one signed PutObject carrying its
    /// checksum of `checksum` (`CRC32`, `SHA256`, ...; case-insensitive), as `aws s3api
    /// put-object --checksum-algorithm` does, so the server keeps and reports it.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, `checksum` names no algorithm, or the server does not
    /// answer 200.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        checksum: &str,
    ) -> io::Result<()> {
        use s3_protocol as p;
        let algorithm = p::ChecksumAlgorithm::parse(checksum).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no checksum {checksum}"),
            )
        })?;
        let data = bytes::Bytes::from(std::fs::read(path)?);
        let mut put = p::PutObject::new(bucket, key, p::RequestBody::Bytes(data.clone()));
        put.checksum = Some(p::Checksum::of(algorithm, &data));
        let config = p::S3Config::custom(
            REGION,
            p::Endpoint::parse(&self.endpoint()).map_err(io::Error::other)?,
            p::Addressing::PathStyle,
        );
        let request = put.build(&config).map_err(io::Error::other)?;
        let credentials = p::Credentials::new(ACCESS_KEY, SECRET_KEY, None);
        let response = crate::send_signed(request, &credentials, REGION).await?;
        if response.status() != http::StatusCode::OK {
            return Err(io::Error::other(format!(
                "PutObject of {key} answered {}",
                response.status()
            )));
        }
        Ok(())
    }
}

impl Drop for S3sFsServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

/// Starts an `s3s-fs` server on `127.0.0.1:0` inside the current tokio runtime.
///
/// # Panics
///
/// When the temporary directory or the listening socket cannot be created; use
/// [`try_start_s3s_fs`] to handle that.
pub async fn start_s3s_fs() -> S3sFsServer {
    match try_start_s3s_fs().await {
        Ok(server) => server,
        Err(e) => panic!("cannot start the s3s-fs test server: {e}"),
    }
}

/// Like [`start_s3s_fs`], returning setup failures.
pub async fn try_start_s3s_fs() -> io::Result<S3sFsServer> {
    let (root, fs) = new_file_system()?;
    let service = PrefixIsNoKey::new(root.path(), s3_service(fs));
    serve(root, service).await
}

/// Starts `s3s-fs` behind a *test fidelity shim* that layers the multipart behaviour of
/// Amazon S3 which `s3s-fs` 0.14 lacks; it is not a server of its own, every operation
/// still goes to `s3s-fs` (signatures verified as in [`start_s3s_fs`]). On top of it:
///
/// - HeadObject / GetObject `?partNumber=N` answer for part N of an object completed
///   through this server: 206, `Content-Range`, the part's length,
///   `x-amz-mp-parts-count`, the object's ETag; N beyond the parts count is 416
///   `InvalidPartNumber`; part 1 of a single-part object is the whole object.
/// - UploadPart verifies `x-amz-checksum-crc32` / `-crc32c` against the bytes received
///   (`BadDigest` otherwise) and echoes the part checksum; CompleteMultipartUpload checks
///   the listed parts and reports the object checksum, `COMPOSITE` (`<base64>-<N>`, S3's
///   default) or `FULL_OBJECT`, as do HEAD/GET under `x-amz-checksum-mode: ENABLED` (with
///   `x-amz-checksum-type`; no checksum for a ranged GET).
/// - `If-Match` on HEAD/GET is compared with the whole object's ETag.
///
/// Only CRC32 and CRC32C are emulated. The part records are kept in memory for the
/// server's lifetime. `src/parts_shim.rs` lists what is and is not emulated.
///
/// # Panics
///
/// When the temporary directory or the listening socket cannot be created; use
/// [`try_start_s3s_fs_with_parts`] to handle that.
pub async fn start_s3s_fs_with_parts() -> S3sFsServer {
    match try_start_s3s_fs_with_parts().await {
        Ok(server) => server,
        Err(e) => panic!("cannot start the s3s-fs test server with the parts shim: {e}"),
    }
}

/// Like [`start_s3s_fs_with_parts`], returning setup failures.
pub async fn try_start_s3s_fs_with_parts() -> io::Result<S3sFsServer> {
    let (root, fs) = new_file_system()?;
    let service = WithStatusOverride(s3_service(PartsShim::new(fs)));
    let service = PrefixIsNoKey::new(root.path(), service);
    serve(root, service).await
}

fn new_file_system() -> io::Result<(tempfile::TempDir, s3s_fs::FileSystem)> {
    let root = tempfile::Builder::new().prefix("s3tm-s3s-fs-").tempdir()?;
    let fs =
        s3s_fs::FileSystem::new(root.path()).map_err(|e| io::Error::other(format!("{e:?}")))?;
    Ok((root, fs))
}

fn s3_service(s3: impl S3) -> S3Service {
    let mut builder = S3ServiceBuilder::new(s3);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    builder.build()
}

/// Sets the status a [`StatusOverride`] response extension asks for, which `s3s` does
/// not do for every operation (HeadObject ignores `S3Response::status`).
#[derive(Clone)]
struct WithStatusOverride(S3Service);

impl Service<http::Request<Incoming>> for WithStatusOverride {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let response = Service::call(&self.0, req);
        Box::pin(async move {
            let mut response = response.await?;
            if let Some(StatusOverride(status)) = response.extensions_mut().remove() {
                *response.status_mut() = status;
            }
            Ok(response)
        })
    }
}

/// S3's answer where s3s-fs has none: a HEAD or GET of a key that is only a prefix of
/// others (`a` while `a/b` exists, a directory in s3s-fs's tree) is 404 `NoSuchKey`, where
/// s3s-fs fails with 500 on reading a directory. Clients depend on it: rclone HEADs the
/// path it is given to tell an object from a prefix, and retries a 500 for a minute and
/// a half. Only a 500 is replaced, so signatures are still checked first.
#[derive(Clone)]
struct PrefixIsNoKey<S> {
    root: PathBuf,
    inner: S,
}

impl<S> PrefixIsNoKey<S> {
    fn new(root: &Path, inner: S) -> Self {
        PrefixIsNoKey {
            root: root.to_path_buf(),
            inner,
        }
    }

    /// Where s3s-fs keeps the object a path-style `/bucket/key` names, for a key that
    /// could be a prefix.
    fn stored_at(&self, path: &str) -> Option<PathBuf> {
        let (bucket, key) = path.strip_prefix('/')?.split_once('/')?;
        let key = percent_encoding::percent_decode_str(key)
            .decode_utf8()
            .ok()?;
        let plain = |seg: &str| !seg.is_empty() && seg != "." && seg != "..";
        (key.split('/').all(plain) && plain(bucket)).then(|| self.root.join(bucket).join(&*key))
    }
}

impl<S> Service<http::Request<Incoming>> for PrefixIsNoKey<S>
where
    S: Service<http::Request<Incoming>, Response = HttpResponse, Error = HttpError>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let head = req.method() == http::Method::HEAD;
        let stored = (head || req.method() == http::Method::GET)
            .then(|| self.stored_at(req.uri().path()))
            .flatten();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            if response.status() != http::StatusCode::INTERNAL_SERVER_ERROR
                || !stored.is_some_and(|p| p.is_dir())
            {
                return Ok(response);
            }
            let body = if head {
                s3s::Body::empty()
            } else {
                s3s::Body::from(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
                     <Message>The specified key does not exist.</Message></Error>"
                        .to_owned(),
                )
            };
            let mut not_found = http::Response::new(body);
            *not_found.status_mut() = http::StatusCode::NOT_FOUND;
            not_found.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/xml"),
            );
            Ok(not_found)
        })
    }
}

/// Serves `service` on `127.0.0.1:0` until the returned server is dropped.
async fn serve<S>(root: tempfile::TempDir, service: S) -> io::Result<S3sFsServer>
where
    S: Service<http::Request<Incoming>, Response = HttpResponse, Error = HttpError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let Ok((stream, _)) = listener.accept().await else {
                // Accept errors (e.g. too many open files) are transient; keep serving.
                tokio::task::yield_now().await;
                continue;
            };
            // As S3's front ends do: a response's head and body go out without waiting
            // for the client's delayed ACK (which held each small GET of some clients
            // for 40 ms).
            let _ = stream.set_nodelay(true);
            let service = service.clone();
            connections.spawn(async move {
                // A client hanging up mid-request is normal in fault tests.
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(S3sFsServer { addr, task, root })
}

//! An in-process `s3s-fs` server for tests.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{HttpError, HttpResponse, S3};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

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
    serve(root, s3_service(fs)).await
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

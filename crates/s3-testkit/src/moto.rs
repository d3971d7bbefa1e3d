//! A `moto` S3 server with SigV4 verification switched on, for the multipart semantics
//! `s3s-fs` lacks (AbortMultipartUpload, ListMultipartUploads, ListParts ETags, If-Match
//! 412, InvalidPart on Complete).
//!
//! moto only verifies signatures once `INITIAL_NO_AUTH_ACTION_COUNT` actions have run
//! unauthenticated. The launcher spends exactly those three actions on IAM calls that
//! create a user, give it an inline allow-all policy and create its access key; from then
//! on every request must be signed with that key.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use s3_protocol::{Addressing, CreateBucket, Credentials, Endpoint, S3Config, encode_query_value};
use tokio::process::{Child, Command};

use crate::client::{send, send_signed};

/// Environment variable naming the `moto_server` executable; `.ci/run` sets it.
pub const MOTO_SERVER_ENV: &str = "S3TM_MOTO_SERVER";

const REGION: &str = "us-east-1";
const USER_NAME: &str = "s3tm";
const ALLOW_ALL_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
// moto routes a request by the service in its credential scope and ignores `Host`, so the
// unauthenticated IAM calls still need an `Authorization` header naming `iam`. Nothing
// checks the signature while the no-auth budget lasts.
const BOOTSTRAP_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
     Credential=S3TMBOOTSTRAP/20240101/us-east-1/iam/aws4_request, \
     SignedHeaders=host, Signature=0000";
// Cold Python imports on a loaded 2-core machine (cargo building next door) take seconds.
const START_TIMEOUT: Duration = Duration::from_secs(60);
// Picking a free port and handing it to moto races with other processes doing the same.
const PORT_ATTEMPTS: usize = 3;

/// Why moto could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    /// No `moto_server` executable was found; the message lists where it was looked for.
    #[error(
        "moto_server not found (looked at {searched}); run `cargo xtask test` once, or set S3TM_MOTO_SERVER"
    )]
    NotFound {
        /// The places searched, in order.
        searched: String,
    },
    /// A local I/O step failed (temp dir, log file, spawning the process).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The process exited or never answered; `log` is the tail of its output.
    #[error("moto_server did not start: {reason}\n--- moto log (tail) ---\n{log}")]
    Start {
        /// What went wrong.
        reason: String,
        /// Last lines of moto's stdout and stderr.
        log: String,
    },
    /// A request to moto (IAM bootstrap, CreateBucket) got an unexpected answer.
    #[error("{step}: HTTP {status}: {body}")]
    Request {
        /// The operation.
        step: &'static str,
        /// HTTP status received (0 when no response arrived).
        status: u16,
        /// Response body, or the transport error.
        body: String,
    },
}

/// A running `moto_server` child process with an IAM access key that can do anything.
///
/// The process is killed when this value is dropped. Each server starts empty; starting
/// one takes about a second (Python startup), so tests that need several buckets should
/// share a server rather than start one per bucket.
#[derive(Debug)]
pub struct MotoServer {
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
    // Declared before the log directory so the process dies before its log is deleted.
    child: Child,
    log_dir: tempfile::TempDir,
}

impl MotoServer {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Access key id of the IAM user created at startup.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Its secret access key.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Region to sign for.
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// The access key and secret as `s3-protocol` credentials.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(&self.access_key, &self.secret_key, None)
    }

    /// Path-style configuration for this server (moto on an IP address needs path-style).
    pub fn s3_config(&self) -> S3Config {
        let endpoint = Endpoint::parse(&self.endpoint())
            .unwrap_or_else(|e| panic!("moto endpoint {} does not parse: {e}", self.endpoint()));
        S3Config::custom(REGION, endpoint, Addressing::PathStyle)
    }

    /// File receiving moto's stdout and stderr (one line per request); read it when a test
    /// needs to know what moto did.
    pub fn log_path(&self) -> PathBuf {
        self.log_dir.path().join("moto.log")
    }

    /// Creates a bucket with a signed CreateBucket request.
    ///
    /// # Errors
    ///
    /// When the request fails or moto answers anything but 200.
    pub async fn create_bucket(&self, name: &str) -> Result<(), MotoError> {
        let request = CreateBucket {
            bucket: name.to_owned(),
        }
        .build(&self.s3_config())
        .map_err(|e| MotoError::Request {
            step: "CreateBucket",
            status: 0,
            body: e.to_string(),
        })?;
        let response = send_signed(request, &self.credentials(), REGION)
            .await
            .map_err(|e| MotoError::Request {
                step: "CreateBucket",
                status: 0,
                body: e.to_string(),
            })?;
        if response.status() != StatusCode::OK {
            return Err(MotoError::Request {
                step: "CreateBucket",
                status: response.status().as_u16(),
                body: String::from_utf8_lossy(response.body()).into_owned(),
            });
        }
        Ok(())
    }
}

/// True when a test needing moto must fail rather than skip: under CI (see [`in_ci`]).
pub fn moto_required() -> bool {
    in_ci()
}

/// Whether this runs under CI: `CI` set to anything but empty, `0` or `false` (GitHub
/// Actions and GitLab set `true`, others `1`). A test that cannot run must then fail
/// instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Where `moto_server` is: `$S3TM_MOTO_SERVER`, else
/// `<workspace>/target/moto-venv/bin/moto_server` (where `cargo xtask test` installs the
/// pinned version), else `moto_server` on `PATH`.
///
/// # Errors
///
/// [`MotoError::NotFound`] listing the places searched.
pub fn find_moto_server() -> Result<PathBuf, MotoError> {
    locate(
        std::env::var_os(MOTO_SERVER_ENV).map(PathBuf::from),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/moto-venv/bin/moto_server"),
        std::env::var_os("PATH").as_deref(),
    )
}

/// [`find_moto_server`] with its inputs passed in, so tests need not change the process
/// environment.
fn locate(
    explicit: Option<PathBuf>,
    venv: &Path,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, MotoError> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path);
        }
        // An explicit setting that points nowhere is a misconfiguration, not a cue to
        // silently pick another moto.
        return Err(MotoError::NotFound {
            searched: format!("${MOTO_SERVER_ENV}={}", path.display()),
        });
    }
    if venv.is_file() {
        return Ok(venv.to_path_buf());
    }
    if let Some(found) = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
    {
        return Ok(found);
    }
    Err(MotoError::NotFound {
        searched: format!("{}, moto_server on PATH", venv.display()),
    })
}

/// Starts `moto_server` on a free port of `127.0.0.1`, waits until it answers, and
/// creates the IAM user and access key; after this moto verifies SigV4 on every request.
///
/// # Errors
///
/// [`MotoError::NotFound`] when there is no `moto_server` (see [`find_moto_server`]);
/// other variants when it is there but does not come up.
pub async fn start_moto() -> Result<MotoServer, MotoError> {
    let program = find_moto_server()?;
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        match launch(&program).await {
            Ok(server) => return Ok(server),
            Err(Launch::PortTaken(e)) => last_error = Some(e),
            Err(Launch::Failed(e)) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| MotoError::Start {
        reason: "no attempt made".to_owned(),
        log: String::new(),
    }))
}

/// [`start_moto`] for a test that needs moto: `None` (the test should return early) when
/// moto is not installed and not required, after printing a loud `SKIPPED` line to stderr.
///
/// # Panics
///
/// When moto is not installed under `CI=true` (see [`moto_required`]), and whenever moto
/// is installed but fails to start: a broken moto must not look like a skipped test.
pub async fn moto_or_skip(test_name: &str) -> Option<MotoServer> {
    match start_moto().await {
        Ok(server) => Some(server),
        Err(e @ MotoError::NotFound { .. }) => {
            if moto_required() {
                panic!("{test_name}: CI=true requires moto, but {e}");
            }
            // Written to the stderr handle directly: libtest captures `eprintln!` output
            // of passing tests, which would hide the skip.
            let _ = writeln!(
                io::stderr(),
                "SKIPPED {test_name}: moto_server not found (run `cargo xtask test` once, or set {MOTO_SERVER_ENV})"
            );
            None
        }
        Err(e) => panic!("{test_name}: {e}"),
    }
}

enum Launch {
    // Someone else bound the port between our probe and moto's bind; try another port.
    PortTaken(MotoError),
    Failed(MotoError),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> MotoError {
    let context = context.into();
    move |source| MotoError::Io { context, source }
}

async fn launch(program: &Path) -> Result<MotoServer, Launch> {
    let fail = Launch::Failed;
    let log_dir = tempfile::Builder::new()
        .prefix("s3tm-moto-")
        .tempdir()
        .map_err(io_err("creating moto's log directory"))
        .map_err(fail)?;
    let log_path = log_dir.path().join("moto.log");
    let log = std::fs::File::create(&log_path)
        .map_err(io_err("creating moto's log file"))
        .map_err(fail)?;
    let log_err = log
        .try_clone()
        .map_err(io_err("duplicating moto's log handle"))
        .map_err(fail)?;
    let port = free_port().map_err(fail)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let child = Command::new(program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true)
        .spawn()
        .map_err(io_err(format!("spawning {}", program.display())))
        .map_err(fail)?;
    let mut server = MotoServer {
        addr,
        access_key: String::new(),
        secret_key: String::new(),
        child,
        log_dir,
    };

    wait_until_answering(&mut server).await?;
    let (access_key, secret_key) = bootstrap_iam(&server).await.map_err(fail)?;
    server.access_key = access_key;
    server.secret_key = secret_key;
    Ok(server)
}

fn free_port() -> Result<u16, MotoError> {
    let listener =
        StdTcpListener::bind(("127.0.0.1", 0)).map_err(io_err("finding a free port for moto"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("finding a free port for moto"))?
        .port();
    Ok(port)
}

async fn wait_until_answering(server: &mut MotoServer) -> Result<(), Launch> {
    let deadline = Instant::now() + START_TIMEOUT;
    // `/moto-api/` is moto's own control API: probing it does not spend any of the
    // unauthenticated actions that the IAM bootstrap needs.
    let probe_uri = format!("{}/moto-api/data.json", server.endpoint());
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = log_tail(&server.log_path());
            let port_taken = log.contains("Address already in use");
            let error = MotoError::Start {
                reason: format!("process exited with {status}"),
                log,
            };
            return Err(if port_taken {
                Launch::PortTaken(error)
            } else {
                Launch::Failed(error)
            });
        }
        let probe = Request::get(&probe_uri)
            .body(s3_protocol::RequestBody::Empty)
            .map_err(|e| {
                Launch::Failed(MotoError::Request {
                    step: "readiness probe",
                    status: 0,
                    body: e.to_string(),
                })
            })?;
        if let Ok(response) = send(probe).await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Launch::Failed(MotoError::Start {
                reason: format!(
                    "no answer on {} within {START_TIMEOUT:?}",
                    server.endpoint()
                ),
                log: log_tail(&server.log_path()),
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The three unauthenticated actions: CreateUser, PutUserPolicy, CreateAccessKey.
async fn bootstrap_iam(server: &MotoServer) -> Result<(String, String), MotoError> {
    iam_call(
        server,
        "CreateUser",
        &[("Action", "CreateUser"), ("UserName", USER_NAME)],
    )
    .await?;
    iam_call(
        server,
        "PutUserPolicy",
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", USER_NAME),
            ("PolicyName", "s3tm-allow-all"),
            ("PolicyDocument", ALLOW_ALL_POLICY),
        ],
    )
    .await?;
    let body = iam_call(
        server,
        "CreateAccessKey",
        &[("Action", "CreateAccessKey"), ("UserName", USER_NAME)],
    )
    .await?;
    let body = String::from_utf8_lossy(&body);
    match (
        xml_text(&body, "AccessKeyId"),
        xml_text(&body, "SecretAccessKey"),
    ) {
        (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        _ => Err(MotoError::Request {
            step: "CreateAccessKey",
            status: 200,
            body: format!("no AccessKeyId/SecretAccessKey in: {body}"),
        }),
    }
}

/// One IAM Query-API call: a form-encoded POST to the server root.
async fn iam_call(
    server: &MotoServer,
    step: &'static str,
    params: &[(&str, &str)],
) -> Result<Bytes, MotoError> {
    let mut form = String::from("Version=2010-05-08");
    for (name, value) in params {
        form.push('&');
        form.push_str(name);
        form.push('=');
        form.push_str(&encode_query_value(value));
    }
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/", server.endpoint()))
        .header(header::HOST, server.addr.to_string())
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header(header::AUTHORIZATION, BOOTSTRAP_AUTHORIZATION)
        .body(s3_protocol::RequestBody::Bytes(Bytes::from(form)))
        .map_err(|e| MotoError::Request {
            step,
            status: 0,
            body: e.to_string(),
        })?;
    let response = send(request).await.map_err(|e| MotoError::Request {
        step,
        status: 0,
        body: e.to_string(),
    })?;
    if response.status() != StatusCode::OK {
        return Err(MotoError::Request {
            step,
            status: response.status().as_u16(),
            body: String::from_utf8_lossy(response.body()).into_owned(),
        });
    }
    Ok(response.into_body())
}

/// Text of the first `<tag>…</tag>` (IAM's responses are flat and unescaped for these).
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..end])
}

/// Last 4 KiB of the log, for error messages.
fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 4096;
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("(cannot open {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut tail = Vec::new();
    let _ = file.read_to_end(&mut tail);
    String::from_utf8_lossy(&tail).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_prefers_env_then_venv_then_path() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv/bin/moto_server");
        let on_path = dir.path().join("bin/moto_server");
        let explicit = dir.path().join("explicit/moto_server");
        for file in [&venv, &on_path, &explicit] {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, "#!/bin/sh\n").unwrap();
        }
        let path_var =
            std::env::join_paths([dir.path().join("nowhere"), dir.path().join("bin")]).unwrap();
        let path_var = Some(path_var.as_os_str());

        assert_eq!(
            locate(Some(explicit.clone()), &venv, path_var).unwrap(),
            explicit
        );
        assert_eq!(locate(None, &venv, path_var).unwrap(), venv);
        let no_venv = dir.path().join("no-venv/moto_server");
        assert_eq!(locate(None, &no_venv, path_var).unwrap(), on_path);

        let missing = locate(None, &no_venv, None).unwrap_err();
        assert!(matches!(missing, MotoError::NotFound { .. }));
        assert!(
            missing.to_string().contains("S3TM_MOTO_SERVER"),
            "{missing}"
        );
        // A wrong explicit path is reported, not papered over by the venv.
        let wrong = locate(Some(dir.path().join("typo")), &venv, path_var).unwrap_err();
        assert!(wrong.to_string().contains("typo"), "{wrong}");
    }

    #[test]
    fn xml_text_finds_access_key() {
        let body = "<CreateAccessKeyResponse><CreateAccessKeyResult><AccessKey>\
            <UserName>s3tm</UserName><AccessKeyId>AKIAEXAMPLE</AccessKeyId>\
            <SecretAccessKey>abc/def+g</SecretAccessKey></AccessKey></CreateAccessKeyResult>\
            </CreateAccessKeyResponse>";
        assert_eq!(xml_text(body, "AccessKeyId"), Some("AKIAEXAMPLE"));
        assert_eq!(xml_text(body, "SecretAccessKey"), Some("abc/def+g"));
        assert_eq!(xml_text(body, "Missing"), None);
    }
}

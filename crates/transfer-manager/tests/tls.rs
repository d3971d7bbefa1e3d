//! HTTPS to a server whose certificate comes from a private authority: trusted through a
//! CA bundle (`Config::ca_bundle`, as `AWS_CA_BUNDLE` sets it), refused without one, and
//! a bad bundle is a clear error. The server is s3s-fs behind a TLS terminator that uses
//! the certificates in `tests/fixtures` (see its README).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use transfer_manager::ErrorKind;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Accepts TLS on 127.0.0.1 with the `localhost` certificate and passes the bytes on to
/// `upstream` (host:port). Returns the port.
async fn tls_terminator(upstream: String) -> u16 {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("localhost.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("localhost.key")).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to do.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

struct Tls {
    server: s3_testkit::S3sFsServer,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Tls {
    async fn new() -> Tls {
        let server = s3_testkit::start_s3s_fs().await;
        server.create_bucket("bucket").unwrap();
        let upstream = server
            .endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let port = tls_terminator(upstream).await;
        Tls {
            server,
            endpoint: format!("https://localhost:{port}"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn manager(
        &self,
        ca_bundle: Option<PathBuf>,
    ) -> Result<transfer_manager::TransferManager, transfer_manager::Error> {
        let s = &self.server;
        let mut cfg = transfer_manager::Config::new(s.region());
        cfg.endpoint_url = Some(self.endpoint.clone());
        cfg.path_style = Some(true);
        cfg.credentials = Some(transfer_manager::Credentials::new(
            s.access_key().to_owned(),
            s.secret_key().to_owned(),
            None,
        ));
        cfg.state = transfer_manager::StateStore::Dir(self.dir.path().join("state"));
        cfg.part_size_bytes = 5 * MIB;
        cfg.multipart_threshold_bytes = 5 * MIB;
        cfg.retry.max_attempts = 2;
        cfg.retry.base_delay = std::time::Duration::from_millis(10);
        cfg.ca_bundle = ca_bundle;
        transfer_manager::TransferManager::new(cfg)
    }
}

#[tokio::test]
async fn a_private_authority_is_trusted_through_the_ca_bundle() {
    let env = Tls::new().await;
    let tm = env.manager(Some(fixture("test-ca.pem"))).unwrap();
    let src = random_file(env.dir.path(), "src", 12 * MIB, 51);
    round_trip(&tm, "bucket", "k", &src, &env.dir.path().join("dest")).await;
}

#[tokio::test]
async fn without_the_bundle_the_certificate_is_refused_with_the_way_out() {
    let env = Tls::new().await;
    let tm = env.manager(None).unwrap();
    let src = random_file(env.dir.path(), "src", 1000, 52);
    let err = upload(&tm, "bucket", "k", &src).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("certificate") && msg.contains("AWS_CA_BUNDLE"),
        "the error should say the certificate was refused and how to trust it: {msg}"
    );
}

#[tokio::test]
async fn a_missing_or_empty_bundle_is_a_clear_error() {
    let env = Tls::new().await;
    let missing = env.dir.path().join("no-such-ca.pem");
    let err = env.manager(Some(missing.clone())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&missing.display().to_string()) && msg.contains("cannot be read"),
        "{msg}"
    );

    let empty = env.dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = env.manager(Some(empty)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("holds no certificate"), "{err}");
}

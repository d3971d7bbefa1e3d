//! Test harness for s3tm: real S3 servers the tests can talk to, and a proxy that breaks
//! the traffic between client and server on purpose.
//!
//! - [`start_s3s_fs`]: an in-process `s3s-fs` server on `127.0.0.1`, verifying SigV4
//!   signatures, storing objects in a temporary directory (path-style addressing).
//! - [`start_s3s_fs_with_parts`]: the same `s3s-fs` behind a test fidelity shim, not a
//!   server of its own, layering the S3 behaviour `s3s-fs` lacks: `partNumber` on
//!   HEAD/GET (real part boundaries), verified and echoed part CRCs, composite and
//!   full-object checksums of multipart objects, `If-Match` on HEAD/GET.
//! - [`start_moto`] / [`moto_or_skip`]: a `moto_server` child process with SigV4
//!   verification on, for the multipart semantics `s3s-fs` lacks. `cargo xtask test`
//!   installs a pinned moto into `<workspace>/target/moto-venv`; under CI ([`in_ci`]) a
//!   test needing moto fails without it.
//! - [`FaultProxy`]: an HTTP/1.1 proxy injecting error responses, resets, truncated
//!   bodies, lost responses and latency per request, with a log of what was sent.
//! - [`send_signed`]: a small signed client for test setup and assertions.

#![forbid(unsafe_code)]

mod client;
mod fault_proxy;
mod moto;
mod parts_shim;
mod s3s_server;

pub use client::{send, send_signed};
pub use fault_proxy::{ALWAYS, BodyBytes, FaultProxy, LoggedRequest, Matcher, RuleId};
pub use moto::{
    MOTO_SERVER_ENV, MotoError, MotoServer, find_moto_server, in_ci, moto_or_skip, moto_required,
    start_moto,
};
pub use s3s_server::{
    S3sFs, S3sFsServer, start_s3s_fs, start_s3s_fs_with_parts, try_start_s3s_fs,
    try_start_s3s_fs_with_parts,
};

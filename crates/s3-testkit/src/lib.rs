//! Test harness for s3tm: real S3 servers the tests can talk to.
//!
//! - [`start_s3s_fs`]: an in-process `s3s-fs` server on `127.0.0.1`, verifying SigV4
//!   signatures, storing objects in a temporary directory (path-style addressing).

#![forbid(unsafe_code)]

mod s3s_server;

pub use s3s_server::{S3sFs, S3sFsServer, start_s3s_fs, try_start_s3s_fs};

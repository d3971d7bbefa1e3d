//! The `s3tm` command line lives in `src/main.rs`; this library target holds no code.
//!
//! It exists so that `cargo test` compiles the library example in the workspace README
//! as a doctest (rustdoc tests only library targets), keeping the README true.
#![forbid(unsafe_code)]

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

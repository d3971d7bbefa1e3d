//! s3-protocol (skeleton).

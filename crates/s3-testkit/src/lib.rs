//! s3-testkit (skeleton).

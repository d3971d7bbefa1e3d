//! resume-store (skeleton).

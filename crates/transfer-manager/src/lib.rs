//! transfer-manager (skeleton).

//! transfer-core (skeleton).

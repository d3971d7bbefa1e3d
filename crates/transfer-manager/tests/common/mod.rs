//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use transfer_manager::{Config, Credentials, StateStore, TransferManager};

/// A manager for a test server, keeping its checkpoints in `state`.
pub fn manager(
    endpoint: &str,
    access: &str,
    secret: &str,
    region: &str,
    state: &Path,
) -> TransferManager {
    let mut cfg = Config::new(region);
    cfg.endpoint_url = Some(endpoint.to_owned());
    cfg.path_style = Some(true);
    cfg.credentials = Some(Credentials::new(access.to_owned(), secret.to_owned(), None));
    cfg.state = StateStore::Dir(state.to_owned());
    cfg.part_size_bytes = 5 << 20;
    cfg.multipart_threshold_bytes = 5 << 20;
    cfg.retry.base_delay = std::time::Duration::from_millis(20);
    cfg.retry.throttle_base_delay = std::time::Duration::from_millis(50);
    cfg.retry.max_delay = std::time::Duration::from_millis(500);
    TransferManager::new(cfg).expect("manager")
}

/// A file of `size` pseudo-random bytes.
pub fn random_file(dir: &Path, name: &str, size: u64, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = Vec::with_capacity(size as usize + 8);
    while (data.len() as u64) < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size as usize);
    std::fs::write(&path, &data).expect("write test file");
    path
}

pub fn sha256(path: &Path) -> String {
    let data = std::fs::read(path).expect("read");
    hex::encode(Sha256::digest(&data))
}

pub const MIB: u64 = 1 << 20;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use resume_store::ResumeStore;
use s3_protocol::Credentials;
use transfer_core::{CancelPolicy, ChecksumAlgorithm, MIB, RetryConfig};

use crate::aws_config::{self, Overrides};
use crate::{Error, ErrorKind};

/// Where checkpoints are kept.
#[derive(Clone, Default)]
pub enum StateStore {
    /// A [`resume_store::FileStore`] in `$S3TM_STATE_DIR` or the platform's data
    /// directory (`~/.local/share/s3tm/transfers` on Linux). The default.
    #[default]
    Default,
    /// A [`resume_store::FileStore`] in this directory.
    Dir(PathBuf),
    /// Any store, for example [`resume_store::MemoryStore`] for no persistence.
    Custom(Arc<dyn ResumeStore>),
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateStore::Default => f.write_str("Default"),
            StateStore::Dir(d) => f.debug_tuple("Dir").field(d).finish(),
            StateStore::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Settings of a [`TransferManager`](crate::TransferManager).
///
/// Start from [`Config::from_env`] (what the AWS CLI would use) or [`Config::new`], then
/// adjust fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Custom endpoint (`http://127.0.0.1:9000`, a Ceph RGW, MinIO, ...); AWS's regional
    /// endpoint when `None`.
    pub endpoint_url: Option<String>,
    /// Region used for signing.
    pub region: String,
    /// Force path-style (`true`) or virtual-hosted (`false`) addressing; chosen per bucket
    /// and endpoint when `None` (path-style for IP addresses and localhost).
    pub path_style: Option<bool>,
    /// Credentials; requests are sent unsigned (anonymous) when `None`.
    pub credentials: Option<Credentials>,
    /// Requests in flight per upload (default 8). Each holds one part in memory, so an
    /// upload holds at most this × `part_size_bytes` of the file, and never more than
    /// `max_memory_bytes`.
    pub max_in_flight_per_upload: usize,
    /// Ranged GETs in flight per download (default 16). A range streams to the file and
    /// holds at most a few MiB, so downloads can afford more than uploads; and the MD5
    /// of a multipart ETag is hashed across ranges side by side in SIMD lanes (8 or 16),
    /// which more ranges keep full.
    pub max_in_flight_per_download: usize,
    /// Requests in flight across all transfers of the manager (default 64).
    pub max_in_flight_total: usize,
    /// Part and range size asked for (default 8 MiB; raised as S3's limits require).
    pub part_size_bytes: u64,
    /// Memory the part buffers of one upload may take (default 128 MiB), whatever the
    /// part size: an upload keeps only as many parts in flight as fit (at least one), and
    /// a part larger than this alone is not held in memory but streamed from the file,
    /// after a first pass over it computes its checksum (the file is read twice, and a
    /// change between the two reads fails the part). Streams (`upload_reader`,
    /// `upload_stream`) cannot be read twice and hold their parts whole: as many as fit,
    /// or one alone when a part is larger. A download into a writer holds the ranges
    /// received ahead of its write position within this too (one range at least).
    pub max_memory_bytes: u64,
    /// Files this size or larger are uploaded in parts (default 8 MiB).
    pub multipart_threshold_bytes: u64,
    /// Per-part checksum of uploads (default CRC32; `None` sends none).
    pub checksum: Option<ChecksumAlgorithm>,
    /// What cancel does to a multipart upload (default: abort it).
    pub cancel_policy: CancelPolicy,
    /// Retries and backoff.
    pub retry: RetryConfig,
    /// Where checkpoints go.
    pub state: StateStore,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Longest silence allowed of a request (default 60 s): no request body bytes
    /// taken by the connection, no response headers after the last of them, or no
    /// response body bytes. A part may take any time to cross a slow link as long as its
    /// bytes keep moving.
    pub read_timeout: Duration,
    /// How long a pause waits for the parts and ranges in flight (default 5 s). Those
    /// still running then are cut off and sent again on resume, so a pause on a slow link
    /// takes seconds, not the minutes a part may need; [`PauseReport`] says how much.
    ///
    /// [`PauseReport`]: crate::PauseReport
    pub pause_timeout: Duration,
    /// A PEM file of the certificate authorities to trust instead of the built-in (Mozilla)
    /// roots, for servers with certificates from a private authority.
    pub ca_bundle: Option<PathBuf>,
    /// A cap on the bytes all transfers of the manager move per second, uploads and
    /// downloads together (default: none). Body bytes are counted as they cross the
    /// wire, through one token bucket holding a tenth of a second of rate, so the flow is
    /// smooth at the second scale. At least
    /// [`MIN_BANDWIDTH_LIMIT_BYTES_PER_SEC`](crate::MIN_BANDWIDTH_LIMIT_BYTES_PER_SEC).
    pub bandwidth_limit_bytes_per_sec: Option<u64>,
}

impl Config {
    /// Sets the requests in flight of every transfer, upload or download.
    pub fn set_max_in_flight(&mut self, requests: usize) {
        self.max_in_flight_per_upload = requests;
        self.max_in_flight_per_download = requests;
    }

    /// Defaults for `region`, with no credentials and AWS's endpoint.
    pub fn new(region: impl Into<String>) -> Self {
        Config {
            endpoint_url: None,
            region: region.into(),
            path_style: None,
            credentials: None,
            max_in_flight_per_upload: 8,
            max_in_flight_per_download: 16,
            max_in_flight_total: 64,
            part_size_bytes: 8 * MIB,
            max_memory_bytes: transfer_core::DEFAULT_MEMORY_BUDGET_BYTES,
            multipart_threshold_bytes: 8 * MIB,
            checksum: Some(ChecksumAlgorithm::Crc32),
            cancel_policy: CancelPolicy::Abort,
            retry: RetryConfig::default(),
            state: StateStore::Default,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            pause_timeout: Duration::from_secs(5),
            ca_bundle: None,
            bandwidth_limit_bytes_per_sec: None,
        }
    }

    /// Settings as the AWS CLI reads them: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL(_S3)`,
    /// `AWS_PROFILE`, `AWS_CA_BUNDLE` and the shared `~/.aws/credentials` and `~/.aws/config`
    /// files (`ca_bundle` among the profile's settings), with
    /// the CLI's precedence. `profile` overrides `AWS_PROFILE` as `--profile` does.
    pub fn from_env(profile: Option<&str>) -> Result<Self, Error> {
        let overrides = Overrides {
            profile,
            region: None,
            endpoint_url: None,
        };
        let s = aws_config::resolve_from_process(&overrides)
            .map_err(|e| Error::with_source(ErrorKind::InvalidInput, e.to_string(), e))?;
        let mut cfg = Config::new(s.region.clone().unwrap_or_else(|| "us-east-1".to_owned()));
        cfg.endpoint_url = s.endpoint_url.clone();
        cfg.path_style = s.path_style;
        cfg.ca_bundle = s.ca_bundle.clone();
        if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) {
            cfg.credentials = Some(Credentials::new(
                id.clone(),
                secret.clone(),
                s.session_token.clone(),
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret_or_token() {
        let mut cfg = Config::new("eu-west-1");
        cfg.credentials = Some(Credentials::new(
            "AKIDEXAMPLE".to_owned(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            Some("SESSIONTOKENSECRET".to_owned()),
        ));
        let shown = format!("{cfg:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(!shown.contains("SESSIONTOKENSECRET"), "{shown}");
    }
}

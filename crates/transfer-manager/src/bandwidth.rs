//! The bandwidth cap (`Config::bandwidth_limit_bytes_per_sec`, `--bwlimit`): one token
//! bucket shared by every request of a manager, charged for every body frame sent or
//! received, in both directions together.
//!
//! A frame is charged after it moves; a charge that takes the bucket below zero is a
//! debt that the charging request waits off before its next frame. So the long-run rate
//! is the limit exactly, concurrent requests share it (each waits for the debt standing
//! when it charged), and the bucket holds at most a tenth of a second of rate (never
//! less than two frames), which keeps the flow smooth at the second scale.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::body::FRAME;

/// The smallest limit accepted: below it one frame alone would stall a request for
/// seconds, close to the read timeout.
pub const MIN_BANDWIDTH_LIMIT_BYTES_PER_SEC: u64 = 64 << 10;

/// A token bucket in bytes.
#[derive(Debug)]
pub(crate) struct Bandwidth {
    rate: f64,
    burst: f64,
    /// Tokens (negative: debt), and when they were last counted.
    state: Mutex<(f64, Instant)>,
}

impl Bandwidth {
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 10.0).max(2.0 * FRAME as f64);
        Bandwidth {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Charges `len` bytes that just moved; returns how long to wait before moving more.
    pub(crate) fn charge(&self, len: usize) -> Duration {
        self.charge_at(len, Instant::now())
    }

    fn charge_at(&self, len: usize, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst) - len as f64;
        *last = now;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_kept_over_time_whatever_the_frames() {
        let b = Bandwidth::new(1 << 20);
        let start = Instant::now();
        let mut now = start;
        let mut moved = 0u64;
        // 20 MiB in frames of odd sizes, each sent as soon as the bucket allows.
        for i in 0..400u64 {
            let len = 10_000 + (i * 7919 % 90_000) as usize;
            moved += len as u64;
            now += b.charge_at(len, now);
        }
        let rate = moved as f64 / (now - start).as_secs_f64();
        let limit = f64::from(1u32 << 20);
        assert!(
            (rate - limit).abs() / limit < 0.01,
            "{rate} bytes/s for a limit of {limit}"
        );
    }

    #[test]
    fn concurrent_requests_share_the_rate_and_a_pause_earns_only_the_burst() {
        let b = Bandwidth::new(1 << 20);
        let t0 = Instant::now();
        // The bucket starts full: the first tenth of a second goes through at once.
        assert_eq!(b.charge_at(100 << 10, t0), Duration::ZERO);
        // Four requests charge a frame each at once: each waits for the debt standing.
        let waits: Vec<Duration> = (0..4).map(|_| b.charge_at(FRAME, t0)).collect();
        assert!(waits.windows(2).all(|w| w[0] < w[1]), "{waits:?}");
        let last = waits[3].as_secs_f64();
        let debt = ((100 << 10) + 4 * FRAME) as f64 - b.burst;
        let expected = debt / f64::from(1u32 << 20);
        assert!((last - expected).abs() < 1e-6, "{last} vs {expected}");
        // An hour of silence earns no more than the burst.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.charge_at(100 << 10, later), Duration::ZERO);
        assert!(b.charge_at(100 << 10, later) > Duration::ZERO);
    }
}

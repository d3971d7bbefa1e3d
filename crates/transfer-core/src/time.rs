use std::ops::Add;
use std::time::Duration;

/// A point on the driver's monotonic clock.
///
/// The machines never read a clock: the driver picks an origin (for example the
/// `Instant` at which it started) and passes every `now` as the time elapsed since
/// it. Tests use a simulated clock that jumps from deadline to deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(Duration);

impl Time {
    /// The origin of the driver's clock.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The time `elapsed` after the driver's origin.
    pub const fn from_duration(elapsed: Duration) -> Self {
        Time(elapsed)
    }

    /// The time elapsed since the driver's origin.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this time is (zero if it is not later).
    pub fn saturating_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, rhs: Duration) -> Time {
        Time(self.0.saturating_add(rhs))
    }
}

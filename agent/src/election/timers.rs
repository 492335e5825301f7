//! VRRPv3 time arithmetic (RFC 5798 section 6.1).
//!
//! VRRPv3 carries the advertisement interval as a 12-bit count of
//! centiseconds (section 5.2.7), so the configured `Advertisement_Interval`
//! and the learnt `Master_Adver_Interval` stay [`Centiseconds`], as on the
//! wire. The timers derived from the latter, `Skew_Time` and
//! `Master_Down_Interval` (section 6.1), are [`Duration`]s in whole
//! microseconds, computed as keepalived 2.2 does (`VRRP_TIMER_SKEW`): the
//! formulas are applied to the interval in microseconds and the division by
//! 256 truncates to a whole microsecond. Read in centiseconds, as the RFC
//! writes them, every skew would truncate to 0 at the 10 ms floor and backups
//! of different priorities would time out together; in microseconds the
//! higher priority always has the shorter `Master_Down_Interval`. The
//! difference only shifts when a backup takes over, never what is on the
//! wire.

use std::fmt;
use std::time::Duration;

/// The unit of every VRRPv3 interval (RFC 5798 section 5.2.7).
pub const CENTISECOND: Duration = Duration::from_millis(10);

/// Largest advertisement interval the 12-bit field can carry: 40.95 s
/// (RFC 5798 section 5.2.7).
pub const MAX_ADVER_INT: Centiseconds = Centiseconds(0x0FFF);

/// Default advertisement interval: 100 centiseconds, one second (RFC 5798
/// section 5.2.7).
pub const DEFAULT_ADVER_INT: Centiseconds = Centiseconds(100);

/// Adverts a backup may miss before it declares the master down: the `3` of
/// `Master_Down_Interval` (RFC 5798 section 6.1).
pub const DOWN_TIMER_ADVERTS: u32 = 3;

/// A whole number of centiseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Centiseconds(pub u16);

impl Centiseconds {
    /// The same span as a [`Duration`].
    pub const fn to_duration(self) -> Duration {
        Duration::from_millis(self.0 as u64 * 10)
    }

    /// `d` in centiseconds, or `None` unless `d` is a whole number of them
    /// that fits in 16 bits.
    pub fn from_duration(d: Duration) -> Option<Self> {
        let nanos = d.as_nanos();
        let unit = CENTISECOND.as_nanos();
        if !nanos.is_multiple_of(unit) {
            return None;
        }
        u16::try_from(nanos / unit).ok().map(Self)
    }
}

impl fmt::Display for Centiseconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cs", self.0)
    }
}

/// `Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256`
/// (RFC 5798 section 6.1), computed in microseconds as keepalived 2.2
/// does (`VRRP_TIMER_SKEW`), truncated to whole microseconds. Truncating to
/// centiseconds instead would make every skew 0 at the 10 ms floor, so
/// backups of different priorities would no longer take over in priority
/// order.
pub fn skew_time(priority: u8, master_adver_interval: Centiseconds) -> Duration {
    let interval_us = u64::from(master_adver_interval.0) * 10_000;
    Duration::from_micros((256 - u64::from(priority)) * interval_us / 256)
}

/// `Master_Down_Interval = (3 * Master_Adver_Interval) + Skew_Time`
/// (RFC 5798 section 6.1).
pub fn master_down_interval(priority: u8, master_adver_interval: Centiseconds) -> Duration {
    master_adver_interval.to_duration() * DOWN_TIMER_ADVERTS
        + skew_time(priority, master_adver_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_time_follows_the_rfc_formula_in_microseconds() {
        let us = Duration::from_micros;
        // (256 - 100) * 1 000 000 / 256 = 609 375 us.
        assert_eq!(
            skew_time(100, Centiseconds(100)),
            us(609_375),
            "prio 100, 1 s"
        );
        // (256 - 255) * 1 000 000 / 256 = 3 906.25 -> 3 906 us.
        assert_eq!(skew_time(255, Centiseconds(100)), us(3_906), "owner");
        // (256 - 1) * 40 950 000 / 256 = 40 790 039.06 -> 40 790 039 us.
        assert_eq!(skew_time(1, MAX_ADVER_INT), us(40_790_039), "largest skew");
        // At the 10 ms floor the skew still orders the priorities.
        assert_eq!(
            skew_time(100, Centiseconds(1)),
            us(6_093),
            "10 ms, prio 100"
        );
        assert_eq!(skew_time(50, Centiseconds(1)), us(8_046), "10 ms, prio 50");
    }

    #[test]
    fn master_down_interval_is_three_intervals_plus_skew() {
        let us = Duration::from_micros;
        assert_eq!(
            master_down_interval(100, Centiseconds(100)),
            us(3_609_375),
            "3 s + 609 375 us"
        );
        assert_eq!(
            master_down_interval(200, Centiseconds(50)),
            us(1_500_000 + 109_375),
            "3 * 500 ms + 56 * 500 000 / 256 us"
        );
        assert_eq!(
            master_down_interval(100, Centiseconds(1)),
            us(36_093),
            "10 ms adverts: 30 ms + 6 093 us"
        );
    }

    #[test]
    fn durations_convert_only_when_whole_centiseconds() {
        assert_eq!(
            Centiseconds::from_duration(Duration::from_millis(1230)),
            Some(Centiseconds(123)),
            "1.23 s"
        );
        assert_eq!(
            Centiseconds::from_duration(Duration::from_millis(15)),
            None,
            "15 ms is not whole centiseconds"
        );
        assert_eq!(
            Centiseconds::from_duration(Duration::from_secs(1000)),
            None,
            "100000 cs does not fit"
        );
        assert_eq!(
            Centiseconds(123).to_duration(),
            Duration::from_millis(1230),
            "back"
        );
        assert_eq!(Centiseconds(7).to_string(), "7 cs", "display");
    }
}

//! VRRPv3 time arithmetic (RFC 5798 section 6.1), in whole centiseconds.
//!
//! VRRPv3 carries the advertisement interval as a 12-bit count of
//! centiseconds (section 5.2.7) and defines `Skew_Time` and
//! `Master_Down_Interval` from it (section 6.1). Everything here stays in
//! integer centiseconds, dividing with truncation exactly as the formulas are
//! written; nothing finer than a centisecond exists in the protocol. (keepalived
//! 2.2 computes the skew in microseconds instead, so its `Skew_Time` can be up
//! to 9.99 ms longer than the RFC's integer value; the difference only shifts
//! when a backup takes over, never what is on the wire.)

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
/// (RFC 5798 section 6.1), truncated to whole centiseconds.
pub fn skew_time(priority: u8, master_adver_interval: Centiseconds) -> Centiseconds {
    let skew = (256 - u32::from(priority)) * u32::from(master_adver_interval.0) / 256;
    // At most 256 * 0xFFFF / 256 = 0xFFFF.
    Centiseconds(u16::try_from(skew).unwrap_or(u16::MAX))
}

/// `Master_Down_Interval = (3 * Master_Adver_Interval) + Skew_Time`
/// (RFC 5798 section 6.1). Saturates at `u16::MAX` centiseconds, which only an
/// interval beyond the 12-bit wire field could reach.
pub fn master_down_interval(priority: u8, master_adver_interval: Centiseconds) -> Centiseconds {
    let down = DOWN_TIMER_ADVERTS * u32::from(master_adver_interval.0)
        + u32::from(skew_time(priority, master_adver_interval).0);
    Centiseconds(u16::try_from(down).unwrap_or(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_time_follows_the_rfc_formula_with_truncation() {
        // (256 - 100) * 100 / 256 = 60.9375 -> 60.
        assert_eq!(
            skew_time(100, Centiseconds(100)),
            Centiseconds(60),
            "prio 100, 1 s"
        );
        // (256 - 255) * 100 / 256 = 0.39 -> 0: an owner has no skew at 1 s.
        assert_eq!(skew_time(255, Centiseconds(100)), Centiseconds(0), "owner");
        // (256 - 1) * 4095 / 256 = 4079.0 -> 4079.
        assert_eq!(
            skew_time(1, MAX_ADVER_INT),
            Centiseconds(4079),
            "largest skew"
        );
        // At the 10 ms floor every priority truncates to a zero skew.
        assert_eq!(
            skew_time(1, Centiseconds(1)),
            Centiseconds(0),
            "10 ms interval"
        );
    }

    #[test]
    fn master_down_interval_is_three_intervals_plus_skew() {
        assert_eq!(
            master_down_interval(100, Centiseconds(100)),
            Centiseconds(360),
            "3 * 100 + 60"
        );
        assert_eq!(
            master_down_interval(200, Centiseconds(50)),
            Centiseconds(160),
            "3 * 50 + (56 * 50 / 256 = 10)"
        );
        assert_eq!(
            master_down_interval(1, MAX_ADVER_INT),
            Centiseconds(3 * 4095 + 4079),
            "largest value fits"
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

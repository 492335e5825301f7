//! Wall-clock instants shared by every namespace of a lab: the kernel's
//! packet timestamps (`SO_TIMESTAMPNS`, tcpdump `-tt`), the agents' log lines
//! (RFC 3339, UTC) and the test's own clock all read `CLOCK_REALTIME`, so
//! events seen in different hosts can be put in one order.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant of `CLOCK_REALTIME`, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(i64);

impl WallTime {
    /// Now.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self::from_parts(since.as_secs() as i64, since.subsec_nanos())
    }

    /// From seconds and nanoseconds since the epoch (a `timespec`).
    pub fn from_parts(secs: i64, nanos: u32) -> Self {
        Self(secs * 1_000_000_000 + i64::from(nanos))
    }

    /// Nanoseconds since the epoch.
    pub fn nanos(self) -> i64 {
        self.0
    }

    /// `self - earlier` in microseconds (negative when `self` comes first).
    pub fn micros_since(self, earlier: Self) -> i64 {
        (self.0 - earlier.0) / 1_000
    }

    /// This instant moved by `by` (forwards).
    pub fn plus(self, by: Duration) -> Self {
        Self(self.0 + i64::try_from(by.as_nanos()).unwrap_or(i64::MAX / 2))
    }

    /// tcpdump's `-tt` stamp: `SECONDS.FRACTION` (micro- or nanoseconds).
    pub fn parse_epoch(text: &str) -> Option<Self> {
        let (secs, frac) = text.split_once('.')?;
        let secs: i64 = secs.parse().ok()?;
        if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let nanos: u32 = format!("{frac:0<9}").parse().ok()?;
        Some(Self::from_parts(secs, nanos))
    }

    /// An RFC 3339 UTC stamp as `tracing-subscriber` writes it at the start
    /// of a log line: `2026-11-22T04:49:20.123456Z`.
    pub fn parse_rfc3339_utc(text: &str) -> Option<Self> {
        let text = text.strip_suffix('Z')?;
        let (date, time) = text.split_once('T')?;
        let mut date = date.split('-').map(str::parse::<i64>);
        let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
        let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
        let mut hms = hms.split(':').map(str::parse::<i64>);
        let (h, m, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
            return None;
        }
        let secs = days_from_civil(year, month, day) * 86_400 + h * 3_600 + m * 60 + s;
        let sub = Self::parse_epoch(&format!("0.{frac}"))?;
        Some(Self(secs * 1_000_000_000 + sub.0))
    }
}

impl fmt::Display for WallTime {
    /// Seconds since the epoch with microseconds, as tcpdump `-tt` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.div_euclid(1_000);
        write!(
            f,
            "{}.{:06}",
            micros.div_euclid(1_000_000),
            micros.rem_euclid(1_000_000)
        )
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_and_tcpdump_stamps_to_the_same_instant() {
        // date -u -d @1795063760.123456 = 2026-11-19T04:49:20.123456Z
        let log = WallTime::parse_rfc3339_utc("2026-11-19T04:49:20.123456Z").expect("log stamp");
        let dump = WallTime::parse_epoch("1795063760.123456").expect("tcpdump stamp");
        assert_eq!(log, dump);
        assert_eq!(dump.to_string(), "1795063760.123456");
        assert_eq!(
            WallTime::parse_rfc3339_utc("1970-01-01T00:00:00Z"),
            Some(WallTime(0))
        );
        assert_eq!(
            WallTime::parse_rfc3339_utc("2000-03-01T00:00:00.5Z"),
            Some(WallTime(951_868_800_500_000_000))
        );
    }

    #[test]
    fn rejects_what_is_not_a_stamp() {
        assert_eq!(WallTime::parse_epoch("12"), None);
        assert_eq!(WallTime::parse_epoch("12.x"), None);
        assert_eq!(WallTime::parse_rfc3339_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(WallTime::parse_rfc3339_utc("2026-11-19 04:49:20Z"), None);
        assert_eq!(WallTime::parse_rfc3339_utc("INFO"), None);
    }

    #[test]
    fn differences_are_signed() {
        let a = WallTime::from_parts(10, 0);
        let b = a.plus(Duration::from_micros(1_500));
        assert_eq!(b.micros_since(a), 1_500);
        assert_eq!(a.micros_since(b), -1_500);
    }
}

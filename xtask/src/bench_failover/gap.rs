//! The gap a round's attempts show around the event.

use std::time::Duration;

use super::probe::{Attempt, Outcome};

/// Failure runs ending this long before the event still count as its own.
const BEFORE_EVENT: Duration = Duration::from_millis(50);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What one round's attempts show.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// The longest gap around the event (zero without failed attempts).
    pub gap: Duration,
    /// Whether a success followed the last failure (else `gap` is a lower
    /// bound).
    pub recovered: bool,
    /// Failed attempts in the runs counted (around the event).
    pub failed: usize,
    /// Those by outcome: refused, reset, timeout, other.
    pub failed_by: [usize; 4],
    /// Failed attempts in runs that ended before the event (not counted).
    pub before_event: usize,
    /// Start of the first and end of the last failure run counted, relative
    /// to the event (for the per-round log).
    pub span: Option<(f64, f64)>,
    /// Attempts in the window.
    pub attempts: usize,
    /// The longest time between two attempts' starts (the prober's own
    /// resolution: the period unless it was held up).
    pub max_spacing: Duration,
}

/// The longest failure run whose last failed attempt started at most
/// [`BEFORE_EVENT`] before `event`, measured from the last success started
/// before it to the first success started after it.
pub fn analyse(attempts: &[Attempt], event: u64) -> Analysis {
    let from = event.saturating_sub(nanos(BEFORE_EVENT));
    let mut analysis = Analysis {
        gap: Duration::ZERO,
        recovered: true,
        failed: 0,
        failed_by: [0; 4],
        before_event: 0,
        span: None,
        attempts: attempts.len(),
        max_spacing: attempts
            .windows(2)
            .map(|w| Duration::from_nanos(w[1].start - w[0].start))
            .max()
            .unwrap_or_default(),
    };
    // Milliseconds from the event (negative: before it).
    let rel = |t: u64| (t as f64 - event as f64) / 1e6;
    let mut i = 0;
    while i < attempts.len() {
        if attempts[i].ok() {
            i += 1;
            continue;
        }
        let first = i;
        while i < attempts.len() && !attempts[i].ok() {
            i += 1;
        }
        let last_failed = attempts[i - 1].start;
        if last_failed < from {
            analysis.before_event += i - first;
            continue;
        }
        for attempt in &attempts[first..i] {
            let slot = match attempt.outcome {
                Outcome::Refused => 0,
                Outcome::Reset => 1,
                Outcome::Timeout => 2,
                Outcome::Ok | Outcome::Other => 3,
            };
            analysis.failed_by[slot] += 1;
            analysis.failed += 1;
        }
        let before = first
            .checked_sub(1)
            .map_or(attempts[first].start, |b| attempts[b].start);
        let (after, recovered) = attempts
            .get(i)
            .map_or((last_failed, false), |a| (a.start, true));
        let gap = Duration::from_nanos(after - before);
        if gap >= analysis.gap {
            analysis.gap = gap;
            analysis.recovered = recovered;
        }
        let span = (rel(attempts[first].start), rel(last_failed));
        analysis.span = Some(analysis.span.map_or(span, |(a, _)| (a, span.1)));
    }
    analysis
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Attempts every millisecond from `t0` (ns); `fail` says which ones
    /// fail.
    fn attempts(t0: u64, n: u64, fail: impl Fn(u64) -> bool) -> Vec<Attempt> {
        (0..n)
            .map(|i| Attempt {
                start: t0 + i * MS,
                outcome: if fail(i) {
                    Outcome::Refused
                } else {
                    Outcome::Ok
                },
            })
            .collect()
    }

    #[test]
    fn no_failure_is_no_gap() {
        let t0 = 7 * MS;
        let a = analyse(&attempts(t0, 100, |_| false), t0 + 50 * MS);
        assert_eq!(a.gap, Duration::ZERO);
        assert_eq!(a.failed, 0);
        assert!(a.recovered);
    }

    #[test]
    fn the_gap_runs_from_the_success_before_to_the_success_after() {
        let t0 = 7 * MS;
        // Attempts 60..70 fail: last success 59, next success 70.
        let a = analyse(&attempts(t0, 200, |i| (60..70).contains(&i)), t0 + 55 * MS);
        assert_eq!(a.gap, Duration::from_millis(11));
        assert_eq!(a.max_spacing, Duration::from_millis(1));
        assert_eq!(a.failed, 10);
        assert_eq!(a.failed_by, [10, 0, 0, 0]);
        assert!(a.recovered);
        // One failed attempt is a 2 ms gap at a 1 ms period.
        let a = analyse(&attempts(t0, 200, |i| i == 80), t0 + 55 * MS);
        assert_eq!(a.gap, Duration::from_millis(2));
    }

    #[test]
    fn the_longest_run_after_the_event_counts_and_earlier_failures_apart() {
        let t0 = 7 * MS;
        let fail = |i: u64| (10..30).contains(&i) || (120..125).contains(&i) || i == 140;
        let a = analyse(&attempts(t0, 200, fail), t0 + 100 * MS);
        // The run at 10..30 ended long before the event: not its gap.
        assert_eq!(a.gap, Duration::from_millis(6));
        assert_eq!(a.failed, 6, "the failures after the event");
        assert_eq!(a.before_event, 20, "the earlier ones, apart");
    }

    #[test]
    fn a_run_reaching_the_end_is_a_lower_bound() {
        let t0 = 7 * MS;
        let a = analyse(&attempts(t0, 100, |i| i >= 90), t0 + 80 * MS);
        assert!(!a.recovered);
        assert_eq!(a.gap, Duration::from_millis(10));
    }
}

//! The replication lag as the master's `vipx_sync_lag_seconds` histogram
//! shows it: one sample per batch of flow changes acknowledged by the
//! peer (from its oldest change to the acknowledgement). Quantiles are
//! the upper bounds of the buckets that hold them.

/// The histogram.
pub const LAG: &str = "vipx_sync_lag_seconds";

/// A Prometheus histogram as `/metrics` shows it: cumulative counts by
/// upper bound, the last one `+Inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Histogram `name` on a `/metrics` page.
    pub fn parse(page: &str, name: &str) -> Option<Self> {
        let prefix = format!("{name}_bucket{{le=\"");
        let buckets: Vec<(f64, u64)> = page
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let count: f64 = count.trim().parse().ok()?;
                Some((le, count as u64))
            })
            .collect();
        (!buckets.is_empty()).then_some(Self { buckets })
    }

    /// What was added since `earlier` (a histogram of the same series, or
    /// none: everything).
    pub fn since(&self, earlier: Option<&Self>) -> Self {
        let Some(earlier) = earlier else {
            return self.clone();
        };
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    let before = earlier
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0, |(_, b)| *b);
                    (*le, n.saturating_sub(before))
                })
                .collect(),
        }
    }

    /// Samples.
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, n)| *n)
    }

    /// The upper bound of the bucket holding quantile `q`; none without
    /// samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= rank)
            .map(|(le, _)| *le)
    }

    /// The upper bound of the highest bucket with a sample.
    pub fn max(&self) -> Option<f64> {
        self.quantile(1.0)
    }

    /// The largest finite bound (what `+Inf` starts above).
    fn top(&self) -> f64 {
        self.buckets
            .iter()
            .rev()
            .map(|(le, _)| *le)
            .find(|le| le.is_finite())
            .unwrap_or(0.0)
    }

    /// p50, p99 and max as bucket bounds: `<= 250 us / <= 1 ms / <= 2.5
    /// ms`, or `-` without samples.
    pub fn summary(&self) -> [String; 3] {
        [self.quantile(0.5), self.quantile(0.99), self.max()].map(|le| self.bound(le))
    }

    fn bound(&self, le: Option<f64>) -> String {
        match le {
            None => "-".into(),
            Some(le) if le.is_infinite() => format!("> {}", seconds(self.top())),
            Some(le) => format!("<= {}", seconds(le)),
        }
    }
}

/// A duration in seconds, in the unit that reads best.
pub fn seconds(s: f64) -> String {
    if s < 0.001 {
        format!("{} us", round(s * 1e6))
    } else if s < 1.0 {
        format!("{} ms", round(s * 1e3))
    } else {
        format!("{} s", round(s))
    }
}

/// `2.5`, `250`, `0.25`: no trailing zeros.
fn round(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page as the prometheus crate writes it, buckets 100 us, 1 ms, 10 ms.
    fn page(counts: [u64; 4]) -> String {
        format!(
            "# TYPE vipx_sync_lag_seconds histogram\n\
             vipx_sync_lag_seconds_bucket{{le=\"0.0001\"}} {}\n\
             vipx_sync_lag_seconds_bucket{{le=\"0.001\"}} {}\n\
             vipx_sync_lag_seconds_bucket{{le=\"0.01\"}} {}\n\
             vipx_sync_lag_seconds_bucket{{le=\"+Inf\"}} {}\n\
             vipx_sync_lag_seconds_sum 0.5\nvipx_sync_lag_seconds_count {}\n",
            counts[0], counts[1], counts[2], counts[3], counts[3]
        )
    }

    #[test]
    fn quantiles_are_the_bounds_of_the_buckets_holding_them() {
        // 60 samples <= 100 us, 39 more <= 1 ms, 1 more <= 10 ms.
        let h = Histogram::parse(&page([60, 99, 100, 100]), LAG).expect("parsed");
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), Some(0.0001));
        assert_eq!(h.quantile(0.99), Some(0.001));
        assert_eq!(h.max(), Some(0.01));
        assert_eq!(h.summary(), ["<= 100 us", "<= 1 ms", "<= 10 ms"]);
    }

    #[test]
    fn a_difference_holds_only_the_later_samples() {
        let before = Histogram::parse(&page([10, 10, 10, 10]), LAG).expect("parsed");
        let after = Histogram::parse(&page([10, 12, 14, 15]), LAG).expect("parsed");
        let d = after.since(Some(&before));
        assert_eq!(d.count(), 5);
        assert_eq!(
            d.quantile(0.5),
            Some(0.01),
            "rank 3 of 5 is in (1 ms, 10 ms]"
        );
        assert_eq!(d.max(), Some(f64::INFINITY));
        assert_eq!(d.summary()[2], "> 10 ms");
        assert_eq!(
            Histogram::parse(&page([0; 4]), LAG)
                .expect("parsed")
                .summary(),
            ["-", "-", "-"]
        );
        assert_eq!(Histogram::parse("no such series\n", LAG), None);
    }
}

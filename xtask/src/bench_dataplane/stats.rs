//! Rounds of one figure: median, min and max, and the table cells that
//! print them.

/// The values of one figure over the rounds.
#[derive(Clone, Debug, Default)]
pub struct Rounds(Vec<f64>);

impl Rounds {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (the mean of the middle two for an even count).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// `median (min-max)` with `decimals` decimals; `failed` when a round
    /// failed (a NaN value).
    pub fn cell(&self, decimals: usize) -> String {
        let failed = self.0.iter().filter(|v| v.is_nan()).count();
        if failed > 0 {
            return format!("failed in {failed} of {} rounds", self.0.len());
        }
        format!(
            "{:.d$} ({:.d$}-{:.d$})",
            self.median(),
            self.min(),
            self.max(),
            d = decimals
        )
    }

    /// Round by round, `self / base` (both measured in the same rounds).
    pub fn ratio_to(&self, base: &Rounds) -> Rounds {
        Rounds(
            self.0
                .iter()
                .zip(&base.0)
                .map(|(a, b)| a / b.max(f64::MIN_POSITIVE))
                .collect(),
        )
    }

    /// Round by round, `self - base` (both measured in the same rounds).
    pub fn minus(&self, base: &Rounds) -> Rounds {
        Rounds(self.0.iter().zip(&base.0).map(|(a, b)| a - b).collect())
    }

    /// Every value times `factor` (a change of unit).
    pub fn scaled(&self, factor: f64) -> Rounds {
        Rounds(self.0.iter().map(|v| v * factor).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_and_ratios() {
        let r = Rounds(vec![5.0, 1.0, 3.0]);
        assert_eq!(r.median(), 3.0, "odd count: the middle value");
        assert_eq!((r.min(), r.max()), (1.0, 5.0));
        assert_eq!(Rounds(vec![4.0, 1.0, 2.0, 3.0]).median(), 2.5);
        assert_eq!(r.cell(1), "3.0 (1.0-5.0)");
        let base = Rounds(vec![10.0, 2.0, 1.0]);
        assert_eq!(r.ratio_to(&base).0, vec![0.5, 0.5, 3.0]);
        assert_eq!(r.minus(&base).0, vec![-5.0, -1.0, 2.0]);
        assert_eq!(r.scaled(2.0).0, vec![10.0, 2.0, 6.0]);
        assert_eq!(
            Rounds(vec![1.0, f64::NAN, 2.0]).cell(1),
            "failed in 1 of 3 rounds"
        );
    }
}

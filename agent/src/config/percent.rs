//! A percentage read from the configuration.

use serde::Deserialize;

/// A percentage, 1 to 100.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "i64")]
pub struct Percent(pub(super) u8);

impl Percent {
    /// The percentage.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Percent {
    type Error = String;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        match u8::try_from(value) {
            Ok(percent @ 1..=100) => Ok(Self(percent)),
            _ => Err(format!("{value} is not a percentage from 1 to 100")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_run_from_1_to_100() {
        assert_eq!(Percent::try_from(1).map(Percent::get), Ok(1));
        assert_eq!(Percent::try_from(100).map(Percent::get), Ok(100));
        for bad in [0, 101, -1, 256] {
            assert!(Percent::try_from(bad).is_err(), "{bad}");
        }
    }
}

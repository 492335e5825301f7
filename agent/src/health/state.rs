//! A backend's health from consecutive check results: rise and fall
//! hysteresis, as HAProxy and keepalived count them.

use serde::{Deserialize, Serialize};

use super::checks::Verdict;

/// A backend's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Takes new flows.
    Up,
    /// Alive but overloaded (a saturated pool): new flows go to the others
    /// while there are others.
    Degraded,
    /// Out of the Maglev table.
    Down,
}

impl Health {
    /// Every state, best first.
    pub const ALL: [Self; 3] = [Self::Up, Self::Degraded, Self::Down];

    /// The lowercase name (metrics, events).
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Counts consecutive results. A backend starts up (as HAProxy and
/// keepalived start their servers); `fall` consecutive failures take it
/// down, `rise` consecutive successes bring it back. An alive backend is
/// degraded or not according to its latest result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    state: Health,
    successes: u32,
    failures: u32,
}

impl Hysteresis {
    /// A backend that starts in `initial`.
    pub fn new(rise: u32, fall: u32, initial: Health) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            state: initial,
            successes: 0,
            failures: 0,
        }
    }

    /// The current health.
    pub fn state(&self) -> Health {
        self.state
    }

    /// Records one result; returns the new health when it changed.
    pub fn record(&mut self, verdict: &Verdict) -> Option<Health> {
        let alive = match verdict {
            Verdict::Up => Some(Health::Up),
            Verdict::Degraded { .. } => Some(Health::Degraded),
            Verdict::Down { .. } => None,
        };
        match alive {
            Some(_) => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
            }
            None => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
            }
        }
        let next = match (self.state, alive) {
            (Health::Down, Some(alive)) if self.successes >= self.rise => alive,
            (Health::Down, _) => Health::Down,
            (_, None) if self.failures >= self.fall => Health::Down,
            (current, None) => current,
            (_, Some(alive)) => alive,
        };
        (next != self.state).then(|| {
            self.state = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Verdict {
        Verdict::Up
    }
    fn down() -> Verdict {
        Verdict::Down {
            reason: "refused".into(),
        }
    }
    fn degraded() -> Verdict {
        Verdict::Degraded {
            reason: "3 waiting".into(),
        }
    }

    /// Feeds results, returns the health after each.
    fn run(h: &mut Hysteresis, results: &[Verdict]) -> Vec<Health> {
        results
            .iter()
            .map(|r| {
                h.record(r);
                h.state()
            })
            .collect()
    }

    #[test]
    fn fall_consecutive_failures_take_it_down() {
        let mut h = Hysteresis::new(2, 3, Health::Up);
        use Health::{Down, Up};
        let states = run(&mut h, &[down(), down(), up(), down(), down(), down()]);
        assert_eq!(
            states,
            [Up, Up, Up, Up, Up, Down],
            "a success resets the failure count"
        );
    }

    #[test]
    fn rise_consecutive_successes_bring_it_back() {
        let mut h = Hysteresis::new(3, 1, Health::Up);
        use Health::{Down, Up};
        let states = run(&mut h, &[down(), up(), up(), down(), up(), up(), up()]);
        assert_eq!(states, [Down, Down, Down, Down, Down, Down, Up]);
    }

    #[test]
    fn flapping_never_crosses_the_thresholds() {
        let mut h = Hysteresis::new(2, 2, Health::Up);
        let flaps: Vec<Verdict> = (0..100)
            .map(|i| if i % 2 == 0 { down() } else { up() })
            .collect();
        let states = run(&mut h, &flaps);
        assert!(
            states.iter().all(|s| *s == Health::Up),
            "alternating results never take it down"
        );
        let mut h = Hysteresis::new(2, 2, Health::Down);
        let states = run(&mut h, &flaps);
        assert!(states.iter().all(|s| *s == Health::Down), "nor bring it up");
    }

    #[test]
    fn transitions_are_reported_once() {
        let mut h = Hysteresis::new(1, 1, Health::Up);
        assert_eq!(h.record(&up()), None);
        assert_eq!(h.record(&down()), Some(Health::Down));
        assert_eq!(h.record(&down()), None);
        assert_eq!(
            h.record(&degraded()),
            Some(Health::Degraded),
            "rise 1: back, degraded"
        );
        assert_eq!(h.record(&up()), Some(Health::Up));
    }

    #[test]
    fn degraded_counts_as_alive() {
        let mut h = Hysteresis::new(2, 2, Health::Up);
        use Health::{Degraded, Down, Up};
        let states = run(
            &mut h,
            &[degraded(), down(), degraded(), up(), down(), down()],
        );
        assert_eq!(states, [Degraded, Degraded, Degraded, Up, Up, Down]);
    }
}

//! The run's tallies and its final report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::faults::Kind;
use super::load::End;

/// What the run checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    /// No two nodes answer ARP for the VIP beyond the bound.
    OwnerArp,
    /// The VIP's traffic reaches one node at a time beyond the bound.
    OwnerTraffic,
    /// No established session is lost but with its PgBouncer.
    Sessions,
    /// A dead PgBouncer is marked down within its bound, and new
    /// connections no longer reach it; back, it is up again.
    BackendDeath,
    /// A reload's weights are in force on every node.
    Reload,
    /// After each fault, one MASTER serves the VIP again, every agent runs.
    Recovery,
}

impl Invariant {
    pub const ALL: [Self; 6] = [
        Self::OwnerArp,
        Self::OwnerTraffic,
        Self::Sessions,
        Self::BackendDeath,
        Self::Reload,
        Self::Recovery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::OwnerArp => "single owner (ARP)",
            Self::OwnerTraffic => "single owner (traffic)",
            Self::Sessions => "sessions kept",
            Self::BackendDeath => "backend death acted on",
            Self::Reload => "reload applied",
            Self::Recovery => "recovery",
        }
    }

    /// What one check is, for the report.
    fn unit(self) -> &'static str {
        match self {
            Self::OwnerArp => "ARP requests",
            Self::OwnerTraffic => "VIP frames",
            Self::Sessions => "session looks",
            Self::BackendDeath => "node checks",
            Self::Reload => "node checks",
            Self::Recovery => "faults",
        }
    }
}

/// One violation: what, when, the fault under way.
#[derive(Clone, Debug)]
pub struct Violation {
    pub invariant: Invariant,
    /// Seconds since the faults began.
    pub at: f64,
    pub fault: String,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VIOLATION [{}] at {:.1}s during `{}`: {}",
            self.invariant.name(),
            self.at,
            self.fault,
            self.what
        )
    }
}

/// The longest episodes seen per fault kind: ARP requests answered by two
/// nodes, switching of the VIP's traffic (both judged against the bound),
/// and the time from the fault's start until one MASTER served again after
/// its end (its own durations included).
#[derive(Clone, Copy, Debug, Default)]
pub struct Worst {
    pub arp: Duration,
    pub traffic: Duration,
    pub recovery: Duration,
}

/// Everything the report says.
#[derive(Debug, Default)]
pub struct Report {
    pub faults: BTreeMap<Kind, u32>,
    pub checks: BTreeMap<Invariant, u64>,
    pub violations: Vec<Violation>,
    pub worst: BTreeMap<Kind, Worst>,
    /// The slowest marking down of a dead PgBouncer.
    pub slowest_down: Duration,
    pub ends: Vec<End>,
    pub interrupted: bool,
}

impl Report {
    pub fn check(&mut self, invariant: Invariant, count: u64) {
        *self.checks.entry(invariant).or_default() += count;
    }

    pub fn violate(&mut self, violation: Violation) {
        println!("{violation}");
        self.violations.push(violation);
    }

    fn ends(&self, f: impl Fn(&End) -> bool) -> usize {
        self.ends.iter().filter(|e| f(e)).count()
    }

    /// The report, as printed at the end.
    pub fn render(&self, seed: u64, replay: &str, elapsed: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== chaos report: seed {seed}, {:.1} min of faults{}",
            elapsed.as_secs_f64() / 60.0,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "{:<15} {:>5}  {:>12} {:>14} {:>10}",
            "fault", "tried", "max ARP dbl", "max switching", "settled"
        );
        for kind in Kind::ALL {
            let tried = self.faults.get(&kind).copied().unwrap_or(0);
            let worst = self.worst.get(&kind).copied().unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<15} {:>5}  {:>12} {:>14} {:>10}",
                kind.name(),
                tried,
                ms(worst.arp),
                ms(worst.traffic),
                ms(worst.recovery)
            );
        }
        let total: u32 = self.faults.values().sum();
        let _ = writeln!(out, "{:<15} {total:>5}", "total");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:<14} {:>10}",
            "invariant", "checks", "", "violations"
        );
        for invariant in Invariant::ALL {
            let checks = self.checks.get(&invariant).copied().unwrap_or(0);
            let violations = self
                .violations
                .iter()
                .filter(|v| v.invariant == invariant)
                .count();
            let _ = writeln!(
                out,
                "{:<24} {checks:>10} {:<14} {violations:>10}",
                invariant.name(),
                invariant.unit()
            );
        }
        let _ = writeln!(
            out,
            "\nslowest dead PgBouncer marked down: {}",
            ms(self.slowest_down)
        );
        let _ = writeln!(
            out,
            "sessions: {} kept, {} lost with their killed PgBouncer, {} lost otherwise, {} never connected (during a move); {} in all",
            self.ends(|e| *e == End::Kept),
            self.ends(|e| *e == End::LostByBackendKill),
            self.ends(|e| matches!(e, End::Lost(_))),
            self.ends(|e| *e == End::NoConnection),
            self.ends.len()
        );
        if self.violations.is_empty() {
            let _ = writeln!(out, "every invariant held.");
        } else {
            let _ = writeln!(out, "{} violations:", self.violations.len());
            for v in &self.violations {
                let _ = writeln!(out, "  {v}");
            }
            let _ = writeln!(out, "replay: {replay}");
        }
        out
    }
}

fn ms(d: Duration) -> String {
    if d.is_zero() {
        "-".into()
    } else {
        format!("{} ms", d.as_millis())
    }
}

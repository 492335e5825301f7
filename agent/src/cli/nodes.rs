//! `vipx-agent nodes`: the cluster as a node sees it (`GET
//! /api/v1/ha/nodes`), as a table.

use std::fmt::Write as _;

use crate::{api::wire::span, cluster::wire::NodesReport};

/// The quorum, then a row per voter.
pub fn render(report: &NodesReport) -> String {
    let mut out = String::new();
    let q = &report.quorum;
    let _ = writeln!(
        out,
        "{} ({}): quorum {}, {} of {} voters{}",
        report.node,
        report.role,
        if q.held { "held" } else { "LOST" },
        q.seen,
        q.voters,
        match (&q.vote_holder, q.witness_vote) {
            (Some(holder), _) => format!("; the witness's vote is {holder}'s"),
            (None, true) => "; with the witness's vote".to_owned(),
            (None, false) => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "{:<20} {:<8} {:<22} {:<5} {:>10}  groups",
        "voter", "role", "address", "state", "last seen"
    );
    for v in &report.voters {
        let groups: Vec<String> = v
            .groups
            .iter()
            .map(|g| format!("{} {} ({})", g.name, g.state, g.priority))
            .collect();
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<22} {:<5} {:>10}  {}",
            v.name,
            v.role,
            v.address.to_string(),
            if v.up { "up" } else { "DOWN" },
            v.last_seen_ms
                .map_or("-".to_owned(), |ms| format!("{} ago", span(ms))),
            if groups.is_empty() {
                "-".to_owned()
            } else {
                groups.join(", ")
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_per_voter_after_the_quorum() {
        let text = render(&NodesReport::example());
        assert!(
            text.starts_with("n1 (node): quorum held, 2 of 3 voters\n"),
            "{text}"
        );
        let row = |cells: &[&str]| {
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells)
        };
        assert!(
            row(&["w", "witness", "10.0.0.9:9469", "DOWN", "0.0s", "ago", "-"]),
            "{text}"
        );
        assert!(
            row(&["n2", "node", "10.0.0.9:9469", "up", "0.0s", "ago", "-"]),
            "{text}"
        );
    }
}

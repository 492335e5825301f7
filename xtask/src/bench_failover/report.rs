//! The printed table of a layout, with the aim and how the heartbeat rows
//! compare to it.

use std::{fmt::Write as _, time::Duration};

use super::{Aim, Event, HEARTBEAT, Row, gap::Analysis, probe, system_label};

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// The gaps of `rounds`, sorted.
fn sorted_gaps(rounds: &[Analysis]) -> Vec<Duration> {
    let mut gaps: Vec<Duration> = rounds.iter().map(|a| a.gap).collect();
    gaps.sort();
    gaps
}

/// `min | median | max | failed attempts (median)` of a row's rounds (not
/// empty).
fn summary(rounds: &[Analysis]) -> String {
    let gaps = sorted_gaps(rounds);
    let mut failed: Vec<usize> = rounds.iter().map(|a| a.failed).collect();
    failed.sort_unstable();
    let open = if rounds.iter().any(|a| !a.recovered) {
        ">"
    } else {
        ""
    };
    format!(
        "{} | {} | {open}{} | {}",
        ms(gaps[0]),
        ms(gaps[gaps.len() / 2]),
        ms(gaps[gaps.len() - 1]),
        failed[failed.len() / 2]
    )
}

/// Whether a row (with rounds) meets its event's aim, in words.
fn verdict(event: Event, rounds: &[Analysis]) -> String {
    let gaps = sorted_gaps(rounds);
    let median = gaps[gaps.len() / 2];
    match event.aim() {
        Aim::MedianAtMost(bound) => format!(
            "median {} ms: {}",
            ms(median),
            if median <= bound { "met" } else { "missed" }
        ),
        Aim::NoFailure => {
            let failed: usize = rounds.iter().map(|a| a.failed).sum();
            format!(
                "{failed} failed attempts in {} rounds: {}",
                rounds.len(),
                if failed == 0 { "met" } else { "missed" }
            )
        }
    }
}

/// The first line of an error, for a footnote (the log has all of it).
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

pub fn table(nodes: usize, rounds: u32, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Failover gap, {nodes} nodes, {rounds} rounds: a client starts a new connection through the VIP every 1 ms (open loop; connect + SSLRequest + PgBouncer's answer within {} ms); gap = from the last success started before the failures to the first success started after them",
        probe::ATTEMPT_TIMEOUT.as_millis()
    );
    let _ = writeln!(
        out,
        "| system | adverts | event | min (ms) | median (ms) | max (ms) | failed attempts (median) |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|");
    for row in rows {
        let figures = if row.rounds.is_empty() {
            "not run | - | - | -".into()
        } else {
            summary(&row.rounds)
        };
        let _ = writeln!(
            out,
            "| {} | {} ms | {} | {figures} |",
            row.system,
            row.advert_ms,
            row.event.name()
        );
    }
    let _ = writeln!(
        out,
        "\nAim: median <= 15 ms on kill -9 and link cut; no failed attempt on graceful stop and failback."
    );
    let heartbeat = system_label(Some(HEARTBEAT));
    for row in rows.iter().filter(|r| r.system == heartbeat) {
        let verdict = if row.rounds.is_empty() {
            "not run".into()
        } else {
            verdict(row.event, &row.rounds)
        };
        let _ = writeln!(
            out,
            "- {heartbeat}, {} ms adverts, {}: {verdict}",
            row.advert_ms,
            row.event.name()
        );
    }
    let mut said = std::collections::HashSet::new();
    for row in rows {
        let what = format!(
            "{}, {} ms adverts, {}",
            row.system,
            row.advert_ms,
            row.event.name()
        );
        if !row.slow_restores.is_empty() {
            let took: Vec<String> = row
                .slow_restores
                .iter()
                .map(|d| format!("{:.1}", d.as_secs_f64()))
                .collect();
            let _ = writeln!(
                out,
                "- {what}: once node 0 was back, the VIP answered again only after {} s ({} of {} rounds)",
                took.join(", "),
                took.len(),
                row.rounds.len()
            );
        }
        let before: usize = row.rounds.iter().map(|a| a.before_event).sum();
        if before > 0 {
            let _ = writeln!(
                out,
                "- {what}: {before} failed attempts before the event (not in the figures)"
            );
        }
        for error in &row.errors {
            if error.starts_with("not run") {
                // Said once per system and advert interval.
                let key = (row.system.as_str(), row.advert_ms, error.as_str());
                if said.insert(key) {
                    let _ = writeln!(
                        out,
                        "- {}, {} ms adverts: {}",
                        row.system,
                        row.advert_ms,
                        first_line(error)
                    );
                }
            } else {
                let _ = writeln!(out, "- {what}: {}", first_line(error));
            }
        }
    }
    out
}

//! Maglev at 3, 100 and 1,000 backends: the agent's table build alone, a
//! whole flip through the data plane (build, write of the inactive half,
//! the service's switch to it) when one backend leaves, and the share of
//! slots that flip moves (ideal: the leaving backend's 1/N).

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use vipx_agent::dataplane::{BackendSpec, Dataplane, ServiceSpec, maglev};
use vipx_lab::rig::{Rig, nat_spec};

use super::stats::Rounds;

const COUNTS: [u16; 3] = [3, 100, 1_000];
/// The agent's default table size.
const M: u32 = 65537;

fn spec(backends: u16) -> ServiceSpec {
    ServiceSpec {
        backends: (0..backends)
            .map(|i| BackendSpec {
                addr: IpAddr::V4(Ipv4Addr::new(10, 78, (i / 200) as u8, (i % 200 + 1) as u8)),
                port: 6432,
                weight: 1,
            })
            .collect(),
        ..nat_spec(
            IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100)),
            IpAddr::V4(Ipv4Addr::new(10, 78, 0, 1)),
            M,
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The Maglev table.
pub fn table(rounds: u32) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Maglev (M = {M}; median (min-max) of {rounds} rounds; the flip: one backend leaves)"
    );
    let _ = writeln!(
        out,
        "| backends | build (ms) | flip through the data plane (ms) | slots moved (%) | ideal (%) |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
    for count in COUNTS {
        let full = spec(count);
        let mut less = full.clone();
        less.backends.pop();
        let (mut build, mut flip) = (Rounds::default(), Rounds::default());
        let mut rig = Rig::with_dataplane(
            Dataplane::load_with(1024)?,
            std::slice::from_ref(&full),
            Duration::from_secs(3600),
        )?;
        let mut moved = 0.0;
        for round in 0..rounds {
            let start = Instant::now();
            let a = maglev::build(&full.maglev_backends(), M)?;
            build.push(ms(start.elapsed()));
            let b = maglev::build(&less.maglev_backends(), M)?;
            moved =
                maglev::moved_fraction(&a, &full.maglev_backends(), &b, &less.maglev_backends());
            // Alternate between the two sets: every round is a real flip.
            let next = if round % 2 == 0 { &less } else { &full };
            let start = Instant::now();
            rig.table.apply(std::slice::from_ref(next))?;
            flip.push(ms(start.elapsed()));
        }
        let _ = writeln!(
            out,
            "| {count} | {} | {} | {:.2} | {:.2} |",
            build.cell(2),
            flip.cell(2),
            moved * 100.0,
            100.0 / f64::from(count)
        );
    }
    Ok(out)
}

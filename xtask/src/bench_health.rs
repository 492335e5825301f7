//! `cargo xtask bench health`: how long a dead PgBouncer keeps getting new
//! flows, and how long a restarted one waits to get them again.

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use vipx_lab::{Cluster, ClusterOptions, PG_PORT, PgBouncer, PgBouncerOptions, Signal, http};

const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 200;
const RISE: u64 = 2;
const FALL: u64 = 2;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Waits for the agent's timeline to show `backend` going `to`; returns the
/// event's time (ms since the epoch) and the last sequence number seen.
fn wait_event(
    cluster: &Cluster,
    after: u64,
    backend: &str,
    to: &str,
) -> anyhow::Result<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http::get_from(
            &cluster.client,
            cluster.nodes[0].api,
            &format!("/api/v1/events?after={after}"),
        )?;
        let events: Vec<vipx_agent::events::Event> =
            serde_json::from_str(&body).context("events JSON")?;
        if let Some(event) = events.iter().find(|e| {
            e.kind == vipx_agent::events::EventKind::Health
                && e.subject.ends_with(backend)
                && e.to == to
        }) {
            return Ok((event.unix_ms, event.seq));
        }
        if Instant::now() > deadline {
            bail!("no `{to}` event for {backend} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stats(samples: &mut [u64]) -> (u64, u64, u64) {
    samples.sort_unstable();
    (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    )
}

pub fn run(repeats: u32, agent: PathBuf) -> anyhow::Result<String> {
    let opts = ClusterOptions {
        health: Some(format!(
            "check = \"postgres\"\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"{TIMEOUT_MS}ms\"\njitter = \"20ms\"\nrise = {RISE}\nfall = {FALL}\n"
        )),
        ..ClusterOptions::new(1, agent)
    };
    let cluster = Cluster::up(&opts)?;
    let mut victim = cluster.pgbouncers[2].clone();
    let backend = format!("{}:{}", cluster.backend.ipv4(), victim.port());
    let mut after = 0;
    let (mut removal, mut back) = (Vec::new(), Vec::new());
    std::thread::sleep(Duration::from_secs(1));
    for round in 0..repeats {
        let killed = now_ms();
        cluster.lab.kill(victim.pid(), Signal::SIGKILL)?;
        let (down_at, seq) = wait_event(&cluster, after, &backend, "down")?;
        after = seq;
        victim = PgBouncer::start(
            &cluster.backend,
            "*",
            victim.port(),
            std::net::Ipv4Addr::LOCALHOST,
            PG_PORT,
            &PgBouncerOptions::default(),
        )?;
        let ready = now_ms();
        let (up_at, seq) = wait_event(&cluster, after, &backend, "up")?;
        after = seq;
        let (r, b) = (down_at.saturating_sub(killed), up_at.saturating_sub(ready));
        eprintln!("round {round}: removed {r} ms after kill -9, back {b} ms after the restart");
        removal.push(r);
        back.push(b);
    }
    let (rmin, rmed, rmax) = stats(&mut removal);
    let (bmin, bmed, bmax) = stats(&mut back);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Health: check postgres, interval {INTERVAL_MS} ms, timeout {TIMEOUT_MS} ms, fall {FALL}, rise {RISE}, jitter 20 ms; {repeats} rounds"
    );
    let _ = writeln!(
        out,
        "| what | min (ms) | median (ms) | max (ms) | bound (ms) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| kill -9 PgBouncer -> out of the data plane | {rmin} | {rmed} | {rmax} | fall x interval + timeout + jitter = {} |",
        FALL * INTERVAL_MS + TIMEOUT_MS + 2 * 20
    );
    let _ = writeln!(
        out,
        "| PgBouncer ready again -> back in the data plane | {bmin} | {bmed} | {bmax} | rise x interval + jitter = {} |",
        RISE * INTERVAL_MS + 2 * 20
    );
    Ok(out)
}

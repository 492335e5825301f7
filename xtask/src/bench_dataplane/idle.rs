//! The agent at rest: RSS and CPU of each agent of a 2-node lab with the
//! heartbeat at 1 ms and 3 services, from /proc over a window; then again
//! with 100,000 flows written into the master's flow table (through its
//! pinned map, as a peer's replication would: flows the agent did not
//! see created).

use std::{fmt::Write as _, net::Ipv4Addr, path::Path, time::Duration};

use anyhow::Context as _;
use vipx_common::{FAMILY_V4, Flow, FlowKey};
use vipx_lab::{Cluster, ClusterOptions, LabOptions, Pid, VIP_PORT};

use super::{cost::stat_fields, setup::now_ns};

/// Flows of the second measure.
const FLOWS: u32 = 100_000;

/// utime + stime of `pid`, in seconds.
fn cpu_secs(pid: Pid) -> anyhow::Result<f64> {
    let [utime, stime] = stat_fields(pid, [14, 15]).context("reading /proc/PID/stat")?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((utime + stime) as f64 / hz)
}

/// VmRSS of `pid`, in MB.
fn rss_mb(pid: Pid) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// RSS (at the end) and CPU share of one core, per node, over `window`.
fn measure(cluster: &Cluster, window: Duration) -> anyhow::Result<Vec<(f64, f64)>> {
    let pids: Vec<Pid> = cluster.nodes.iter().map(|n| n.agent).collect();
    let before = pids
        .iter()
        .map(|p| cpu_secs(*p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::thread::sleep(window);
    pids.iter()
        .zip(before)
        .map(|(pid, before)| {
            Ok((
                rss_mb(*pid)?,
                (cpu_secs(*pid)? - before) / window.as_secs_f64() * 100.0,
            ))
        })
        .collect()
}

/// Writes `FLOWS` flows of the first service into node 0's flow table.
fn fill(cluster: &Cluster) -> anyhow::Result<()> {
    let now = now_ns();
    let vip = cluster.vip();
    let flows = (0..FLOWS).map(|i| {
        let mut key = FlowKey {
            sport: 1024 + (i % 50_000) as u16,
            dport: VIP_PORT,
            proto: 6,
            family: FAMILY_V4,
            ..FlowKey::default()
        };
        key.src[..4].copy_from_slice(&(0xac10_0000 + i / 50_000).to_be_bytes());
        key.dst[..4].copy_from_slice(&vip.octets());
        // Established (answered) sessions: an embryonic flow would be
        // forgotten after seconds.
        let flow = Flow {
            flags: vipx_common::flow::FLOW_F_ESTABLISHED,
            created_ns: now,
            last_seen_ns: now,
            ..Flow::default()
        };
        (key, flow)
    });
    vipx_lab::pins::insert_pinned_flows(&cluster.nodes[0].pin_path, flows)
}

/// The extra services' lines (3 services in all with the cluster's own).
fn extra_services() -> String {
    let net: Ipv4Addr = LabOptions::default().v4_net;
    let vip = Ipv4Addr::from(u32::from(net) + 100);
    let backend = Ipv4Addr::from(u32::from(net) + 31);
    [5433u16, 5434]
        .iter()
        .map(|port| {
            format!(
                "[[service]]\nname = \"idle-{port}\"\nvip = \"{vip}\"\nport = {port}\nbackends = [{{ address = \"{backend}\", port = 6432 }}]\n"
            )
        })
        .collect()
}

/// A settled 2-node cluster with 3 services and the heartbeat at `every`.
fn cluster(agent: &Path, every: Duration) -> anyhow::Result<Cluster> {
    let cluster = Cluster::up(&ClusterOptions {
        heartbeat: Some(every),
        extra_config: extra_services(),
        ..ClusterOptions::new(2, agent.to_path_buf())
    })?;
    cluster.wait_master(0, Duration::from_secs(20))?;
    // Settled: the election and the first checks are over.
    std::thread::sleep(Duration::from_secs(5));
    Ok(cluster)
}

/// The idle table: the heartbeat at 1 ms, idle and with 100,000 flows; then
/// at 10 ms, which tells what each heartbeat costs from what the rest does.
pub fn table(agent: &Path, window: Duration) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Idle agents (2 nodes, 3 services; /proc over {} s)",
        window.as_secs()
    );
    let _ = writeln!(
        out,
        "| heartbeat | state | node | RSS (MB) | CPU (% of one core) |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|");
    let mut rows = Vec::new();
    {
        let fast = cluster(agent, Duration::from_millis(1))?;
        rows.push(("1 ms", "idle", measure(&fast, window)?));
        fill(&fast)?;
        std::thread::sleep(Duration::from_secs(2));
        rows.push(("1 ms", "100,000 flows on n1", measure(&fast, window)?));
    }
    let slow = cluster(agent, Duration::from_millis(10))?;
    rows.push(("10 ms", "idle", measure(&slow, window)?));
    for (heartbeat, state, nodes) in rows {
        for (i, (rss, cpu)) in nodes.iter().enumerate() {
            let role = if i == 0 { "master" } else { "backup" };
            let _ = writeln!(
                out,
                "| {heartbeat} | {state} | n{} ({role}) | {rss:.1} | {cpu:.2} |",
                i + 1
            );
        }
    }
    let _ = writeln!(out, "Aim: under 30 MB RSS and under 1% of one core.");
    Ok(out)
}

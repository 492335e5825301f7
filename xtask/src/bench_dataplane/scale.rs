//! How the cost of a flow hit grows with the flows in the table: the
//! tables filled from user space with distinct flows (to the dsr service's
//! first backend in vipx, MAC-only in the floor), then the hit rows timed
//! as in the main table. One flow is hit, so its entry stays cached: the
//! rows show the hash table's growth, not cache misses of a wide working
//! set.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use vipx_common::{FAMILY_V4, Flow, FlowKey, floor::FLOOR_MODE_DSR};
use vipx_lab::floor::FloorFlow;

use super::{
    setup::{BACKEND, DSR_PORT, VIP, now_ns},
    stats::Rounds,
    xdp::{Bench, REPEAT, Row},
};

/// The table sizes.
const LEVELS: [u32; 3] = [1_000, 100_000, 1_000_000];
/// Room in the tables: above the largest level, so that the LRU never
/// evicts.
const CAPACITY: u32 = 1_250_000;

/// The `i`th filler flow: from 172.16.0.0/12 (never the bench's client).
fn filler(i: u32) -> FlowKey {
    let mut key = FlowKey {
        sport: 1024 + (i % 50_000) as u16,
        dport: DSR_PORT,
        proto: 6,
        family: FAMILY_V4,
        ..FlowKey::default()
    };
    let host = 0xac10_0000 + i / 50_000;
    key.src[..4].copy_from_slice(&host.to_be_bytes());
    key.dst[..4].copy_from_slice(&VIP.octets());
    key
}

/// The scaling table.
pub fn table(floor_object: &Path, rounds: u32) -> anyhow::Result<String> {
    let mut bench = Bench::new(floor_object, CAPACITY)?;
    bench.check()?;
    let dsr = bench
        .rig
        .table
        .service_id(&super::setup::services()[1].key())
        .context("no dsr service")?;
    let backend = bench
        .rig
        .table
        .backend_id(std::net::IpAddr::V4(BACKEND), DSR_PORT)
        .context("no dsr backend")?;
    let now = now_ns();
    let flow = Flow {
        backend,
        service: dsr,
        created_ns: now,
        last_seen_ns: now,
        ..Flow::default()
    };
    let floor_flow = FloorFlow {
        mode: FLOOR_MODE_DSR,
        mac: vipx_lab::rig::backend_mac(std::net::IpAddr::V4(BACKEND)),
        ..FloorFlow::default()
    };
    let rows = [Row::FloorDsr, Row::DsrHit, Row::FloorNat, Row::NatHit];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Flow hit as the flow table grows (one frame x {REPEAT}; median (min-max) of {rounds} rounds; flows written from user space, the same count in the floor's table)"
    );
    let _ = writeln!(
        out,
        "| flows in the table | floor dsr ns | vipx dsr ns | dsr x floor | floor nat ns | vipx nat ns | nat x floor |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    let mut filled = 0;
    let maps = bench.rig.dataplane.maps();
    for level in LEVELS {
        while filled < level {
            let key = filler(filled);
            maps.insert_flow(&key, &flow, None)?;
            bench.floor.insert(&key, &floor_flow)?;
            filled += 1;
        }
        let mut ns = vec![Rounds::default(); rows.len()];
        for _ in 0..rounds {
            for (i, row) in rows.iter().enumerate() {
                ns[i].push(bench.time(*row, REPEAT)?);
            }
        }
        let _ = writeln!(
            out,
            "| {level} | {} | {} | {} | {} | {} | {} |",
            ns[0].cell(1),
            ns[1].cell(1),
            ns[1].ratio_to(&ns[0]).cell(2),
            ns[2].cell(1),
            ns[3].cell(1),
            ns[3].ratio_to(&ns[2]).cell(2),
        );
    }
    Ok(out)
}

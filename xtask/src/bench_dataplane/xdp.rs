//! XDP cost per packet through `BPF_PROG_TEST_RUN`, every row timed the
//! same way (one frame run `repeat` times in the kernel, the kernel's mean),
//! beside the floor program timed in the same rounds.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use vipx_common::{action::TX, reason};
use vipx_lab::{floor::Floor, frames::tcp, rig::Rig};

use super::{
    setup::{self, CHAIN_PORT, CLIENT, DSR_PORT, VIP},
    stats::Rounds,
};

/// Runs of a hit row per round.
pub const REPEAT: u32 = 1_000_000;
/// New flows in one chain (one `repeat` call of the miss row).
const CHAIN: u32 = 32;
/// Chains per round.
const CHAINS: u16 = 400;

/// The rows, in print order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Empty,
    FloorDsr,
    FloorNat,
    NotService,
    DsrHit,
    NatHit,
    NatReply,
    NatMiss,
}

impl Row {
    pub const ALL: [Row; 8] = [
        Row::Empty,
        Row::FloorDsr,
        Row::FloorNat,
        Row::NotService,
        Row::DsrHit,
        Row::NatHit,
        Row::NatReply,
        Row::NatMiss,
    ];

    fn name(self) -> &'static str {
        match self {
            Row::Empty => "empty XDP_PASS program",
            Row::FloorDsr => "floor, dsr (parse, 1 lookup, MACs)",
            Row::FloorNat => "floor, nat (+ addresses, ports, checksums)",
            Row::NotService => "vipx: not a service (passed)",
            Row::DsrHit => "vipx: flow hit, dsr",
            Row::NatHit => "vipx: flow hit, nat",
            Row::NatReply => "vipx: backend reply, nat (translated back)",
            Row::NatMiss => "vipx: flow miss, nat (Maglev + NAT port + inserts)",
        }
    }

    /// The floor row this row is compared with.
    fn floor(self) -> Row {
        match self {
            Row::Empty | Row::FloorDsr | Row::NotService | Row::DsrHit => Row::FloorDsr,
            _ => Row::FloorNat,
        }
    }
}

/// The loaded programs and the frames of each row.
pub struct Bench {
    pub rig: Rig,
    pub floor: Floor,
    dsr: Vec<u8>,
    other: Vec<u8>,
    hit: [Vec<u8>; 2],
    reply: [Vec<u8>; 2],
    round: u16,
}

impl Bench {
    /// vipx with room for `flows` flows, the floor with as many.
    pub fn new(floor_object: &Path, flows: u32) -> anyhow::Result<Self> {
        let specs = setup::services();
        let dataplane = vipx_agent::dataplane::Dataplane::load_with(flows)
            .context("load the XDP object (cargo xtask build-ebpf --release)")?;
        let mut rig = Rig::with_dataplane(dataplane, &specs, Duration::from_secs(24 * 3600))?;
        let mut floor = Floor::load(floor_object, flows)?;
        let dsr = setup::frame(CLIENT, 1000, VIP, DSR_PORT, tcp::ACK);
        let hit = setup::hit_pair(&rig, &specs)?;
        setup::floor_flows(&mut floor, &dsr, &hit)?;
        let (action, _) = rig.run(&setup::frame(CLIENT, 1000, VIP, DSR_PORT, tcp::SYN).build())?;
        expect("dsr SYN", action, TX)?;
        let reply = setup::reply_pair(&rig, &specs)?;
        let other = setup::frame(
            CLIENT,
            40000,
            std::net::Ipv4Addr::new(10, 77, 0, 12),
            22,
            tcp::ACK,
        );
        let bench = Self {
            rig,
            floor,
            dsr: dsr.build(),
            other: other.build(),
            hit: [hit[0].build(), hit[1].build()],
            reply,
            round: 0,
        };
        Ok(bench)
    }

    /// Checks that each pair translates into itself and back, in vipx and
    /// in the floor: what `repeat` then times is hits, never a pass.
    pub fn check(&mut self) -> anyhow::Result<()> {
        for (what, pair) in [
            ("nat hit", self.hit.clone()),
            ("nat reply", self.reply.clone()),
        ] {
            for (from, to) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
                let (action, out) = self.rig.run(from)?;
                expect(what, action, TX)?;
                if setup::tuple(&out)? != setup::tuple(to)? {
                    bail!("{what}: the pair does not translate into itself");
                }
            }
        }
        for (from, to) in [(&self.hit[0], &self.hit[1]), (&self.hit[1], &self.hit[0])] {
            let (action, out, _) = self.floor.run_repeat(from, 1)?;
            expect("floor nat", action, TX)?;
            if setup::tuple(&out)? != setup::tuple(to)? {
                bail!("floor nat: the pair does not translate into itself");
            }
        }
        let (action, _, _) = self.floor.run_repeat(&self.dsr, 1)?;
        expect("floor dsr", action, TX)
    }

    /// ns per packet of one row, timed once.
    pub fn time(&mut self, row: Row, repeat: u32) -> anyhow::Result<f64> {
        let took = match row {
            Row::Empty => self.rig.run_pass(&self.dsr, repeat)?.2,
            Row::FloorDsr => self.floor.run_repeat(&self.dsr, repeat)?.2,
            Row::FloorNat => self.floor.run_repeat(&self.hit[0], repeat)?.2,
            Row::NotService => self.rig.run_repeat(&self.other, repeat)?.2,
            Row::DsrHit => self.run_tx(&self.dsr.clone(), repeat)?,
            Row::NatHit => self.run_tx(&self.hit[0].clone(), repeat)?,
            Row::NatReply => self.run_tx(&self.reply[0].clone(), repeat)?,
            Row::NatMiss => return self.misses(),
        };
        Ok(took.as_nanos() as f64)
    }

    fn run_tx(&mut self, frame: &[u8], repeat: u32) -> anyhow::Result<Duration> {
        let (action, _, took) = self.rig.run_repeat(frame, repeat)?;
        expect("forwarded", action, TX)?;
        Ok(took)
    }

    /// The miss row: chains of new flows (each new flow's translated frame
    /// is a new flow of the service back), `CHAIN` per `repeat` call; the
    /// counters say how many runs were misses, and the mean is of those
    /// calls whose every run was one.
    fn misses(&mut self) -> anyhow::Result<f64> {
        self.round += 1;
        let first = 2000 + self.round * CHAINS;
        let mut sum = 0.0;
        let mut calls = 0u32;
        for port in first..first + CHAINS {
            let before = self.rig.counters()?.reason(reason::FLOW_NEW).packets;
            let frame = setup::frame(CLIENT, port, VIP, CHAIN_PORT, tcp::SYN).build();
            let (action, _, took) = self.rig.run_repeat(&frame, CHAIN)?;
            expect("nat flow miss", action, TX)?;
            let new = self.rig.counters()?.reason(reason::FLOW_NEW).packets - before;
            if new == u64::from(CHAIN) {
                sum += took.as_nanos() as f64;
                calls += 1;
            }
        }
        if calls < u32::from(CHAINS) / 2 {
            bail!("nat flow miss: only {calls} of {CHAINS} chains were all new flows");
        }
        self.forget_chains();
        Ok(sum / f64::from(calls))
    }

    /// Forgets the miss row's flows and NAT entries (outside the timing).
    fn forget_chains(&self) {
        let maps = self.rig.dataplane.maps();
        let chain = |k: &vipx_common::FlowKey| {
            k.dport == CHAIN_PORT || k.sport == CHAIN_PORT || k.dport == 6450 || k.sport == 6450
        };
        for (key, _) in maps.flows() {
            if chain(&key) {
                maps.forget_flow(&key, None);
            }
        }
        for (key, _) in maps.nat_entries() {
            if chain(&key) {
                // No flow has a NAT entry's key: this removes the entry.
                maps.forget_flow(&key, Some(&key));
            }
        }
    }
}

fn expect(what: &str, action: u32, wanted: u32) -> anyhow::Result<()> {
    if action != wanted {
        bail!("{what}: action {action}, expected {wanted}");
    }
    Ok(())
}

/// The XDP table: every row in every round, rows interleaved.
pub fn table(bench: &mut Bench, rounds: u32) -> anyhow::Result<String> {
    bench.check()?;
    let mut ns: Vec<Rounds> = vec![Rounds::default(); Row::ALL.len()];
    for _ in 0..rounds {
        for (i, row) in Row::ALL.iter().enumerate() {
            ns[i].push(bench.time(*row, REPEAT)?);
        }
    }
    let at = |row: Row| Row::ALL.iter().position(|r| *r == row).unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "XDP cost per packet (BPF_PROG_TEST_RUN, one frame x {REPEAT} per round; the miss row {CHAINS} chains of {CHAIN} new flows; median (min-max) of {rounds} rounds)"
    );
    let _ = writeln!(out, "| case | ns/packet | x floor | x empty |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (i, row) in Row::ALL.iter().enumerate() {
        let floor = &ns[at(row.floor())];
        let _ = writeln!(
            out,
            "| {} | {} | {} ({}) | {} |",
            row.name(),
            ns[i].cell(1),
            ns[i].ratio_to(floor).cell(2),
            if row.floor() == Row::FloorDsr {
                "dsr"
            } else {
                "nat"
            },
            ns[i].ratio_to(&ns[at(Row::Empty)]).cell(2),
        );
    }
    let _ = writeln!(
        out,
        "Aims: flow hit (nat and dsr) <= 1.5x floor; flow miss <= 5x floor (nat). The floor keys its hash by vipx's 40-byte 5-tuple."
    );
    Ok(out)
}

//! Random and mutated frames through the real XDP program
//! (`BPF_PROG_TEST_RUN`), each checked against rules decided without the
//! program (`fuzz/oracle.rs`): traffic not for a VIP passes unchanged, a
//! VIP's packet goes nowhere but to its flow's backend (or, a reply, to
//! its flow's client), and the counters add up to the frames run.
//!
//! 1,000,000 frames by default, from a seeded RNG: `VIPX_FUZZ_FRAMES`
//! and `VIPX_FUZZ_SEED` choose others (`cargo xtask fuzz --frames N
//! --seed S` sets both); the seed is printed first and in every failure.
//! The program runs in epochs of [`EPOCH`] frames, each on a freshly
//! loaded program, so no flow is ever evicted from its LRU tables (the
//! model could not tell an eviction from a lost flow).

mod fuzz;

use std::{collections::BTreeMap, time::Duration};

use vipx_agent::dataplane::{CounterSnapshot, Dataplane};
use vipx_common::{action, reason};
use vipx_lab::rig::Rig;

use fuzz::{
    VIPS,
    frames::{Gen, Kind},
    oracle::{Model, Sent},
    services,
};

/// Frames run on one loaded program.
const EPOCH: u64 = 50_000;
/// Flow (and NAT) table size: more than an epoch's frames, so nothing is
/// evicted.
const FLOW_ENTRIES: u32 = 131_072;

/// What a run saw.
#[derive(Default)]
struct Tallies {
    kinds: BTreeMap<Kind, u64>,
    actions: [u64; action::COUNT as usize],
    reasons: [u64; reason::COUNT as usize],
    to_backend: u64,
    to_client: u64,
    icmp: (u64, u64),
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

#[test]
fn random_and_mutated_frames_keep_the_rules() {
    let frames = env_u64("VIPX_FUZZ_FRAMES").unwrap_or(1_000_000);
    let seed = env_u64("VIPX_FUZZ_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "fuzz: seed {seed}, {frames} frames (repeat: VIPX_FUZZ_SEED={seed} VIPX_FUZZ_FRAMES={frames})"
    );
    let mut tallies = Tallies::default();
    let mut done = 0;
    while done < frames {
        let count = EPOCH.min(frames - done);
        epoch(seed, done, count, &mut tallies);
        done += count;
    }
    println!("fuzz: {done} frames run, seed {seed}");
    for (kind, n) in &tallies.kinds {
        println!("  made as {kind:?}: {n}");
    }
    for (slot, n) in tallies.actions.iter().enumerate().filter(|(_, n)| **n > 0) {
        println!("  action {}: {n}", action::NAMES[slot]);
    }
    for (slot, n) in tallies.reasons.iter().enumerate().filter(|(_, n)| **n > 0) {
        println!("  reason {}: {n}", reason::NAMES[slot]);
    }
    println!(
        "  sent to a backend: {}, to a client: {}; ICMP errors to a backend: {}, to a client: {}",
        tallies.to_backend, tallies.to_client, tallies.icmp.0, tallies.icmp.1
    );
    assert_eq!(done, frames);
}

/// Runs frames `first..first + count` on a fresh program.
fn epoch(seed: u64, first: u64, count: u64, tallies: &mut Tallies) {
    let dataplane = Dataplane::load_with(FLOW_ENTRIES)
        .expect("load the XDP object (cargo xtask build-ebpf --release)");
    let mut rig = Rig::with_dataplane(dataplane, &services(), Duration::from_secs(3600))
        .expect("install the services");
    let mut model = Model::new(services());
    let mut make = Gen::new(seed ^ first.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let before = rig.counters().expect("counters");
    let (mut actions, mut bytes, mut to_backend, mut to_client) =
        ([0u64; action::COUNT as usize], 0, 0, 0);
    let mut icmp = (0, 0);
    for index in first..first + count {
        let (kind, frame) = make.frame(&model.opened);
        let (act, out) = rig.run(&frame).expect("BPF_PROG_TEST_RUN");
        match model.check(&frame, act, &out, &VIPS) {
            Ok(Some(Sent::ToBackend)) => to_backend += 1,
            Ok(Some(Sent::ToClient)) => to_client += 1,
            Ok(Some(Sent::IcmpToBackend)) => icmp.0 += 1,
            Ok(Some(Sent::IcmpToClient)) => icmp.1 += 1,
            Ok(None) => {}
            Err(why) => panic!(
                "fuzz frame {index} (seed {seed}, made as {kind:?}), action {}: {why}\n  input {}",
                action::NAMES.get(act as usize).unwrap_or(&"?"),
                frame.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        }
        *tallies.kinds.entry(kind).or_default() += 1;
        actions[act as usize] += 1;
        bytes += frame.len() as u64;
    }
    let after = rig.counters().expect("counters");
    check_counters(
        &before,
        &after,
        count,
        bytes,
        &actions,
        (to_backend, to_client),
        icmp,
    );
    for (slot, n) in actions.iter().enumerate() {
        tallies.actions[slot] += n;
    }
    for (slot, total) in tallies.reasons.iter_mut().enumerate() {
        *total += after.reason(slot as u32).packets - before.reason(slot as u32).packets;
    }
    tallies.to_backend += to_backend;
    tallies.to_client += to_client;
    tallies.icmp.0 += icmp.0;
    tallies.icmp.1 += icmp.1;
}

/// Every frame counted once under its action and once under a reason,
/// with its bytes; the sent frames under the reasons that send.
fn check_counters(
    before: &CounterSnapshot,
    after: &CounterSnapshot,
    frames: u64,
    bytes: u64,
    actions: &[u64],
    (to_backend, to_client): (u64, u64),
    (icmp_to_backend, icmp_to_client): (u64, u64),
) {
    let moved = |slots: u32, get: &dyn Fn(&CounterSnapshot, u32) -> vipx_common::Counter| {
        (0..slots).fold((0, 0), |(p, b), slot| {
            let (old, new) = (get(before, slot), get(after, slot));
            (p + new.packets - old.packets, b + new.bytes - old.bytes)
        })
    };
    let reasons = moved(reason::COUNT, &|c, s| c.reason(s));
    assert_eq!(
        reasons,
        (frames, bytes),
        "reason counters (packets, bytes) against the frames run"
    );
    assert_eq!(
        moved(action::COUNT, &|c, s| c.action(s)),
        (frames, bytes),
        "action counters against the frames run"
    );
    for (slot, n) in actions.iter().enumerate() {
        let counted = after.action(slot as u32).packets - before.action(slot as u32).packets;
        assert_eq!(
            counted,
            *n,
            "action {} counted against returned",
            action::NAMES[slot]
        );
    }
    let delta = |slot| after.reason(slot).packets - before.reason(slot).packets;
    assert_eq!(
        delta(reason::NAT_REPLY),
        to_client,
        "nat_reply against replies sent"
    );
    assert_eq!(
        delta(reason::FLOW_NEW) + delta(reason::FLOW_HIT),
        to_backend,
        "flow_new + flow_hit against frames sent to backends"
    );
    assert_eq!(
        (
            delta(reason::ICMP_TO_BACKEND),
            delta(reason::ICMP_TO_CLIENT)
        ),
        (icmp_to_backend, icmp_to_client),
        "icmp_to_backend, icmp_to_client against the ICMP errors sent on"
    );
}

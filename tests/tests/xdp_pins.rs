//! XDP outlives its data plane: the maps and the XDP link of each
//! interface are pinned in bpffs. A data plane dropped without a stop (as
//! a killed agent's is) leaves XDP attached and its pins; the next one on
//! the same directory adopts the link (same link, new program) and the
//! maps with their flows; a clean stop detaches and removes every pin. A
//! pinned map whose layout is not the program's is replaced, not adopted.
//! Link pins follow the interfaces and the mode (what a reload changes):
//! a detach unpins, another mode replaces the pin, and the link of an
//! interface no longer configured is removed.
//!
//! Each test runs in a lab of its own: its node's namespace, and a bpffs
//! the lab mounts and unmounts (pins and all), also on panic.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use aya::{maps::MapType, programs::links::FdLink};
use vipx_agent::{
    config::XdpModeConfig,
    dataplane::{Dataplane, MapLayout},
};
use vipx_common::{Flow, FlowKey, action, reason};
use vipx_lab::{
    Host, Lab, LabOptions,
    frames::{FrameSpec, tcp},
    pins_under,
    rig::{self, CLIENT_MAC, NODE_MAC, Rig},
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 21));
const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 31));
/// `flow_table_size` of the data planes here.
const FLOW_ENTRIES: u32 = 4096;
/// A lease that outlives the test.
const LEASE: Duration = Duration::from_secs(3600);

/// The link pinned at `path`: its id and its program's id.
fn pinned_link(path: &Path) -> (u32, u32) {
    let link: FdLink = aya::programs::links::PinnedLink::from_pin(path)
        .unwrap_or_else(|err| panic!("no link pinned at {}: {err}", path.display()))
        .into();
    let info = link.info().expect("link info");
    (info.id(), info.program_id())
}

fn names(pins: &Path) -> Vec<String> {
    pins_under(pins)
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect()
}

/// A lab with one node, and the node's pin directory (not created yet).
fn lab_with_node() -> (Lab, Host, PathBuf) {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let node = lab.add_host("node", &lab.v4(11)).expect("add node");
    let pins = lab.pin_dir("node").expect("the lab's bpffs");
    (lab, node, pins)
}

fn syn(sport: u16) -> FrameSpec {
    FrameSpec::tcp(CLIENT, sport, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC)
}

#[test]
fn a_dropped_data_plane_leaves_xdp_attached_and_the_next_one_adopts_it() {
    let (_lab, node, pins) = lab_with_node();
    let spec = rig::nat_spec(VIP, BACKEND, 251);

    // The first data plane: attached, pinned, one flow opened through the
    // program (a SYN to the VIP, as MASTER with a fresh lease).
    let first = Dataplane::load_pinned(FLOW_ENTRIES, &pins).expect("load pinned");
    let created = first.pin_report().expect("pinned").clone();
    assert!(
        created.adopted.is_empty() && created.replaced.is_empty(),
        "nothing to adopt in a fresh directory: {created:?}"
    );
    assert!(
        created.created.iter().any(|m| m == "VIPX_FLOWS")
            && created.created.iter().any(|m| m == "VIPX_NAT")
            && created.created.iter().any(|m| m == "VIPX_GROUPS"),
        "the flow, NAT and group maps are pinned: {created:?}"
    );
    let mut first = Rig::with_dataplane(first, std::slice::from_ref(&spec), LEASE).expect("rig");
    let mode = node
        .enter(|| first.dataplane.attach("eth0", XdpModeConfig::Auto))
        .expect("enter node")
        .expect("attach XDP to eth0");
    let link_pin = pins.join(format!("link_eth0_{mode}"));
    let (link_id, first_prog) = pinned_link(&link_pin);
    assert_eq!(
        node.xdp_prog_id(),
        Some(first_prog),
        "eth0 runs the program of the pinned link"
    );
    let (act, _) = first.run(&syn(47000).build()).expect("run SYN");
    assert_eq!(act, action::TX, "the SYN is forwarded");
    let flow: Flow = first.flow(&syn(47000)).expect("the SYN opened a flow");
    let backend_ids: Vec<Option<u32>> = spec
        .backends
        .iter()
        .map(|b| first.table.backend_id(b.addr, b.port))
        .collect();

    // Dropped without a stop, as kill -9 would: XDP and the pins stay.
    drop(first);
    assert_eq!(
        node.xdp_prog_id(),
        Some(first_prog),
        "the program stays attached to eth0"
    );
    let left = names(&pins);
    for pin in created.created.iter().chain([&format!("link_eth0_{mode}")]) {
        assert!(left.contains(pin), "{pin} stays pinned: {left:?}");
    }

    // The next data plane adopts the maps and the link.
    let second = Dataplane::load_pinned(FLOW_ENTRIES, &pins).expect("load pinned again");
    let report = second.pin_report().expect("pinned").clone();
    assert_eq!(report.adopted, created.created, "every map is adopted");
    assert!(report.created.is_empty() && report.replaced.is_empty());
    let mut second =
        Rig::with_dataplane(second, std::slice::from_ref(&spec), LEASE).expect("rig again");
    let again = node
        .enter(|| second.dataplane.attach("eth0", XdpModeConfig::Auto))
        .expect("enter node")
        .expect("adopt the link");
    assert_eq!(again, mode, "adopted in the mode it was pinned in");
    let (adopted_id, second_prog) = pinned_link(&link_pin);
    assert_eq!(adopted_id, link_id, "the same link");
    assert_ne!(second_prog, first_prog, "now running the new program");
    assert_eq!(node.xdp_prog_id(), Some(second_prog));
    let kept: Vec<Option<u32>> = spec
        .backends
        .iter()
        .map(|b| second.table.backend_id(b.addr, b.port))
        .collect();
    assert_eq!(kept, backend_ids, "the backends keep their ids");
    let still = second.flow(&syn(47000)).expect("the flow is still there");
    assert_eq!(
        (still.backend, still.nat_port, still.created_ns),
        (flow.backend, flow.nat_port, flow.created_ns),
        "the same flow"
    );
    // Its next packet is a hit in the adopted table, through the new
    // program.
    let hits = second
        .counters()
        .expect("counters")
        .reason(reason::FLOW_HIT);
    let ack = FrameSpec::tcp(CLIENT, 47000, VIP, 5432, tcp::ACK).macs(CLIENT_MAC, NODE_MAC);
    assert_eq!(second.run(&ack.build()).expect("run ACK").0, action::TX);
    let after = second
        .counters()
        .expect("counters")
        .reason(reason::FLOW_HIT);
    assert_eq!(after.packets, hits.packets + 1, "one flow hit");
    assert_eq!(
        second.flow(&syn(47000)).map(|f| (f.backend, f.nat_port)),
        Some((flow.backend, flow.nat_port))
    );

    // A clean stop detaches and removes every pin.
    let Rig { dataplane, .. } = second;
    dataplane.stop();
    assert_eq!(node.xdp_prog_id(), None, "XDP detached from eth0");
    assert_eq!(pins_under(&pins), Vec::<PathBuf>::new(), "no pin left");
    assert!(!pins.exists(), "the pin directory is gone");
}

#[test]
fn a_pinned_map_of_another_layout_is_replaced() {
    let (_lab, _node, pins) = lab_with_node();
    std::fs::create_dir_all(&pins).expect("create the pin directory");
    // By hand: a VIPX_FLOWS of the flow key but a 4-byte value.
    let flows = pins.join("VIPX_FLOWS");
    let key = size_of::<FlowKey>().to_string();
    let entries = FLOW_ENTRIES.to_string();
    let out = Command::new("bpftool")
        .args(["map", "create"])
        .arg(&flows)
        .args(["type", "lru_hash", "key", &key, "value", "4"])
        .args(["entries", &entries, "name", "VIPX_FLOWS"])
        .output()
        .expect("run bpftool");
    assert!(
        out.status.success(),
        "bpftool map create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_hand = MapLayout::of_pin(&flows).expect("the hand-made map");
    assert_eq!(by_hand.value_size, 4);

    let dataplane = Dataplane::load_pinned(FLOW_ENTRIES, &pins).expect("load pinned");
    let report = dataplane.pin_report().expect("pinned").clone();
    assert_eq!(report.replaced, ["VIPX_FLOWS"], "{report:?}");
    assert!(report.adopted.is_empty(), "{report:?}");
    let pinned = MapLayout::of_pin(&flows).expect("the new VIPX_FLOWS");
    assert_eq!(pinned.map_type, MapType::Hash);
    assert_eq!(pinned.key_size as usize, size_of::<FlowKey>());
    assert_eq!(
        pinned.value_size as usize,
        size_of::<Flow>(),
        "the program's value"
    );
    assert_eq!(pinned.max_entries, FLOW_ENTRIES);
    // It is the program's flow table: a SYN's flow lands in it.
    let spec = rig::nat_spec(VIP, BACKEND, 251);
    let mut rig = Rig::with_dataplane(dataplane, std::slice::from_ref(&spec), LEASE).expect("rig");
    assert_eq!(rig.run(&syn(47001).build()).expect("run").0, action::TX);
    assert!(rig.flow(&syn(47001)).is_some(), "the flow is recorded");
    drop(rig);

    // Another flow_table_size: the flow and NAT tables are replaced (their
    // sizes differ), everything else is adopted.
    let bigger = Dataplane::load_pinned(2 * FLOW_ENTRIES, &pins).expect("load pinned again");
    let report = bigger.pin_report().expect("pinned");
    assert_eq!(report.replaced, ["VIPX_FLOWS", "VIPX_NAT"], "{report:?}");
    assert!(report.created.is_empty(), "{report:?}");
    assert!(
        report.adopted.iter().any(|m| m == "VIPX_GROUPS"),
        "{report:?}"
    );
    let flows_now = MapLayout::of_pin(&flows).expect("VIPX_FLOWS");
    assert_eq!(flows_now.max_entries, 2 * FLOW_ENTRIES);
    bigger.stop();
    assert_eq!(pins_under(&pins), Vec::<PathBuf>::new(), "no pin left");
}

#[test]
fn flow_tables_an_older_agent_pinned_as_lru_maps_are_replaced() {
    // Agents before issue 13 had LRU flow and NAT tables, of the same key,
    // value and size: the type alone differs, and must not be adopted (an
    // LRU table would go on evicting live flows).
    let (_lab, _node, pins) = lab_with_node();
    std::fs::create_dir_all(&pins).expect("create the pin directory");
    let entries = FLOW_ENTRIES.to_string();
    let key = size_of::<FlowKey>().to_string();
    for (name, value) in [
        ("VIPX_FLOWS", size_of::<Flow>()),
        ("VIPX_NAT", size_of::<vipx_common::NatEntry>()),
    ] {
        let out = Command::new("bpftool")
            .args(["map", "create"])
            .arg(pins.join(name))
            .args(["type", "lru_hash", "key", &key, "value", &value.to_string()])
            .args(["entries", &entries, "name", name])
            .output()
            .expect("run bpftool");
        assert!(
            out.status.success(),
            "bpftool map create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dataplane = Dataplane::load_pinned(FLOW_ENTRIES, &pins).expect("load pinned");
    let report = dataplane.pin_report().expect("pinned").clone();
    assert_eq!(report.replaced, ["VIPX_FLOWS", "VIPX_NAT"], "{report:?}");
    for name in ["VIPX_FLOWS", "VIPX_NAT"] {
        let layout = MapLayout::of_pin(&pins.join(name)).expect("the new map");
        assert_eq!(layout.map_type, MapType::Hash, "{name}: {layout}");
    }
    dataplane.stop();
}

/// The file names of the link pins in `pins`.
fn link_pins(pins: &Path) -> Vec<String> {
    names(pins)
        .into_iter()
        .filter(|n| n.starts_with("link_"))
        .collect()
}

#[test]
fn link_pins_follow_the_configured_interfaces_and_mode() {
    let (_lab, node, pins) = lab_with_node();
    // A data plane attached in driver mode (veth has it), then killed.
    let mut first = Dataplane::load_pinned(FLOW_ENTRIES, &pins).expect("load pinned");
    node.enter(|| first.attach("eth0", XdpModeConfig::Driver))
        .expect("enter node")
        .expect("driver mode on a veth");
    drop(first);
    assert_eq!(link_pins(&pins), ["link_eth0_driver"]);

    // The next one wants generic mode: the driver link goes, a generic one
    // is pinned.
    let mut second = Dataplane::load_pinned(FLOW_ENTRIES, &pins).expect("load pinned");
    node.enter(|| second.attach("eth0", XdpModeConfig::Generic))
        .expect("enter node")
        .expect("generic mode");
    assert_eq!(link_pins(&pins), ["link_eth0_generic"]);
    let link = node
        .run_stdout(&["ip", "-d", "link", "show", "eth0"])
        .expect("ip -d link show eth0");
    assert!(link.contains("xdpgeneric"), "generic XDP on eth0:\n{link}");

    // Detached (a reload without eth0): its pin goes with it.
    second.detach("eth0").expect("detach eth0");
    assert!(link_pins(&pins).is_empty(), "{:?}", link_pins(&pins));
    assert_eq!(node.xdp_prog_id(), None, "XDP detached");

    // Attached again, then killed; the next data plane, whose
    // configuration has no eth0, removes the stale link.
    node.enter(|| second.attach("eth0", XdpModeConfig::Generic))
        .expect("enter node")
        .expect("generic mode again");
    assert_ne!(node.xdp_prog_id(), None);
    drop(second);
    let mut third = Dataplane::load_pinned(FLOW_ENTRIES, &pins).expect("load pinned");
    third.remove_stale_links();
    assert!(link_pins(&pins).is_empty(), "{:?}", link_pins(&pins));
    assert_eq!(node.xdp_prog_id(), None, "XDP left the unconfigured eth0");
    third.stop();
    assert_eq!(pins_under(&pins), Vec::<PathBuf>::new(), "no pin left");
}

//! The services, flows and NAT entries the XDP rows run through, so that
//! every row can be timed with `repeat`: the kernel re-runs a frame as the
//! program left it, so a nat row needs frames that translate into each
//! other (a pair of flows), and the miss row a chain of frames each of
//! which is a new flow.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context as _, bail};
use vipx_agent::{
    config::{Mode, PortRange},
    dataplane::{BackendSpec, ServiceSpec},
};
use vipx_common::{Flow, NatEntry};
use vipx_lab::{
    floor::{FLOOR_MODE_DSR, FLOOR_MODE_NAT, Floor, FloorFlow},
    frames::{FrameSpec, tcp},
    rig::{self, CLIENT_MAC, NODE_MAC, Rig, key_of, nat_spec},
};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 21);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
pub const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 31);

/// The dsr service's port (backends .31, .32, .33 on the same port).
pub const DSR_PORT: u16 = 5433;
/// The nat pair: VIP:5440 -> CLIENT:6440 and CLIENT:6440 -> VIP:5440.
const MIRROR_PORT: u16 = 5440;
const MIRROR_BACK_PORT: u16 = 6440;
/// The miss chain: VIP:5450 -> BACKEND:6450 and BACKEND:6450 -> VIP:5450.
pub const CHAIN_PORT: u16 = 5450;
const CHAIN_BACK_PORT: u16 = 6450;

fn ip(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn nat(name: &str, vip: Ipv4Addr, port: u16, to: Ipv4Addr, to_port: u16) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        port,
        maglev_size: 257,
        nat_ports: PortRange {
            first: 1024,
            last: 65535,
        },
        backends: vec![BackendSpec {
            addr: ip(to),
            port: to_port,
            weight: 1,
        }],
        ..nat_spec(ip(vip), ip(to), 257)
    }
}

/// The services of the XDP rows.
pub fn services() -> Vec<ServiceSpec> {
    let pgbouncer = ServiceSpec {
        nat_ports: PortRange {
            first: 10000,
            last: 60999,
        },
        ..nat_spec(ip(VIP), ip(BACKEND), 65537)
    };
    let dsr = ServiceSpec {
        name: "dsr".into(),
        port: DSR_PORT,
        mode: Mode::Dsr,
        backends: [31u8, 32, 33]
            .map(|last| BackendSpec {
                addr: ip(Ipv4Addr::new(10, 77, 0, last)),
                port: DSR_PORT,
                weight: 1,
            })
            .to_vec(),
        ..pgbouncer.clone()
    };
    vec![
        pgbouncer,
        dsr,
        nat("mirror", VIP, MIRROR_PORT, CLIENT, MIRROR_BACK_PORT),
        nat("mirror-back", CLIENT, MIRROR_BACK_PORT, VIP, MIRROR_PORT),
        nat("chain", VIP, CHAIN_PORT, BACKEND, CHAIN_BACK_PORT),
        nat("chain-back", BACKEND, CHAIN_BACK_PORT, VIP, CHAIN_PORT),
    ]
}

/// A TCP frame from the client's MAC to the node's.
pub fn frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> FrameSpec {
    FrameSpec::tcp(ip(src), sport, ip(dst), dport, flags)
        .macs(CLIENT_MAC, NODE_MAC)
        .payload(b"SELECT 1;")
}

/// CLOCK_MONOTONIC, as `bpf_ktime_get_ns` reads it.
pub fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
        u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec()).unwrap_or(0)
    })
}

/// A flow of service `service` to backend `to:to_port` with `nat_port`.
fn flow(
    rig: &Rig,
    service: &ServiceSpec,
    to: Ipv4Addr,
    to_port: u16,
    nat_port: u16,
) -> anyhow::Result<Flow> {
    let now = now_ns();
    Ok(Flow {
        backend: rig
            .table
            .backend_id(ip(to), to_port)
            .with_context(|| format!("no backend {to}:{to_port}"))?,
        service: rig
            .table
            .service_id(&service.key())
            .with_context(|| format!("no service {}", service.name))?,
        nat_port,
        group: service.group,
        created_ns: now,
        last_seen_ns: now,
        ..Flow::default()
    })
}

/// The two frames of the nat flow-hit pair, their flows written: each
/// translates into the other.
pub fn hit_pair(rig: &Rig, specs: &[ServiceSpec]) -> anyhow::Result<[FrameSpec; 2]> {
    let a = frame(CLIENT, 1000, VIP, MIRROR_PORT, tcp::ACK);
    let b = frame(VIP, 20000, CLIENT, MIRROR_BACK_PORT, tcp::ACK);
    let fa = flow(rig, &specs[2], CLIENT, MIRROR_BACK_PORT, 20000)?;
    let fb = flow(rig, &specs[3], VIP, MIRROR_PORT, 1000)?;
    rig.dataplane.maps().insert_flow(&key_of(&a), &fa, None)?;
    rig.dataplane.maps().insert_flow(&key_of(&b), &fb, None)?;
    Ok([a, b])
}

/// The two frames of the nat reply pair, their NAT entries (and flows)
/// written: each translates into the other. The client's frame K1
/// (client:1001 -> VIP:5432) went to the backend as K2 (VIP:20001 ->
/// backend:6432); the backend's reply to K2 goes back as the reply to K1,
/// and (the pair's other half) the reply to K1 is taken for a backend's
/// reply whose flow is K2.
pub fn reply_pair(rig: &Rig, specs: &[ServiceSpec]) -> anyhow::Result<[Vec<u8>; 2]> {
    let k1 = frame(CLIENT, 1001, VIP, 5432, tcp::ACK);
    let k2 = frame(VIP, 20001, BACKEND, 6432, tcp::ACK);
    let reply = |to: &FrameSpec, mac: [u8; 6]| {
        FrameSpec::tcp(to.dst, to.dport, to.src, to.sport, tcp::ACK)
            .macs(mac, NODE_MAC)
            .payload(b"row")
    };
    let r1 = reply(&k2, rig::backend_mac(ip(BACKEND)));
    let r2 = reply(&k1, CLIENT_MAC);
    let maps = rig.dataplane.maps();
    let service = rig
        .table
        .service_id(&specs[0].key())
        .context("no pgbouncer service")?;
    for (client, mac, nat) in [
        (&k1, CLIENT_MAC, &r1),
        (&k2, rig::backend_mac(ip(BACKEND)), &r2),
    ] {
        let entry = NatEntry {
            client: key_of(client),
            client_mac: mac,
            group: 0,
            service,
            ..NatEntry::default()
        };
        let fl = flow(rig, &specs[0], BACKEND, 6432, 20001)?;
        maps.insert_flow(&key_of(client), &fl, Some((&key_of(nat), &entry)))?;
    }
    Ok([r1.build(), r2.build()])
}

/// The floor's flows: the dsr frame rewritten to a backend's MAC, and the
/// nat pair (the same frames as vipx's), each translated into the other.
pub fn floor_flows(
    floor: &mut Floor,
    dsr: &FrameSpec,
    pair: &[FrameSpec; 2],
) -> anyhow::Result<()> {
    floor.insert(
        &key_of(dsr),
        &FloorFlow {
            mac: rig::backend_mac(ip(BACKEND)),
            mode: FLOOR_MODE_DSR,
            ..FloorFlow::default()
        },
    )?;
    for (from, to) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (to.src, to.dst) else {
            bail!("the floor is IPv4 only");
        };
        floor.insert(
            &key_of(from),
            &FloorFlow {
                mac: rig::backend_mac(to.dst),
                mode: FLOOR_MODE_NAT,
                src: src.octets(),
                dst: dst.octets(),
                sport: to.sport,
                dport: to.dport,
                ..FloorFlow::default()
            },
        )?;
    }
    Ok(())
}

/// The 5-tuple of a frame (addresses and ports), to check translations.
pub fn tuple(frame: &[u8]) -> anyhow::Result<(IpAddr, u16, IpAddr, u16)> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame)?;
    let Some(etherparse::NetSlice::Ipv4(ipv4)) = sliced.net else {
        bail!("not IPv4");
    };
    let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
        bail!("not TCP");
    };
    Ok((
        ip(ipv4.header().source_addr()),
        tcp.source_port(),
        ip(ipv4.header().destination_addr()),
        tcp.destination_port(),
    ))
}

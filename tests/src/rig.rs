//! The real XDP program run through `BPF_PROG_TEST_RUN`, with its maps
//! written by the agent's own data-plane code: the fixture tests and the
//! per-packet cost benchmark share it.

use std::{net::IpAddr, time::Duration};

use anyhow::{Context as _, Result};
use aya::programs::{TestRun as _, TestRunOptions};
use vipx_agent::{
    config::{Mode, PortRange},
    dataplane::{
        BackendSpec, CounterSnapshot, Dataplane, FlowPolicy, GroupStates, ServiceSpec,
        ServiceTable, VipSpec, VipTable, maglev,
    },
};
use vipx_common::{
    Flow, FlowKey, addr,
    flow::{SEED_MAGLEV, flow_hash},
};

use crate::frames::{FrameSpec, Transport};

/// The MAC test frames are sent to (the node's).
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
/// The MAC test frames come from (the client's).
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x21];

/// The MAC the rig gives a backend (derived from its address).
pub fn backend_mac(addr: IpAddr) -> [u8; 6] {
    let (bytes, _) = addr::to_map(addr);
    let last = if addr.is_ipv4() { bytes[3] } else { bytes[15] };
    [0x02, 0xbe, 0, 0, 0, last]
}

/// A nat service `vip:5432` in front of PgBouncers on `backend`
/// (6432, 6433, 6434), Maglev size `m`.
pub fn nat_spec(vip: IpAddr, backend: IpAddr, m: u32) -> ServiceSpec {
    ServiceSpec {
        name: "pgbouncer".into(),
        vip,
        port: 5432,
        protocol: 6,
        mode: Mode::Nat,
        group: 0,
        maglev_size: m,
        nat_ports: PortRange {
            first: 40000,
            last: 40999,
        },
        backends: (0..3)
            .map(|i| BackendSpec {
                addr: backend,
                port: 6432 + i,
                weight: 1,
            })
            .collect(),
    }
}

/// A service listening on `vip:port` (IP protocol `protocol`) with
/// `backends` as (address, port, weight), NAT ports `nat_ports`, and a
/// small prime Maglev table (251 slots: quick to build; Maglev itself is
/// tested with M = 65537 in the agent's unit tests).
pub fn service(
    name: &str,
    (vip, port, protocol): (IpAddr, u16, u8),
    mode: Mode,
    group: u32,
    nat_ports: std::ops::RangeInclusive<u16>,
    backends: &[(IpAddr, u16, u32)],
) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        vip,
        port,
        protocol,
        mode,
        group,
        maglev_size: 251,
        nat_ports: PortRange {
            first: *nat_ports.start(),
            last: *nat_ports.end(),
        },
        backends: backends
            .iter()
            .map(|&(addr, port, weight)| BackendSpec { addr, port, weight })
            .collect(),
    }
}

/// A flow collector's policy that forgets every flow idle `idle`, in any
/// state, with no limit on embryonic flows: a test sets the one timeout
/// (or share) it is about over it.
pub fn flow_policy(idle: Duration) -> FlowPolicy {
    FlowPolicy {
        tcp_idle: idle,
        udp_idle: idle,
        fin: idle,
        embryonic: idle,
        rst: idle,
        embryonic_share: 100,
    }
}

/// The flow-table key of a frame (client -> VIP direction).
pub fn key_of(frame: &FrameSpec) -> FlowKey {
    let (src, family) = addr::to_map(frame.src);
    let (dst, _) = addr::to_map(frame.dst);
    FlowKey {
        src,
        dst,
        sport: frame.sport,
        dport: frame.dport,
        proto: match frame.transport {
            Transport::Tcp { .. } => 6,
            Transport::Udp => 17,
        },
        family,
        _pad: [0; 2],
    }
}

/// The backend Maglev gives a new flow, computed with the agent's own
/// Maglev and the shared flow hash.
pub fn maglev_backend(spec: &ServiceSpec, frame: &FrameSpec) -> Result<BackendSpec> {
    let table = maglev::build(&spec.maglev_backends(), spec.maglev_size)?;
    let slot = flow_hash(&key_of(frame), SEED_MAGLEV) % spec.maglev_size;
    Ok(spec.backends[table[slot as usize] as usize].clone())
}

/// The VIPs of `specs` as the agent writes those of its groups: each
/// service's VIP in the service's group, with the NAT port ranges of the
/// nat-mode services on it.
pub fn vip_specs(specs: &[ServiceSpec]) -> Vec<VipSpec> {
    let mut vips: Vec<VipSpec> = Vec::new();
    for spec in specs {
        if !vips.iter().any(|v| v.addr == spec.vip) {
            vips.push(VipSpec::new(spec.vip, spec.group, specs));
        }
    }
    vips
}

/// The loaded program with its maps.
pub struct Rig {
    pub dataplane: Dataplane,
    pub table: ServiceTable,
    pub vips: VipTable,
    pub groups: GroupStates,
}

impl Rig {
    /// Services and their VIPs installed, backend MACs known, MASTER of
    /// group 0 with a lease of `lease`.
    pub fn new(specs: &[ServiceSpec], lease: Duration) -> Result<Self> {
        let dataplane =
            Dataplane::load_with(65536).context("load the XDP object (cargo xtask build-ebpf)")?;
        Self::with_dataplane(dataplane, specs, lease)
    }

    /// [`Rig::new`] on a data plane loaded by the caller (pinned, say).
    pub fn with_dataplane(
        dataplane: Dataplane,
        specs: &[ServiceSpec],
        lease: Duration,
    ) -> Result<Self> {
        let mut table = ServiceTable::new(dataplane.maps(), false);
        table.apply(specs)?;
        let vips = VipTable::new(dataplane.maps(), false);
        vips.apply(&vip_specs(specs))?;
        for spec in specs {
            for backend in &spec.backends {
                table.set_mac(backend.addr, backend_mac(backend.addr))?;
            }
        }
        let groups = GroupStates::new(dataplane.maps(), lease, false);
        groups.set_master(0, true)?;
        Ok(Self {
            dataplane,
            table,
            vips,
            groups,
        })
    }

    /// [`Rig::new`] with a lease that outlives any test.
    pub fn master(specs: &[ServiceSpec]) -> Result<Self> {
        Self::new(specs, Duration::from_secs(3600))
    }

    /// Runs one frame; returns the action and the frame as it leaves.
    pub fn run(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let (action, out, _) = self.run_repeat(frame, 1)?;
        Ok((action, out))
    }

    /// Runs one frame `repeat` times in the kernel; returns the action, the
    /// output frame and the kernel's mean time per run.
    pub fn run_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, Vec<u8>, Duration)> {
        test_run(self.dataplane.main_program()?, frame, repeat)
    }

    /// The same with the pass-through program (the baseline).
    pub fn run_pass(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, Vec<u8>, Duration)> {
        test_run(self.dataplane.pass_program()?, frame, repeat)
    }

    /// The XDP counters now.
    pub fn counters(&self) -> Result<CounterSnapshot> {
        Ok(self.dataplane.counters().snapshot()?)
    }

    /// The flow of a frame, if the table has it.
    pub fn flow(&self, frame: &FrameSpec) -> Option<Flow> {
        self.dataplane.maps().flow(&key_of(frame))
    }
}

/// Runs `frame` through `program` `repeat` times in the kernel (which runs
/// the frame as the previous run left it); returns the action, the output
/// frame and the kernel's mean time per run.
pub fn test_run(
    program: &mut aya::programs::Xdp,
    frame: &[u8],
    repeat: u32,
) -> Result<(u32, Vec<u8>, Duration)> {
    let mut out = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN")?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out, result.duration))
}

//! Loading the embedded XDP object and attaching it to interfaces.

use std::{collections::BTreeMap, sync::Arc};

use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, xdp::XdpLinkId},
};
use tracing::{info, warn};
use vipx_common::{MAP_FLOWS, MAP_NAT, PROG_MAIN, PROG_PASS, flow::DEFAULT_FLOW_ENTRIES};

use super::{
    counters::CounterMaps,
    error::DataplaneError,
    maps::Maps,
    peers::{PeerEvents, PeerMaps},
    settings::{AttachedMode, XdpModeConfig},
};

/// The XDP object built by `cargo xtask build-ebpf`, embedded at build time
/// (empty when it was not built: see `build.rs`).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vipx-ebpf.o"));

/// One interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    pub iface: String,
    pub mode: AttachedMode,
}

/// The loaded XDP object, its attachments and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    links: BTreeMap<String, (AttachedMode, XdpLinkId)>,
    counters: CounterMaps,
    maps: Arc<Maps>,
    peer_maps: Arc<PeerMaps>,
    peer_events: Option<PeerEvents>,
}

impl Dataplane {
    /// Loads the embedded XDP object into the kernel (nothing is attached
    /// yet).
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with(DEFAULT_FLOW_ENTRIES)
    }

    /// Loads the embedded object with a flow table (and NAT table) of
    /// `flow_entries` entries.
    pub fn load_with(flow_entries: u32) -> Result<Self, DataplaneError> {
        Self::load_object(EBPF_OBJECT, flow_entries)
    }

    /// Loads an XDP object given as bytes.
    pub fn load_object(object: &[u8], flow_entries: u32) -> Result<Self, DataplaneError> {
        if object.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        raise_memlock_limit();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_FLOWS, flow_entries)
            .map_max_entries(MAP_NAT, flow_entries)
            .load(object)
            .map_err(Box::new)?;
        for name in [PROG_MAIN, PROG_PASS] {
            program_mut(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program {
                    name,
                    source: Box::new(source),
                })?;
        }
        let counters = CounterMaps::take(&mut ebpf)?;
        let maps = Arc::new(Maps::take(&mut ebpf)?);
        let peer_maps = Arc::new(PeerMaps::take(&mut ebpf)?);
        let peer_events = Some(PeerEvents::take(&mut ebpf)?);
        Ok(Self {
            ebpf,
            links: BTreeMap::new(),
            counters,
            maps,
            peer_maps,
            peer_events,
        })
    }

    /// Attaches the main program to `iface` (resolved in the calling
    /// thread's network namespace) and logs the mode actually used.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: XdpModeConfig,
    ) -> Result<AttachedMode, DataplaneError> {
        let (mode, link) = attach_program(&mut self.ebpf, PROG_MAIN, iface, mode)?;
        info!(iface, %mode, "XDP program attached in {mode} mode");
        self.links.insert(iface.to_owned(), (mode, link));
        Ok(mode)
    }

    /// Detaches the main program from `iface`.
    pub fn detach(&mut self, iface: &str) -> Result<(), DataplaneError> {
        let (_, link) = self
            .links
            .remove(iface)
            .ok_or_else(|| DataplaneError::NotAttached(iface.to_owned()))?;
        main_program(&mut self.ebpf)?
            .detach(link)
            .map_err(|source| DataplaneError::Program {
                name: PROG_MAIN,
                source: Box::new(source),
            })?;
        info!(iface, "XDP program detached");
        Ok(())
    }

    /// Detaches from every interface (also done on drop).
    pub fn detach_all(&mut self) {
        let ifaces: Vec<String> = self.links.keys().cloned().collect();
        for iface in ifaces {
            if let Err(err) = self.detach(&iface) {
                warn!(iface, "detaching XDP: {err}");
            }
        }
    }

    /// Where the program is attached, and how.
    pub fn attachments(&self) -> Vec<Attachment> {
        self.links
            .iter()
            .map(|(iface, (mode, _))| Attachment {
                iface: iface.clone(),
                mode: *mode,
            })
            .collect()
    }

    /// The load-balancing maps (services, backends, Maglev, groups, VIPs,
    /// flows).
    pub fn maps(&self) -> Arc<Maps> {
        Arc::clone(&self.maps)
    }

    /// The peer maps: allow-lists, heartbeat port, advert and heartbeat
    /// records.
    pub fn peer_maps(&self) -> Arc<PeerMaps> {
        Arc::clone(&self.peer_maps)
    }

    /// The ring buffer of peer events, once: it has a single consumer, and
    /// every later call returns `None`.
    pub fn take_peer_events(&mut self) -> Option<PeerEvents> {
        self.peer_events.take()
    }

    /// The counter maps (shared with the metrics endpoint).
    pub fn counters(&self) -> CounterMaps {
        self.counters.clone()
    }

    /// Attaches the pass-through program to `iface`, for as long as this
    /// data plane lives. The far end of a veth needs an XDP program for the
    /// frames the main program sends back out (`XDP_TX`) to be received.
    pub fn attach_pass(
        &mut self,
        iface: &str,
        mode: XdpModeConfig,
    ) -> Result<AttachedMode, DataplaneError> {
        let (mode, _link) = attach_program(&mut self.ebpf, PROG_PASS, iface, mode)?;
        info!(iface, %mode, "pass-through XDP program attached in {mode} mode");
        Ok(mode)
    }

    /// The main program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn main_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        main_program(&mut self.ebpf)
    }

    /// The pass-through program, e.g. for `BPF_PROG_TEST_RUN` baselines.
    pub fn pass_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        program_mut(&mut self.ebpf, PROG_PASS)
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.detach_all();
    }
}

fn attach_program(
    ebpf: &mut Ebpf,
    name: &'static str,
    iface: &str,
    mode: XdpModeConfig,
) -> Result<(AttachedMode, XdpLinkId), DataplaneError> {
    let program = program_mut(ebpf, name)?;
    let attach = |program: &mut Xdp, mode: AttachedMode| program.attach(iface, mode.aya());
    let fixed = |program: &mut Xdp, mode: AttachedMode| {
        attach(program, mode)
            .map(|link| (mode, link))
            .map_err(|source| DataplaneError::Attach {
                iface: iface.to_owned(),
                mode,
                source: Box::new(source),
            })
    };
    match mode {
        XdpModeConfig::Driver => fixed(program, AttachedMode::Driver),
        XdpModeConfig::Generic => fixed(program, AttachedMode::Generic),
        XdpModeConfig::Auto => match attach(program, AttachedMode::Driver) {
            Ok(link) => Ok((AttachedMode::Driver, link)),
            Err(driver) => {
                warn!(
                    iface,
                    "driver-mode XDP unavailable ({driver}); trying generic mode"
                );
                match attach(program, AttachedMode::Generic) {
                    Ok(link) => Ok((AttachedMode::Generic, link)),
                    Err(generic) => Err(DataplaneError::AttachBoth {
                        iface: iface.to_owned(),
                        driver: Box::new(driver),
                        generic: Box::new(generic),
                    }),
                }
            }
        },
    }
}

fn main_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DataplaneError> {
    program_mut(ebpf, PROG_MAIN)
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, DataplaneError> {
    ebpf.program_mut(name)
        .ok_or(DataplaneError::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|source| DataplaneError::Program {
            name,
            source: Box::new(source),
        })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        // Harmless on kernels that charge BPF memory to the memory cgroup.
        tracing::debug!(
            "could not lift RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

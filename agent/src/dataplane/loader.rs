//! Loading the embedded XDP object and attaching it to interfaces, pinned
//! in bpffs or not (see [`super`] for when the pins go).

use std::{collections::BTreeMap, path::Path, sync::Arc};

use aya::{Ebpf, EbpfLoader, programs::Xdp};
use tracing::{info, warn};
use vipx_common::{PROG_MAIN, PROG_PASS, flow::DEFAULT_FLOW_ENTRIES};

use super::{
    counters::CounterMaps,
    error::DataplaneError,
    flow_events::FlowEvents,
    links::{self, Attached, LinkPins},
    maps::Maps,
    peers::{PeerEvents, PeerMaps},
    pins::{self, MapSpec, PinDir, PinReport},
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
///
/// Dropped, it leaves its pins (as a killed agent does): the links stay
/// attached and the maps stay for the next data plane to adopt. Unpinned
/// links go with it. [`Dataplane::stop`] is the clean stop.
pub struct Dataplane {
    ebpf: Ebpf,
    pins: Option<Pins>,
    links: BTreeMap<String, Attached>,
    counters: CounterMaps,
    maps: Arc<Maps>,
    peer_maps: Arc<PeerMaps>,
    peer_events: Option<PeerEvents>,
    flow_events: Option<FlowEvents>,
}

/// A pinned data plane's directory, its object's maps, and what their
/// pins were at load.
struct Pins {
    dir: PinDir,
    maps: Vec<MapSpec>,
    report: PinReport,
    /// Whether XDP links can be pinned on this kernel.
    links: bool,
}

impl Dataplane {
    /// Loads the embedded XDP object into the kernel (nothing is attached
    /// yet, nothing is pinned).
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with(DEFAULT_FLOW_ENTRIES)
    }

    /// Loads the embedded object with a flow table (and NAT table) of
    /// `flow_entries` entries, unpinned.
    pub fn load_with(flow_entries: u32) -> Result<Self, DataplaneError> {
        Self::load_object(EBPF_OBJECT, flow_entries)
    }

    /// Loads the embedded object with its maps pinned in `pin_path` (on
    /// bpffs; created, and locked while this data plane lives). Maps a
    /// previous data plane pinned there with the same layout are adopted,
    /// entries and all; the others are created (see
    /// [`Dataplane::pin_report`]). [`Dataplane::attach`] adopts and pins
    /// links there.
    pub fn load_pinned(flow_entries: u32, pin_path: &Path) -> Result<Self, DataplaneError> {
        Self::load_from(EBPF_OBJECT, flow_entries, Some(pin_path))
    }

    /// Loads an XDP object given as bytes, unpinned.
    pub fn load_object(object: &[u8], flow_entries: u32) -> Result<Self, DataplaneError> {
        Self::load_from(object, flow_entries, None)
    }

    fn load_from(
        object: &[u8],
        flow_entries: u32,
        pin_path: Option<&Path>,
    ) -> Result<Self, DataplaneError> {
        if object.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        raise_memlock_limit();
        let pins = pin_path
            .map(|path| Pins::prepare(path, object, flow_entries))
            .transpose()?;
        let mut loader = EbpfLoader::new();
        for (name, entries) in pins::max_entries(flow_entries) {
            loader.map_max_entries(name, entries);
        }
        if let Some(pins) = &pins {
            for map in &pins.maps {
                loader.map_pin_path(map.name.as_str(), pins.dir.map_pin(&map.name));
            }
        }
        let mut ebpf = loader.load(object).map_err(Box::new)?;
        for name in [PROG_MAIN, PROG_PASS] {
            program_mut(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program {
                    name,
                    source: Box::new(source),
                })?;
        }
        if let Some(pins) = &pins {
            pins.log();
        }
        let counters = CounterMaps::take(&mut ebpf)?;
        let maps = Arc::new(Maps::take(&mut ebpf)?);
        let peer_maps = Arc::new(PeerMaps::take(&mut ebpf)?);
        let peer_events = Some(PeerEvents::take(&mut ebpf)?);
        let flow_events = Some(FlowEvents::take(&mut ebpf)?);
        Ok(Self {
            ebpf,
            pins,
            links: BTreeMap::new(),
            counters,
            maps,
            peer_maps,
            peer_events,
            flow_events,
        })
    }

    /// Attaches the main program to `iface` (resolved in the calling
    /// thread's network namespace) and logs the mode actually used. A
    /// pinned data plane adopts the link a previous one pinned for `iface`
    /// (in a mode `mode` allows), and pins a new one.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: XdpModeConfig,
    ) -> Result<AttachedMode, DataplaneError> {
        let pins = self.pins.as_ref().map(|p| LinkPins {
            dir: &p.dir,
            pin_links: p.links,
        });
        let attached = links::attach(main_program(&mut self.ebpf)?, pins, iface, mode)?;
        let mode = attached.mode;
        self.links.insert(iface.to_owned(), attached);
        Ok(mode)
    }

    /// Detaches the main program from `iface`, and removes its pin.
    pub fn detach(&mut self, iface: &str) -> Result<(), DataplaneError> {
        let attached = self
            .links
            .remove(iface)
            .ok_or_else(|| DataplaneError::NotAttached(iface.to_owned()))?;
        links::detach(main_program(&mut self.ebpf)?, attached)?;
        info!(iface, "XDP program detached");
        Ok(())
    }

    /// Removes the links pinned for interfaces this data plane is not
    /// attached to (no longer configured): XDP leaves them. Call it once
    /// every configured interface is attached.
    pub fn remove_stale_links(&mut self) {
        let Some(pins) = &self.pins else {
            return;
        };
        for pin in pins.dir.link_pins() {
            if self.links.contains_key(&pin.iface) {
                continue;
            }
            match links::remove_link_pin(&pin.path) {
                Ok(()) => warn!(
                    iface = pin.iface,
                    "{} is not configured: its pinned XDP link {} removed, XDP detached",
                    pin.iface,
                    pin.path.display()
                ),
                Err(err) => warn!(iface = pin.iface, "removing a stale XDP link: {err}"),
            }
        }
    }

    /// A clean stop (SIGTERM, SIGINT): detaches XDP from every interface
    /// and removes every pin of this data plane, links and maps, and its
    /// directory once empty.
    pub fn stop(mut self) {
        let ifaces: Vec<String> = self.links.keys().cloned().collect();
        for iface in ifaces {
            if let Err(err) = self.detach(&iface) {
                warn!(iface, "detaching XDP: {err}");
            }
        }
        if let Some(pins) = &self.pins {
            pins.dir.unpin_maps(&pins.maps);
            info!("pins removed from {}", pins.dir.path().display());
        }
    }

    /// Where the program is attached, and how.
    pub fn attachments(&self) -> Vec<Attachment> {
        self.links
            .iter()
            .map(|(iface, attached)| Attachment {
                iface: iface.clone(),
                mode: attached.mode,
            })
            .collect()
    }

    /// The pin directory, for a pinned data plane.
    pub fn pin_path(&self) -> Option<&Path> {
        self.pins.as_ref().map(|p| p.dir.path())
    }

    /// What became of the maps' pins at load (adopted, replaced, created),
    /// for a pinned data plane.
    pub fn pin_report(&self) -> Option<&PinReport> {
        self.pins.as_ref().map(|p| &p.report)
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

    /// The ring buffer of flow events, once (a single consumer).
    pub fn take_flow_events(&mut self) -> Option<FlowEvents> {
        self.flow_events.take()
    }

    /// The counter maps (shared with the metrics endpoint).
    pub fn counters(&self) -> CounterMaps {
        self.counters.clone()
    }

    /// Attaches the pass-through program to `iface`, for as long as this
    /// data plane lives (never pinned). The far end of a veth needs an XDP
    /// program for the frames the main program sends back out (`XDP_TX`)
    /// to be received.
    pub fn attach_pass(
        &mut self,
        iface: &str,
        mode: XdpModeConfig,
    ) -> Result<AttachedMode, DataplaneError> {
        let program = program_mut(&mut self.ebpf, PROG_PASS)?;
        let (mode, _link) = links::attach_program(program, PROG_PASS, iface, mode)?;
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

impl Pins {
    /// Opens (and locks) `path` and checks the pinned maps' layouts
    /// against the object's before the loader adopts them.
    fn prepare(path: &Path, object: &[u8], flow_entries: u32) -> Result<Self, DataplaneError> {
        let dir = PinDir::open(path)?;
        let maps = pins::map_specs(object, flow_entries)?;
        let report = dir.check_maps(&maps)?;
        let links = pins::links_pinnable();
        if !links {
            warn!(
                "this kernel has no XDP links (5.9+): XDP cannot be pinned and goes with the agent; the maps are pinned"
            );
        }
        Ok(Self {
            dir,
            maps,
            report,
            links,
        })
    }

    /// Says what was adopted.
    fn log(&self) {
        let dir = self.dir.path().display();
        let report = &self.report;
        let fresh: Vec<&str> = report
            .created
            .iter()
            .chain(&report.replaced)
            .map(String::as_str)
            .collect();
        if report.adopted.is_empty() {
            info!(
                "maps pinned in {dir}: none to adopt, {} created",
                fresh.len()
            );
        } else {
            info!(
                "maps adopted from {dir}, entries and all: {}; created anew: {}",
                report.adopted.join(", "),
                if fresh.is_empty() {
                    "none".to_owned()
                } else {
                    fresh.join(", ")
                }
            );
        }
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

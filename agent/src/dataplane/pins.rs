//! The data plane's pins in bpffs, under `[dataplane] pin_path`: every map
//! of the XDP object, pinned by its name, and the XDP link of each
//! interface, pinned as `link_<interface>_<mode>` (the mode it was attached
//! in, `driver` or `generic`, which the kernel does not report). bpffs
//! refuses names with a dot (reserved, `EPERM`): a dot of an interface name
//! (`eth0.100`) is written `:`, which interface names cannot hold.
//!
//! A pin keeps its object alive without a process: after a `kill -9` the
//! program stays attached and its maps (flows, NAT entries, the lease)
//! stay, and the next data plane loaded on the same directory adopts them.
//! aya reuses a pinned map of the right name whatever its layout, so
//! [`PinDir::check_maps`] first compares each pinned map's type, key and
//! value sizes, entries and flags with what the object asks for, and
//! removes the pins that differ (aya then creates those maps anew).
//!
//! The directory is locked (`flock`) while a data plane uses it: two agents
//! on one directory would take each other's links and maps.

use std::{
    fmt,
    fs::{DirBuilder, File},
    io,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use aya::{
    maps::{MapError, MapInfo, MapType},
    util::KernelVersion,
};
use aya_obj::{EbpfSectionKind, generated::bpf_map_type};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};
use tracing::warn;
use vipx_common::{MAP_FLOWS, MAP_NAT};

use super::{error::DataplaneError, settings::AttachedMode};

/// Where bpffs is mounted by convention (systemd mounts it at boot).
const BPFFS: &str = "/sys/fs/bpf";
/// Every map of the object is named `VIPX_*`: a pin of that form that the
/// object no longer has is an older agent's, and goes. Nothing else in the
/// directory is touched.
const MAP_PREFIX: &str = "VIPX_";
/// Link pins are `link_<interface>_<mode>`.
const LINK_PREFIX: &str = "link_";
/// The first kernel with XDP links (`BPF_LINK_CREATE` for XDP), which are
/// what can be pinned; before it, XDP goes with the agent.
const XDP_LINKS_SINCE: KernelVersion = KernelVersion::new(5, 9, 0);

/// The maps whose size the configuration sets (`flow_table_size`).
pub(super) fn max_entries(flow_entries: u32) -> [(&'static str, u32); 2] {
    [(MAP_FLOWS, flow_entries), (MAP_NAT, flow_entries)]
}

/// Whether this kernel attaches XDP through links that can be pinned.
pub(super) fn links_pinnable() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= XDP_LINKS_SINCE)
}

/// What must match for a pinned map to be adopted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapLayout {
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl MapLayout {
    /// The layout of the map pinned at `path`, as the kernel reports it.
    pub fn of_pin(path: &Path) -> Result<Self, MapError> {
        let info = MapInfo::from_pin(path)?;
        Ok(Self {
            map_type: info.map_type()?,
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            flags: info.map_flags(),
        })
    }
}

impl fmt::Display for MapLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}, key {} B, value {} B, {} entries, flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

/// A map of the object and the layout it is created with.
#[derive(Clone, Debug)]
pub(super) struct MapSpec {
    pub(super) name: String,
    pub(super) layout: MapLayout,
}

/// The object's maps (not its data sections) with the layouts the loader
/// gives them: `flow_entries` for the flow and NAT tables, and aya's own
/// adjustments (a ring buffer's size rounded up to a power-of-two number of
/// pages, its value size 0; a perf event array of 0 entries sized to the
/// CPUs). Sorted by name.
pub(super) fn map_specs(object: &[u8], flow_entries: u32) -> Result<Vec<MapSpec>, DataplaneError> {
    let parsed = aya_obj::Object::parse(object).map_err(Box::new)?;
    let overrides = max_entries(flow_entries);
    let mut specs = Vec::new();
    for (name, map) in &parsed.maps {
        if !matches!(
            map.section_kind(),
            EbpfSectionKind::Maps | EbpfSectionKind::BtfMaps
        ) {
            continue;
        }
        let map_type = bpf_map_type::try_from(map.map_type())
            .ok()
            .and_then(|t| MapType::try_from(t).ok())
            .ok_or_else(|| DataplaneError::UnknownMapType {
                name: name.clone(),
                map_type: map.map_type(),
            })?;
        let mut layout = MapLayout {
            map_type,
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: overrides
                .iter()
                .find(|(n, _)| n == name)
                .map_or(map.max_entries(), |(_, entries)| *entries),
            flags: map.map_flags(),
        };
        match map_type {
            MapType::RingBuf => {
                layout.max_entries = ring_bytes(layout.max_entries, page_size());
                layout.value_size = 0;
            }
            MapType::PerfEventArray if layout.max_entries == 0 => {
                layout.max_entries = aya::util::nr_cpus()
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0);
            }
            _ => {}
        }
        specs.push(MapSpec {
            name: name.clone(),
            layout,
        });
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

/// A ring buffer's size as the kernel takes it: a power-of-two number of
/// pages (0 stays 0, which the kernel rejects).
pub(super) fn ring_bytes(bytes: u32, page: u32) -> u32 {
    if bytes == 0 || page == 0 {
        return bytes;
    }
    page * bytes.div_ceil(page).next_power_of_two()
}

fn page_size() -> u32 {
    // SAFETY: sysconf only reads a system setting.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

/// What became of the object's maps' pins at load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinReport {
    /// Pinned by a previous data plane with the same layout: adopted,
    /// entries and all.
    pub adopted: Vec<String>,
    /// Pinned with another layout: removed and created anew (their entries
    /// are lost).
    pub replaced: Vec<String>,
    /// Not pinned before: created and pinned.
    pub created: Vec<String>,
    /// Pins of maps the object no longer has: removed.
    pub removed: Vec<String>,
}

/// A link pin found in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LinkPin {
    pub(super) iface: String,
    pub(super) mode: AttachedMode,
    pub(super) path: PathBuf,
}

/// The pin directory of one data plane, locked while it lives.
pub(super) struct PinDir {
    path: PathBuf,
    /// One data plane per directory: released when the process ends,
    /// however it ends.
    _lock: Flock<File>,
}

impl PinDir {
    /// Makes sure `path` is on bpffs (mounting bpffs at `/sys/fs/bpf` if
    /// `path` is under it and nothing is mounted there), creates it and
    /// takes its lock.
    pub(super) fn open(path: &Path) -> Result<Self, DataplaneError> {
        ensure_bpffs(path)?;
        let io_error = |source| DataplaneError::PinDir {
            path: path.to_owned(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io_error)?;
        let dir = File::open(path).map_err(io_error)?;
        let lock = Flock::lock(dir, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == Errno::EWOULDBLOCK {
                DataplaneError::PinDirBusy(path.to_owned())
            } else {
                io_error(io::Error::from(errno))
            }
        })?;
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Where map `name` is pinned.
    pub(super) fn map_pin(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Where the link of `iface` in `mode` is pinned.
    pub(super) fn link_pin(&self, iface: &str, mode: AttachedMode) -> PathBuf {
        self.path.join(link_pin_name(iface, mode))
    }

    /// The link pins in the directory, by interface name.
    pub(super) fn link_pins(&self) -> Vec<LinkPin> {
        let mut pins: Vec<LinkPin> = self
            .names()
            .into_iter()
            .filter_map(|name| {
                let (iface, mode) = parse_link_pin_name(&name)?;
                Some(LinkPin {
                    iface,
                    mode,
                    path: self.path.join(&name),
                })
            })
            .collect();
        pins.sort_by(|a, b| a.iface.cmp(&b.iface));
        pins
    }

    /// Before loading: keeps the pins of `specs` whose layout matches
    /// (the loader adopts them), removes those that differ or are not maps,
    /// and removes `VIPX_*` pins the object no longer has.
    pub(super) fn check_maps(&self, specs: &[MapSpec]) -> Result<PinReport, DataplaneError> {
        let mut report = PinReport::default();
        for spec in specs {
            let path = self.map_pin(&spec.name);
            if !path.exists() {
                report.created.push(spec.name.clone());
                continue;
            }
            match MapLayout::of_pin(&path) {
                Ok(pinned) if pinned == spec.layout => {
                    report.adopted.push(spec.name.clone());
                    continue;
                }
                Ok(pinned) => warn!(
                    map = spec.name,
                    "pinned map {} has another layout ({pinned}) than this program's ({}): removed, created anew, its entries lost",
                    spec.name,
                    spec.layout
                ),
                Err(err) => warn!(
                    map = spec.name,
                    "{} is not a readable map ({err}): removed, created anew",
                    path.display()
                ),
            }
            unpin(&path)?;
            report.replaced.push(spec.name.clone());
        }
        for name in self.names() {
            if name.starts_with(MAP_PREFIX) && !specs.iter().any(|s| s.name == name) {
                warn!(
                    map = name,
                    "pinned map {name} is no map of this program: removed"
                );
                unpin(&self.map_pin(&name))?;
                report.removed.push(name);
            }
        }
        Ok(report)
    }

    /// A clean stop: removes the map pins of `specs`, then the directory
    /// if nothing else is left in it. What fails is logged.
    pub(super) fn unpin_maps(&self, specs: &[MapSpec]) {
        for spec in specs {
            if let Err(err) = unpin(&self.map_pin(&spec.name)) {
                warn!("unpinning map {}: {err}", spec.name);
            }
        }
        // Fails while other pins (or a mount) are there: they stay.
        let _ = std::fs::remove_dir(&self.path);
    }

    /// The file names in the directory.
    fn names(&self) -> Vec<String> {
        std::fs::read_dir(&self.path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The file name of the link pin of `iface` in `mode`.
fn link_pin_name(iface: &str, mode: AttachedMode) -> String {
    format!("{LINK_PREFIX}{}_{mode}", iface.replace('.', ":"))
}

/// The interface and mode of a link pin's file name.
fn parse_link_pin_name(name: &str) -> Option<(String, AttachedMode)> {
    // The mode has no `_`; the interface may.
    let (iface, mode) = name.strip_prefix(LINK_PREFIX)?.rsplit_once('_')?;
    let mode = [AttachedMode::Driver, AttachedMode::Generic]
        .into_iter()
        .find(|m| m.name() == mode)?;
    (!iface.is_empty()).then(|| (iface.replace(':', "."), mode))
}

/// Removes the pin at `path` (gone already is fine). The object goes when
/// nothing else holds it.
pub(super) fn unpin(path: &Path) -> Result<(), DataplaneError> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(DataplaneError::PinDir {
            path: path.to_owned(),
            source: err,
        }),
        _ => Ok(()),
    }
}

/// `path` must be on bpffs. Under `/sys/fs/bpf` with nothing mounted there
/// (a fresh `/sys`, as `ip netns exec` gives), a bpffs is mounted first.
fn ensure_bpffs(path: &Path) -> Result<(), DataplaneError> {
    if path.starts_with(BPFFS) && !is_bpffs(Path::new(BPFFS)) {
        mount(
            Some("bpf"),
            BPFFS,
            Some("bpf"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0700"),
        )
        .map_err(DataplaneError::MountBpffs)?;
        warn!(
            "no BPF filesystem was mounted at {BPFFS} in this mount namespace: mounted one; its pins last as long as the mount (under `ip netns exec`, as long as the command)"
        );
    }
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if !is_bpffs(existing) {
        return Err(DataplaneError::NotBpffs {
            path: path.to_owned(),
            found: existing.to_owned(),
        });
    }
    let created = path.strip_prefix(existing).unwrap_or(path);
    if created.to_string_lossy().contains('.') {
        return Err(DataplaneError::PinPathDot(path.to_owned()));
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffers_round_up_to_a_power_of_two_number_of_pages() {
        // The kernel's rule (kernel/bpf/ringbuf.c): a power of two, page
        // aligned.
        assert_eq!(ring_bytes(4096, 4096), 4096);
        assert_eq!(ring_bytes(4097, 4096), 8192);
        assert_eq!(ring_bytes(3 * 4096, 4096), 4 * 4096);
        assert_eq!(ring_bytes(256 * 1024, 4096), 256 * 1024);
        assert_eq!(ring_bytes(0, 4096), 0, "left for the kernel to reject");
    }

    #[test]
    fn link_pin_names_carry_the_interface_and_the_mode_without_dots() {
        let cases = [
            ("eth0", AttachedMode::Driver, "link_eth0_driver"),
            ("eth0.100", AttachedMode::Generic, "link_eth0:100_generic"),
            ("br_lan", AttachedMode::Generic, "link_br_lan_generic"),
        ];
        for (iface, mode, name) in cases {
            assert_eq!(link_pin_name(iface, mode), name);
            assert_eq!(parse_link_pin_name(name), Some((iface.to_owned(), mode)));
        }
        for other in ["VIPX_FLOWS", "link_eth0", "link_eth0_turbo", "link__driver"] {
            assert_eq!(parse_link_pin_name(other), None, "{other}");
        }
    }

    #[test]
    fn the_configured_size_applies_to_the_flow_and_nat_tables() {
        assert_eq!(
            max_entries(4096),
            [("VIPX_FLOWS", 4096), ("VIPX_NAT", 4096)]
        );
    }
}

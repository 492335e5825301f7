//! What can go wrong in the data plane.

use std::path::PathBuf;

use aya::programs::ProgramError;

use super::{maglev::MaglevError, settings::AttachedMode};

/// The command that builds the XDP object.
pub const BUILD_HINT: &str = "cargo xtask build-ebpf";

/// What can go wrong in the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "this vipx-agent was built without its XDP object: run `{BUILD_HINT}`, then rebuild the agent"
    )]
    NoObject,
    #[error("loading the XDP object: {0}")]
    Load(#[from] Box<aya::EbpfError>),
    #[error("XDP program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("the XDP object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("attaching XDP to {iface} in {mode} mode: {source}")]
    Attach {
        iface: String,
        mode: AttachedMode,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(
        "attaching XDP to {iface}: driver mode failed ({driver}); generic mode failed too ({generic})"
    )]
    AttachBoth {
        iface: String,
        driver: Box<ProgramError>,
        generic: Box<ProgramError>,
    },
    #[error("XDP is not attached to {0}")]
    NotAttached(String),
    #[error("the data plane has no room for more {0}")]
    Full(&'static str),
    #[error("Maglev table: {0}")]
    Maglev(#[from] MaglevError),
    #[error("reading the XDP object's maps: {0}")]
    Object(#[from] Box<aya_obj::ParseError>),
    #[error("the XDP object's map {name} has a type this agent does not know ({map_type})")]
    UnknownMapType { name: String, map_type: u32 },
    #[error(
        "pin_path {path} is not on a BPF filesystem ({found} is not bpffs): mount one (mount -t bpf bpf DIR) or pick a directory under /sys/fs/bpf"
    )]
    NotBpffs { path: PathBuf, found: PathBuf },
    #[error("pin_path {0}: bpffs refuses names with a dot (they are reserved)")]
    PinPathDot(PathBuf),
    #[error("no BPF filesystem at /sys/fs/bpf, and mounting one failed: {0}")]
    MountBpffs(#[source] nix::errno::Errno),
    #[error("pin_path {path}: {source}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pin_path {0} is in use by another vipx-agent (its lock is held)")]
    PinDirBusy(PathBuf),
    #[error("pin {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

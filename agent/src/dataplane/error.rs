//! What can go wrong in the data plane.

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
}

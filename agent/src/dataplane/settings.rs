//! What the configuration chooses for the data plane: a service's
//! forwarding mode and NAT port range, how XDP is attached and where its
//! pins live. The config parses these; the data plane owns what they mean.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use aya::programs::XdpMode;
use serde::{Deserialize, Serialize};

/// Forwarding mode of a service.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Full NAT: destination -> backend, source -> VIP:nat-port.
    #[default]
    Nat,
    /// L2 direct server return: only the destination MAC changes.
    Dsr,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nat => "nat",
            Self::Dsr => "dsr",
        })
    }
}

/// An inclusive port range, written "first-last".
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        Self {
            first: 32768,
            last: 60999,
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a port range \"first-last\" within 1024-65535");
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first < 1024 || last < first {
            return Err(bad());
        }
        Ok(Self { first, last })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// `xdp_mode`
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeConfig {
    /// Driver (native) mode if the driver supports it, else generic.
    #[default]
    Auto,
    /// Driver (native) mode only.
    Driver,
    /// Generic (skb) mode only.
    Generic,
}

impl XdpModeConfig {
    /// Whether an attachment in `mode` is what this setting asks for.
    pub fn allows(self, mode: AttachedMode) -> bool {
        match self {
            Self::Auto => true,
            Self::Driver => mode == AttachedMode::Driver,
            Self::Generic => mode == AttachedMode::Generic,
        }
    }
}

/// The XDP mode an attachment actually uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    Driver,
    Generic,
}

impl AttachedMode {
    /// The lowercase name (logs, metrics, the API).
    pub fn name(self) -> &'static str {
        match self {
            Self::Driver => "driver",
            Self::Generic => "generic",
        }
    }

    pub(super) fn aya(self) -> XdpMode {
        match self {
            Self::Driver => XdpMode::Driver,
            Self::Generic => XdpMode::Skb,
        }
    }
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the data plane pins its maps and XDP links by default.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/vipx";

/// `pin_path`: the bpffs directory of this agent's pins. An absolute path
/// with no `.` or `..` in it, other than `/`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct PinPath(PathBuf);

impl PinPath {
    /// The directory.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl Default for PinPath {
    fn default() -> Self {
        Self(PathBuf::from(DEFAULT_PIN_PATH))
    }
}

impl TryFrom<String> for PinPath {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let path = PathBuf::from(&text);
        // `components` drops a `.` inside a path: look at the text.
        let plain = text.split('/').all(|part| part != "." && part != "..");
        if !path.is_absolute() || !plain || path.parent().is_none() || text.contains('\0') {
            return Err(format!(
                "pin_path {text:?} must be an absolute directory other than / (no . or ..), e.g. {DEFAULT_PIN_PATH:?}"
            ));
        }
        Ok(Self(path))
    }
}

impl fmt::Display for PinPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

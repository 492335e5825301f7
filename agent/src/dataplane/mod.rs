//! The XDP data plane: the embedded program, where it is attached, and every
//! read and write of its maps. Nothing else in the agent touches a BPF map.

mod counters;
mod error;
mod flows;
mod lease;
mod loader;
pub mod maglev;
mod maps;
mod peers;
mod scrape;
mod services;
mod settings;
mod vips;

pub use counters::{CounterMaps, CounterSnapshot};
pub use error::{BUILD_HINT, DataplaneError};
pub use flows::{FlowCollector, FlowStats, FlowTimeouts};
pub use lease::{GroupStates, Refresher, monotonic_ns, realtime};
pub use loader::{Attachment, Dataplane};
pub use maps::Maps;
pub use peers::{PeerEvents, PeerMaps, event_addr, key_addr, peer_key};
pub use scrape::XdpCollector;
pub use services::{BackendSpec, ServiceSpec, ServiceTable};
pub use settings::{AttachedMode, Mode, PortRange, XdpModeConfig};
pub use vips::{VipSpec, VipTable};

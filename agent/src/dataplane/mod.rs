//! The XDP data plane: the embedded program, where it is attached, and every
//! read and write of its maps. Nothing else in the agent touches a BPF map.

mod counters;
mod flows;
mod groups;
mod loader;
pub mod maglev;
mod maps;
mod peers;
mod services;

pub use counters::{CounterMaps, CounterSnapshot};
pub use flows::{FlowCollector, FlowStats, FlowTimeouts};
pub use groups::{GroupStates, Refresher, monotonic_ns, realtime};
pub use loader::{AttachedMode, Attachment, Dataplane, DataplaneError};
pub use maps::Maps;
pub use peers::{PeerEvents, PeerMaps, event_addr, key_addr, peer_key};
pub use services::{BackendSpec, ServiceSpec, ServiceTable};

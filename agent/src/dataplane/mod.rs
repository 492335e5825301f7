//! The XDP data plane: the embedded program, where it is attached, and every
//! read and write of its maps. Nothing else in the agent touches a BPF map.
//!
//! The agent's data plane is pinned in bpffs (`[dataplane] pin_path`,
//! [`Dataplane::load_pinned`]): the maps by name and the XDP link of each
//! interface (`pins.rs`). So XDP outlives the agent:
//!
//! - killed (`kill -9`, a crash, an abort): the links stay attached and
//!   the maps stay; the program keeps forwarding the flows it has until
//!   the lease in the group map goes stale, and then stops serving the VIP
//!   (a dead master must not stay a second master). Dropping a
//!   [`Dataplane`] does the same: it leaves its pins.
//! - started again on the same `pin_path`: the new data plane adopts the
//!   maps whose layout still matches (their flows, NAT entries and lease
//!   kept; a map whose layout changed is removed and created anew, logged
//!   by name) and re-points each pinned link at the new program
//!   ([`Dataplane::attach`]), so the interface is never without XDP.
//! - stopped cleanly (SIGTERM, SIGINT: [`Dataplane::stop`]): XDP is
//!   detached and every pin removed. A clean stop is a handover (priority
//!   0 first, a backup takes the VIP): the data plane of a stopped node
//!   must not linger, and nothing is left for an agent that may never
//!   come back.

mod batch;
mod counters;
mod error;
mod flow_events;
mod flows;
mod lease;
mod links;
mod loader;
pub mod maglev;
mod maps;
mod peers;
mod pins;
mod scrape;
mod services;
mod settings;
mod vips;

pub use counters::{CounterMaps, CounterSnapshot};
pub use error::{BUILD_HINT, DataplaneError};
pub use flow_events::FlowEvents;
pub use flows::{FlowCollector, FlowNews, FlowPolicy, FlowStats, NewsSink};
pub use lease::{GroupStates, Refresher, monotonic_ns, realtime};
pub use loader::{Attachment, Dataplane};
pub use maps::Maps;
pub use peers::{PeerEvents, PeerMaps, event_addr, key_addr, peer_key};
pub use pins::{MapLayout, PinReport};
pub use scrape::{FAMILIES as XDP_FAMILIES, LEASE_FAMILIES, LeaseCollector, XdpCollector};
pub use services::{BackendSpec, ServiceSpec, ServiceTable};
pub use settings::{AttachedMode, DEFAULT_PIN_PATH, Mode, PinPath, PortRange, XdpModeConfig};
pub use vips::{VipSpec, VipTable};

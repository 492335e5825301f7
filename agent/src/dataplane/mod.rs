//! The XDP data plane: the embedded program, where it is attached, and every
//! read and write of its maps. Nothing else in the agent touches a BPF map.

mod counters;
mod loader;
pub mod maglev;

pub use counters::{CounterMaps, CounterSnapshot};
pub use loader::{AttachedMode, Attachment, Dataplane, DataplaneError};

//! vipx-agent as a library: the daemon's modules, also used by the
//! integration tests and the benchmarks so that they drive the data plane
//! through the very code the agent runs in production.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod election;
pub mod events;
pub mod groups;
pub mod health;
pub mod lb;
pub mod metrics;
pub mod neigh;
pub mod ownership;
pub mod pulse;
pub mod status;
pub mod vip;

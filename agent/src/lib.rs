//! vipx-agent as a library: the daemon's modules, also used by the
//! integration tests and the benchmarks so that they drive the data plane
//! through the very code the agent runs in production.
//!
//! Dependencies run one way (`cargo xtask deps` checks it):
//! - the daemon ([`daemon`]) and the command line ([`cli`], [`api`]) at
//!   the top;
//! - the domains below them: [`group_runner`], [`election`],
//!   [`heartbeat`], [`health`], [`balancer`], [`ownership`], and the
//!   [`state`] the API reads;
//! - at the bottom [`dataplane`] (every BPF map), [`vip`] and [`neigh`]
//!   (the host's addresses and neighbours), [`config`], and the leaves
//!   [`events`], [`metrics`], [`locks`], [`rank`], [`tls`], [`command`]
//!   and [`fence`].

pub mod api;
pub mod balancer;
pub mod cli;
pub mod cluster;
pub mod command;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod election;
pub mod events;
pub mod fence;
pub mod group_runner;
pub mod health;
pub mod heartbeat;
pub mod import;
pub mod locks;
pub mod metrics;
pub mod neigh;
pub mod notify;
pub mod operator;
pub mod ownership;
pub mod rank;
pub mod state;
pub mod sync;
pub mod tls;
pub mod vip;

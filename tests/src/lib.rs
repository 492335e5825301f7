//! The vipx lab: network namespaces joined by one L2 segment (a bridge in a
//! hub namespace), hosts with `eth0` on it, processes started inside them,
//! PostgreSQL and PgBouncer, and the cleanup that leaves nothing behind.
//!
//! Used by the integration tests, `cargo xtask lab` and `cargo xtask bench`.
//! Everything here needs root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`).
//!
//! ```no_run
//! use vipx_lab::{Lab, LabOptions};
//! let lab = Lab::new(LabOptions::default()).expect("lab");
//! let n1 = lab.add_host("n1", &lab.v4(11)).expect("n1");
//! let n2 = lab.add_host("n2", &lab.v4(12)).expect("n2");
//! n1.run(&["ping", "-c1", "-W2", &n2.ipv4().to_string()]).expect("ping");
//! ```
//!
//! Names: a lab's id is `vipx-{pid}-{seq}`; its namespaces are
//! `vipx-{pid}-{seq}-{host}` and `vipx-{pid}-{seq}-hub`, and its bpffs (for
//! the agents' pins) `{PIN_ROOT}/vipx-{pid}-{seq}-bpf`, so labs of several
//! tests and several processes live side by side, and [`sweep_stale`],
//! [`sweep_stale_dirs`] and [`sweep_stale_pins`] can remove what a killed
//! process left.

pub mod arp;
pub mod capture;
mod cluster;
pub mod floor;
pub mod frames;
pub mod haproxy;
mod host;
pub mod http;
pub mod keepalived;
pub mod knat;
mod lab;
pub mod netns;
mod pgbouncer;
pub mod pins;
mod postgres;
pub mod probe;
mod process;
mod procs;
pub mod rig;
pub mod sessions;
mod stats;
mod sweep;
pub mod timeline;
pub mod walltime;
pub mod xdp;

#[cfg(test)]
mod selftest;

pub use cluster::{
    ADVERT_INTERVAL_MS, API_PORT, Cluster, ClusterOptions, Failure, Membership, Node, PG_PORT,
    PGBOUNCER_FIRST_PORT, VIP_PORT, Witness, agent_bin, node_priority,
};
pub use host::{Host, IFACE};
pub use lab::{BRIDGE, KEEP_ENV, Lab, LabCore, LabOptions};
pub use netns::{list_netns, netns_exists, netns_inode, processes_in_netns_inodes};
pub use nix::sys::signal::Signal;
pub use pgbouncer::{PgBouncer, PgBouncerOptions, PoolMode};
pub use pins::{PIN_ROOT, pins_under, sweep_stale_pins};
pub use postgres::{
    PG_USER, PgOptions, Postgres, READY_TIMEOUT, pg_bin_dir, pg_isready, pgbench, pgbench_init,
    psql, psql_db,
};
pub use process::{DEFAULT_RUN_TIMEOUT, Pid, ProcSpec, tail};
pub use procs::ProcInfo;
pub use stats::{LinkStats, link_stats};
pub use sweep::{leftovers_of, owner_pid, pid_alive, sweep_stale, sweep_stale_dirs};

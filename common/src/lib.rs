//! Types and constants shared by the vipx XDP program (`vipx-ebpf`) and its
//! agent (`vipx-agent`).
//!
//! Everything that crosses the kernel/user boundary is defined here once:
//! `#[repr(C)]`, plain integers, explicit padding. No `bool`, enum or
//! `Option` ever sits in a map value. The `user` feature adds the
//! [`aya::Pod`] impls the agent needs to read and write the maps.
#![no_std]

pub mod counters;

pub use counters::{Counter, action, reason};

/// Name of the per-CPU array of [`Counter`]s indexed by XDP action
/// (see [`action`]).
pub const MAP_ACTIONS: &str = "VIPX_ACTIONS";
/// Name of the per-CPU array of [`Counter`]s indexed by decision reason
/// (see [`reason`]).
pub const MAP_REASONS: &str = "VIPX_REASONS";

/// Name of the main XDP program in the object.
pub const PROG_MAIN: &str = "vipx_xdp";
/// Name of the pass-through XDP program in the object: attached to the peer
/// of a veth so that `XDP_TX`/redirected frames are not dropped, and the
/// baseline of the per-packet cost benchmark.
pub const PROG_PASS: &str = "vipx_pass";

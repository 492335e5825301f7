//! VRRPv3 election core (RFC 5798), wire-compatible with keepalived 2.2.
//!
//! - [`packet`]: the advertisement on the wire: [`parse`] checks a received
//!   one (section 7.1), [`build`] encodes ours, both with the pseudo-header
//!   checksum of section 5.2.8 for IPv4 and IPv6.
//! - [`state`]: the per-instance state machine of section 6 ([`Instance`]),
//!   pure and deterministic: events in (startup, advert received, timer,
//!   priority change, shutdown) with the current [`Time`], [`Action`]s out
//!   (send an advert, become master, become backup, stop).
//! - [`action`]: what comes out: [`State`], [`Action`], [`Reason`].
//! - [`timers`]: `Skew_Time` and `Master_Down_Interval` (section 6.1) from
//!   the interval in centiseconds (the wire's unit), in microseconds as
//!   keepalived computes them.
//!
//! Sockets, the XDP VRRP record, VIP installation and the clock belong to the
//! caller: it receives an IP packet, hands the VRRP payload to [`parse`] and
//! the result to [`Instance::advert_received`], calls [`Instance::timer`] at
//! [`Instance::next_deadline`], and for [`Action::SendAdvert`] sends
//! [`build`]`(src, dst, &instance.advert(priority, vips))` with TTL/hop limit
//! [`VRRP_TTL`] to [`VRRP_MULTICAST_V4`] / [`VRRP_MULTICAST_V6`] or each
//! unicast peer (the checksum depends on the destination, so one build per
//! peer).

pub mod action;
pub mod packet;
pub mod runner;
pub mod socket;
pub mod state;
pub mod timers;

pub use action::{Action, Reason, State};
pub use packet::{
    ADVERTISEMENT, Advert, AdvertError, HEADER_LEN, MAX_ADDRESSES, PRIORITY_DEFAULT,
    PRIORITY_OWNER, PRIORITY_STOP, VRRP_MULTICAST_V4, VRRP_MULTICAST_V6, VRRP_PROTOCOL, VRRP_TTL,
    VRRP_VERSION, build, parse,
};
pub use state::{Instance, InstanceConfig, InstanceConfigError, Time};
pub use timers::Centiseconds;

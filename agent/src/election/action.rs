//! What the election reports: the [`State`] of an instance, the [`Action`]s
//! it asks of the caller, and the [`Reason`] of each transition, worded for
//! the event timeline.

use std::fmt;
use std::net::IpAddr;

#[cfg(doc)]
use super::packet::PRIORITY_STOP;

/// The states of section 6.4 (no Fault state: interface and tracking faults
/// are the caller's, expressed through [`Instance::set_priority`](super::Instance::set_priority) or
/// [`Instance::shutdown`](super::Instance::shutdown)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or stopped (section 6.4.1).
    Initialize,
    /// Watching the master (section 6.4.2).
    Backup,
    /// Forwarding for the virtual addresses (section 6.4.3).
    Master,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Initialize => "INIT",
            Self::Backup => "BACKUP",
            Self::Master => "MASTER",
        })
    }
}

/// Why a transition happened, for the event timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// [`Instance::startup`](super::Instance::startup) (section 6.4.1).
    Startup,
    /// No advert from a master for `Master_Down_Interval` (section 6.4.2).
    MasterDown,
    /// The master sent priority 0 and `Skew_Time` passed (section 6.4.2).
    PriorityZeroReceived {
        /// The stopping master.
        src: IpAddr,
    },
    /// We discarded the adverts of a lower-priority master and took over
    /// (preempt, section 6.4.2).
    Preempt {
        /// The master preempted.
        src: IpAddr,
        /// Its priority.
        priority: u8,
    },
    /// A master received an advert of higher priority (section 6.4.3).
    HigherPriority {
        /// The new master.
        src: IpAddr,
        /// Its priority.
        priority: u8,
    },
    /// A master received an advert of equal priority from a higher primary
    /// address (section 6.4.3).
    HigherAddress {
        /// The new master.
        src: IpAddr,
        /// The shared priority.
        priority: u8,
    },
    /// [`Instance::shutdown`](super::Instance::shutdown) (sections 6.4.2 and 6.4.3).
    Shutdown,
    /// [`Instance::hand_over`](super::Instance::hand_over): an operator
    /// asked this MASTER to hand its VIPs to the best backup.
    Handover,
    /// vipx's fast heartbeat: the master's heartbeats stopped (or it said
    /// it is stopping) and no live peer outranks us
    /// ([`Instance::master_lost`](super::Instance::master_lost)). Not in the RFC: VRRP's own timer stays
    /// the fallback.
    HeartbeatLost {
        /// The silent (or stopping) master.
        src: IpAddr,
        /// Whether it said it is stopping rather than fell silent.
        stopping: bool,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Startup => f.write_str("startup"),
            Self::MasterDown => f.write_str("no advert from a master for Master_Down_Interval"),
            Self::PriorityZeroReceived { src } => write!(f, "master {src} stopped (priority 0)"),
            Self::Preempt { src, priority } => {
                write!(f, "preempted master {src} of lower priority {priority}")
            }
            Self::HigherPriority { src, priority } => {
                write!(f, "advert from {src} with higher priority {priority}")
            }
            Self::HigherAddress { src, priority } => write!(
                f,
                "advert from {src} with equal priority {priority} and a higher address"
            ),
            Self::Shutdown => f.write_str("shutdown"),
            Self::Handover => f.write_str("manual handover"),
            Self::HeartbeatLost {
                src,
                stopping: false,
            } => {
                write!(f, "heartbeats from master {src} stopped")
            }
            Self::HeartbeatLost {
                src,
                stopping: true,
            } => {
                write!(f, "master {src} is stopping (heartbeat)")
            }
        }
    }
}

/// What the caller must do, in the order returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send one advertisement with this priority (the VRID, interval and
    /// addresses are the instance's: see [`Instance::advert`](super::Instance::advert)).
    SendAdvert {
        /// Our priority, or [`PRIORITY_STOP`] when stopping.
        priority: u8,
    },
    /// Now MASTER: take the VIPs (add, gratuitous ARP / unsolicited NA).
    BecomeMaster {
        /// Why.
        reason: Reason,
    },
    /// Now BACKUP: release the VIPs if held.
    BecomeBackup {
        /// Why.
        reason: Reason,
    },
    /// Now stopped (Initialize): release the VIPs if held.
    Stop {
        /// Why.
        reason: Reason,
    },
    /// Still MASTER, but another node claimed the VIPs (its lower-priority
    /// advert arrived): announce them again (gratuitous ARP / unsolicited
    /// NA) so that hosts that followed the other node come back.
    Announce,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SendAdvert { priority } => write!(f, "send advert with priority {priority}"),
            Self::Announce => f.write_str("announce the VIPs again"),
            Self::BecomeMaster { reason } => write!(f, "MASTER: {reason}"),
            Self::BecomeBackup { reason } => write!(f, "BACKUP: {reason}"),
            Self::Stop { reason } => write!(f, "INIT: {reason}"),
        }
    }
}

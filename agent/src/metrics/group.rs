//! Per-group families: election, tracking, heartbeat. One counter per
//! outcome (an advert sent and one received do not add up to anything).

use std::time::Duration;

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGaugeVec};

use super::Registrar;

/// What became of a VRRP advert (`vipx_vrrp_adverts_*_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvertOutcome {
    Sent,
    Received,
    /// Not a valid VRRPv3 advert.
    Invalid,
    /// From outside the group's `unicast_peers`.
    Foreign,
}

impl AdvertOutcome {
    const ALL: [Self; 4] = [Self::Sent, Self::Received, Self::Invalid, Self::Foreign];
}

/// The states a group's transitions go to (`vipx_group_transitions_total{to}`),
/// as the timeline writes them.
pub const GROUP_STATES: [&str; 4] = ["MASTER", "BACKUP", "FAULT", "STOPPED"];

/// The heartbeat's families of one group, for the heartbeat thread.
#[derive(Clone, Debug)]
pub struct HeartbeatMetrics {
    pub sent: IntCounter,
    pub received: IntCounter,
    pub send_failed: IntCounter,
    /// The detection time in force (the configured one, or more after a
    /// false takeover).
    pub detection: Gauge,
}

/// Per-group families.
pub(super) struct GroupFamilies {
    master: IntGaugeVec,
    priority: IntGaugeVec,
    fault: IntGaugeVec,
    transitions: IntCounterVec,
    adverts_sent: IntCounterVec,
    adverts_received: IntCounterVec,
    adverts_invalid: IntCounterVec,
    adverts_foreign: IntCounterVec,
    heartbeats_sent: IntCounterVec,
    heartbeats_received: IntCounterVec,
    heartbeat_send_failures: IntCounterVec,
    heartbeat_detection: GaugeVec,
    detection: GaugeVec,
}

const GROUP: &[&str] = &["group"];

impl GroupFamilies {
    pub(super) fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
        Ok(Self {
            master: r.int_gauges(
                "vipx_group_master",
                "1 while this node is MASTER of the group (serves its VIPs).",
                GROUP,
            )?,
            priority: r.int_gauges(
                "vipx_group_priority",
                "The group's election priority after its tracked items.",
                GROUP,
            )?,
            fault: r.int_gauges(
                "vipx_group_fault",
                "1 while a tracked weight-0 item of the group fails (FAULT).",
                GROUP,
            )?,
            transitions: r.counters(
                "vipx_group_transitions_total",
                "State changes of the group on this node, by the state entered (MASTER, BACKUP, FAULT, STOPPED).",
                &["group", "to"],
            )?,
            adverts_sent: r.counters(
                "vipx_vrrp_adverts_sent_total",
                "VRRP adverts this node sent, by group.",
                GROUP,
            )?,
            adverts_received: r.counters(
                "vipx_vrrp_adverts_received_total",
                "Valid VRRP adverts received from the group's peers, by group.",
                GROUP,
            )?,
            adverts_invalid: r.counters(
                "vipx_vrrp_adverts_invalid_total",
                "Packets for the group's VRID that are not valid VRRPv3 adverts (bad checksum, version, length).",
                GROUP,
            )?,
            adverts_foreign: r.counters(
                "vipx_vrrp_adverts_foreign_total",
                "VRRP adverts for the group from outside its unicast_peers, ignored.",
                GROUP,
            )?,
            heartbeats_sent: r.counters(
                "vipx_heartbeats_sent_total",
                "Fast heartbeats this node sent, by group.",
                GROUP,
            )?,
            heartbeats_received: r.counters(
                "vipx_heartbeats_received_total",
                "Fast heartbeats recorded by XDP from the group's peers. Heartbeats and adverts from outside the peer list are dropped by XDP: vipx_xdp_decisions_total{reason=\"peer_unknown\"}.",
                GROUP,
            )?,
            heartbeat_send_failures: r.counters(
                "vipx_heartbeat_send_failures_total",
                "Fast heartbeats this node failed to send, by group.",
                GROUP,
            )?,
            heartbeat_detection: r.gauges(
                "vipx_heartbeat_detection_seconds",
                "The fast heartbeat's detection time in force, by group: heartbeat_interval x heartbeat_multiplier, doubled after each false takeover (heartbeat_dampening).",
                GROUP,
            )?,
            detection: r.gauges(
                "vipx_group_last_detection_seconds",
                "At this node's last takeover: the time since the previous master's last advert.",
                GROUP,
            )?,
        })
    }

    fn adverts(&self, outcome: AdvertOutcome) -> &IntCounterVec {
        match outcome {
            AdvertOutcome::Sent => &self.adverts_sent,
            AdvertOutcome::Received => &self.adverts_received,
            AdvertOutcome::Invalid => &self.adverts_invalid,
            AdvertOutcome::Foreign => &self.adverts_foreign,
        }
    }
}

impl super::Metrics {
    /// Makes a group's series exist (at 0) before anything happens to it.
    pub fn init_group(&self, group: &str) {
        let g = &self.groups;
        for outcome in AdvertOutcome::ALL {
            g.adverts(outcome).with_label_values(&[group]);
        }
        for to in GROUP_STATES {
            g.transitions.with_label_values(&[group, to]);
        }
        g.master.with_label_values(&[group]);
        g.fault.with_label_values(&[group]);
        g.priority.with_label_values(&[group]);
    }

    /// Counts a transition of a group to the state `to` (among
    /// [`GROUP_STATES`]).
    pub fn count_group_transition(&self, group: &str, to: &str) {
        self.groups
            .transitions
            .with_label_values(&[group, to])
            .inc();
    }

    /// Records a group's priority after its tracked items, and FAULT.
    pub fn set_group_priority(&self, group: &str, priority: u8, fault: bool) {
        self.init_group(group);
        self.groups
            .priority
            .with_label_values(&[group])
            .set(i64::from(priority));
        self.groups
            .fault
            .with_label_values(&[group])
            .set(i64::from(fault));
    }

    /// Records the detection time of this node's last takeover.
    pub fn set_detection(&self, group: &str, silence: Duration) {
        self.groups
            .detection
            .with_label_values(&[group])
            .set(silence.as_secs_f64());
    }

    /// Counts a VRRP advert.
    pub fn count_advert(&self, group: &str, outcome: AdvertOutcome) {
        self.groups
            .adverts(outcome)
            .with_label_values(&[group])
            .inc();
    }

    /// The heartbeat families of a group, for the heartbeat thread.
    pub fn heartbeat(&self, group: &str) -> HeartbeatMetrics {
        let g = &self.groups;
        HeartbeatMetrics {
            sent: g.heartbeats_sent.with_label_values(&[group]),
            received: g.heartbeats_received.with_label_values(&[group]),
            send_failed: g.heartbeat_send_failures.with_label_values(&[group]),
            detection: g.heartbeat_detection.with_label_values(&[group]),
        }
    }

    /// Records whether this node is MASTER of a group.
    pub fn set_group_master(&self, group: &str, master: bool) {
        self.groups
            .master
            .with_label_values(&[group])
            .set(i64::from(master));
    }
}

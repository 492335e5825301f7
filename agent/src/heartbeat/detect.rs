//! Failure detection from heartbeat records, pure: the records the XDP
//! program keeps ([`PeerSeen`], kind heartbeat) and the current time in,
//! a [`Verdict`] out. The heartbeat thread calls [`Detector::evaluate`] at
//! every tick while its group is BACKUP.
//!
//! Rules (BFD's detection time, RFC 5880 section 6.8.4, applied to the
//! VRRP master):
//! - The master is the peer whose latest heartbeat says MASTER, the most
//!   recent one if several do, heard since we became BACKUP. None: nothing
//!   to lose (VRRP's own timers handle a master that sends no heartbeats,
//!   such as keepalived). A MASTER record older than our own step-down is
//!   history: a master we replaced, possibly dead long ago, whose returning
//!   successor has not been heard yet; it is nobody we can lose.
//! - It is lost when its last heartbeat is older than the detection time
//!   (`multiplier x interval`), or at once when its last heartbeat says it
//!   is stopping (MASTER with priority 0, as VRRP's priority-0 advert).
//!   A peer in STOPPING state (a backup leaving, or in FAULT) is never the
//!   master nor a candidate.
//! - Then the live peer that ranks highest takes over: if a peer heard
//!   within the detection time outranks us (higher priority, or the same
//!   and a higher address: RFC 5798 section 6.4.3's tie-break), we wait for
//!   it to take over, up to [`DEFER_GRACE`] past the detection time, so
//!   that two backups do not both claim the VIP.
//! - A master silent for longer than the memory (a second at least) is
//!   history, not a failure in progress: VRRP has already dealt with it.

use std::{net::IpAddr, time::Duration};

use vipx_common::{
    PeerSeen,
    peer::{STATE_MASTER, STATE_STOPPING},
};

use crate::rank::address_greater;

/// How long a backup waits, past the detection time, for a live peer that
/// outranks it to take over before it does so itself: that peer must
/// notice the loss too and claim the VIP (an rtnetlink round trip), on a
/// machine that may be loaded. Only a second failure makes it wait this.
pub const DEFER_GRACE: Duration = Duration::from_millis(200);

/// One peer and its latest heartbeat, if any was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub addr: IpAddr,
    pub seen: Option<PeerSeen>,
}

/// What the heartbeats say about the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No master to watch, or it is alive.
    Alive,
    /// The master is lost but a live peer outranks us: it should take
    /// over.
    Defer { master: IpAddr, to: IpAddr },
    /// The master is lost and we are the one to take over.
    Lost {
        master: IpAddr,
        /// It said it is stopping (rather than fell silent).
        stopping: bool,
        /// How long since its last heartbeat.
        silence: Duration,
        /// When that last heartbeat arrived (`CLOCK_MONOTONIC` ns): the
        /// identity of this loss, so it is signalled once.
        last_ns: u64,
    },
}

/// The detection rule of one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detector {
    /// `multiplier x interval`.
    pub detect: Duration,
}

impl Detector {
    /// A detector for `interval` and `multiplier`.
    pub fn new(interval: Duration, multiplier: u8) -> Self {
        Self {
            detect: interval * u32::from(multiplier.max(1)),
        }
    }

    /// How long a master's silence stays a failure in progress.
    fn memory(&self) -> Duration {
        (self.detect * 4).max(Duration::from_secs(1))
    }

    /// The verdict at `now_ns` for a backup of `priority` at `me`, BACKUP
    /// since `since_ns` (0: since the records began).
    pub fn evaluate(
        &self,
        now_ns: u64,
        since_ns: u64,
        me: IpAddr,
        priority: u8,
        peers: &[PeerView],
    ) -> Verdict {
        let age = |seen: &PeerSeen| Duration::from_nanos(now_ns.saturating_sub(seen.last_ns));
        let master = peers
            .iter()
            .filter(|p| p.addr != me)
            .filter_map(|p| p.seen.map(|s| (p.addr, s)))
            .filter(|(_, s)| s.state == STATE_MASTER)
            .filter(|(_, s)| s.last_ns >= since_ns)
            .filter(|(_, s)| age(s) <= self.memory())
            .max_by_key(|(_, s)| s.last_ns);
        let Some((master, seen)) = master else {
            return Verdict::Alive;
        };
        let silence = age(&seen);
        let stopping = seen.priority == 0;
        if !stopping && silence <= self.detect {
            return Verdict::Alive;
        }
        if silence <= self.detect + DEFER_GRACE {
            let outranks = |addr: IpAddr, s: &PeerSeen| {
                s.priority > priority || (s.priority == priority && address_greater(addr, me))
            };
            let better = peers
                .iter()
                .filter(|p| p.addr != me && p.addr != master)
                .filter_map(|p| p.seen.map(|s| (p.addr, s)))
                .filter(|(_, s)| {
                    age(s) <= self.detect && s.state != STATE_STOPPING && s.priority != 0
                })
                .find(|(addr, s)| outranks(*addr, s));
            if let Some((to, _)) = better {
                return Verdict::Defer { master, to };
            }
        }
        Verdict::Lost {
            master,
            stopping,
            silence,
            last_ns: seen.last_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use vipx_common::peer::STATE_BACKUP;

    use super::*;

    const MS: u64 = 1_000_000;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn peer(last: u8, at_ms: u64, priority: u8, state: u8) -> PeerView {
        PeerView {
            addr: ip(last),
            seen: Some(PeerSeen {
                last_ns: at_ms * MS,
                count: 1,
                priority,
                state,
                ..PeerSeen::default()
            }),
        }
    }

    /// 1 ms heartbeats, multiplier 3.
    fn detector() -> Detector {
        Detector::new(Duration::from_millis(1), 3)
    }

    #[test]
    fn a_master_is_alive_until_the_detection_time_has_passed() {
        let d = detector();
        let peers = [peer(1, 1000, 150, STATE_MASTER)];
        for now in [1000, 1001, 1003] {
            assert_eq!(
                d.evaluate(now * MS, 0, ip(2), 100, &peers),
                Verdict::Alive,
                "{now} ms: within 3 missed heartbeats"
            );
        }
        assert_eq!(
            d.evaluate(1003 * MS + 1, 0, ip(2), 100, &peers),
            Verdict::Lost {
                master: ip(1),
                stopping: false,
                silence: Duration::from_nanos(3 * MS + 1),
                last_ns: 1000 * MS
            },
            "one nanosecond past 3 ms of silence"
        );
    }

    #[test]
    fn misses_are_counted_from_the_last_heartbeat_not_from_the_first() {
        let d = detector();
        // Heartbeats kept arriving until 1500 ms: silence counts from there.
        let peers = [peer(1, 1500, 150, STATE_MASTER)];
        assert_eq!(d.evaluate(1502 * MS, 0, ip(2), 100, &peers), Verdict::Alive);
        assert!(
            matches!(
                d.evaluate(1504 * MS, 0, ip(2), 100, &peers),
                Verdict::Lost { .. }
            ),
            "lost 4 ms after the last heartbeat"
        );
    }

    #[test]
    fn a_stopping_master_is_lost_at_once() {
        let d = detector();
        let peers = [peer(1, 1000, 0, STATE_MASTER)];
        assert_eq!(
            d.evaluate(1000 * MS, 0, ip(2), 100, &peers),
            Verdict::Lost {
                master: ip(1),
                stopping: true,
                silence: Duration::ZERO,
                last_ns: 1000 * MS
            },
            "a master's priority 0"
        );
    }

    #[test]
    fn a_backup_leaving_is_no_lost_master() {
        let d = detector();
        let peers = [
            peer(1, 1004, 150, STATE_MASTER),
            peer(3, 1004, 50, STATE_STOPPING),
        ];
        assert_eq!(d.evaluate(1004 * MS, 0, ip(2), 100, &peers), Verdict::Alive);
        assert_eq!(
            d.evaluate(1004 * MS, 0, ip(2), 100, &peers[1..]),
            Verdict::Alive,
            "nor a master when it is the only peer"
        );
    }

    #[test]
    fn nothing_is_lost_without_a_master_heartbeat() {
        let d = detector();
        assert_eq!(d.evaluate(5000 * MS, 0, ip(2), 100, &[]), Verdict::Alive);
        let only_backups = [peer(3, 1000, 50, STATE_BACKUP)];
        assert_eq!(
            d.evaluate(5000 * MS, 0, ip(2), 100, &only_backups),
            Verdict::Alive,
            "a silent backup is no lost master"
        );
        let never = [PeerView {
            addr: ip(1),
            seen: None,
        }];
        assert_eq!(
            d.evaluate(5000 * MS, 0, ip(2), 100, &never),
            Verdict::Alive,
            "a peer never heard"
        );
        let ancient = [peer(1, 1000, 150, STATE_MASTER)];
        assert_eq!(
            d.evaluate(2001 * MS, 0, ip(2), 100, &ancient),
            Verdict::Alive,
            "a master silent for over a second is history"
        );
    }

    #[test]
    fn a_master_heard_before_we_became_backup_is_not_ours_to_lose() {
        let d = detector();
        // The master we replaced died at 1000 ms; we stepped down at
        // 1500 ms for its returning successor, not heard from yet.
        let replaced = [peer(1, 1000, 150, STATE_MASTER)];
        assert!(
            matches!(
                d.evaluate(1501 * MS, 0, ip(2), 100, &replaced),
                Verdict::Lost { .. }
            ),
            "without the step-down time, the old record looks like a loss"
        );
        assert_eq!(
            d.evaluate(1501 * MS, 1500 * MS, ip(2), 100, &replaced),
            Verdict::Alive,
            "a MASTER record older than our step-down is history"
        );
        // Its successor's heartbeats say MASTER from 1502 ms: watched again.
        let successor = [peer(1, 1502, 150, STATE_MASTER)];
        assert_eq!(
            d.evaluate(1504 * MS, 1500 * MS, ip(2), 100, &successor),
            Verdict::Alive
        );
        assert!(
            matches!(
                d.evaluate(1506 * MS, 1500 * MS, ip(2), 100, &successor),
                Verdict::Lost { .. }
            ),
            "the successor silent for the detection time is lost"
        );
    }

    #[test]
    fn the_highest_live_backup_takes_over_and_the_others_wait() {
        let d = detector();
        let peers = [
            peer(1, 1000, 150, STATE_MASTER),
            peer(2, 1004, 100, STATE_BACKUP),
            peer(3, 1004, 50, STATE_BACKUP),
        ];
        // Node .3 (priority 50) defers to .2 (priority 100).
        assert_eq!(
            d.evaluate(1004 * MS, 0, ip(3), 50, &peers),
            Verdict::Defer {
                master: ip(1),
                to: ip(2)
            }
        );
        // Node .2 outranks .3 and takes over.
        assert!(matches!(
            d.evaluate(1004 * MS, 0, ip(2), 100, &peers),
            Verdict::Lost { .. }
        ));
        // If .2 does not take over, .3 does once the master has been silent
        // for the detection time and the grace.
        let later = [peers[0], peer(2, 1203, 100, STATE_BACKUP), peers[2]];
        assert!(matches!(
            d.evaluate(1203 * MS, 0, ip(3), 50, &later),
            Verdict::Defer { .. }
        ));
        assert!(matches!(
            d.evaluate(1203 * MS + 1, 0, ip(3), 50, &later),
            Verdict::Lost { .. }
        ));
    }

    #[test]
    fn equal_priorities_defer_to_the_higher_address() {
        let d = detector();
        let peers = [
            peer(1, 1000, 150, STATE_MASTER),
            peer(2, 1004, 100, STATE_BACKUP),
            peer(3, 1004, 100, STATE_BACKUP),
        ];
        assert_eq!(
            d.evaluate(1004 * MS, 0, ip(2), 100, &peers),
            Verdict::Defer {
                master: ip(1),
                to: ip(3)
            }
        );
        assert!(matches!(
            d.evaluate(1004 * MS, 0, ip(3), 100, &peers),
            Verdict::Lost { .. }
        ));
    }

    #[test]
    fn a_silent_or_stopping_peer_is_not_waited_for() {
        let d = detector();
        let peers = [
            peer(1, 1000, 150, STATE_MASTER),
            // Outranks us but silent for 4 ms: dead too.
            peer(2, 1000, 120, STATE_BACKUP),
            // Outranks us but stopping.
            peer(4, 1004, 130, STATE_STOPPING),
        ];
        assert!(matches!(
            d.evaluate(1004 * MS, 0, ip(3), 100, &peers),
            Verdict::Lost { .. }
        ));
    }

    #[test]
    fn the_newest_master_claim_is_the_master() {
        let d = detector();
        // .1 died a while ago; .2 took over and is alive.
        let peers = [
            peer(1, 1000, 150, STATE_MASTER),
            peer(2, 1100, 100, STATE_MASTER),
        ];
        assert_eq!(d.evaluate(1101 * MS, 0, ip(3), 50, &peers), Verdict::Alive);
    }
}

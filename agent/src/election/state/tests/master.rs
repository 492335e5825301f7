//! The Master state, priority changes, shutdown and what is ignored (RFC 5798
//! sections 6.4.3 and 7.1).

use super::*;

#[test]
fn equal_priority_tie_break_by_primary_address() {
    let mut low = master(config(100, 1));
    assert_eq!(
        low.advert_received(ms(9000), ip(2), &advert(100, 100)),
        [
            Action::SendAdvert { priority: 100 },
            Action::BecomeBackup {
                reason: Reason::HigherAddress {
                    src: ip(2),
                    priority: 100
                }
            }
        ],
        "10.0.0.1 yields to 10.0.0.2 after one last advert"
    );
    let mut high = master(config(100, 3));
    assert_eq!(
        high.advert_received(ms(9000), ip(2), &advert(100, 100)),
        [Action::SendAdvert { priority: 100 }, Action::Announce],
        "kept, and answered"
    );
    assert_eq!(high.state(), State::Master, "10.0.0.3 stays master");
    assert_eq!(
        high.next_deadline(),
        Some(ms(9000) + ms(1000)),
        "Adver_Timer restarts from the answer"
    );

    let v6 = |s: &str| IpAddr::V6(s.parse().expect("v6"));
    let mut low6 = master(InstanceConfig {
        primary_addr: v6("fe80::1:0"),
        ..config(100, 1)
    });
    low6.advert_received(ms(9000), v6("fe80::ffff"), &advert(100, 100));
    assert_eq!(
        low6.state(),
        State::Master,
        "fe80::1:0 is greater than fe80::ffff"
    );
    low6.advert_received(ms(9000), v6("fe80::2:0"), &advert(100, 100));
    assert_eq!(
        low6.state(),
        State::Backup,
        "fe80::2:0 is greater than fe80::1:0"
    );
}

#[test]
fn master_receiving_a_higher_priority_steps_down_and_learns_its_interval() {
    let mut m = master(config(100, 5));
    let now = ms(10_000);
    assert_eq!(
        m.advert_received(now, ip(2), &advert(150, 50)),
        [
            Action::SendAdvert { priority: 100 },
            Action::BecomeBackup {
                reason: Reason::HigherPriority {
                    src: ip(2),
                    priority: 150
                }
            }
        ],
        "one last advert (the other master announces again on it), then steps down"
    );
    assert_eq!(
        m.master_adver_interval(),
        ms(500),
        "Master_Adver_Interval from the advert"
    );
    assert_eq!(m.advert_interval(), ms(1000), "our own interval unchanged");
    assert_eq!(
        m.next_deadline(),
        Some(now + us(1_500_000 + 304_687)),
        "3 * 500 ms + 156 * 500 000 / 256 us (304 687.5, truncated)"
    );
}

#[test]
fn master_answers_a_lower_priority_advert_and_announces_again() {
    let mut m = master(config(100, 1));
    let now = ms(9000);
    assert_eq!(
        m.advert_received(now, ip(2), &advert(99, 100)),
        [Action::SendAdvert { priority: 100 }, Action::Announce],
        "advert at once, then the VIPs announced again"
    );
    assert_eq!(
        (m.state(), m.next_deadline()),
        (State::Master, Some(now + ms(1000))),
        "still master, Adver_Timer reset"
    );
}

#[test]
fn master_receiving_priority_zero_advertises_at_once() {
    let mut m = master(config(100, 1));
    let now = ms(5000);
    assert_eq!(
        m.advert_received(now, ip(2), &advert(0, 100)),
        [Action::SendAdvert { priority: 100 }],
        "advert at once"
    );
    assert_eq!(m.next_deadline(), Some(now + ms(1000)), "Adver_Timer reset");
    assert_eq!(m.state(), State::Master, "still master");
}

#[test]
fn shutdown_of_a_master_sends_priority_zero() {
    let mut m = master(config(100, 1));
    assert_eq!(
        m.shutdown(ms(9000)),
        [
            Action::SendAdvert { priority: 0 },
            Action::Stop {
                reason: Reason::Shutdown
            }
        ],
        "priority 0 then stop"
    );
    assert_eq!(
        (m.state(), m.next_deadline()),
        (State::Initialize, None),
        "stopped"
    );
    assert!(m.shutdown(ms(9001)).is_empty(), "already stopped");
    assert!(m.timer(ms(99_000)).is_empty(), "no timer once stopped");
    assert!(
        m.advert_received(ms(9002), ip(2), &advert(0, 100))
            .is_empty(),
        "deaf once stopped"
    );
    assert_eq!(
        m.startup(ms(10_000)),
        [Action::BecomeBackup {
            reason: Reason::Startup
        }],
        "can start again"
    );

    let mut b = started(config(100, 1), ms(0));
    assert_eq!(
        b.shutdown(ms(1)),
        [Action::Stop {
            reason: Reason::Shutdown
        }],
        "backup stops"
    );
}

#[test]
fn set_priority_on_a_master_advertises_the_new_priority_at_once() {
    let mut m = master(config(100, 1));
    assert_eq!(
        m.set_priority(ms(5000), 80),
        [Action::SendAdvert { priority: 80 }],
        "drop"
    );
    assert_eq!(m.next_deadline(), Some(ms(6000)), "Adver_Timer restarted");
    assert!(
        m.set_priority(ms(5001), 80).is_empty(),
        "unchanged priority: nothing"
    );
    assert_eq!(
        m.set_priority(ms(5002), 0),
        [Action::SendAdvert { priority: 1 }],
        "0 -> 1"
    );
    assert_eq!(m.priority(), 1, "priority 0 is reserved");
}

#[test]
fn set_priority_on_a_backup_recomputes_its_timers() {
    let mut b = started(config(100, 1), ms(0));
    b.advert_received(ms(1000), ip(9), &advert(150, 100));
    assert_eq!(
        b.next_deadline(),
        Some(ms(1000) + us(3_000_000 + 609_375)),
        "3 s + 156 * 1 000 000 / 256 us at priority 100"
    );
    assert!(
        b.set_priority(ms(2000), 250).is_empty(),
        "no action for a backup"
    );
    assert_eq!(
        b.skew_time(),
        us(23_437),
        "(256 - 250) * 1 000 000 / 256 = 23 437.5 -> 23 437 us"
    );
    let down = ms(1000) + us(3_000_000 + 23_437);
    assert_eq!(b.next_deadline(), Some(down), "same start, new length");
    // Now above the master (150): its next advert is discarded and we preempt.
    b.advert_received(ms(2000), ip(9), &advert(150, 100));
    assert_eq!(b.next_deadline(), Some(down), "lower advert discarded");
    assert!(b.timer(down - NS).is_empty(), "not before");
    b.timer(down);
    assert_eq!(
        b.state(),
        State::Master,
        "preempted after the recomputed timer"
    );
}

#[test]
fn adverts_that_are_not_for_us_are_ignored() {
    let mut b = started(config(100, 1), ms(0));
    let before = b.next_deadline();
    let other_vrid = Advert {
        vrid: 52,
        ..advert(0, 100)
    };
    b.advert_received(ms(100), ip(9), &other_vrid);
    b.advert_received(
        ms(100),
        IpAddr::V6("fe80::9".parse().expect("v6")),
        &advert(0, 100),
    );
    b.advert_received(ms(100), ip(1), &advert(0, 100));
    assert_eq!(
        b.next_deadline(),
        before,
        "other VRID, other family, own address ignored"
    );

    let mut owner = started(config(255, 1), ms(0));
    assert!(
        owner
            .advert_received(ms(100), ip(9), &advert(255, 100))
            .is_empty(),
        "owner"
    );
    assert_eq!(
        owner.state(),
        State::Master,
        "the owner discards adverts (7.1)"
    );

    let mut idle = Instance::new(config(100, 1)).expect("config");
    assert!(
        idle.advert_received(ms(100), ip(9), &advert(0, 100))
            .is_empty(),
        "not started"
    );
}

#[test]
fn actions_read_well_in_the_event_timeline() {
    let text = |a: Action| a.to_string();
    assert_eq!(
        text(Action::SendAdvert { priority: 0 }),
        "send advert with priority 0"
    );
    assert_eq!(
        text(Action::BecomeMaster {
            reason: Reason::Preempt {
                src: ip(9),
                priority: 100
            }
        }),
        "MASTER: preempted master 10.0.0.9 of lower priority 100"
    );
    assert_eq!(
        text(Action::BecomeBackup {
            reason: Reason::HigherAddress {
                src: ip(2),
                priority: 100
            }
        }),
        "BACKUP: advert from 10.0.0.2 with equal priority 100 and a higher address"
    );
    assert_eq!(
        text(Action::BecomeMaster {
            reason: Reason::PriorityZeroReceived { src: ip(9) }
        }),
        "MASTER: master 10.0.0.9 stopped (priority 0)"
    );
    assert_eq!(
        text(Action::Stop {
            reason: Reason::Shutdown
        }),
        "INIT: shutdown"
    );
    assert_eq!(State::Backup.to_string(), "BACKUP", "state");
}

#[test]
fn a_manual_handover_steps_down_like_a_shutdown_and_stays_down() {
    let mut node = master(config(150, 1));
    assert_eq!(
        node.hand_over(ms(9000), 1),
        [
            Action::SendAdvert { priority: 0 },
            Action::BecomeBackup {
                reason: Reason::Handover
            }
        ],
        "priority 0 first, so the best backup takes over after its Skew_Time (6.4.2)"
    );
    assert_eq!(node.state(), State::Backup);
    assert_eq!(node.priority(), 1, "held at the lowest priority");
    // The new master, priority 100: accepted, even though 100 < 150 and
    // preempt is on: the node was handed over.
    assert_eq!(
        node.advert_received(ms(9010), ip(2), &advert(100, 100)),
        [],
        "the new master's advert is accepted"
    );
    assert_eq!(node.state(), State::Backup, "no preemption while held");
    // Undone (the tracked priority back): the lower master's adverts are
    // discarded and the node preempts at Master_Down_Interval (6.4.2).
    node.set_priority(ms(9500), 150);
    assert_eq!(
        node.advert_received(ms(10_010), ip(2), &advert(100, 100)),
        [],
        "discarded"
    );
    let down = node.next_deadline().expect("Master_Down_Timer runs");
    assert_eq!(
        node.timer(down),
        [Action::SendAdvert { priority: 150 }, preempts(ip(2), 100)],
        "back at 150 with preempt on: takes the VIPs back"
    );
}

#[test]
fn a_held_backup_still_takes_over_when_no_one_else_does() {
    let mut node = started(config(150, 1), ms(0));
    assert_eq!(
        node.hand_over(ms(0), 1),
        [],
        "a backup only takes the priority"
    );
    let at = node.next_deadline().expect("backup has a timer");
    assert_eq!(
        node.timer(at),
        [
            Action::SendAdvert { priority: 1 },
            Action::BecomeMaster {
                reason: Reason::MasterDown
            }
        ],
        "a VIP with no master is worse than a held node holding it"
    );
}

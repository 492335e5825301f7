//! Startup and the Backup state (RFC 5798 sections 6.4.1 and 6.4.2).

use super::*;

#[test]
fn config_is_checked() {
    let err = |c: InstanceConfig| Instance::new(c).expect_err("config refused");
    assert_eq!(
        err(InstanceConfig {
            vrid: 0,
            ..config(100, 1)
        }),
        InstanceConfigError::ZeroVrid
    );
    assert_eq!(err(config(0, 1)), InstanceConfigError::ZeroPriority);
    for interval in [ms(0), ms(40_960)] {
        let c = InstanceConfig {
            advert_interval: interval,
            ..config(100, 1)
        };
        assert_eq!(
            err(c),
            InstanceConfigError::IntervalOutOfRange { interval },
            "{interval:?}"
        );
    }
    let c = InstanceConfig {
        advert_interval: ms(15),
        ..config(100, 1)
    };
    assert!(
        err(c)
            .to_string()
            .contains("15ms is not a whole number of centiseconds"),
        "15 ms refused"
    );
    for interval in [ms(10), ms(40_950)] {
        let c = InstanceConfig {
            advert_interval: interval,
            ..config(100, 1)
        };
        Instance::new(c).expect("interval at the bounds accepted");
    }
}

#[test]
fn startup_as_owner_becomes_master_at_once() {
    let mut owner = Instance::new(config(255, 1)).expect("owner config");
    assert_eq!(owner.state(), State::Initialize, "stopped before startup");
    assert_eq!(owner.next_deadline(), None, "no timer before startup");
    let actions = owner.startup(ms(5));
    assert_eq!(
        actions,
        [
            Action::SendAdvert { priority: 255 },
            Action::BecomeMaster {
                reason: Reason::Startup
            }
        ],
        "owner: advert then master"
    );
    assert_eq!(
        owner.next_deadline(),
        Some(ms(1005)),
        "Adver_Timer = Advertisement_Interval"
    );
    assert!(
        owner.startup(ms(6)).is_empty(),
        "a second startup does nothing"
    );
}

#[test]
fn startup_below_255_becomes_backup_with_master_down_timer() {
    let mut backup = Instance::new(config(100, 1)).expect("config");
    let actions = backup.startup(ms(5));
    assert_eq!(
        actions,
        [Action::BecomeBackup {
            reason: Reason::Startup
        }],
        "backup"
    );
    assert_eq!(backup.state(), State::Backup, "state");
    assert_eq!(
        backup.skew_time(),
        us(609_375),
        "(256 - 100) * 1 000 000 / 256 = 609 375 us"
    );
    assert_eq!(
        backup.master_down_interval(),
        us(3_000_000 + 609_375),
        "3 s + 609 375 us"
    );
    assert_eq!(
        backup.next_deadline(),
        Some(ms(5) + us(3_609_375)),
        "Master_Down_Timer"
    );
}

#[test]
fn backup_takes_over_after_exactly_master_down_interval_of_silence() {
    let mut backup = started(config(100, 1), ms(0));
    assert!(
        backup
            .advert_received(ms(1000), ip(9), &advert(200, 100))
            .is_empty(),
        "accepted"
    );
    // Master_Down_Interval at priority 100: 3 s + 156 * 1 000 000 / 256 us.
    let down = ms(1000) + us(3_000_000 + 609_375);
    assert_eq!(
        backup.next_deadline(),
        Some(down),
        "reset to 1 s + 3.609375 s"
    );
    assert!(backup.timer(down - NS).is_empty(), "not a nanosecond early");
    assert_eq!(backup.state(), State::Backup, "still backup");
    assert_eq!(
        backup.timer(down),
        [
            Action::SendAdvert { priority: 100 },
            Action::BecomeMaster {
                reason: Reason::MasterDown
            }
        ],
        "master down"
    );
    assert_eq!(
        backup.next_deadline(),
        Some(down + ms(1000)),
        "now the Adver_Timer"
    );
    assert_eq!(
        backup.timer(down + ms(1000)),
        [Action::SendAdvert { priority: 100 }],
        "next advert"
    );
    assert_eq!(
        backup.next_deadline(),
        Some(down + ms(2000)),
        "Adver_Timer reset"
    );
}

#[test]
fn adverts_from_the_master_keep_resetting_the_timer() {
    let mut backup = started(config(100, 1), ms(0));
    // Master_Down_Interval at priority 100: 3 s + 156 * 1 000 000 / 256 us.
    let down = us(3_000_000 + 609_375);
    for second in 1..=20 {
        let now = ms(second * 1000);
        assert!(
            backup.timer(now - NS).is_empty(),
            "no takeover before the advert at {now:?}"
        );
        backup.advert_received(now, ip(9), &advert(200, 100));
        assert_eq!(backup.next_deadline(), Some(now + down), "reset at {now:?}");
    }
    assert_eq!(backup.state(), State::Backup, "backup all along");
    assert!(
        backup.timer(ms(20_000) + down - NS).is_empty(),
        "not before Master_Down_Interval"
    );
    let actions = backup.timer(ms(20_000) + down);
    assert!(
        actions.contains(&Action::BecomeMaster {
            reason: Reason::MasterDown
        }),
        "takes over 3.609375 s after the last advert: {actions:?}"
    );
}

#[test]
fn priority_zero_from_the_master_means_takeover_after_skew_time() {
    let mut backup = started(config(100, 1), ms(0));
    backup.advert_received(ms(1000), ip(9), &advert(200, 100));
    assert!(
        backup
            .advert_received(ms(1500), ip(9), &advert(0, 100))
            .is_empty(),
        "no action yet"
    );
    // Skew_Time at priority 100: 156 * 1 000 000 / 256 = 609 375 us.
    let takeover = ms(1500) + us(609_375);
    assert_eq!(
        backup.next_deadline(),
        Some(takeover),
        "Master_Down_Timer = Skew_Time"
    );
    assert!(
        backup.timer(takeover - NS).is_empty(),
        "not before Skew_Time"
    );
    assert_eq!(
        backup.timer(takeover),
        [
            Action::SendAdvert { priority: 100 },
            Action::BecomeMaster {
                reason: Reason::PriorityZeroReceived { src: ip(9) }
            }
        ],
        "takeover after the master's priority 0"
    );
}

#[test]
fn preempt_on_a_higher_priority_backup_takes_over_from_a_lower_master() {
    let mut backup = started(config(200, 1), ms(0));
    let down = us(3_000_000 + 218_750);
    assert_eq!(
        backup.master_down_interval(),
        down,
        "3 s + 56 * 1 000 000 / 256 us"
    );
    for n in 0..3 {
        let now = ms(500 + n * 1000);
        backup.advert_received(now, ip(9), &advert(100, 100));
        assert_eq!(
            backup.next_deadline(),
            Some(down),
            "lower advert discarded at {now:?}"
        );
    }
    assert!(
        backup.timer(down - NS).is_empty(),
        "not before Master_Down_Interval"
    );
    assert_eq!(
        backup.timer(down),
        [Action::SendAdvert { priority: 200 }, preempts(ip(9), 100)],
        "preempts the lower master"
    );
}

#[test]
fn preempt_off_a_higher_priority_backup_stays_backup() {
    let mut backup = started(
        InstanceConfig {
            preempt: false,
            ..config(200, 1)
        },
        ms(0),
    );
    for n in 0..20 {
        let now = ms(500 + n * 1000);
        assert!(backup.timer(now).is_empty(), "no takeover at {now:?}");
        backup.advert_received(now, ip(9), &advert(100, 50));
        assert_eq!(backup.master_adver_interval(), ms(500), "interval learnt");
    }
    assert_eq!(
        backup.state(),
        State::Backup,
        "nopreempt keeps the lower master"
    );
}

#[test]
fn preempt_delay_holds_preemption_back_from_the_first_lower_advert() {
    let c = InstanceConfig {
        preempt_delay: ms(5000),
        ..config(200, 1)
    };
    let mut backup = started(c, ms(0));
    // The first lower advert (0.5 s) starts the delay: adverts until 5.5 s
    // are accepted, the one at 5.5 s is discarded, so the timer set at 4.5 s
    // runs out at 4.5 s + Master_Down_Interval (3 s + 56 * 1 000 000 / 256 us).
    let down = ms(4500) + us(3_000_000 + 218_750);
    for n in 0..8 {
        let now = ms(500 + n * 1000);
        assert!(backup.timer(now).is_empty(), "held at {now:?}");
        backup.advert_received(now, ip(9), &advert(100, 100));
    }
    assert_eq!(
        backup.next_deadline(),
        Some(down),
        "last accepted advert at 4.5 s"
    );
    assert!(backup.timer(down - NS).is_empty(), "not before");
    let actions = backup.timer(down);
    assert!(
        actions.contains(&preempts(ip(9), 100)),
        "preempts once the delay is over: {actions:?}"
    );
}

#[test]
fn preempt_delay_restarts_when_the_master_drops_below_us() {
    let c = InstanceConfig {
        preempt_delay: ms(2000),
        ..config(150, 1)
    };
    let mut backup = started(c, ms(0));
    for second in 1..=10 {
        backup.advert_received(ms(second * 1000), ip(9), &advert(200, 100));
    }
    // The master's priority drops to 100 at 11 s: the delay runs 11..13 s.
    for second in 11..=13 {
        backup.advert_received(ms(second * 1000), ip(9), &advert(100, 100));
    }
    // Master_Down_Interval at priority 150: 3 s + 106 * 1 000 000 / 256 us
    // (414 062.5, truncated).
    let down = ms(12_000) + us(3_000_000 + 414_062);
    assert_eq!(
        backup.next_deadline(),
        Some(down),
        "advert at 13 s discarded"
    );
    assert!(backup.timer(down - NS).is_empty(), "not before");
    backup.timer(down);
    assert_eq!(
        backup.state(),
        State::Master,
        "took over after delay + Master_Down_Interval"
    );
}

#[test]
fn the_masters_advertised_interval_drives_the_backup_timers() {
    let mut b = started(config(100, 1), ms(0));
    assert_eq!(
        b.master_adver_interval(),
        ms(1000),
        "own interval before any advert"
    );
    b.advert_received(ms(1000), ip(9), &advert(200, 25));
    assert_eq!(b.master_adver_interval(), ms(250), "learnt 25 cs");
    assert_eq!(
        b.skew_time(),
        us(152_343),
        "156 * 250 000 / 256 = 152 343.75 -> 152 343 us"
    );
    assert_eq!(
        b.master_down_interval(),
        us(750_000 + 152_343),
        "3 * 250 ms + 152 343 us"
    );
    assert_eq!(
        b.next_deadline(),
        Some(ms(1000) + us(902_343)),
        "timer on the learnt interval"
    );
    b.advert_received(ms(2000), ip(9), &advert(200, 400));
    assert_eq!(
        b.next_deadline(),
        Some(ms(2000) + us(12_000_000 + 2_437_500)),
        "3 * 4 s + 156 * 4 000 000 / 256 us"
    );
}

#[test]
fn heartbeat_loss_makes_a_backup_master_at_once() {
    let mut backup = started(config(100, 2), ms(0));
    backup.advert_received(ms(10), ip(1), &advert(150, 100));
    let actions = backup.master_lost(ms(13), ip(1), false);
    assert_eq!(
        actions,
        [
            Action::SendAdvert { priority: 100 },
            Action::BecomeMaster {
                reason: Reason::HeartbeatLost {
                    src: ip(1),
                    stopping: false
                }
            }
        ],
        "advert then master, long before Master_Down_Interval"
    );
    assert_eq!(backup.state(), State::Master, "master after the loss");
    assert_eq!(
        backup.next_deadline(),
        Some(ms(13) + Duration::from_secs(1)),
        "Adver_Timer runs from the takeover"
    );
}

#[test]
fn heartbeat_loss_is_ignored_unless_backup() {
    let mut init = Instance::new(config(100, 2)).expect("config");
    assert!(
        init.master_lost(ms(1), ip(1), false).is_empty(),
        "Initialize ignores it"
    );
    let mut m = master(config(100, 2));
    assert!(
        m.master_lost(ms(5000), ip(1), true).is_empty(),
        "a master ignores it"
    );
    let mut backup = started(config(100, 2), ms(0));
    assert!(
        backup.master_lost(ms(1), ip(2), false).is_empty(),
        "our own address is never the lost master"
    );
    assert_eq!(backup.state(), State::Backup, "still backup");
}

#[test]
fn a_live_heartbeat_holds_the_master_down_timer_on_silence_only() {
    let mut backup = started(config(100, 2), ms(0));
    backup.advert_received(ms(10), ip(1), &advert(150, 100));
    let due = backup.next_deadline().expect("Master_Down_Timer runs");
    assert!(backup.master_alive(due), "silence: the timer restarts");
    assert_eq!(
        backup.next_deadline(),
        Some(due + backup.master_down_interval()),
        "a full Master_Down_Interval from now"
    );
    assert_eq!(backup.state(), State::Backup, "still backup");
    // A master's priority 0 is not overridden.
    backup.advert_received(due + ms(1), ip(1), &advert(0, 100));
    assert!(
        !backup.master_alive(due + ms(2)),
        "priority 0 keeps its course"
    );
    // Nor is a master.
    let mut m = master(config(100, 2));
    assert!(!m.master_alive(ms(9000)), "a master has no such timer");
}

#[test]
fn held_preemption_waits_until_released_then_preempts() {
    let mut backup = started(config(200, 1), ms(0));
    backup.hold_preemption(true);
    // Held: the lower master's adverts (every second) are accepted, so
    // the backup stays BACKUP however long it hears them.
    for n in 1..=10 {
        let now = ms(n * 1000);
        assert!(backup.timer(now).is_empty(), "held at {now:?}");
        backup.advert_received(now, ip(9), &advert(100, 100));
    }
    assert_eq!(backup.state(), State::Backup, "held: no preemption");
    // Released at 10.5 s: the advert at 11 s is discarded, so the timer of
    // the one accepted at 10 s runs out at 10 s + Master_Down_Interval
    // (3 s + 56 * 1 000 000 / 256 us at priority 200).
    backup.hold_preemption(false);
    backup.advert_received(ms(11_000), ip(9), &advert(100, 100));
    let down = ms(10_000) + us(3_000_000 + 218_750);
    assert_eq!(
        backup.next_deadline(),
        Some(down),
        "the advert at 11 s discarded"
    );
    let actions = backup.timer(down);
    assert!(
        actions.contains(&preempts(ip(9), 100)),
        "preempts once released: {actions:?}"
    );
}

#[test]
fn held_preemption_never_holds_a_takeover_on_silence() {
    let mut backup = started(config(200, 1), ms(0));
    backup.hold_preemption(true);
    backup.advert_received(ms(1000), ip(9), &advert(100, 100));
    // Then silence: the master is gone, the backup takes over as usual.
    let down = ms(1000) + us(3_000_000 + 218_750);
    assert_eq!(backup.next_deadline(), Some(down));
    let actions = backup.timer(down);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::BecomeMaster { .. })),
        "a silent master is replaced even while preemption is held: {actions:?}"
    );
}

//! The state machine against RFC 5798 section 6, with simulated time:
//! [`backup`] and [`master`] drive one instance by hand, [`sim`] several
//! over a simulated LAN.

mod backup;
mod master;
mod sim;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;

const NS: Duration = Duration::from_nanos(1);

fn ms(n: u64) -> Time {
    Duration::from_millis(n)
}

/// `Skew_Time` and `Master_Down_Interval` are whole microseconds.
fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

/// VRID 51, 1 s adverts, preempt on, primary address 10.0.0.`last`.
fn config(priority: u8, last: u8) -> InstanceConfig {
    InstanceConfig {
        vrid: 51,
        priority,
        advert_interval: Duration::from_secs(1),
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_addr: ip(last),
        accept_mode: false,
    }
}

fn started(config: InstanceConfig, now: Time) -> Instance {
    let mut instance = Instance::new(config).expect("valid test config");
    instance.startup(now);
    instance
}

/// The action of a backup that preempts the master at `src`.
fn preempts(src: IpAddr, priority: u8) -> Action {
    Action::BecomeMaster {
        reason: Reason::Preempt { src, priority },
    }
}

fn advert(priority: u8, centis: u16) -> Advert {
    Advert {
        vrid: 51,
        priority,
        max_advert_int: centis,
        addrs: vec![ip(100)],
    }
}

/// Makes `instance` master through a silent `Master_Down_Interval`.
fn master(config: InstanceConfig) -> Instance {
    let mut instance = started(config, ms(0));
    let at = instance.next_deadline().expect("backup has a timer");
    instance.timer(at);
    assert_eq!(
        instance.state(),
        State::Master,
        "became master for the test"
    );
    instance
}

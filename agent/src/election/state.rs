//! The per-instance VRRPv3 state machine (RFC 5798 section 6), pure and
//! deterministic: no sockets, no clock. The caller feeds it events with the
//! current [`Time`] and carries out the [`Action`]s it returns, in order; it
//! calls [`Instance::timer`] when [`Instance::next_deadline`] is reached.
//!
//! Choices where the RFC is silent or keepalived 2.2 differs:
//! - **Timers** restart from the `now` of the event that resets them, so a
//!   late [`Instance::timer`] call delays the following adverts rather than
//!   bunching them.
//! - **Preemption** (section 6.4.2) is not immediate: a backup with preempt
//!   discards a lower-priority advert, so its `Master_Down_Timer` runs out
//!   `Master_Down_Interval` after the last advert it accepted, and it then
//!   takes over. keepalived behaves the same.
//! - **`preempt_delay`** follows keepalived: the first lower-priority advert a
//!   backup sees starts the delay; until it ends such adverts are accepted as
//!   if preempt were off. An advert of our priority or higher, and every
//!   transition, clears it. So a node coming up behind a lower master waits
//!   about `preempt_delay + Master_Down_Interval` before preempting.
//! - **Held preemption** ([`Instance::hold_preemption`], vipx's own): while
//!   held, lower-priority adverts are accepted as with preempt off; once
//!   released, the next one is discarded and the backup preempts one
//!   `Master_Down_Interval` later (after `preempt_delay`, if set).
//! - **Priority changes** ([`Instance::set_priority`], for tracked scripts
//!   and interfaces): a master advertises its new priority at once and
//!   restarts its `Adver_Timer` (on a drop this lets preempting backups see
//!   it; on a rise it is merely early); a backup recomputes `Skew_Time` and
//!   `Master_Down_Interval`, and its running `Master_Down_Timer` keeps its
//!   start but takes the new length. A backup that now outranks the master
//!   preempts, if allowed, when that timer runs out (the master's next
//!   advert, now of lower priority, is discarded).
//! - **Adverts ignored**: other VRIDs, the other address family, our own
//!   address (a looped-back advert), and everything while we are the address
//!   owner (priority 255, section 7.1). keepalived by default still processes
//!   them as owner.
//! - A master receiving a lower-priority advert (section 6.4.3 discards it)
//!   answers as keepalived does: an advert at once ("forcing new
//!   election"), which sends the other node back to BACKUP, and the VIPs
//!   announced again, so hosts that followed the other node's gratuitous
//!   ARP come back (a split brain heals in one advert). So that this
//!   happens whichever master hears the other first, a master that steps
//!   down for a higher one sends one last advert of its own priority.

use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;

use super::action::{Action, Reason, State};
use super::packet::{Advert, MAX_ADVER_INT_MASK, PRIORITY_OWNER, PRIORITY_STOP};
use super::timers::{self, Centiseconds, MAX_ADVER_INT};
use crate::rank::address_greater;

/// A point in time, as the span since an arbitrary epoch the caller chooses
/// (the agent: its start; tests: zero).
pub type Time = Duration;

/// Configuration of one virtual router (RFC 5798 section 6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Virtual Router ID, 1 to 255 (section 5.2.3).
    pub vrid: u8,
    /// Priority, 1 to 255; 255 only on the address owner (section 5.2.4).
    pub priority: u8,
    /// `Advertisement_Interval`: whole centiseconds from 10 ms to 40.95 s
    /// (section 5.2.7).
    pub advert_interval: Duration,
    /// `Preempt_Mode`: whether a higher-priority backup takes over from a
    /// lower-priority master (section 6.1).
    pub preempt: bool,
    /// keepalived's `preempt_delay` (see the module documentation).
    pub preempt_delay: Duration,
    /// Our primary address on the interface, the advert source and the
    /// tie-break between equal priorities (section 6.4.3).
    pub primary_addr: IpAddr,
    /// `Accept_Mode` (section 6.1): whether a master that is not the owner
    /// accepts packets addressed to the VIPs. Not used by the election itself;
    /// kept here for whoever installs the VIPs.
    pub accept_mode: bool,
}

/// Why [`Instance::new`] rejected an [`InstanceConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum InstanceConfigError {
    /// VRID 0 does not exist (section 5.2.3).
    #[error("VRID 0 is invalid, use 1 to 255")]
    ZeroVrid,
    /// Priority 0 is reserved for a stopping master (section 5.2.4).
    #[error("priority 0 is reserved for a stopping master, use 1 to 255")]
    ZeroPriority,
    /// The interval is not a whole number of centiseconds.
    #[error("advert interval {interval:?} is not a whole number of centiseconds")]
    IntervalNotCentiseconds {
        /// The configured interval.
        interval: Duration,
    },
    /// The interval does not fit the 12-bit field or is zero.
    #[error("advert interval {interval:?} is outside 10ms..=40.95s")]
    IntervalOutOfRange {
        /// The configured interval.
        interval: Duration,
    },
}

/// The one timer running at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Initialize: nothing runs.
    Stopped,
    /// Master's `Adver_Timer`, firing at `at`.
    Adver { at: Time },
    /// Backup's `Master_Down_Timer`, started at `since` for `Skew_Time` when
    /// `skew_only`, else for `Master_Down_Interval`. Its length follows the
    /// current priority and `Master_Adver_Interval`.
    MasterDown { since: Time, skew_only: bool },
}

/// What a backup's takeover would be blamed on if its timer fired now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Silence,
    PriorityZero { src: IpAddr },
    Preempt { src: IpAddr, priority: u8 },
}

/// One virtual router's election state.
#[derive(Clone, Debug)]
pub struct Instance {
    config: InstanceConfig,
    advert_interval: Centiseconds,
    priority: u8,
    state: State,
    master_adver_interval: Centiseconds,
    timer: Timer,
    pending: Pending,
    /// keepalived's `preempt_time`: until when lower-priority adverts are
    /// still accepted, once the first one has been seen.
    preempt_holdoff_until: Option<Time>,
    /// Preemption held back from outside (see
    /// [`hold_preemption`](Self::hold_preemption)).
    preempt_held: bool,
}

impl Instance {
    /// A stopped instance ([`State::Initialize`]); call
    /// [`startup`](Self::startup) to run it.
    pub fn new(config: InstanceConfig) -> Result<Self, InstanceConfigError> {
        if config.vrid == 0 {
            return Err(InstanceConfigError::ZeroVrid);
        }
        if config.priority == PRIORITY_STOP {
            return Err(InstanceConfigError::ZeroPriority);
        }
        let interval = config.advert_interval;
        let advert_interval = Centiseconds::from_duration(interval)
            .ok_or(InstanceConfigError::IntervalNotCentiseconds { interval })?;
        if advert_interval.0 == 0 || advert_interval > MAX_ADVER_INT {
            return Err(InstanceConfigError::IntervalOutOfRange { interval });
        }
        Ok(Self {
            priority: config.priority,
            config,
            advert_interval,
            state: State::Initialize,
            master_adver_interval: advert_interval,
            timer: Timer::Stopped,
            pending: Pending::Silence,
            preempt_holdoff_until: None,
            preempt_held: false,
        })
    }

    /// Holds preemption back (or lets it go): while held, a backup accepts
    /// a lower-priority master's adverts as if preempt were off. vipx holds
    /// it while this node does not yet hold its peers' flows (flow
    /// replication), so that it does not take the VIP back before it can
    /// serve the sessions behind it; a takeover on silence is never held.
    pub fn hold_preemption(&mut self, held: bool) {
        self.preempt_held = held;
    }

    /// The configuration, as given.
    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The current priority: configured, then as [`set_priority`](Self::set_priority) left it.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// `Advertisement_Interval`: what we advertise as master.
    pub fn advert_interval(&self) -> Duration {
        self.advert_interval.to_duration()
    }

    /// `Master_Adver_Interval`: the interval the current master advertises
    /// (our own until a master's advert is accepted).
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval.to_duration()
    }

    /// `Skew_Time` for the current priority and `Master_Adver_Interval`.
    pub fn skew_time(&self) -> Duration {
        timers::skew_time(self.priority, self.master_adver_interval)
    }

    /// `Master_Down_Interval` for the current priority and
    /// `Master_Adver_Interval`.
    pub fn master_down_interval(&self) -> Duration {
        timers::master_down_interval(self.priority, self.master_adver_interval)
    }

    /// When [`timer`](Self::timer) must be called next; `None` in
    /// Initialize. It may already be past (after a priority change).
    pub fn next_deadline(&self) -> Option<Time> {
        match self.timer {
            Timer::Stopped => None,
            Timer::Adver { at } => Some(at),
            Timer::MasterDown { since, skew_only } => Some(
                since
                    + if skew_only {
                        self.skew_time()
                    } else {
                        self.master_down_interval()
                    },
            ),
        }
    }

    /// The advert to send for [`Action::SendAdvert`] with `priority`.
    pub fn advert(&self, priority: u8, addrs: Vec<IpAddr>) -> Advert {
        Advert {
            vrid: self.config.vrid,
            priority,
            max_advert_int: self.advert_interval.0,
            addrs,
        }
    }

    /// Startup event (section 6.4.1): the owner becomes master at once, any
    /// other router backup. Does nothing unless in Initialize.
    pub fn startup(&mut self, now: Time) -> Vec<Action> {
        if self.state != State::Initialize {
            return Vec::new();
        }
        self.master_adver_interval = self.advert_interval;
        if self.priority == PRIORITY_OWNER {
            self.become_master(now, Reason::Startup)
        } else {
            self.become_backup(now, Reason::Startup)
        }
    }

    /// An advert from `src` passed [`parse`](super::packet::parse)
    /// (sections 6.4.2 and 6.4.3).
    pub fn advert_received(&mut self, now: Time, src: IpAddr, advert: &Advert) -> Vec<Action> {
        if self.state == State::Initialize
            || advert.vrid != self.config.vrid
            || src.is_ipv4() != self.config.primary_addr.is_ipv4()
            || src == self.config.primary_addr
            || self.priority == PRIORITY_OWNER
        {
            return Vec::new();
        }
        let learnt = Centiseconds((advert.max_advert_int & MAX_ADVER_INT_MASK).max(1));
        match self.state {
            State::Initialize => Vec::new(),
            State::Backup => {
                if advert.priority == PRIORITY_STOP {
                    self.timer = Timer::MasterDown {
                        since: now,
                        skew_only: true,
                    };
                    self.pending = Pending::PriorityZero { src };
                } else if self.accepts(now, advert.priority) {
                    self.master_adver_interval = learnt;
                    self.timer = Timer::MasterDown {
                        since: now,
                        skew_only: false,
                    };
                    self.pending = Pending::Silence;
                } else {
                    self.pending = Pending::Preempt {
                        src,
                        priority: advert.priority,
                    };
                }
                Vec::new()
            }
            State::Master => {
                if advert.priority == PRIORITY_STOP {
                    self.timer = Timer::Adver {
                        at: now + self.advert_interval(),
                    };
                    return vec![Action::SendAdvert {
                        priority: self.priority,
                    }];
                }
                let reason = if advert.priority > self.priority {
                    Reason::HigherPriority {
                        src,
                        priority: advert.priority,
                    }
                } else if advert.priority == self.priority
                    && address_greater(src, self.config.primary_addr)
                {
                    Reason::HigherAddress {
                        src,
                        priority: advert.priority,
                    }
                } else {
                    // Another node claims the VIPs: keepalived's answer
                    // ("forcing new election"): our advert at once, which
                    // sends it back to BACKUP, and the VIPs announced again,
                    // so hosts that followed its announcement return.
                    self.timer = Timer::Adver {
                        at: now + self.advert_interval(),
                    };
                    return vec![
                        Action::SendAdvert {
                            priority: self.priority,
                        },
                        Action::Announce,
                    ];
                };
                self.master_adver_interval = learnt;
                // One last advert of ours first: if the other master never
                // saw us (a healed partition), it now answers with its own
                // and announces the VIPs again, so hosts that followed us
                // during the split go back to it.
                let mut actions = vec![Action::SendAdvert {
                    priority: self.priority,
                }];
                actions.extend(self.become_backup(now, reason));
                actions
            }
        }
    }

    /// The running timer may have expired: a backup's `Master_Down_Timer`
    /// makes it master (section 6.4.2), a master's `Adver_Timer` sends an
    /// advert (section 6.4.3). Does nothing before
    /// [`next_deadline`](Self::next_deadline).
    pub fn timer(&mut self, now: Time) -> Vec<Action> {
        match self.next_deadline() {
            Some(deadline) if now >= deadline => {}
            _ => return Vec::new(),
        }
        match self.state {
            State::Initialize => Vec::new(),
            State::Backup => {
                let reason = match self.pending {
                    Pending::Silence => Reason::MasterDown,
                    Pending::PriorityZero { src } => Reason::PriorityZeroReceived { src },
                    Pending::Preempt { src, priority } => Reason::Preempt { src, priority },
                };
                self.become_master(now, reason)
            }
            State::Master => {
                self.timer = Timer::Adver {
                    at: now + self.advert_interval(),
                };
                vec![Action::SendAdvert {
                    priority: self.priority,
                }]
            }
        }
    }

    /// vipx's fast heartbeat declared the master `src` lost (silent for the
    /// detection time, or stopping) and no live peer outranks us: a backup
    /// takes over at once, as if its `Master_Down_Timer` had run out
    /// (section 6.4.2). Ignored in any other state, and while we are the
    /// address owner (which is master already).
    pub fn master_lost(&mut self, now: Time, src: IpAddr, stopping: bool) -> Vec<Action> {
        if self.state != State::Backup || src == self.config.primary_addr {
            return Vec::new();
        }
        self.become_master(now, Reason::HeartbeatLost { src, stopping })
    }

    /// vipx's fast heartbeat says a master is alive while this backup's
    /// `Master_Down_Timer` is about to declare it down for want of adverts
    /// (adverts come from a task that a loaded machine may delay; the
    /// heartbeat does not): restart the timer, as an advert would. Only for
    /// a plain silence: a pending preemption or a master's priority 0 keep
    /// their course. Returns whether the timer was restarted.
    pub fn master_alive(&mut self, now: Time) -> bool {
        if self.state != State::Backup || self.pending != Pending::Silence {
            return false;
        }
        self.timer = Timer::MasterDown {
            since: now,
            skew_only: false,
        };
        true
    }

    /// Shutdown event: a master sends priority 0 so a backup takes over after
    /// `Skew_Time` (section 6.4.3); both stop (Initialize).
    pub fn shutdown(&mut self, _now: Time) -> Vec<Action> {
        let was = self.state;
        self.state = State::Initialize;
        self.timer = Timer::Stopped;
        self.pending = Pending::Silence;
        self.preempt_holdoff_until = None;
        let stop = Action::Stop {
            reason: Reason::Shutdown,
        };
        match was {
            State::Initialize => Vec::new(),
            State::Backup => vec![stop],
            State::Master => vec![
                Action::SendAdvert {
                    priority: PRIORITY_STOP,
                },
                stop,
            ],
        }
    }

    /// A manual handover (FortiGate's `exec ha failover set 1`): a MASTER
    /// sends priority 0, as a stopping one does, so that the best backup
    /// takes over after its `Skew_Time`, and becomes BACKUP itself. From
    /// now on it runs at `priority` (the caller holds it low, so that it
    /// does not take the VIPs back; it still takes over if no one else
    /// does). Any other state only takes the priority.
    pub fn hand_over(&mut self, now: Time, priority: u8) -> Vec<Action> {
        self.priority = priority.max(1);
        if self.state != State::Master {
            return Vec::new();
        }
        let mut actions = vec![Action::SendAdvert {
            priority: PRIORITY_STOP,
        }];
        actions.extend(self.become_backup(now, Reason::Handover));
        actions
    }

    /// A tracked item changed our priority (0 is taken as 1: it is reserved
    /// for stopping). See the module documentation for the effects.
    pub fn set_priority(&mut self, now: Time, priority: u8) -> Vec<Action> {
        let priority = priority.max(1);
        if priority == self.priority {
            return Vec::new();
        }
        self.priority = priority;
        if self.state != State::Master {
            return Vec::new();
        }
        self.timer = Timer::Adver {
            at: now + self.advert_interval(),
        };
        vec![Action::SendAdvert { priority }]
    }

    /// Whether a backup accepts a (non-zero) advert of `priority` as the
    /// master's, rather than discarding it to preempt (section 6.4.2 with
    /// keepalived's `preempt_delay`).
    fn accepts(&mut self, now: Time, priority: u8) -> bool {
        if priority >= self.priority {
            self.preempt_holdoff_until = None;
            return true;
        }
        if !self.config.preempt || self.preempt_held {
            return true;
        }
        if self.config.preempt_delay.is_zero() {
            return false;
        }
        let until = *self
            .preempt_holdoff_until
            .get_or_insert(now + self.config.preempt_delay);
        now < until
    }

    fn become_master(&mut self, now: Time, reason: Reason) -> Vec<Action> {
        self.state = State::Master;
        self.timer = Timer::Adver {
            at: now + self.advert_interval(),
        };
        self.pending = Pending::Silence;
        self.preempt_holdoff_until = None;
        vec![
            Action::SendAdvert {
                priority: self.priority,
            },
            Action::BecomeMaster { reason },
        ]
    }

    /// The runner did not take the VIPs after [`Action::BecomeMaster`]
    /// (the cluster refused the claim): BACKUP again, as if the claim had
    /// not happened, with a new `Master_Down_Timer`. Nothing is sent.
    pub fn claim_refused(&mut self, now: Time) {
        if self.state == State::Master {
            let _ = self.become_backup(now, Reason::MasterDown);
        }
    }

    fn become_backup(&mut self, now: Time, reason: Reason) -> Vec<Action> {
        self.state = State::Backup;
        self.timer = Timer::MasterDown {
            since: now,
            skew_only: false,
        };
        self.pending = Pending::Silence;
        self.preempt_holdoff_until = None;
        vec![Action::BecomeBackup { reason }]
    }
}

#[cfg(test)]
mod tests;

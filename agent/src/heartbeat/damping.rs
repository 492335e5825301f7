//! Flap dampening of the heartbeat's detection, pure: a backup that took
//! over from a master that turns out to be alive (a false takeover: the
//! machine or the path stalled longer than the detection time) doubles its
//! detection time, up to [`MAX_FACTOR`] times, and halves it again every
//! half-life without another one. BFD implementations offer the same
//! ("BFD dampening"); without it a noisy period costs a takeover, and the
//! broken connections of one, every few seconds.
//!
//! A takeover was false when, within [`FLAP_WINDOW`] of it, we are BACKUP
//! again and the master we declared lost has said MASTER since, its
//! heartbeats' sequence numbers going on from where they stopped: the same
//! agent, which never stopped. A master that died and came back is a new
//! agent whose sequence starts again from 0 (and which says BACKUP until it
//! preempts), so a real failure followed by a failback is no flap.

use std::time::Duration;

use vipx_common::{PeerSeen, peer::STATE_MASTER};

/// The highest multiple of the configured detection time.
pub const MAX_FACTOR: u32 = 8;

/// How soon after a takeover stepping down again makes it a flap.
pub const FLAP_WINDOW: Duration = Duration::from_secs(1);

/// The dampening state of one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Damper {
    half_life_ns: u64,
    /// log2 of the factor.
    level: u32,
    /// Since when the current level has held (`CLOCK_MONOTONIC` ns).
    since_ns: u64,
}

impl Damper {
    /// A damper whose penalty halves every `half_life`; zero: off.
    pub fn new(half_life: Duration) -> Self {
        Self {
            half_life_ns: u64::try_from(half_life.as_nanos()).unwrap_or(u64::MAX),
            level: 0,
            since_ns: 0,
        }
    }

    /// A false takeover at `now_ns`: the detection time doubles (up to
    /// [`MAX_FACTOR`]). Returns the new factor.
    pub fn penalise(&mut self, now_ns: u64) -> u32 {
        if self.half_life_ns == 0 {
            return 1;
        }
        self.decay(now_ns);
        if (1 << self.level) < MAX_FACTOR {
            self.level += 1;
        }
        self.since_ns = now_ns;
        1 << self.level
    }

    /// The multiple of the configured detection time that applies at
    /// `now_ns`.
    pub fn factor(&mut self, now_ns: u64) -> u32 {
        self.decay(now_ns);
        1 << self.level
    }

    /// One level less per half-life elapsed.
    fn decay(&mut self, now_ns: u64) {
        if self.level == 0 || self.half_life_ns == 0 {
            return;
        }
        let steps = now_ns.saturating_sub(self.since_ns) / self.half_life_ns;
        if steps > 0 {
            self.level = self
                .level
                .saturating_sub(u32::try_from(steps).unwrap_or(u32::MAX));
            self.since_ns = self
                .since_ns
                .saturating_add(steps.saturating_mul(self.half_life_ns));
        }
    }
}

/// What the backup knew of the master when it declared it lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Declared {
    /// When the loss was signalled (`CLOCK_MONOTONIC` ns).
    pub at_ns: u64,
    /// The epoch (the sending agent's start) and sequence number of the
    /// master's last heartbeat then.
    pub epoch: u64,
    pub seq: u32,
}

/// Whether our takeover after `loss` was false, judged at `now_ns` as we
/// are BACKUP again: soon enough, and the master (its latest heartbeat
/// `seen`) has said MASTER since, from the same agent (the same epoch: a
/// restarted one was really down) with a later sequence number (RFC 1982
/// serial arithmetic: the count wraps).
pub fn false_takeover(loss: Declared, now_ns: u64, seen: Option<&PeerSeen>) -> bool {
    let window = u64::try_from(FLAP_WINDOW.as_nanos()).unwrap_or(u64::MAX);
    let later =
        |s: &PeerSeen| s.epoch == loss.epoch && s.seq.wrapping_sub(loss.seq).cast_signed() > 0;
    now_ns.saturating_sub(loss.at_ns) <= window
        && seen.is_some_and(|s| {
            s.state == STATE_MASTER && s.priority != 0 && s.last_ns > loss.at_ns && later(s)
        })
}

#[cfg(test)]
mod tests {
    use vipx_common::peer::STATE_BACKUP;

    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn each_false_takeover_doubles_the_detection_time_up_to_eight_times() {
        let mut d = Damper::new(Duration::from_secs(30));
        assert_eq!(d.factor(0), 1, "undamped at first");
        assert_eq!(d.penalise(10 * S), 2);
        assert_eq!(d.penalise(11 * S), 4);
        assert_eq!(d.penalise(12 * S), 8);
        assert_eq!(d.penalise(13 * S), 8, "capped at {MAX_FACTOR}");
        assert_eq!(d.factor(13 * S), 8);
    }

    #[test]
    fn the_penalty_halves_every_half_life_without_a_flap() {
        let mut d = Damper::new(Duration::from_secs(30));
        d.penalise(0);
        d.penalise(0);
        assert_eq!(d.factor(29 * S), 4, "within the first half-life");
        assert_eq!(d.factor(30 * S), 2, "one half-life later");
        assert_eq!(d.factor(59 * S), 2);
        assert_eq!(d.factor(60 * S), 1, "two half-lives later");
        assert_eq!(d.factor(600 * S), 1, "never below 1");
        // A flap restarts the half-life from its own time.
        assert_eq!(d.penalise(700 * S), 2);
        assert_eq!(d.factor(729 * S), 2);
        assert_eq!(d.factor(730 * S), 1);
    }

    #[test]
    fn a_zero_half_life_turns_dampening_off() {
        let mut d = Damper::new(Duration::ZERO);
        assert_eq!(d.penalise(S), 1);
        assert_eq!(d.factor(S), 1);
    }

    fn seen(at_s: u64, state: u8, priority: u8) -> PeerSeen {
        PeerSeen {
            last_ns: at_s * S,
            count: 1,
            priority,
            state,
            ..PeerSeen::default()
        }
    }

    #[test]
    fn a_takeover_is_false_when_the_same_master_said_master_again_soon_after() {
        let loss = Declared {
            at_ns: 100 * S,
            epoch: 77,
            seq: 5000,
        };
        let alive = PeerSeen {
            last_ns: loss.at_ns + 3_000_000,
            epoch: 77,
            seq: 5001,
            ..seen(0, STATE_MASTER, 150)
        };
        let soon = loss.at_ns + 5_000_000;
        assert!(
            false_takeover(loss, soon, Some(&alive)),
            "the master went on as MASTER 3 ms after we declared it lost"
        );
        assert!(
            !false_takeover(loss, loss.at_ns + 2 * S, Some(&alive)),
            "stepping down 2 s later is another story"
        );
        let silent = PeerSeen {
            epoch: 77,
            seq: 5000,
            ..seen(99, STATE_MASTER, 150)
        };
        assert!(
            !false_takeover(loss, soon, Some(&silent)),
            "nothing heard since the loss: it was silent indeed"
        );
        let restarted = PeerSeen {
            epoch: 78,
            seq: 40,
            ..alive
        };
        assert!(
            !false_takeover(loss, soon, Some(&restarted)),
            "a new agent (a later epoch, its sequence started again) was really down, even once it is MASTER"
        );
        let restarted_high = PeerSeen {
            epoch: 78,
            seq: 6000,
            ..alive
        };
        assert!(
            !false_takeover(loss, soon, Some(&restarted_high)),
            "a new agent is a new agent whatever its sequence number"
        );
        let as_backup = PeerSeen {
            state: STATE_BACKUP,
            ..alive
        };
        assert!(!false_takeover(loss, soon, Some(&as_backup)));
        let stopping = PeerSeen {
            priority: 0,
            ..alive
        };
        assert!(
            !false_takeover(loss, soon, Some(&stopping)),
            "a farewell is no sign of life"
        );
        assert!(!false_takeover(loss, soon, None));
        let wrapped = Declared {
            seq: u32::MAX - 1,
            ..loss
        };
        let after_wrap = PeerSeen { seq: 3, ..alive };
        assert!(
            false_takeover(wrapped, soon, Some(&after_wrap)),
            "the sequence wrapped, still later"
        );
    }
}

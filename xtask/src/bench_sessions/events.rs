//! What happens to the master (node 0, k1 for keepalived) while the load
//! runs, for vipx and for its closest keepalived + HAProxy counterpart.
//! Each event returns once its last move is over (or fails at a
//! deadline): node 1 master after a loss, node 0 master again after a
//! return.

use std::time::Duration;

use vipx_lab::{Cluster, Failure, Signal};

use crate::bench_lab::{keepalived::Keepalived, wait_for};

/// How long a SIGSTOP lasts.
const STALL: Duration = Duration::from_secs(5);
/// How long the old master stays away before it returns.
const AWAY: Duration = Duration::from_secs(3);
/// The longest a takeover (or a preemption) may take.
const TAKEOVER: Duration = Duration::from_secs(10);

/// What happens to the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Event {
    /// kill -9 of the master's agent (keepalived: its whole stack).
    Kill,
    /// The master's link cut.
    LinkCut,
    /// The master's agent stopped (SIGSTOP) for 5 s, then SIGCONT.
    Sigstop,
    /// The master's agent stopped cleanly (SIGTERM).
    Sigterm,
    /// The master's link cut, restored 3 s after node 1 took over: the old
    /// master returns and preempts.
    Preempt,
    /// The master's agent stopped (SIGTERM) and started again: it
    /// preempts once ready.
    Restart,
}

impl Event {
    pub const ALL: [Self; 6] = [
        Self::Kill,
        Self::LinkCut,
        Self::Sigstop,
        Self::Sigterm,
        Self::Preempt,
        Self::Restart,
    ];

    /// The event in a few words.
    pub fn label(self) -> &'static str {
        match self {
            Self::Kill => "kill -9",
            Self::LinkCut => "link cut",
            Self::Sigstop => "SIGSTOP 5 s",
            Self::Sigterm => "SIGTERM",
            Self::Preempt => "old master returns",
            Self::Restart => "restart",
        }
    }

    /// The event as done to vipx.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "master's agent killed (-9)",
            Self::LinkCut => "master's link cut",
            Self::Sigstop => "master's agent stopped 5 s (SIGSTOP, SIGCONT)",
            Self::Sigterm => "master's agent stopped (SIGTERM)",
            Self::Preempt => "master's link cut, back 3 s after the takeover (preempts)",
            Self::Restart => "master's agent restarted (SIGTERM, start; preempts)",
        }
    }

    /// Its closest counterpart for keepalived + HAProxy, as done.
    pub fn keepalived_name(self) -> &'static str {
        match self {
            Self::Kill => "master's keepalived and HAProxy killed (-9)",
            Self::LinkCut => "master's link cut",
            Self::Sigstop => "master's keepalived stopped 5 s (SIGSTOP, SIGCONT)",
            Self::Sigterm => "master's keepalived stopped (SIGTERM; HAProxy runs on)",
            Self::Preempt => "master's link cut, back 3 s after the takeover (preempts)",
            Self::Restart => "master's keepalived and HAProxy restarted (SIGTERM, start; preempts)",
        }
    }

    /// About how long the event takes from its start to its last move:
    /// the load is planned to outlast it.
    pub fn expected(self) -> Duration {
        match self {
            Self::Kill | Self::LinkCut | Self::Sigterm => Duration::from_secs(1),
            Self::Sigstop => STALL + Duration::from_secs(1),
            Self::Preempt => AWAY + Duration::from_secs(3),
            Self::Restart => Duration::from_secs(8),
        }
    }
}

/// Does `event` to vipx's node 0 and waits for its last move (the lab's
/// [`Failure`], as the session tests do it).
pub fn vipx(cluster: &mut Cluster, event: Event) -> anyhow::Result<()> {
    let failure = match event {
        Event::Kill => Failure::Kill,
        Event::LinkCut => Failure::LinkCut,
        Event::Sigstop => Failure::Stall,
        Event::Sigterm => Failure::Stop,
        Event::Preempt => Failure::Return,
        Event::Restart => Failure::Restart,
    };
    cluster.fail_master(failure)
}

/// Does `event`'s counterpart to keepalived + HAProxy on k1 and waits for
/// its last move.
pub fn keepalived(ka: &mut Keepalived<'_>, event: Event) -> anyhow::Result<()> {
    let taken_over = |ka: &Keepalived<'_>| wait_for("k2 holding the VIP", TAKEOVER, || ka.holds(1));
    let back = |ka: &Keepalived<'_>| {
        wait_for("k1 the only VIP holder again", TAKEOVER, || {
            ka.only_holder(0)
        })
    };
    match event {
        Event::Kill => {
            ka.kill_stack(0)?;
            taken_over(ka)
        }
        Event::LinkCut => {
            ka.host(0).set_connected(false)?;
            taken_over(ka)
        }
        Event::Sigstop => {
            ka.signal_keepalived(0, Signal::SIGSTOP)?;
            std::thread::sleep(STALL);
            ka.signal_keepalived(0, Signal::SIGCONT)?;
            back(ka)
        }
        Event::Sigterm => {
            ka.stop_keepalived(0)?;
            taken_over(ka)
        }
        Event::Preempt => {
            ka.host(0).set_connected(false)?;
            let away = taken_over(ka);
            std::thread::sleep(AWAY);
            ka.host(0).set_connected(true)?;
            away?;
            back(ka)
        }
        Event::Restart => {
            ka.stop_keepalived(0)?;
            ka.stop_haproxy(0)?;
            ka.ensure_haproxy(0)?;
            ka.drop_vip(0);
            ka.restart_keepalived(0)?;
            back(ka)
        }
    }
}

//! The client's view of a failover: an open-loop prober.
//!
//! A new attempt starts every millisecond whether or not the earlier ones
//! have finished. An attempt is a new TCP connection through the VIP, an
//! SSLRequest, and PgBouncer's one-byte answer, within [`ATTEMPT_TIMEOUT`]:
//! a lost SYN is not retried, the attempt fails.
//!
//! The prober runs on a thread of its own in the client's namespace, a
//! current-thread tokio runtime in `SCHED_FIFO` (so that ordinary processes
//! of the systems under test do not hold it up). Start times are read from
//! `CLOCK_MONOTONIC` in nanoseconds.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vipx_lab::Host;

/// PostgreSQL's SSLRequest (Int32 8, Int32 80877103).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// Time between the starts of two attempts.
pub const PERIOD: Duration = Duration::from_millis(1);
/// An attempt that has no answer by then failed (below the 1 s SYN
/// retransmission: a lost SYN fails, it is not retried).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(900);
/// `SCHED_FIFO` priority of the prober's loop: above every ordinary
/// process of the systems under test, below the agents' timing threads
/// (50).
const PROBER_PRIORITY: i32 = 10;

/// `CLOCK_MONOTONIC` in nanoseconds (what `Instant` reads, as a plain
/// number).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// PgBouncer answered the SSLRequest.
    Ok,
    /// The SYN was answered with a RST (nothing listens on the VIP there).
    Refused,
    /// The connection was reset or closed after it was set up.
    Reset,
    /// No answer within [`ATTEMPT_TIMEOUT`] (a lost SYN or a lost reply).
    Timeout,
    /// Another error (unreachable, a wrong answer...).
    Other,
}

/// One attempt: when it started (`CLOCK_MONOTONIC` ns) and how it ended.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub start: u64,
    pub outcome: Outcome,
}

impl Attempt {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

/// A prober running on its own thread.
pub struct Prober {
    stop: Arc<AtomicBool>,
    /// Attempts completed successfully in a row (completion order).
    streak: Arc<AtomicU64>,
    handle: JoinHandle<anyhow::Result<Vec<Attempt>>>,
}

impl Prober {
    /// Starts probing `target` from `client`'s namespace.
    pub fn start(client: &Host, target: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let streak = Arc::new(AtomicU64::new(0));
        let client = client.clone();
        let (stop2, streak2) = (stop.clone(), streak.clone());
        let handle = std::thread::spawn(move || {
            client
                .enter(move || {
                    // Sockets take the namespace of the thread creating
                    // them: every task runs on this one.
                    real_time();
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("the prober's runtime")?;
                    Ok(runtime.block_on(open_loop(target, &stop2, &streak2)))
                })
                .context("entering the client's namespace")?
        });
        Self {
            stop,
            streak,
            handle,
        }
    }

    /// How many attempts in a row (in the order they completed) succeeded.
    pub fn streak(&self) -> u64 {
        self.streak.load(Ordering::Relaxed)
    }

    /// Stops starting attempts, waits for the running ones and returns all
    /// of them by start time.
    pub fn finish(self) -> anyhow::Result<Vec<Attempt>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the prober panicked"))?
    }
}

/// Puts the calling thread in `SCHED_FIFO` (warns and carries on if it
/// cannot).
fn real_time() {
    let param = libc::sched_param {
        sched_priority: PROBER_PRIORITY,
    };
    // SAFETY: a plain system call on the calling thread with a valid param.
    let err =
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if err != 0 {
        eprintln!(
            "the prober stays in the normal scheduling class: {}",
            std::io::Error::from_raw_os_error(err)
        );
    }
}

async fn open_loop(target: SocketAddr, stop: &AtomicBool, streak: &AtomicU64) -> Vec<Attempt> {
    let mut running = tokio::task::JoinSet::new();
    let mut attempts = Vec::new();
    let record = |attempt: Attempt, attempts: &mut Vec<Attempt>| {
        if attempt.ok() {
            streak.fetch_add(1, Ordering::Relaxed);
        } else {
            streak.store(0, Ordering::Relaxed);
        }
        attempts.push(attempt);
    };
    let mut next = tokio::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let start = monotonic_ns();
        running.spawn(async move {
            Attempt {
                start,
                outcome: attempt(target).await,
            }
        });
        while let Some(done) = running.try_join_next() {
            if let Ok(done) = done {
                record(done, &mut attempts);
            }
        }
        // A fixed schedule: a late wake-up is caught up, not skipped.
        next += PERIOD;
        tokio::time::sleep_until(next).await;
    }
    while let Some(done) = running.join_next().await {
        if let Ok(done) = done {
            record(done, &mut attempts);
        }
    }
    attempts.sort_by_key(|a| a.start);
    attempts
}

async fn attempt(target: SocketAddr) -> Outcome {
    match tokio::time::timeout(ATTEMPT_TIMEOUT, exchange(target)).await {
        Ok(Ok(true)) => Outcome::Ok,
        Ok(Ok(false)) => Outcome::Other,
        Ok(Err(err)) => match err.kind() {
            std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::BrokenPipe => Outcome::Reset,
            _ => Outcome::Other,
        },
        Err(_) => Outcome::Timeout,
    }
}

/// Connect, SSLRequest, one byte back ('N' or 'S').
async fn exchange(target: SocketAddr) -> std::io::Result<bool> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // Close with RST: no TIME_WAIT pile-up at 1000 connections a second.
    // (A zero linger never blocks the closing thread.)
    socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO))?;
    let mut stream = socket.connect(target).await?;
    stream.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    Ok(matches!(answer[0], b'N' | b'S'))
}

/// Waits until the VIP answers `needed` attempts in a row (each alone, up
/// to 200 ms), at most `limit`; returns how long that took.
pub fn wait_serving(
    client: &Host,
    target: SocketAddr,
    needed: u32,
    limit: Duration,
) -> anyhow::Result<Duration> {
    client
        .enter(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("a runtime")?;
            runtime.block_on(async {
                let began = Instant::now();
                let mut streak = 0;
                while streak < needed {
                    if began.elapsed() > limit {
                        anyhow::bail!(
                            "the VIP {target} did not answer {needed} in a row within {limit:?}"
                        );
                    }
                    let ok = matches!(
                        tokio::time::timeout(Duration::from_millis(200), exchange(target)).await,
                        Ok(Ok(true))
                    );
                    streak = if ok { streak + 1 } else { 0 };
                    tokio::time::sleep(PERIOD).await;
                }
                Ok(began.elapsed())
            })
        })
        .context("entering the client's namespace")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_is_instants_clock() {
        let a = monotonic_ns();
        std::thread::sleep(Duration::from_millis(5));
        let b = monotonic_ns();
        assert!(b - a >= 5_000_000, "{a} then {b}");
    }
}

//! The client's view of a failover: an open-loop prober and the gap it saw.
//!
//! A new attempt starts every millisecond whether or not the earlier ones
//! have finished (a current-thread tokio runtime in the client's
//! namespace, on a `SCHED_FIFO` thread so that the busy systems under test
//! do not hold it up). An attempt is a new TCP connection through the VIP, an
//! SSLRequest, and PgBouncer's one-byte answer, within [`ATTEMPT_TIMEOUT`]:
//! a lost SYN is not retried, the attempt fails. The gap is the time from
//! the last success started before a run of failed attempts to the first
//! success started after it.

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
/// Failure runs ending this long before the event still count as its own.
const BEFORE_EVENT: Duration = Duration::from_millis(50);
/// `SCHED_FIFO` priority of the prober's thread: above every ordinary
/// process of the systems under test (which would otherwise hold it up on
/// a busy machine), below the agents' own timing threads (50).
const PROBER_PRIORITY: i32 = 10;

/// Puts the calling thread in `SCHED_FIFO` (warns and carries on if it
/// cannot).
fn real_time() {
    let param = libc::sched_param {
        sched_priority: PROBER_PRIORITY,
    };
    // SAFETY: plain system call on the calling thread with a valid param.
    let err =
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if err != 0 {
        eprintln!(
            "the prober stays in the normal scheduling class: {}",
            std::io::Error::from_raw_os_error(err)
        );
    }
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

/// One attempt: when it started and how it ended.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub start: Instant,
    pub outcome: Outcome,
}

impl Attempt {
    fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

/// A prober running in its own thread.
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
        let start = Instant::now();
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

/// What one round's attempts show.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// The longest gap around the event (zero without failed attempts).
    pub gap: Duration,
    /// Whether a success followed the last failure (else `gap` is a lower
    /// bound).
    pub recovered: bool,
    /// Failed attempts in the runs counted (around the event).
    pub failed: usize,
    /// Those by outcome: refused, reset, timeout, other.
    pub failed_by: [usize; 4],
    /// Failed attempts in runs that ended before the event (not counted).
    pub before_event: usize,
    /// Start of the first and end of the last failure run counted, relative
    /// to the event (for the per-round log).
    pub span: Option<(f64, f64)>,
    /// Attempts in the window.
    pub attempts: usize,
    /// The longest time between two attempts' starts (the prober's own
    /// resolution: the period unless it was held up).
    pub max_spacing: Duration,
}

/// The longest failure run whose last failed attempt started at most
/// [`BEFORE_EVENT`] before `event`, measured from the last success started
/// before it to the first success started after it.
pub fn analyse(attempts: &[Attempt], event: Instant) -> Analysis {
    let from = event.checked_sub(BEFORE_EVENT).unwrap_or(event);
    let mut analysis = Analysis {
        gap: Duration::ZERO,
        recovered: true,
        failed: 0,
        failed_by: [0; 4],
        before_event: 0,
        span: None,
        attempts: attempts.len(),
        max_spacing: attempts
            .windows(2)
            .map(|w| w[1].start.duration_since(w[0].start))
            .max()
            .unwrap_or_default(),
    };
    let rel = |t: Instant| {
        if t >= event {
            t.duration_since(event).as_secs_f64() * 1e3
        } else {
            -(event.duration_since(t).as_secs_f64() * 1e3)
        }
    };
    let mut i = 0;
    while i < attempts.len() {
        if attempts[i].ok() {
            i += 1;
            continue;
        }
        let first = i;
        while i < attempts.len() && !attempts[i].ok() {
            i += 1;
        }
        let last_failed = attempts[i - 1].start;
        if last_failed < from {
            analysis.before_event += i - first;
            continue;
        }
        for attempt in &attempts[first..i] {
            let slot = match attempt.outcome {
                Outcome::Refused => 0,
                Outcome::Reset => 1,
                Outcome::Timeout => 2,
                Outcome::Ok | Outcome::Other => 3,
            };
            analysis.failed_by[slot] += 1;
            analysis.failed += 1;
        }
        let before = first
            .checked_sub(1)
            .map_or(attempts[first].start, |b| attempts[b].start);
        let (after, recovered) = attempts
            .get(i)
            .map_or((last_failed, false), |a| (a.start, true));
        let gap = after.duration_since(before);
        if gap >= analysis.gap {
            analysis.gap = gap;
            analysis.recovered = recovered;
        }
        let span = (rel(attempts[first].start), rel(last_failed));
        analysis.span = Some(analysis.span.map_or(span, |(a, _)| (a, span.1)));
    }
    analysis
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

    /// Attempts every millisecond from `t0`; `fail` says which ones fail.
    fn attempts(t0: Instant, n: u64, fail: impl Fn(u64) -> bool) -> Vec<Attempt> {
        (0..n)
            .map(|i| Attempt {
                start: t0 + Duration::from_millis(i),
                outcome: if fail(i) {
                    Outcome::Refused
                } else {
                    Outcome::Ok
                },
            })
            .collect()
    }

    #[test]
    fn no_failure_is_no_gap() {
        let t0 = Instant::now();
        let a = analyse(
            &attempts(t0, 100, |_| false),
            t0 + Duration::from_millis(50),
        );
        assert_eq!(a.gap, Duration::ZERO);
        assert_eq!(a.failed, 0);
        assert!(a.recovered);
    }

    #[test]
    fn the_gap_runs_from_the_success_before_to_the_success_after() {
        let t0 = Instant::now();
        // Attempts 60..70 fail: last success 59, next success 70.
        let a = analyse(
            &attempts(t0, 200, |i| (60..70).contains(&i)),
            t0 + Duration::from_millis(55),
        );
        assert_eq!(a.gap, Duration::from_millis(11));
        assert_eq!(a.max_spacing, PERIOD);
        assert_eq!(a.failed, 10);
        assert_eq!(a.failed_by, [10, 0, 0, 0]);
        assert!(a.recovered);
        // One failed attempt is a 2 ms gap at a 1 ms period.
        let a = analyse(
            &attempts(t0, 200, |i| i == 80),
            t0 + Duration::from_millis(55),
        );
        assert_eq!(a.gap, Duration::from_millis(2));
    }

    #[test]
    fn the_longest_run_after_the_event_counts_and_earlier_failures_apart() {
        let t0 = Instant::now();
        let fail = |i: u64| (10..30).contains(&i) || (120..125).contains(&i) || i == 140;
        let a = analyse(&attempts(t0, 200, fail), t0 + Duration::from_millis(100));
        // The run at 10..30 ended long before the event: not its gap.
        assert_eq!(a.gap, Duration::from_millis(6));
        assert_eq!(a.failed, 6, "the failures after the event");
        assert_eq!(a.before_event, 20, "the earlier ones, apart");
    }

    #[test]
    fn a_run_reaching_the_end_is_a_lower_bound() {
        let t0 = Instant::now();
        let a = analyse(
            &attempts(t0, 100, |i| i >= 90),
            t0 + Duration::from_millis(80),
        );
        assert!(!a.recovered);
        assert_eq!(a.gap, Duration::from_millis(10));
    }
}

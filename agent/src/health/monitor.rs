//! One task per checked backend: wait the interval (plus jitter), probe
//! with a timeout, count the result, report it. Tasks are independent, so a
//! backend that hangs cannot stall the checks of the others.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::Instant};

use super::{
    checks::{self, Check, Verdict},
    state::{Health, Hysteresis},
};

/// How one backend is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    pub timeout: Duration,
    pub jitter: Duration,
    pub rise: u32,
    pub fall: u32,
}

/// What is checked: a backend of a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The service's name.
    pub service: String,
    /// The backend as the data plane knows it.
    pub backend: SocketAddr,
    /// Where the check connects (the backend, or its health port).
    pub check_addr: SocketAddr,
}

/// One check's result, sent to the controller.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub target: Target,
    pub verdict: Verdict,
    /// How long the check took.
    pub took: Duration,
    /// The health after this result.
    pub health: Health,
    /// `Some(previous)` when this result changed the health.
    pub changed_from: Option<Health>,
}

/// Something that checks a backend (the real checks, or a fake in tests).
pub trait Prober: Send + Sync + 'static {
    /// One check of `addr`, finished within `timeout`.
    fn probe(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + '_>>;
}

impl Prober for Check {
    fn probe(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send + '_>> {
        Box::pin(checks::probe(self, addr, timeout))
    }
}

/// The wait before the next check: the interval plus a random part of the
/// jitter (the first check waits only the random part, so the checks of
/// many backends spread out from the start).
pub fn next_delay(schedule: &Schedule, first: bool, rng: &mut fastrand::Rng) -> Duration {
    let jitter_ns = u64::try_from(schedule.jitter.as_nanos()).unwrap_or(u64::MAX);
    let jitter = Duration::from_nanos(if jitter_ns == 0 {
        0
    } else {
        rng.u64(0..jitter_ns)
    });
    if first {
        jitter
    } else {
        schedule.interval + jitter
    }
}

/// Checks `target` until the task is dropped, starting from `initial`.
pub async fn run(
    target: Target,
    prober: Arc<dyn Prober>,
    schedule: Schedule,
    initial: Health,
    reports: mpsc::Sender<Report>,
) {
    let mut hysteresis = Hysteresis::new(schedule.rise, schedule.fall, initial);
    let mut rng = fastrand::Rng::new();
    let mut first = true;
    loop {
        tokio::time::sleep(next_delay(&schedule, first, &mut rng)).await;
        first = false;
        let started = Instant::now();
        // The probe bounds itself; this bound also holds for a prober that
        // does not (a hung check is a failed check).
        let verdict = tokio::time::timeout(
            schedule.timeout,
            prober.probe(target.check_addr, schedule.timeout),
        )
        .await
        .unwrap_or_else(|_| Verdict::Down {
            reason: format!("timed out after {:?}", schedule.timeout),
        });
        let took = started.elapsed();
        let before = hysteresis.state();
        let changed_from = hysteresis.record(&verdict).map(|_| before);
        let report = Report {
            target: target.clone(),
            verdict,
            took,
            health: hysteresis.state(),
            changed_from,
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A prober that plays a script of results; `None` hangs forever.
    struct Script(Mutex<Vec<Option<Verdict>>>);

    impl Prober for Script {
        fn probe(
            &self,
            _: SocketAddr,
            _: Duration,
        ) -> Pin<Box<dyn Future<Output = Verdict> + Send + '_>> {
            let next = self.0.lock().expect("script").pop();
            Box::pin(async move {
                match next {
                    Some(Some(verdict)) => verdict,
                    Some(None) => std::future::pending().await,
                    None => Verdict::Up,
                }
            })
        }
    }

    fn target() -> Target {
        let addr: SocketAddr = "10.0.0.31:6432".parse().expect("addr");
        Target {
            service: "pgb".into(),
            backend: addr,
            check_addr: addr,
        }
    }

    const SCHEDULE: Schedule = Schedule {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(300),
        jitter: Duration::from_millis(100),
        rise: 2,
        fall: 2,
    };

    #[test]
    fn jitter_stays_within_its_bounds() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..10_000 {
            let first = next_delay(&SCHEDULE, true, &mut rng);
            assert!(first < SCHEDULE.jitter, "first delay {first:?}");
            let later = next_delay(&SCHEDULE, false, &mut rng);
            assert!(
                later >= SCHEDULE.interval && later < SCHEDULE.interval + SCHEDULE.jitter,
                "delay {later:?}"
            );
        }
        let none = Schedule {
            jitter: Duration::ZERO,
            ..SCHEDULE
        };
        assert_eq!(next_delay(&none, false, &mut rng), none.interval);
        // Spread: over many draws, both halves of the jitter are used.
        let draws: Vec<Duration> = (0..1000)
            .map(|_| next_delay(&SCHEDULE, true, &mut rng))
            .collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(50)));
        assert!(draws.iter().any(|d| *d >= Duration::from_millis(50)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_counts_as_a_failure_on_time() {
        // Results are popped from the end: up, then two hangs.
        let script = Script(Mutex::new(vec![None, None, Some(Verdict::Up)]));
        let (tx, mut rx) = mpsc::channel(8);
        let start = Instant::now();
        let task = tokio::spawn(run(target(), Arc::new(script), SCHEDULE, Health::Up, tx));
        let first = rx.recv().await.expect("report");
        assert_eq!(first.verdict, Verdict::Up);
        let second = rx.recv().await.expect("report");
        assert!(
            matches!(&second.verdict, Verdict::Down { reason } if reason.contains("timed out"))
        );
        assert_eq!(
            second.health,
            Health::Up,
            "fall 2: one failure is not enough"
        );
        assert_eq!(
            second.took, SCHEDULE.timeout,
            "the hung check ends at the timeout"
        );
        let third = rx.recv().await.expect("report");
        assert_eq!(third.health, Health::Down);
        assert_eq!(
            third.changed_from,
            Some(Health::Up),
            "the transition is reported"
        );
        // Simulated time: 3 checks = jitter + 2 intervals (+ jitter) + 2 timeouts.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= 2 * SCHEDULE.interval + 2 * SCHEDULE.timeout,
            "{elapsed:?}"
        );
        assert!(
            elapsed < 2 * SCHEDULE.interval + 2 * SCHEDULE.timeout + 3 * SCHEDULE.jitter,
            "{elapsed:?}"
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn checks_of_different_backends_do_not_wait_on_each_other() {
        let (tx, mut rx) = mpsc::channel(64);
        let hung = Script(Mutex::new(vec![None; 10]));
        let fine = Script(Mutex::new(Vec::new()));
        let mut other = target();
        other.backend = "10.0.0.32:6432".parse().expect("addr");
        let a = tokio::spawn(run(
            target(),
            Arc::new(hung),
            SCHEDULE,
            Health::Up,
            tx.clone(),
        ));
        let b = tokio::spawn(run(other.clone(), Arc::new(fine), SCHEDULE, Health::Up, tx));
        let mut fine_reports = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let report = rx.recv().await.expect("report");
            if report.target == other {
                fine_reports += 1;
            }
        }
        assert!(
            fine_reports >= 4,
            "the healthy backend was checked {fine_reports} times in 5 s"
        );
        a.abort();
        b.abort();
    }
}

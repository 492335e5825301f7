//! A client's view of a service: short TCP connections through an address
//! every few milliseconds from a host, each a PostgreSQL SSLRequest and the
//! one-byte answer PgBouncer or PostgreSQL gives to it.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::{Host, walltime::WallTime};

/// PostgreSQL's SSLRequest (Int32 8, Int32 80877103).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// One connection: connect, SSLRequest, the one-byte answer ('N' or 'S'),
/// within `timeout` for the connect and again for the answer. Run it inside
/// the client's namespace.
pub fn ask(target: SocketAddr, timeout: Duration) -> bool {
    try_ask(target, timeout).is_ok()
}

/// [`ask`], saying how it failed: the step ("connect", "SSLRequest",
/// "answer") and the error ("connection refused", "timed out", ...), with
/// the client's port once it has one.
pub fn try_ask(target: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let port = stream.local_addr().map_or(0, |a| a.port());
    let failed = |step: &str, e: std::io::Error| format!("{step} from port {port}: {}", e.kind());
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| failed("read timeout", e))?;
    stream
        .write_all(&SSL_REQUEST)
        .map_err(|e| failed("SSLRequest", e))?;
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .map_err(|e| failed("answer", e))?;
    match answer[0] {
        b'N' | b'S' => Ok(()),
        other => Err(format!("answer from port {port}: {other:#04x}, not N or S")),
    }
}

/// One connection from `client` ([`ask`]).
pub fn ask_from(client: &Host, target: SocketAddr, timeout: Duration) -> bool {
    try_ask_from(client, target, timeout).is_ok()
}

/// One connection from `client` ([`try_ask`]).
pub fn try_ask_from(client: &Host, target: SocketAddr, timeout: Duration) -> Result<(), String> {
    client
        .enter(move || try_ask(target, timeout))
        .unwrap_or_else(|e| Err(format!("{e:#}")))
}

/// One connection of a [`Prober`]: when it started, whether it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub at: WallTime,
    pub ok: bool,
}

/// How a [`Prober`] probes.
#[derive(Debug, Clone, Copy)]
pub struct ProberOptions {
    /// Time between the starts of two connections (one at a time: a slow
    /// one delays the next).
    pub interval: Duration,
    /// [`ask`]'s timeout.
    pub timeout: Duration,
    /// The prober stops by itself after this long.
    pub limit: Duration,
}

/// Connections from a host, one after the other, on a thread of their own
/// until [`Prober::finish`] (or drop).
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<Probe>>>>,
}

impl Prober {
    /// Starts probing `target` from `client`.
    pub fn start(client: &Host, target: SocketAddr, opts: ProberOptions) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (client, stop) = (client.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                client
                    .enter(move || {
                        let began = Instant::now();
                        let mut probes = Vec::new();
                        while !stop.load(Ordering::Relaxed) && began.elapsed() < opts.limit {
                            let started = Instant::now();
                            let at = WallTime::now();
                            let ok = ask(target, opts.timeout);
                            probes.push(Probe { at, ok });
                            std::thread::sleep(opts.interval.saturating_sub(started.elapsed()));
                        }
                        probes
                    })
                    .context("entering the client's namespace")
            })
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops probing and returns every connection, in order.
    pub fn finish(mut self) -> Result<Vec<Probe>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .context("the prober was already stopped")?
            .join()
            .map_err(|_| anyhow!("the prober panicked"))?
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

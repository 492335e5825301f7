//! New flows through the VIP at a steady rate, from the client's own
//! address, from a thread per core: a non-blocking `connect()` sends a SYN (XDP creates the flow
//! on it) and the socket is closed at once, so nothing waits for the
//! handshake; the client's kernel answers the backend's SYN-ACK with a
//! RST, which ends the flow. Each connect takes a fresh source port.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use vipx_lab::Host;

/// How often a sender catches up with its schedule.
const TICK: Duration = Duration::from_micros(500);
/// The most connects between two looks at the clock.
const BURST: u32 = 64;
/// Senders: one per core of the lab machine.
const THREADS: usize = 2;

/// What the sender did.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// Connects that sent their SYN.
    pub syns: u64,
    /// Connects that failed at once (no port left...).
    pub errors: u64,
    /// How long it sent.
    pub took: Duration,
}

/// Opens `rate` new flows a second to `target` from `client` for
/// `length`, from [`THREADS`] threads in the client's namespace.
pub fn open(
    client: &Host,
    target: SocketAddr,
    rate: u32,
    length: Duration,
) -> anyhow::Result<Sent> {
    // Every port the client has, so that a port comes back seconds later.
    client.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
    let share = f64::from(rate) / THREADS as f64;
    let began = Instant::now();
    let sent = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..THREADS)
            .map(|_| scope.spawn(|| client.enter(|| send(target, share, began, length))))
            .collect();
        senders
            .into_iter()
            .map(|sender| {
                sender
                    .join()
                    .map_err(|_| anyhow::anyhow!("a sender panicked"))?
                    .context("entering the client's namespace")
            })
            .collect::<anyhow::Result<Vec<(u64, u64)>>>()
    })?;
    Ok(Sent {
        syns: sent.iter().map(|(syns, _)| syns).sum(),
        errors: sent.iter().map(|(_, errors)| errors).sum(),
        took: began.elapsed(),
    })
}

/// One sender: `rate` connects a second on schedule from `began` until
/// `length` is over (behind schedule, it sends as fast as it can, and no
/// longer). Returns the SYNs sent and the connects that failed.
fn send(target: SocketAddr, rate: f64, began: Instant, length: Duration) -> (u64, u64) {
    let (mut syns, mut errors) = (0u64, 0u64);
    loop {
        let elapsed = began.elapsed();
        if elapsed >= length {
            return (syns, errors);
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        let mut burst = 0;
        while syns + errors < due && burst < BURST {
            if syn(target) {
                syns += 1;
            } else {
                errors += 1;
            }
            burst += 1;
        }
        if burst < BURST {
            std::thread::sleep(TICK);
        }
    }
}

/// One connect, closed at once; whether its SYN went out.
fn syn(target: SocketAddr) -> bool {
    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) else {
        return false;
    };
    if socket.set_nonblocking(true).is_err() {
        return false;
    }
    match socket.connect(&target.into()) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EINPROGRESS),
    }
}

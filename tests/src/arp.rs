//! An ARP observer: from one host, asks "who has TARGET?" on `eth0` every
//! few milliseconds and records every ARP frame that speaks for TARGET, with
//! the kernel's receive timestamp, so that a test can tell which MACs
//! answered for an address and when.
//!
//! The requests carry the host's own address and MAC as sender, like the
//! host's kernel would send them; answers go back to that MAC. A reply is
//! attributed to the latest request sent before it arrived
//! ([`ArpLog::request_before`]): ARP replies carry nothing that names the
//! request they answer.

use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::{Host, IFACE, walltime::WallTime};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ARPHRD_ETHER: u16 = 1;
const ARPOP_REQUEST: u16 = 1;
const ARPOP_REPLY: u16 = 2;
/// Ethernet header (14) + ARP for Ethernet/IPv4 (28).
const ARP_FRAME_LEN: usize = 42;
/// Ethernet's minimum frame without FCS; requests are padded to it.
const MIN_FRAME_LEN: usize = 60;
/// How long [`ArpObserver::start`] waits for the socket to be ready.
const READY_LIMIT: Duration = Duration::from_secs(5);
/// After the last request, replies are still collected for this long.
const LAST_REPLY_GRACE: Duration = Duration::from_millis(20);

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = anyhow::Error;

    /// `02:76:0a:4d:00:0b`.
    fn from_str(s: &str) -> Result<Self> {
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts.next().with_context(|| format!("{s:?}: too short"))?;
            *byte = u8::from_str_radix(part, 16).with_context(|| format!("{s:?}: bad byte"))?;
        }
        if parts.next().is_some() {
            bail!("{s:?}: too long");
        }
        Ok(Self(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// What an ARP frame speaking for the target was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpKind {
    /// A reply to the observing host (target address = the host's).
    Answer,
    /// An announcement: a request or reply whose target is the target
    /// address itself (gratuitous ARP).
    Gratuitous,
}

/// One ARP frame whose sender address is the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpSeen {
    /// The kernel's receive timestamp.
    pub at: WallTime,
    pub kind: ArpKind,
    /// The sender hardware address: who claims the target.
    pub mac: Mac,
}

/// What an [`ArpObserver`] recorded.
#[derive(Debug, Clone)]
pub struct ArpLog {
    pub target: Ipv4Addr,
    /// When each request was sent (taken just before handing it to the
    /// kernel), in order.
    pub requests: Vec<WallTime>,
    /// Every frame speaking for the target, in arrival order.
    pub seen: Vec<ArpSeen>,
    /// Other ARP frames received (other addresses, requests for the target).
    pub ignored: usize,
}

impl ArpLog {
    /// Index of the latest request sent at or before `at`.
    pub fn request_before(&self, at: WallTime) -> Option<usize> {
        self.requests
            .partition_point(|sent| *sent <= at)
            .checked_sub(1)
    }

    /// The answers, in arrival order.
    pub fn answers(&self) -> impl Iterator<Item = &ArpSeen> {
        self.seen.iter().filter(|s| s.kind == ArpKind::Answer)
    }

    /// For each request sent at or after `from` that was answered: its index
    /// and the distinct MACs that answered it, in order of their first
    /// answer.
    pub fn answering_macs(&self, from: WallTime) -> Vec<(usize, Vec<Mac>)> {
        let mut out: Vec<(usize, Vec<Mac>)> = Vec::new();
        for answer in self.answers() {
            let Some(request) = self.request_before(answer.at) else {
                continue;
            };
            if self.requests[request] < from {
                continue;
            }
            match out.last_mut() {
                Some((last, macs)) if *last == request => {
                    if !macs.contains(&answer.mac) {
                        macs.push(answer.mac);
                    }
                }
                _ => out.push((request, vec![answer.mac])),
            }
        }
        out
    }

    /// Answers to requests sent at or after `from`, grouped into runs of the
    /// same MAC in arrival order: who answered, in turn.
    pub fn answer_runs(&self, from: WallTime) -> Vec<MacRun> {
        let mut runs: Vec<MacRun> = Vec::new();
        for answer in self.answers() {
            let sent = self.request_before(answer.at).map(|i| self.requests[i]);
            if sent.is_none_or(|sent| sent < from) {
                continue;
            }
            match runs.last_mut() {
                Some(run) if run.mac == answer.mac => {
                    run.last = answer.at;
                    run.count += 1;
                }
                _ => runs.push(MacRun {
                    mac: answer.mac,
                    first: answer.at,
                    last: answer.at,
                    count: 1,
                }),
            }
        }
        runs
    }
}

/// Consecutive answers from one MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacRun {
    pub mac: Mac,
    pub first: WallTime,
    pub last: WallTime,
    pub count: usize,
}

/// How often to ask, and for how long at most.
#[derive(Debug, Clone, Copy)]
pub struct ObserveOptions {
    /// Time between two requests.
    pub interval: Duration,
    /// The observer stops by itself after this long.
    pub limit: Duration,
}

/// A running observer; [`ArpObserver::finish`] stops it and returns what it
/// saw. Dropping it stops it too.
pub struct ArpObserver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<ArpLog>>>,
}

impl ArpObserver {
    /// Starts asking for `target` from `host` (its `eth0`, address and MAC);
    /// returns once the socket is bound.
    pub fn start(host: &Host, target: Ipv4Addr, opts: ObserveOptions) -> Result<Self> {
        if opts.interval.is_zero() {
            bail!("an ARP observer needs a non-zero interval");
        }
        let me = Me {
            mac: host.mac().parse()?,
            ip: host.ipv4(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let host = host.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("arp-{}", host.name()))
                .spawn(move || host.enter(move || observe(me, target, opts, &stop, &ready_tx))?)
                .context("spawning the ARP observer")?
        };
        let mut observer = Self {
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(READY_LIMIT) {
            Ok(()) => Ok(observer),
            // The thread ended (with its error) or hangs.
            Err(_) => Err(observer
                .join()
                .err()
                .unwrap_or_else(|| anyhow!("the ARP observer was not ready in {READY_LIMIT:?}"))),
        }
    }

    /// Stops asking and returns the log.
    pub fn finish(mut self) -> Result<ArpLog> {
        self.join()
    }

    fn join(&mut self) -> Result<ArpLog> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self
            .thread
            .take()
            .context("the ARP observer was already stopped")?;
        thread
            .join()
            .map_err(|_| anyhow!("the ARP observer panicked"))?
    }
}

impl Drop for ArpObserver {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// The observing host.
#[derive(Clone, Copy)]
struct Me {
    mac: Mac,
    ip: Ipv4Addr,
}

/// The observer's loop, inside the host's namespace.
fn observe(
    me: Me,
    target: Ipv4Addr,
    opts: ObserveOptions,
    stop: &AtomicBool,
    ready: &mpsc::Sender<()>,
) -> Result<ArpLog> {
    let socket = PacketSocket::open(IFACE)?;
    let _ = ready.send(());
    let request = request_frame(me, target);
    let max_requests = usize::try_from(opts.limit.as_nanos() / opts.interval.as_nanos())
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let mut log = ArpLog {
        target,
        requests: Vec::with_capacity(max_requests.min(1 << 20)),
        seen: Vec::new(),
        ignored: 0,
    };
    let started = Instant::now();
    let mut next = started;
    while !stop.load(Ordering::Relaxed)
        && started.elapsed() < opts.limit
        && log.requests.len() < max_requests
    {
        let now = Instant::now();
        if now >= next {
            log.requests.push(WallTime::now());
            socket.send(&request)?;
            next += opts.interval;
            if next < now {
                // Late (a busy CPU): no burst to catch up.
                next = now + opts.interval;
            }
        }
        if socket.wait(next.saturating_duration_since(Instant::now()))? {
            socket.drain(me, target, &mut log)?;
        }
    }
    let grace = Instant::now() + LAST_REPLY_GRACE;
    while let Some(left) = grace.checked_duration_since(Instant::now()) {
        if socket.wait(left)? {
            socket.drain(me, target, &mut log)?;
        }
    }
    Ok(log)
}

/// "Who has `target`? Tell `me`", broadcast, padded to 60 bytes.
fn request_frame(me: Me, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MIN_FRAME_LEN);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&me.mac.0);
    frame.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    frame.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
    frame.extend_from_slice(&ETH_P_IP.to_be_bytes());
    frame.extend_from_slice(&[6, 4]);
    frame.extend_from_slice(&ARPOP_REQUEST.to_be_bytes());
    frame.extend_from_slice(&me.mac.0);
    frame.extend_from_slice(&me.ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame.resize(MIN_FRAME_LEN, 0);
    frame
}

/// What a received ARP frame says about `target`, if anything.
fn classify(frame: &[u8], me: Me, target: Ipv4Addr) -> Option<(ArpKind, Mac)> {
    if frame.len() < ARP_FRAME_LEN
        || frame[12..14] != ETH_P_ARP.to_be_bytes()
        || frame[14..16] != ARPHRD_ETHER.to_be_bytes()
        || frame[16..18] != ETH_P_IP.to_be_bytes()
        || frame[18..20] != [6, 4]
    {
        return None;
    }
    let op = u16::from_be_bytes([frame[20], frame[21]]);
    let sha = Mac(frame[22..28].try_into().ok()?);
    let spa = Ipv4Addr::from(<[u8; 4]>::try_from(&frame[28..32]).ok()?);
    let tpa = Ipv4Addr::from(<[u8; 4]>::try_from(&frame[38..42]).ok()?);
    if spa != target {
        return None;
    }
    if tpa == target && (op == ARPOP_REQUEST || op == ARPOP_REPLY) {
        Some((ArpKind::Gratuitous, sha))
    } else if op == ARPOP_REPLY && tpa == me.ip {
        Some((ArpKind::Answer, sha))
    } else {
        None
    }
}

/// A raw `AF_PACKET` socket for ARP on one interface, with receive
/// timestamps.
struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    fn open(iface: &str) -> Result<Self> {
        let proto = ETH_P_ARP.to_be();
        // SAFETY: plain socket(2); the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
        }
        // SAFETY: socket(2) returned a new descriptor, owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = std::ffi::CString::new(iface)?;
        // SAFETY: `name` is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error()).context(format!("no device {iface}"));
        }
        // SAFETY: all-zero is a valid sockaddr_ll; the fields follow.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = i32::try_from(ifindex).context("ifindex")?;
        // SAFETY: `addr` is a sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context(format!("binding to {iface}"));
        }
        let on: libc::c_int = 1;
        // SAFETY: SO_TIMESTAMPNS takes an int flag, passed with its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast::<libc::c_void>(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("SO_TIMESTAMPNS");
        }
        Ok(Self { fd })
    }

    /// Sends `frame` out of the bound interface.
    fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: `frame` is a live buffer of the length passed.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<libc::c_void>(),
                frame.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error()).context("sending an ARP request");
        }
        Ok(())
    }

    /// Waits up to `timeout` for a frame; whether one is there.
    fn wait(&self, timeout: Duration) -> Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        // SAFETY: one live pollfd, a live timespec, no signal mask.
        let rc = unsafe { libc::ppoll(&raw mut pfd, 1, &raw const ts, std::ptr::null()) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(err).context("ppoll");
        }
        Ok(rc > 0)
    }

    /// Reads every queued frame into `log`.
    fn drain(&self, me: Me, target: Ipv4Addr, log: &mut ArpLog) -> Result<()> {
        let mut frame = [0u8; 128];
        while let Some((len, at, outgoing)) = self.recv(&mut frame)? {
            if outgoing {
                continue;
            }
            match classify(&frame[..len], me, target) {
                Some((kind, mac)) => log.seen.push(ArpSeen { at, kind, mac }),
                None => log.ignored += 1,
            }
        }
        Ok(())
    }

    /// One frame without waiting: its length, the kernel's timestamp, and
    /// whether this host sent it; `None` when nothing is queued.
    fn recv(&self, frame: &mut [u8]) -> Result<Option<(usize, WallTime, bool)>> {
        // SAFETY: all-zero is a valid sockaddr_ll and msghdr.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: frame.as_mut_ptr().cast::<libc::c_void>(),
            iov_len: frame.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut from).cast::<libc::c_void>();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: every pointer in `msg` points at a live buffer of the
        // length given beside it.
        let len = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
        if len < 0 {
            let err = std::io::Error::last_os_error();
            return match err.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
                _ => Err(err).context("recvmsg"),
            };
        }
        let at = kernel_stamp(&msg).unwrap_or_else(WallTime::now);
        let outgoing = from.sll_pkttype == libc::PACKET_OUTGOING;
        Ok(Some((
            usize::try_from(len).context("length")?.min(frame.len()),
            at,
            outgoing,
        )))
    }
}

/// The `SCM_TIMESTAMPNS` of a received message.
fn kernel_stamp(msg: &libc::msghdr) -> Option<WallTime> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG_* walk stays inside
    // its control buffer, and the timespec is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = libc::CMSG_DATA(cmsg)
                    .cast::<libc::timespec>()
                    .read_unaligned();
                return Some(WallTime::from_parts(ts.tv_sec, ts.tv_nsec as u32));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

#[cfg(test)]
mod tests;

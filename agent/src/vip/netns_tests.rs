//! [`VipManager`] against a real kernel, in throwaway network namespaces:
//! a veth pair joins namespace A (where VIPs are added) and B (where the
//! announcements are captured). Nothing is created in the root namespace.
//! Needs root; skipped (with a note) otherwise.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

use super::frame::tests::icmpv6_checksum_ok;
use super::frame::{ETH_P_ARP, ETH_P_IPV6, ND_NEIGHBOR_ADVERT};
use super::*;

/// MAC of `eth0` in namespace A (locally administered).
const MAC_A: [u8; 6] = [0x02, 0x76, 0x69, 0x70, 0x00, 0x0a];
/// MAC of `eth0` in namespace B.
const MAC_B: [u8; 6] = [0x02, 0x76, 0x69, 0x70, 0x00, 0x0b];
/// Longest a test waits for anything.
const PATIENCE: Duration = Duration::from_secs(10);

/// `ip netns add` makes `/run/netns` a shared mount on first use, and
/// concurrent first uses race: the tests of this module take turns.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// Namespaces A and B joined by a veth pair (`eth0` on both sides, up);
/// dropping it deletes both namespaces (and so the pair), even on panic.
pub(crate) struct Lab {
    pub(crate) a: String,
    pub(crate) b: String,
}

impl Lab {
    /// A fresh lab named after `tag`, or `None` (and a note) when not root.
    pub(crate) fn new(tag: &str) -> Option<Self> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping the {tag} VIP namespace test: it needs root");
            return None;
        }
        let pid = std::process::id();
        let lab = Self {
            a: format!("vipx-viptest-{pid}-{tag}-a"),
            b: format!("vipx-viptest-{pid}-{tag}-b"),
        };
        {
            let _turn = crate::locks::lock(&NETNS_LOCK);
            ip(&["netns", "add", &lab.a]);
            ip(&["netns", "add", &lab.b]);
        }
        ip(&[
            "link", "add", "eth0", "netns", &lab.a, "type", "veth", "peer", "name", "eth0",
            "netns", &lab.b,
        ]);
        for (ns, mac) in [(&lab.a, MAC_A), (&lab.b, MAC_B)] {
            ip(&[
                "-n",
                ns,
                "link",
                "set",
                "eth0",
                "address",
                &mac_text(mac),
                "up",
            ]);
        }
        Some(lab)
    }

    /// `ip -n A addr show dev eth0`.
    fn addresses_a(&self) -> String {
        ip(&["-n", &self.a, "addr", "show", "dev", "eth0"])
    }

    /// Runs `f` on a thread inside namespace A, on a current-thread runtime.
    pub(crate) fn in_a<T, F>(&self, f: impl FnOnce() -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: Future<Output = T>,
    {
        let thread = in_netns(&self.a, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a tokio runtime in namespace A")
                .block_on(f())
        });
        join(thread)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _turn = crate::locks::lock(&NETNS_LOCK);
        for ns in [&self.a, &self.b] {
            if std::path::Path::new("/run/netns").join(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
}

/// Runs `ip ARGS`, panicking with its stderr if it fails; returns its stdout.
pub(crate) fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// Spawns `f` on a new thread that has entered network namespace `name`.
pub(crate) fn in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/run/netns/{name}");
    thread::spawn(move || {
        let ns = File::open(&path).expect("opening the namespace file");
        setns(&ns, CloneFlags::CLONE_NEWNET).expect("entering the test namespace");
        f()
    })
}

/// Joins `thread`, passing its panic on.
pub(crate) fn join<T>(thread: JoinHandle<T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Every frame that arrives on `eth0` of a namespace while it runs.
pub(crate) struct Capture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Vec<u8>>>,
}

impl Capture {
    /// Starts capturing in `ns`; returns once the socket is open.
    pub(crate) fn start(ns: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stopped = Arc::clone(&stop);
        let thread = in_netns(ns, move || {
            let socket = capture_socket("eth0");
            ready_tx
                .send(())
                .expect("telling the test the capture is ready");
            let deadline = Instant::now() + PATIENCE;
            let mut frames = Vec::new();
            let mut buf = [0u8; 2048];
            while !stopped.load(Ordering::SeqCst)
                && Instant::now() < deadline
                && frames.len() < 1000
            {
                // SAFETY: `buf` is valid for writes of its length.
                let n = unsafe {
                    libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                match usize::try_from(n) {
                    Ok(n) => frames.push(buf[..n].to_vec()),
                    Err(_) => {
                        let e = std::io::Error::last_os_error();
                        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "capturing: {e}");
                    }
                }
            }
            frames
        });
        ready_rx
            .recv_timeout(PATIENCE)
            .expect("the capture socket opens");
        Self { stop, thread }
    }

    /// Waits a little for stragglers, stops, and returns what arrived.
    pub(crate) fn finish(self) -> Vec<Vec<u8>> {
        thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::SeqCst);
        join(self.thread)
    }
}

/// An `AF_PACKET` socket receiving every frame on `interface`, with a 50 ms
/// receive timeout.
fn capture_socket(interface: &str) -> OwnedFd {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    assert!(
        fd >= 0,
        "capture socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(interface).expect("interface name");
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no {interface} in the capture namespace");
    // SAFETY: zeroed sockaddr_ll is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = all;
    sll.sll_ifindex = index as i32;
    // SAFETY: pointer and length describe `sll`.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const sll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "binding the capture socket: {}",
        std::io::Error::last_os_error()
    );
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: pointer and length describe `timeout`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    socket
}

/// The gratuitous ARPs for `ip` among `frames`.
fn garps_for(frames: &[Vec<u8>], ip: Ipv4Addr) -> Vec<&Vec<u8>> {
    frames
        .iter()
        .filter(|f| {
            f.len() >= 42 && f[12..14] == ETH_P_ARP.to_be_bytes() && f[28..32] == ip.octets()
        })
        .collect()
}

/// The neighbour advertisements for target `ip` among `frames`.
fn nas_for(frames: &[Vec<u8>], ip: Ipv6Addr) -> Vec<&Vec<u8>> {
    frames
        .iter()
        .filter(|f| {
            f.len() >= 78
                && f[12..14] == ETH_P_IPV6.to_be_bytes()
                && f[20] == 58
                && f[54] == ND_NEIGHBOR_ADVERT
                && f[62..78] == ip.octets()
        })
        .collect()
}

#[test]
fn ipv4_vip_is_added_announced_and_removed() {
    let Some(lab) = Lab::new("v4") else { return };
    let vip = VipAddr::parse("10.0.0.100/24", "eth0").expect("test VIP");
    let ip = Ipv4Addr::new(10, 0, 0, 100);
    let announce = Announce {
        count: 3,
        interval: Duration::from_millis(20),
        refresh: None,
    };

    let capture = Capture::start(&lab.b);
    let (v, a) = (vip.clone(), announce.clone());
    lab.in_a(move || async move {
        let vips = VipManager::new(false).expect("VIP manager in namespace A");
        assert!(
            !vips.present(&v).await.expect("present before"),
            "not there yet"
        );
        vips.add_with(&v, &a).await.expect("adding the VIP");
        assert!(vips.present(&v).await.expect("present after"), "added");
        // The rest of the announcement comes from a task of this runtime.
        tokio::time::sleep(a.interval * a.count + Duration::from_millis(200)).await;
        // Idempotent; announces nothing with count 0.
        let silent = Announce { count: 0, ..a };
        vips.add_with(&v, &silent)
            .await
            .expect("adding again is not an error");
    });
    let frames = capture.finish();

    let shown = lab.addresses_a();
    assert!(
        shown.contains("inet 10.0.0.100/24"),
        "ip addr shows the VIP:\n{shown}"
    );
    let garps = garps_for(&frames, ip);
    assert_eq!(
        garps.len(),
        3,
        "3 gratuitous ARPs of {} frames",
        frames.len()
    );
    for f in garps {
        assert_eq!(f[0..6], [0xff; 6], "broadcast destination");
        assert_eq!(f[6..12], MAC_A, "source: A's MAC");
        assert_eq!(
            f[14..22],
            [0, 1, 8, 0, 6, 4, 0, 1],
            "Ethernet/IPv4 ARP request"
        );
        assert_eq!(f[22..28], MAC_A, "sender MAC");
        assert_eq!(f[28..32], ip.octets(), "sender IP is the VIP");
        assert_eq!(f[32..38], [0xff; 6], "target MAC");
        assert_eq!(f[38..42], ip.octets(), "target IP is the VIP");
    }

    let v = vip.clone();
    lab.in_a(move || async move {
        let vips = VipManager::new(false).expect("VIP manager in namespace A");
        vips.remove(&v).await.expect("removing the VIP");
        assert!(
            !vips.present(&v).await.expect("present after remove"),
            "removed"
        );
        vips.remove(&v)
            .await
            .expect("removing an absent VIP is not an error");

        let other_prefix = VipAddr {
            prefix_len: 32,
            ..v.clone()
        };
        assert!(
            !vips.present(&other_prefix).await.expect("present /32"),
            "prefix counts"
        );

        let missing = VipAddr::parse("10.0.0.100/24", "eth9").expect("VIP on eth9");
        let err = vips.add(&missing).await.expect_err("eth9 does not exist");
        assert_eq!(
            err.to_string(),
            "adding 10.0.0.100/24 to eth9: no such interface in this network namespace"
        );
        let err = vips
            .present(&missing)
            .await
            .expect_err("eth9 does not exist");
        assert!(matches!(err, VipError::NoInterface { .. }), "{err}");
    });
    let shown = lab.addresses_a();
    assert!(
        !shown.contains("10.0.0.100"),
        "ip addr no longer shows the VIP:\n{shown}"
    );
}

#[test]
fn ipv6_vip_is_added_without_dad_and_advertised() {
    let Some(lab) = Lab::new("v6") else { return };
    let vip = VipAddr::parse("2001:db8::100/64", "eth0").expect("test VIP");
    let ip: Ipv6Addr = "2001:db8::100".parse().expect("test address");
    let announce = Announce {
        count: 4,
        interval: Duration::from_millis(5),
        refresh: None,
    };

    let capture = Capture::start(&lab.b);
    let (v, a) = (vip.clone(), announce.clone());
    lab.in_a(move || async move {
        let vips = VipManager::new(false).expect("VIP manager in namespace A");
        vips.add_with(&v, &a).await.expect("adding the VIP");
        assert!(vips.present(&v).await.expect("present"), "added");
        tokio::time::sleep(a.interval * a.count + Duration::from_millis(200)).await;
    });
    let frames = capture.finish();

    let shown = lab.addresses_a();
    let line = shown
        .lines()
        .find(|l| l.contains("inet6 2001:db8::100/64"))
        .unwrap_or_else(|| panic!("ip addr shows the VIP:\n{shown}"));
    assert!(
        !line.contains("tentative"),
        "no DAD, usable at once: {line}"
    );
    let nas = nas_for(&frames, ip);
    assert_eq!(
        nas.len(),
        4,
        "4 neighbour advertisements of {} frames",
        frames.len()
    );
    for f in nas {
        assert_eq!(f[0..6], [0x33, 0x33, 0, 0, 0, 1], "all-nodes multicast MAC");
        assert_eq!(f[6..12], MAC_A, "source: A's MAC");
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(f[22..38], ip.octets(), "source IP is the VIP");
        assert_eq!(
            IpAddr::from(<[u8; 16]>::try_from(&f[38..54]).expect("16 bytes")),
            "ff02::1".parse::<IpAddr>().expect("ff02::1")
        );
        assert_eq!(
            f[58] & 0xe0,
            0x20,
            "Override set, Router and Solicited clear"
        );
        assert_eq!(f[78..80], [2, 1], "target link-layer address option");
        assert_eq!(f[80..86], MAC_A, "option carries A's MAC");
        assert!(icmpv6_checksum_ok(f), "ICMPv6 checksum verifies");
    }

    let v = vip.clone();
    lab.in_a(move || async move {
        let vips = VipManager::new(false).expect("VIP manager in namespace A");
        vips.remove(&v).await.expect("removing the VIP");
        assert!(
            !vips.present(&v).await.expect("present after remove"),
            "removed"
        );
    });
    let shown = lab.addresses_a();
    assert!(
        !shown.contains("2001:db8::100"),
        "ip addr no longer shows the VIP:\n{shown}"
    );
}

#[test]
fn ha_debug_changes_nothing() {
    let Some(lab) = Lab::new("dbg") else { return };
    let vip = VipAddr::parse("10.0.0.200/24", "eth0").expect("test VIP");
    let held = VipAddr::parse("10.0.0.201/24", "eth0").expect("held VIP");
    ip(&["-n", &lab.a, "addr", "add", "10.0.0.201/24", "dev", "eth0"]);

    let capture = Capture::start(&lab.b);
    let (v, h) = (vip.clone(), held.clone());
    lab.in_a(move || async move {
        let vips = VipManager::new(true).expect("HA-debug VIP manager in namespace A");
        assert!(vips.ha_debug());
        vips.add(&v).await.expect("HA debug add succeeds");
        vips.announce(&h, &Announce::default())
            .await
            .expect("HA debug announce succeeds");
        vips.remove(&h).await.expect("HA debug remove succeeds");
        let nowhere = VipAddr::parse("10.0.0.200/24", "eth9").expect("VIP on eth9");
        vips.add(&nowhere)
            .await
            .expect("HA debug does not even look");
        assert!(
            !vips.present(&v).await.expect("present (read-only)"),
            "not added"
        );
        assert!(
            vips.present(&h).await.expect("present (read-only)"),
            "not removed"
        );
    });
    let frames = capture.finish();

    let shown = lab.addresses_a();
    assert!(
        !shown.contains("10.0.0.200"),
        "HA debug added nothing:\n{shown}"
    );
    assert!(
        shown.contains("10.0.0.201/24"),
        "HA debug removed nothing:\n{shown}"
    );
    let sent = garps_for(&frames, Ipv4Addr::new(10, 0, 0, 200)).len()
        + garps_for(&frames, Ipv4Addr::new(10, 0, 0, 201)).len();
    assert_eq!(sent, 0, "HA debug sent no gratuitous ARP");
}

#[test]
fn removing_a_vip_stops_its_announcement_and_adding_does_not_wait_for_it() {
    let Some(lab) = Lab::new("stop") else { return };
    let vip = VipAddr::parse("10.0.0.150/24", "eth0").expect("test VIP");
    // Ten frames a second apart: the whole announcement would take 9 s.
    let announce = Announce {
        count: 10,
        interval: Duration::from_secs(1),
        refresh: None,
    };

    let capture = Capture::start(&lab.b);
    let (v, a) = (vip.clone(), announce.clone());
    let took = lab.in_a(move || async move {
        let vips = VipManager::new(false).expect("VIP manager in namespace A");
        let started = Instant::now();
        vips.add_with(&v, &a).await.expect("adding the VIP");
        let took = started.elapsed();
        vips.remove(&v).await.expect("removing the VIP");
        // Longer than the interval: a frame still due would go out now.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        took
    });
    let frames = capture.finish();
    assert!(
        took < announce.interval * (announce.count - 1),
        "add_with returned after {took:?}, before the announcement's end"
    );
    let garps = garps_for(&frames, Ipv4Addr::new(10, 0, 0, 150));
    assert_eq!(
        garps.len(),
        1,
        "the first frame at once, none after the removal ({} frames seen)",
        frames.len()
    );
}

#[test]
fn one_manager_serves_groups_that_change_at_once() {
    let Some(lab) = Lab::new("conc") else { return };
    // Two groups, one per family, flapping together on worker threads: each
    // change looks the VIP up with a netlink dump over the manager's one
    // socket, and the kernel runs one dump per socket at a time (EBUSY).
    let thread = in_netns(&lab.a, move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("building a tokio runtime in namespace A")
            .block_on(async {
                let manager = Arc::new(VipManager::new(false).expect("VIP manager in A"));
                let silent = Announce {
                    count: 0,
                    ..Announce::default()
                };
                let groups: Vec<_> = ["10.0.0.99/24", "2001:db8::99/64"]
                    .into_iter()
                    .map(|cidr| {
                        let (manager, silent) = (Arc::clone(&manager), silent.clone());
                        let vip = VipAddr::parse(cidr, "eth0").expect("test VIP");
                        tokio::spawn(async move {
                            let mut errors = Vec::new();
                            for _ in 0..200 {
                                let added = manager.add_with(&vip, &silent).await;
                                let present = manager.present(&vip).await;
                                let removed = manager.remove(&vip).await;
                                errors.extend(added.err().map(|e| e.to_string()));
                                errors.extend(present.err().map(|e| e.to_string()));
                                errors.extend(removed.err().map(|e| e.to_string()));
                            }
                            errors
                        })
                    })
                    .collect();
                for group in groups {
                    let errors = group.await.expect("the group task ends");
                    assert!(
                        errors.is_empty(),
                        "{} failures, the first: {:?}",
                        errors.len(),
                        &errors[..errors.len().min(3)]
                    );
                }
            });
    });
    join(thread);
}

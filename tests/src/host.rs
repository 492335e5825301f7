//! Hosts: one network namespace each, with `eth0` on the lab's bridge.

use std::fmt::{self, Display};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::lab::{BRIDGE, Lab, LabCore};
use crate::netns::{self, ip};
use crate::process::{DEFAULT_RUN_TIMEOUT, Pid, ProcSpec, check_output, run_output};
use crate::stats::{LinkStats, link_stats};

/// The host side of every host's veth pair.
pub const IFACE: &str = "eth0";

/// What the lab remembers of a host.
#[derive(Debug)]
pub(crate) struct HostInfo {
    pub(crate) name: String,
    netns: String,
    ipv4: Ipv4Addr,
    prefix_len: u8,
    mac: String,
}

/// A cheap handle to one host of a [`Lab`]: its namespace is owned by the lab
/// and goes away with it.
#[derive(Clone)]
pub struct Host {
    lab: Arc<LabCore>,
    info: Arc<HostInfo>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.info.name)
            .field("netns", &self.info.netns)
            .field("ipv4", &self.info.ipv4)
            .field("mac", &self.info.mac)
            .finish()
    }
}

impl Lab {
    /// Adds host `name` (also the name of its veth peer on the bridge, so at
    /// most 15 characters of `[a-z0-9_-]`): namespace `{lab id}-{name}`, `lo`
    /// up, `eth0` on the bridge with `ipv4_cidr` (e.g. `"10.77.0.11/24"`) and
    /// the MAC address `02:76:` + the four IPv4 bytes.
    pub fn add_host(&self, name: &str, ipv4_cidr: &str) -> Result<Host> {
        validate_name(name)?;
        let (ipv4, prefix_len) = parse_v4_cidr(ipv4_cidr)?;
        {
            let hosts = self.hosts_lock();
            if let Some(other) = hosts.iter().find(|h| h.name == name || h.ipv4 == ipv4) {
                bail!(
                    "host {name} ({ipv4}) clashes with host {} ({})",
                    other.name,
                    other.ipv4
                );
            }
        }
        let ns = format!("{}-{name}", self.id());
        let o = ipv4.octets();
        let mac = format!("02:76:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
        self.create_netns(&ns, self.options().ipv6)?;
        let hub = self.hub_netns();
        // Both ends are created right in their namespaces: nothing ever
        // appears in the root namespace.
        #[rustfmt::skip]
        let args = ["link", "add", IFACE, "netns", &ns, "address", &mac, "type", "veth",
                    "peer", "name", name, "netns", hub];
        ip(&args)?;
        ip(&["-n", hub, "link", "set", "dev", name, "master", BRIDGE])?;
        if self.options().peer_xdp_pass {
            self.attach_peer_pass(name)?;
        }
        ip(&["-n", hub, "link", "set", "dev", name, "up"])?;
        ip(&["-n", &ns, "link", "set", "dev", "lo", "up"])?;
        // Real NICs put finished checksums on the wire; a veth hands the peer
        // only the pseudo-header sum (CHECKSUM_PARTIAL) and the skb flag that
        // says so. XDP sees the raw frame, and a frame it sends back out
        // (XDP_TX) loses that flag, so the receiver drops it. Hosts compute
        // their checksums in full, as in front of a real NIC.
        run_ethtool(&ns, &["-K", IFACE, "tx", "off"])?;
        ip(&["-n", &ns, "addr", "add", ipv4_cidr, "dev", IFACE])?;
        ip(&["-n", &ns, "link", "set", "dev", IFACE, "up"])?;
        let info = Arc::new(HostInfo {
            name: name.to_owned(),
            netns: ns,
            ipv4,
            prefix_len,
            mac,
        });
        self.hosts_lock().push(info.clone());
        Ok(Host::new(self.core_arc().clone(), info))
    }
}

impl Host {
    pub(crate) fn new(lab: Arc<LabCore>, info: Arc<HostInfo>) -> Self {
        Self { lab, info }
    }

    /// The lab this host belongs to (processes, logs, temp dir).
    pub fn lab(&self) -> &LabCore {
        &self.lab
    }

    /// The host's name, e.g. `n1`.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The host's network namespace, `vipx-{pid}-{seq}-{name}`.
    pub fn netns_name(&self) -> &str {
        &self.info.netns
    }

    /// The host's interface on the segment: `eth0`.
    pub fn iface(&self) -> &'static str {
        IFACE
    }

    /// The bridge port of this host (the veth peer in the hub namespace).
    pub fn peer_iface(&self) -> &str {
        &self.info.name
    }

    /// The IPv4 address given to [`Lab::add_host`].
    pub fn ipv4(&self) -> Ipv4Addr {
        self.info.ipv4
    }

    /// That address with its prefix length, e.g. `10.77.0.11/24`.
    pub fn ipv4_cidr(&self) -> String {
        format!("{}/{}", self.info.ipv4, self.info.prefix_len)
    }

    /// The MAC address of `eth0`, lower-case with colons.
    pub fn mac(&self) -> &str {
        &self.info.mac
    }

    /// Adds an address (IPv4 or IPv6 CIDR) to `eth0`; IPv6 ones skip DAD.
    pub fn add_addr(&self, cidr: &str) -> Result<()> {
        self.add_addr_on(IFACE, cidr)
    }

    /// Adds an address to device `dev` (e.g. a VIP on `lo` for DSR).
    pub fn add_addr_on(&self, dev: &str, cidr: &str) -> Result<()> {
        let mut args = vec!["-n", self.netns_name(), "addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        ip(&args).map(drop)
    }

    /// Removes an address from device `dev`.
    pub fn del_addr_on(&self, dev: &str, cidr: &str) -> Result<()> {
        ip(&["-n", self.netns_name(), "addr", "del", cidr, "dev", dev]).map(drop)
    }

    /// Sets a permanent neighbour (ARP/NDP) entry on `eth0`.
    pub fn add_neigh(&self, addr: impl Display, mac: &str) -> Result<()> {
        let addr = addr.to_string();
        #[rustfmt::skip]
        let args = ["-n", self.netns_name(), "neigh", "replace", &addr, "lladdr", mac,
                    "dev", IFACE, "nud", "permanent"];
        ip(&args).map(drop)
    }

    /// Plugs (`true`) or unplugs (`false`) the host's cable: sets its bridge
    /// port up or down. `eth0` then sees carrier loss, as with a real cable.
    pub fn set_connected(&self, connected: bool) -> Result<()> {
        let state = if connected { "up" } else { "down" };
        ip(&[
            "-n",
            self.lab.hub_netns(),
            "link",
            "set",
            "dev",
            self.peer_iface(),
            state,
        ])
        .map(drop)
    }

    /// Writes a sysctl in the host's namespace (`net.ipv4.ip_forward`, or with
    /// slashes when a component contains dots).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        netns::write_sysctl(self.netns_name(), key, value)
    }

    /// Reads a sysctl in the host's namespace.
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        netns::read_sysctl(self.netns_name(), key)
    }

    /// Counters of device `dev` in the host's namespace.
    pub fn link_stats(&self, dev: &str) -> Result<LinkStats> {
        link_stats(self.netns_name(), dev)
    }

    /// Counters of the host's bridge port (the hub side of its cable).
    pub fn peer_link_stats(&self) -> Result<LinkStats> {
        link_stats(self.lab.hub_netns(), self.peer_iface())
    }

    /// Runs `argv` in the host (`ip netns exec NS argv...`) with a 60 s
    /// deadline; fails with the command line and stderr unless it exits 0.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        let spec = ProcSpec::from_argv(argv);
        let out = self.run_spec(&spec, DEFAULT_RUN_TIMEOUT)?;
        check_output(out, &self.describe(&spec))
    }

    /// [`Host::run`] returning trimmed stdout.
    pub fn run_stdout(&self, argv: &[&str]) -> Result<String> {
        let out = self.run(argv)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Like [`Host::run`] but returns the output whatever the exit status;
    /// fails only if the command cannot start or times out.
    pub fn run_unchecked(&self, argv: &[&str]) -> Result<Output> {
        self.run_spec(&ProcSpec::from_argv(argv), DEFAULT_RUN_TIMEOUT)
    }

    /// Runs `spec` in the host to completion (at most `timeout`), whatever its
    /// exit status.
    pub fn run_spec(&self, spec: &ProcSpec, timeout: Duration) -> Result<Output> {
        let cmd = spec.to_command(Some(self.netns_name()))?;
        run_output(cmd, &self.describe(spec), timeout)
    }

    /// Like [`Host::run_spec`], failing unless the command exits 0.
    pub fn run_spec_checked(&self, spec: &ProcSpec, timeout: Duration) -> Result<Output> {
        check_output(self.run_spec(spec, timeout)?, &self.describe(spec))
    }

    /// Starts a long-running process in the host (`ip netns exec`, which
    /// execs: the pid is the program's own), in its own process group, its
    /// output appended to [`Host::log_path`]`(name)`. The lab stops it when
    /// dropped; see also [`LabCore::stop_process`], [`LabCore::kill`],
    /// [`LabCore::wait_exit`].
    pub fn spawn(&self, name: &str, spec: impl Into<ProcSpec>) -> Result<Pid> {
        self.lab
            .spawn_in(self.name(), self.netns_name(), name, &spec.into())
    }

    /// The id of the XDP program on the host's interface, as `ip -d link`
    /// shows it (`prog/xdp id N`), if there is one.
    pub fn xdp_prog_id(&self) -> Option<u32> {
        let out = self
            .run_stdout(&["ip", "-d", "link", "show", self.iface()])
            .expect("ip -d link show");
        let rest = out.split("prog/xdp id ").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    }

    /// The log file of process `name` of this host.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.lab.log_path(self.name(), name)
    }

    /// Runs `f` on a fresh thread inside the host's network namespace and
    /// returns its result (a panic in `f` is resumed here). Sockets opened in
    /// `f` stay in the namespace. `/sys/class/net` inside `f` still shows the
    /// root namespace; use netlink, ioctls or `/proc/thread-self/net`.
    pub fn enter<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        netns::in_netns(self.netns_name(), f)
            .with_context(|| format!("entering host {}", self.name()))
    }

    fn describe(&self, spec: &ProcSpec) -> String {
        format!("[{}] {}", self.name(), spec.display())
    }
}

/// `ethtool ARGS` inside namespace `ns`.
fn run_ethtool(ns: &str, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ethtool"])
        .args(args)
        .output()
        .context("running ethtool (installed by `cargo xtask setup`)")?;
    if !out.status.success() {
        bail!(
            "ip netns exec {ns} ethtool {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if name.is_empty() || name.len() > 15 || !ok_chars || matches!(name, "hub" | "lo" | BRIDGE) {
        bail!("bad host name {name:?}: 1-15 chars of [a-z0-9_-], not hub/lo/{BRIDGE}");
    }
    Ok(())
}

fn parse_v4_cidr(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let (addr, len) = cidr
        .split_once('/')
        .with_context(|| format!("{cidr:?} is not an IPv4 CIDR"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .with_context(|| format!("bad IPv4 in {cidr:?}"))?;
    let len: u8 = len
        .parse()
        .with_context(|| format!("bad prefix in {cidr:?}"))?;
    if len > 32 {
        bail!("bad prefix in {cidr:?}");
    }
    Ok((addr, len))
}

//! The lab: network namespaces joined by one L2 segment (a bridge in a hub
//! namespace), the processes started in them, and the teardown that removes
//! all of it, also when a test panics.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::host::{Host, HostInfo};
use crate::netns::{self, ip};
use crate::process::{DEFAULT_RUN_TIMEOUT, ProcSpec, check_output, run_output};
use crate::procs::ProcRecord;

/// Name of the bridge in the hub namespace.
pub const BRIDGE: &str = "br0";

/// Set `VIPX_LAB_KEEP=1` to keep a lab's temporary directory (logs, data
/// directories, configs) after it is dropped.
pub const KEEP_ENV: &str = "VIPX_LAB_KEEP";

/// Labs created by this process so far; part of every lab id.
static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// How a [`Lab`] is built.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// IPv6 on the hosts. When `false`, IPv6 is disabled in every host
    /// namespace before any link goes up, so no ND/MLD/RS packet ever
    /// appears on the segment. (The hub never speaks IPv6 either way.)
    pub ipv6: bool,
    /// Attach a pass-through XDP program to every bridge port (the hub side
    /// of each host's veth), so that frames an XDP program in a host sends
    /// out of `eth0` with `XDP_TX` or `XDP_REDIRECT` reach the bridge instead
    /// of vanishing (see [`crate::xdp`]).
    pub peer_xdp_pass: bool,
    /// IPv4 network used by [`LabCore::v4`].
    pub v4_net: Ipv4Addr,
    /// Prefix length of [`LabOptions::v4_net`].
    pub v4_prefix_len: u8,
    /// IPv6 network used by [`LabCore::v6`].
    pub v6_net: Ipv6Addr,
    /// Prefix length of [`LabOptions::v6_net`].
    pub v6_prefix_len: u8,
    /// How long a process gets between its stop signal and SIGKILL.
    pub stop_grace: Duration,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            ipv6: true,
            peer_xdp_pass: true,
            v4_net: Ipv4Addr::new(10, 77, 0, 0),
            v4_prefix_len: 24,
            v6_net: Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0),
            v6_prefix_len: 64,
            stop_grace: Duration::from_secs(5),
        }
    }
}

impl LabOptions {
    /// The defaults with IPv6 disabled: a segment that is silent unless spoken to.
    pub fn ipv4_only() -> Self {
        Self {
            ipv6: false,
            ..Self::default()
        }
    }
}

/// A set of network namespaces joined by one L2 segment. Dropping it (also
/// while unwinding from a panic) stops every process it started, kills any
/// other process left in its namespaces, deletes the namespaces and removes
/// its temporary directory (unless `VIPX_LAB_KEEP=1`).
///
/// Most methods live on [`LabCore`], reachable through `Deref` and from every
/// [`Host`] with [`Host::lab`].
pub struct Lab {
    core: Arc<LabCore>,
}

/// The state of a lab that hosts share: namespaces, processes, temp dir.
pub struct LabCore {
    id: String,
    opts: LabOptions,
    tmp: PathBuf,
    keep_tmp: bool,
    hub: String,
    namespaces: Mutex<Vec<String>>,
    pub(crate) hosts: Mutex<Vec<Arc<HostInfo>>>,
    pub(crate) procs: Mutex<Vec<ProcRecord>>,
    /// The pass-through XDP program and its links to the bridge ports.
    xdp_pass: Mutex<(Option<OwnedFd>, Vec<OwnedFd>)>,
    /// The lab's bpffs, once mounted (see [`LabCore::pin_dir`]).
    pins: Mutex<Option<PathBuf>>,
    torn_down: AtomicBool,
}

impl Lab {
    /// Creates the hub namespace `vipx-{pid}-{seq}-hub` with bridge `br0`
    /// and a temporary directory; hosts are added with [`Lab::add_host`].
    pub fn new(opts: LabOptions) -> Result<Lab> {
        let seq = LAB_SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("vipx-{}-{seq}", std::process::id());
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir()
            .context("creating the lab's temporary directory")?
            .keep();
        // Services run as other users (postgres) and must reach their dirs.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        let core = LabCore {
            hub: format!("{id}-hub"),
            id,
            opts,
            tmp,
            keep_tmp: std::env::var(KEEP_ENV).is_ok_and(|v| v == "1"),
            namespaces: Mutex::new(Vec::new()),
            hosts: Mutex::new(Vec::new()),
            procs: Mutex::new(Vec::new()),
            xdp_pass: Mutex::new((None, Vec::new())),
            pins: Mutex::new(None),
            torn_down: AtomicBool::new(false),
        };
        // From here on, an error drops `lab`, which undoes what was done.
        let lab = Lab {
            core: Arc::new(core),
        };
        lab.create_hub()?;
        Ok(lab)
    }

    fn create_hub(&self) -> Result<()> {
        let hub = self.core.hub.as_str();
        // The hub is a plain switch: it never speaks IPv6 (nor IPv4).
        self.core.create_netns(hub, false)?;
        ip(&[
            "-n",
            hub,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", hub, "link", "set", "dev", "lo", "up"])?;
        // A switch does not run netfilter on the frames it forwards. With
        // br_netfilter loaded (Docker loads it), the kernel hands every
        // bridged frame to the hub's (empty) iptables hooks, a cost real
        // networks do not have and the VIP path pays twice (client to node,
        // node to backend). Without the module there is nothing to turn off.
        for key in [
            "net.bridge.bridge-nf-call-iptables",
            "net.bridge.bridge-nf-call-ip6tables",
            "net.bridge.bridge-nf-call-arptables",
        ] {
            if netns::read_sysctl(hub, key).is_ok() {
                netns::write_sysctl(hub, key, "0")?;
            }
        }
        ip(&["-n", hub, "link", "set", "dev", BRIDGE, "up"])?;
        Ok(())
    }

    /// The shared state, with an owner count, for hosts.
    pub(crate) fn core_arc(&self) -> &Arc<LabCore> {
        &self.core
    }

    /// The host called `name`, if it was added.
    pub fn host(&self, name: &str) -> Option<Host> {
        self.core
            .hosts_lock()
            .iter()
            .find(|h| h.name == name)
            .map(|info| Host::new(self.core.clone(), info.clone()))
    }

    /// All hosts, in the order they were added.
    pub fn hosts(&self) -> Vec<Host> {
        self.core
            .hosts_lock()
            .iter()
            .map(|info| Host::new(self.core.clone(), info.clone()))
            .collect()
    }
}

impl Deref for Lab {
    type Target = LabCore;
    fn deref(&self) -> &LabCore {
        &self.core
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for err in self.core.teardown() {
            eprintln!("vipx-lab {}: teardown: {err:#}", self.core.id);
        }
    }
}

impl LabCore {
    /// The lab id, `vipx-{pid}-{seq}`: the prefix of all its namespace names.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The options the lab was built with.
    pub fn options(&self) -> &LabOptions {
        &self.opts
    }

    /// The lab's temporary directory (logs, configs, data directories).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// The hub namespace, which holds bridge [`BRIDGE`] and the hosts' veth peers.
    pub fn hub_netns(&self) -> &str {
        &self.hub
    }

    /// Runs `argv` in the hub namespace (e.g. `tcpdump -i br0`, `ethtool -k n1`)
    /// with a 60 s deadline; fails unless it exits 0.
    pub fn hub_run(&self, argv: &[&str]) -> Result<Output> {
        let spec = ProcSpec::from_argv(argv);
        let what = format!("[hub] {}", spec.display());
        let out = run_output(
            spec.to_command(Some(&self.hub))?,
            &what,
            DEFAULT_RUN_TIMEOUT,
        )?;
        check_output(out, &what)
    }

    /// Runs `f` on a thread inside the hub namespace (see [`crate::Host::enter`]),
    /// e.g. to read a bridge port's counters or attach a program of your own.
    pub fn enter_hub<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        netns::in_netns(&self.hub, f)
    }

    /// All namespaces of the lab, in creation order (hub first).
    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.namespaces).clone()
    }

    /// The inodes of all the lab's namespaces (see [`crate::netns_inode`]).
    pub fn netns_inodes(&self) -> Result<Vec<u64>> {
        self.namespaces()
            .iter()
            .map(|ns| netns::netns_inode(ns))
            .collect()
    }

    /// `CIDR` of address number `n` in the lab's IPv4 network, e.g. `v4(11)` =
    /// `"10.77.0.11/24"` with the defaults.
    pub fn v4(&self, n: u32) -> String {
        let addr = Ipv4Addr::from(u32::from(self.opts.v4_net) + n);
        format!("{addr}/{}", self.opts.v4_prefix_len)
    }

    /// `CIDR` of address number `n` in the lab's IPv6 network, e.g. `v6(17)` =
    /// `"fd00:77::11/64"` with the defaults.
    pub fn v6(&self, n: u32) -> String {
        let addr = Ipv6Addr::from(u128::from(self.opts.v6_net) + u128::from(n));
        format!("{addr}/{}", self.opts.v6_prefix_len)
    }

    pub(crate) fn hosts_lock(&self) -> MutexGuard<'_, Vec<Arc<HostInfo>>> {
        lock(&self.hosts)
    }

    /// Attaches the lab's pass-through XDP program to bridge port `port`.
    pub(crate) fn attach_peer_pass(&self, port: &str) -> Result<()> {
        let mut xdp = lock(&self.xdp_pass);
        if xdp.0.is_none() {
            xdp.0 = Some(crate::xdp::load_return_program(crate::xdp::XDP_PASS)?);
        }
        let prog = xdp.0.as_ref().context("no XDP program")?;
        let link = crate::xdp::attach(prog, &self.hub, port)?;
        xdp.1.push(link);
        Ok(())
    }

    /// The directory where node `name` pins its XDP links and maps (its
    /// `pin_path`; the agent creates it), in the lab's own bpffs, mounted
    /// on first use and unmounted, pins and all, at teardown (see
    /// [`crate::pins`]).
    pub fn pin_dir(&self, name: &str) -> Result<PathBuf> {
        let mut pins = lock(&self.pins);
        if pins.is_none() {
            *pins = Some(crate::pins::mount_for(&self.id)?);
        }
        let root = pins.as_ref().context("the lab's bpffs")?;
        Ok(root.join(name))
    }

    /// Whether the lab has been (or is being) torn down.
    pub(crate) fn is_torn_down(&self) -> bool {
        self.torn_down.load(Ordering::SeqCst)
    }

    /// `ip netns add`, recorded for teardown; IPv6 disabled first when asked.
    pub(crate) fn create_netns(&self, name: &str, ipv6: bool) -> Result<()> {
        if netns::netns_exists(name) {
            // This process never made this name before (the lab seq is new):
            // it is a leftover of a dead process that had our pid.
            let inode = netns::netns_inode(name)?;
            netns::kill_all_in(&[inode], Duration::from_secs(5));
            netns::delete(name)?;
        }
        netns::add(name)?;
        lock(&self.namespaces).push(name.to_owned());
        if !ipv6 {
            for key in [
                "net.ipv6.conf.all.disable_ipv6",
                "net.ipv6.conf.default.disable_ipv6",
            ] {
                netns::write_sysctl(name, key, "1")?;
            }
        }
        Ok(())
    }

    /// Stops processes, kills leftovers, unmounts the bpffs, deletes
    /// namespaces and the temp dir.
    /// Runs once; returns the errors it met on the way.
    fn teardown(&self) -> Vec<anyhow::Error> {
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return Vec::new();
        }
        let mut errors = self.stop_all();
        let namespaces = self.namespaces();
        let inodes: Vec<u64> = namespaces
            .iter()
            .filter_map(|ns| netns::netns_inode(ns).ok())
            .collect();
        let (_, left) = netns::kill_all_in(&inodes, Duration::from_secs(5));
        if !left.is_empty() {
            errors.push(anyhow::anyhow!(
                "processes still inside the lab's namespaces: {left:?}"
            ));
        }
        *lock(&self.xdp_pass) = (None, Vec::new());
        if let Some(pins) = lock(&self.pins).take()
            && let Err(err) = crate::pins::unmount(&pins)
        {
            errors.push(err);
        }
        // Hosts (newest first), then the hub created before them.
        for ns in namespaces.iter().rev() {
            if let Err(err) = netns::delete(ns) {
                errors.push(err);
            }
        }
        if self.keep_tmp {
            eprintln!("vipx-lab {}: kept {}", self.id, self.tmp.display());
        } else if let Err(err) = std::fs::remove_dir_all(&self.tmp) {
            errors
                .push(anyhow::Error::new(err).context(format!("removing {}", self.tmp.display())));
        }
        errors
    }
}

/// Locks a mutex, ignoring poisoning: the lab must be torn down after a panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

//! keepalived 2.2 in a lab host: the reference vipx is measured against and
//! must interoperate with (VRRPv3, one VRID, one VIP, IPv4 or IPv6).

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Result;

use crate::{Host, Pid, ProcSpec};

/// One keepalived VRRP instance, of the VIP's family (`A`: `Ipv4Addr` or
/// `Ipv6Addr`).
#[derive(Clone, Debug)]
pub struct KeepalivedSpec<A = Ipv4Addr> {
    pub vrid: u8,
    pub priority: u8,
    /// `advert_int` in milliseconds (10 ms steps).
    pub advert_ms: u64,
    /// The VIP, with its prefix length.
    pub vip: A,
    pub prefix_len: u8,
}

/// Starts keepalived (VRRP only, in the foreground) in `host` with a
/// generated configuration; its old pidfiles are removed first (a killed
/// one leaves them, and keepalived refuses to start while they name a
/// process not yet reaped).
pub fn start<A: Into<IpAddr> + Copy>(host: &Host, spec: &KeepalivedSpec<A>) -> Result<Pid> {
    let dir = host
        .lab()
        .tmp_dir()
        .join(format!("{}-keepalived", host.name()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("keepalived.conf");
    std::fs::write(
        &config,
        format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version 3\n}}\n\
             vrrp_instance vi{vrid} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n  priority {priority}\n  \
             advert_int {advert}\n  virtual_ipaddress {{\n    {vip}/{len}\n  }}\n}}\n",
            name = host.name(),
            vrid = spec.vrid,
            priority = spec.priority,
            advert = spec.advert_ms as f64 / 1000.0,
            vip = spec.vip.into(),
            len = spec.prefix_len,
        ),
    )?;
    let pidfile = |name: &str| dir.join(name).to_string_lossy().into_owned();
    for name in ["keepalived.pid", "vrrp.pid"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    host.spawn(
        "keepalived",
        ProcSpec::new("/usr/sbin/keepalived")
            .args(["--dont-fork", "--log-console", "--vrrp", "--use-file"])
            .arg(&config)
            .args([
                "--pid",
                &pidfile("keepalived.pid"),
                "--vrrp_pid",
                &pidfile("vrrp.pid"),
            ]),
    )
}

/// Whether `host` has `addr` on its `eth0`.
pub fn holds(host: &Host, addr: impl Into<IpAddr>) -> bool {
    let (family, inet) = match addr.into() {
        IpAddr::V4(addr) => ("-4", format!("inet {addr}/")),
        IpAddr::V6(addr) => ("-6", format!("inet6 {addr}/")),
    };
    host.run_stdout(&["ip", family, "addr", "show", "eth0"])
        .is_ok_and(|out| out.contains(&inet))
}

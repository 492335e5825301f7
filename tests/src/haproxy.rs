//! HAProxy 2.6 in TCP mode in a lab host, in front of the PgBouncers: the
//! reference the benchmarks compare vipx with.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::Result;

use crate::{Host, PGBOUNCER_FIRST_PORT, Pid, ProcSpec, VIP_PORT};

/// One HAProxy frontend on `bind`:5432, round robin over the PgBouncers.
#[derive(Clone, Debug)]
pub struct HaproxySpec {
    /// The frontend address (a keepalived VIP needs `ip_nonlocal_bind`).
    pub bind: Ipv4Addr,
    /// The PgBouncers' host.
    pub backend: Ipv4Addr,
    /// How many PgBouncers, from `PGBOUNCER_FIRST_PORT` on.
    pub pgbouncers: u16,
    /// `check inter` of every server.
    pub check_interval: Duration,
    /// `timeout connect`.
    pub connect_timeout: Duration,
}

/// Writes `{tmp}/{host}-haproxy.cfg` and starts HAProxy in the foreground.
pub fn start(host: &Host, spec: &HaproxySpec) -> Result<Pid> {
    let servers: String = (0..spec.pgbouncers)
        .map(|i| {
            format!(
                "    server pgb{i} {}:{} check inter {}ms\n",
                spec.backend,
                PGBOUNCER_FIRST_PORT + i,
                spec.check_interval.as_millis()
            )
        })
        .collect();
    let path = host
        .lab()
        .tmp_dir()
        .join(format!("{}-haproxy.cfg", host.name()));
    std::fs::write(
        &path,
        format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode tcp\n    timeout connect {}ms\n    timeout client 1h\n    timeout server 1h\n\
             frontend pg\n    bind {}:{VIP_PORT}\n    default_backend pgbouncers\n\
             backend pgbouncers\n    balance roundrobin\n{servers}",
            spec.connect_timeout.as_millis(),
            spec.bind,
        ),
    )?;
    host.spawn(
        "haproxy",
        ProcSpec::new("/usr/sbin/haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path),
    )
}

//! A Linux router doing full NAT with nftables in a lab host: the same hop
//! as vipx's nat mode (client -> hop -> PgBouncer, replies back through
//! the hop), done by the kernel's forwarding path and conntrack. The
//! benchmarks put it beside vipx to tell the cost of any software hop on
//! the lab's veths from the cost of vipx's own.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result, bail};

use crate::{Host, PGBOUNCER_FIRST_PORT};

/// One DNAT front on `host`'s address and `port`, round robin (`numgen
/// inc`) over `pgbouncers` PgBouncers on `backend` from
/// `PGBOUNCER_FIRST_PORT` on, with the source rewritten to `host`'s
/// address (masquerade) so that replies come back through it.
pub fn start(host: &Host, port: u16, backend: Ipv4Addr, pgbouncers: u16) -> Result<()> {
    if pgbouncers == 0 {
        bail!("a kernel NAT front needs at least one PgBouncer");
    }
    host.sysctl("net.ipv4.ip_forward", "1")?;
    // The hop forwards out of the interface it received on; a redirect
    // would teach the client to skip it.
    for scope in ["all", "default", host.iface()] {
        host.sysctl(&format!("net.ipv4.conf.{scope}.send_redirects"), "0")?;
    }
    let targets: Vec<String> = (0..pgbouncers)
        .map(|i| format!("{i} : {backend} . {}", PGBOUNCER_FIRST_PORT + i))
        .collect();
    let ruleset = format!(
        "table ip vipx_knat_{port} {{\n\
         \tchain pre {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tip daddr {front} tcp dport {port} dnat ip to numgen inc mod {pgbouncers} map {{ {targets} }}\n\
         \t}}\n\
         \tchain post {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip daddr {backend} masquerade\n\
         \t}}\n\
         }}\n",
        front = host.ipv4(),
        targets = targets.join(", "),
    );
    let path = host
        .lab()
        .tmp_dir()
        .join(format!("{}-knat.nft", host.name()));
    std::fs::write(&path, ruleset).with_context(|| format!("writing {}", path.display()))?;
    let file = path.to_string_lossy();
    host.run(&["nft", "-f", &file])
        .context("loading the kernel NAT ruleset (nft, installed by `cargo xtask setup`)")?;
    Ok(())
}

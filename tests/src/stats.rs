//! Interface counters read inside a namespace (`/proc/thread-self/net/dev`).

use anyhow::{Context, Result};

use crate::netns::in_netns;

/// Counters of one network device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets dropped on send.
    pub tx_dropped: u64,
}

/// Counters of device `dev` in namespace `netns`.
pub fn link_stats(netns: &str, dev: &str) -> Result<LinkStats> {
    let text = in_netns(netns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })?
    .context("reading /proc/thread-self/net/dev")?;
    parse_dev(&text, dev).with_context(|| format!("no device {dev} in {netns}"))
}

fn parse_dev(text: &str, dev: &str) -> Option<LinkStats> {
    text.lines().skip(2).find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name.trim() != dev {
            return None;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        (v.len() >= 16).then(|| LinkStats {
            rx_bytes: v[0],
            rx_packets: v[1],
            rx_dropped: v[3],
            tx_bytes: v[8],
            tx_packets: v[9],
            tx_dropped: v[11],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0:    1234       5    0    1    0     0          0         0     4321       6    0    2    0     0       0          0
";
        let s = parse_dev(text, "eth0").expect("eth0 parsed");
        assert_eq!((s.rx_bytes, s.rx_packets, s.rx_dropped), (1234, 5, 1));
        assert_eq!((s.tx_bytes, s.tx_packets, s.tx_dropped), (4321, 6, 2));
        assert!(parse_dev(text, "eth1").is_none());
    }
}

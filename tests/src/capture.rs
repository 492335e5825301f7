//! What the bridge delivers to a host: tcpdump on the host's bridge port in
//! the hub namespace, outgoing direction only (`-Q out`), with kernel
//! timestamps (`-tt`, microseconds). The port sees every frame the host
//! receives, before XDP on the host's `eth0` can answer it with `XDP_TX`
//! (which tcpdump inside the host would never see).
//!
//! tcpdump runs as a lab process ([`crate::LabCore::stop_process`] ends it
//! by pid; the lab stops it at teardown if a test panics first).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Host, Pid, ProcSpec, walltime::WallTime};

/// How long tcpdump gets to report that it listens.
const LISTEN_LIMIT: Duration = Duration::from_secs(10);
/// The lab's marker at the start of each process's part of a log.
const START_MARKER: &str = "=== vipx-lab: starting";

/// One IPv4 packet tcpdump printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    /// The kernel's timestamp (when the bridge handed the frame to the port).
    pub at: WallTime,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// What a [`PortCapture`] saw.
#[derive(Debug, Clone)]
pub struct CaptureLog {
    /// The host whose port was watched.
    pub host: String,
    pub packets: Vec<Captured>,
    /// tcpdump's "packets dropped by kernel" at exit (`None` if it did not
    /// say).
    pub dropped: Option<u64>,
}

/// A running tcpdump on a host's bridge port.
pub struct PortCapture {
    host: Host,
    pid: Option<Pid>,
    log: std::path::PathBuf,
}

impl PortCapture {
    /// Starts tcpdump on `host`'s bridge port for the frames going to `host`
    /// that match the pcap `filter` (e.g. `"dst host 10.77.0.100 and tcp"`);
    /// returns once tcpdump listens. `label` names the capture (its log is
    /// `hub-tcpdump-{host}-{label}.log`), so that several can watch a port.
    pub fn start(host: &Host, label: &str, filter: &str) -> Result<Self> {
        let lab = host.lab();
        let name = format!("tcpdump-{}-{label}", host.name());
        let spec = ProcSpec::new("tcpdump")
            .args([
                "-n",
                "-l",
                "-tt",
                "--time-stamp-precision=micro",
                "-Q",
                "out",
            ])
            .args(["-i", host.peer_iface()])
            .arg(filter);
        let log = lab.log_path("hub", &name);
        let pid = lab.spawn_in("hub", lab.hub_netns(), &name, &spec)?;
        let capture = Self {
            host: host.clone(),
            pid: Some(pid),
            log,
        };
        let deadline = Instant::now() + LISTEN_LIMIT;
        while !capture.own_part()?.contains("listening on") {
            if !lab.is_running(pid) || Instant::now() >= deadline {
                bail!(
                    "tcpdump on {}'s port did not start listening:\n{}",
                    host.name(),
                    lab.log_tail(pid, 10)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(capture)
    }

    /// Stops tcpdump (SIGTERM: it prints what it has and its counts) and
    /// returns the packets it printed.
    pub fn finish(mut self) -> Result<CaptureLog> {
        let pid = self.pid.take().context("the capture was already stopped")?;
        self.host.lab().stop_process(pid)?;
        let text = self.own_part()?;
        Ok(CaptureLog {
            host: self.host.name().to_owned(),
            packets: text.lines().filter_map(parse_line).collect(),
            dropped: dropped(&text),
        })
    }

    /// This tcpdump's part of its log (an earlier capture of the same port
    /// in this lab wrote above it).
    fn own_part(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.log)
            .with_context(|| format!("reading {}", self.log.display()))?;
        let start = text.rfind(START_MARKER).unwrap_or(0);
        Ok(text[start..].to_owned())
    }
}

impl Drop for PortCapture {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = self.host.lab().stop_process(pid);
        }
    }
}

/// `1795063760.123456 IP 10.77.0.21.40000 > 10.77.0.100.5432: Flags [S], ...`
fn parse_line(line: &str) -> Option<Captured> {
    let mut words = line.split_whitespace();
    let at = WallTime::parse_epoch(words.next()?)?;
    if words.next()? != "IP" {
        return None;
    }
    let src = words.next()?;
    if words.next()? != ">" {
        return None;
    }
    let dst = words.next()?.trim_end_matches(':');
    let addr = |endpoint: &str| -> Option<Ipv4Addr> {
        endpoint
            .parse()
            .ok()
            .or_else(|| endpoint.rsplit_once('.')?.0.parse().ok())
    };
    Some(Captured {
        at,
        src: addr(src)?,
        dst: addr(dst)?,
    })
}

/// `N packets dropped by kernel`.
fn dropped(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.trim().strip_suffix(" packets dropped by kernel"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcpdump_lines() {
        let line = "1795063760.123456 IP 10.77.0.21.40000 > 10.77.0.100.5432: Flags [S], seq 1, win 64240, length 0";
        assert_eq!(
            parse_line(line),
            Some(Captured {
                at: WallTime::parse_epoch("1795063760.123456").expect("stamp"),
                src: Ipv4Addr::new(10, 77, 0, 21),
                dst: Ipv4Addr::new(10, 77, 0, 100),
            })
        );
        assert_eq!(parse_line("listening on n1, link-type EN10MB"), None);
        assert_eq!(
            parse_line("1795063760.123456 ARP, Request who-has 10.77.0.100"),
            None
        );
        let text =
            "12 packets captured\n12 packets received by filter\n3 packets dropped by kernel\n";
        assert_eq!(dropped(text), Some(3));
        assert_eq!(dropped("nothing"), None);
    }
}

//! `config/vipx-agent.service`: systemd accepts it as written, and the agent
//! runs under it: with only the unit's capabilities it loads XDP, takes its
//! VIP and tells systemd READY=1, its groups' states, the watchdog's pings
//! and STOPPING=1, through a `NOTIFY_SOCKET` of the test's own.

mod support;

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use vipx_lab::{Lab, LabOptions, ProcSpec};

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/vipx-agent.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).expect("read config/vipx-agent.service")
}

/// The values of `key=` lines of the unit.
fn unit_values(key: &str) -> Vec<String> {
    unit_text()
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_analyze_verifies_the_unit_without_a_warning() {
    let lab = Lab::new(LabOptions::default()).expect("a temp dir");
    let config = lab.tmp_dir().join("vipx.toml");
    std::fs::write(&config, "[dataplane]\ninterfaces = [\"eth0\"]\n").expect("config");
    // The unit as installed, with the binary and the config where this
    // build has them (verify checks that the commands exist).
    let unit = unit_text()
        .replace(
            "/usr/sbin/vipx-agent",
            &support::agent_bin().display().to_string(),
        )
        .replace("/etc/vipx/vipx.toml", &config.display().to_string());
    let path = lab.tmp_dir().join("vipx-agent.service");
    std::fs::write(&path, unit).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze (Debian's systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Unknown keys and bad values are warnings with exit status 0.
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
    assert_eq!(unit_values("Type"), ["notify"], "Type=notify");
    assert_eq!(unit_values("Restart"), ["always"]);
    assert!(
        unit_values("ExecReload")
            .first()
            .is_some_and(|r| r.contains("-HUP")),
        "ExecReload sends SIGHUP"
    );
}

/// `setpriv --bounding-set` for the unit's `CapabilityBoundingSet`: root
/// with only those capabilities, as systemd starts it.
fn bounding_set() -> (String, Vec<String>) {
    let caps: Vec<String> = unit_values("CapabilityBoundingSet")
        .first()
        .expect("the unit sets CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    assert!(
        !caps.is_empty() && !caps.iter().any(|c| c == "sys_admin"),
        "{caps:?}"
    );
    let arg = format!(
        "--bounding-set=-all,{}",
        caps.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    (arg, caps)
}

/// The datagrams the agent sent to `socket` until one contains `until`
/// (bounded by `limit`).
fn notifications(
    socket: &UnixDatagram,
    until: &str,
    limit: Duration,
    seen: &mut Vec<String>,
) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = text.lines().any(|l| l == until);
            seen.push(text);
            if found {
                return true;
            }
        }
    }
    false
}

/// The capability names of a `/proc/PID/status` mask (`CapEff:`), by
/// asking capsh to decode it.
fn effective_caps(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff")
        .trim()
        .to_owned();
    let out = Command::new("capsh")
        .arg(format!("--decode={mask}"))
        .output()
        .expect("capsh --decode");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn under_the_units_capabilities_the_agent_says_ready_status_watchdog_and_stopping() {
    let lab = Lab::new(LabOptions::default()).expect("create lab");
    let node = lab.add_host("node", &lab.v4(11)).expect("add node");
    let vip = lab.v4(100);
    let config = lab.tmp_dir().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"{}\"\nstate_file = \"{}\"\n[dataplane]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\n\
             [api]\nlisten = \"0.0.0.0:9469\"\n\
             [[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"{vip}\"]\n\
             election = \"static\"\nstate = \"master\"\n",
            lab.id(),
            lab.tmp_dir().join("state.json").display(),
            // The lab's own bpffs (systemd mounts /sys/fs/bpf on a host;
            // mounting one takes CAP_SYS_ADMIN, which the unit does not
            // give).
            lab.pin_dir("node").expect("the lab's bpffs").display()
        ),
    )
    .expect("write config");
    let socket_path = lab.tmp_dir().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let (bounding, caps) = bounding_set();
    let agent = node
        .spawn(
            "agent",
            // systemd sets WATCHDOG_PID to the service's pid: the shell's
            // own, which setpriv and then the agent keep (exec).
            ProcSpec::new("/bin/sh")
                .arg("-c")
                .arg("WATCHDOG_PID=$$ exec setpriv \"$@\"")
                .arg("sh")
                .args([bounding.as_str(), "--no-new-privs", "--"])
                .arg(support::agent_bin())
                .arg("--config")
                .arg(&config)
                .env("NOTIFY_SOCKET", &socket_path)
                .env("WATCHDOG_USEC", "2000000")
                .env("RUST_LOG", "info"),
        )
        .expect("start vipx-agent under setpriv");
    let mut seen = Vec::new();
    assert!(
        notifications(&socket, "READY=1", Duration::from_secs(30), &mut seen),
        "no READY=1 within 30 s ({seen:?}); its log:\n{}",
        lab.log_tail(agent, 40)
    );
    let ready = seen.last().expect("the READY datagram");
    assert!(
        ready.lines().any(|l| l == "STATUS=group pg MASTER"),
        "READY comes with the groups' states: {ready:?}"
    );
    let effective = effective_caps(agent);
    for cap in &caps {
        assert!(
            effective.contains(&format!("cap_{cap}")),
            "{cap} in {effective}"
        );
    }
    assert!(
        !effective.contains("cap_sys_admin") && !effective.contains("cap_dac_override"),
        "nothing beyond the unit's set: {effective}"
    );
    assert!(
        notifications(&socket, "WATCHDOG=1", Duration::from_secs(5), &mut seen),
        "the watchdog is pinged (WatchdogSec 2 s): {seen:?}"
    );
    // The VIP is really there: the agent did its job with these caps.
    let addrs = node
        .run_stdout(&["ip", "-4", "addr", "show", "eth0"])
        .expect("ip addr");
    let bare = vip.split('/').next().unwrap_or_default();
    assert!(addrs.contains(bare), "the VIP is on eth0:\n{addrs}");

    lab.kill(agent, vipx_lab::Signal::SIGTERM).expect("SIGTERM");
    assert!(
        notifications(&socket, "STOPPING=1", Duration::from_secs(10), &mut seen),
        "STOPPING=1 at SIGTERM: {seen:?}"
    );
    let status = lab
        .wait_exit(agent, Duration::from_secs(20))
        .expect("wait for the agent")
        .expect("the agent exits within 20 s");
    assert_eq!(
        status.code(),
        Some(0),
        "clean exit; log:\n{}",
        lab.log_tail(agent, 30)
    );
}

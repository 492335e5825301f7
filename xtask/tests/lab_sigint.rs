//! `cargo xtask lab` comes up, prints how to reach it, and on Ctrl-C
//! (SIGINT) leaves no namespace and no process of its own behind.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

const READY_LINE: &str = "Press Ctrl-C to stop the lab.";
const UP_TIMEOUT: Duration = Duration::from_secs(180);
const DOWN_TIMEOUT: Duration = Duration::from_secs(90);

/// Kills the lab process if the test fails half-way (its own Drop guards
/// then do not run, so the sweep below removes what it made).
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = vipx_lab::sweep_stale();
        }
    }
}

/// A client of the test's own, in a process group of its own (a shell
/// pipeline), ended with the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn lab_comes_up_and_ctrl_c_leaves_nothing_behind() {
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["lab", "--nodes", "2", "--agent-bin"])
        .arg(vipx_lab::agent_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xtask lab");
    let mut lab = Reaper(child);
    let pid = lab.0.id();
    let stdout = lab.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.expect("read lab output")).is_err() {
                break;
            }
        }
    });

    let mut printed = Vec::new();
    let deadline = Instant::now() + UP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == READY_LINE => break,
            Ok(line) => printed.push(line),
            Err(err) => panic!(
                "the lab did not come up within {UP_TIMEOUT:?} ({err}); it printed:\n{}",
                printed.join("\n")
            ),
        }
    }
    let text = printed.join("\n");
    for expected in ["/metrics", "ip netns exec", "psql -h", " status --api"] {
        assert!(
            text.contains(expected),
            "the lab did not print {expected:?}:\n{text}"
        );
    }

    // The printed psql command reaches PostgreSQL through the VIP.
    let psql = text
        .lines()
        .find(|line| line.contains("# through the VIP"))
        .and_then(|line| line.trim().strip_prefix("sudo "))
        .and_then(|line| line.split(" #").next())
        .expect("the lab prints a psql command through the VIP");
    let mut argv: Vec<&str> = psql.split_whitespace().collect();
    argv.extend(["-X", "-A", "-t", "-c", "SELECT 'via the VIP'"]);
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run the printed psql command");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "via the VIP",
        "psql through the VIP failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The printed open session: one psql connection running a query every
    // 0.1 s, its output read as it comes.
    let session_line = text
        .lines()
        .find(|line| line.contains("# one open session"))
        .and_then(|line| line.trim().strip_prefix("sudo "))
        .and_then(|line| line.split(" #").next())
        .expect("the lab prints an open psql session");
    assert!(
        text.contains("kept across the failover"),
        "the lab replicates flows by default:\n{text}"
    );
    let mut session = KillOnDrop(
        Command::new("sh")
            .args(["-c", &format!("exec {session_line}")])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start the open session"),
    );
    let (answers, answered) = mpsc::channel();
    let out = session.0.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if !line.trim().is_empty() && answers.send(line).is_err() {
                break;
            }
        }
    });
    let count_for = |rx: &mpsc::Receiver<String>, window: Duration| {
        let end = Instant::now() + window;
        let mut n = 0;
        while let Ok(_line) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            n += 1;
        }
        n
    };
    let before = count_for(&answered, Duration::from_secs(2));
    assert!(
        before >= 5,
        "the open session answers ({before} answers in 2 s)"
    );

    // The printed failover: kill -9 the MASTER's agent; the client keeps
    // working (the open session goes on, new sessions through the VIP
    // answer from the new master) and the other node's timeline shows the
    // takeover.
    let kill = text
        .lines()
        .find(|line| line.contains("the MASTER now"))
        .and_then(|line| line.trim().strip_prefix("sudo kill -9 "))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|pid| pid.parse::<i32>().ok())
        .expect("the lab prints how to kill the MASTER's agent");
    nix::sys::signal::kill(Pid::from_raw(kill), Signal::SIGKILL).expect("kill -9 the MASTER");
    let after = count_for(&answered, Duration::from_secs(3));
    let ended = session.0.try_wait().expect("the session's status");
    let mut errors = String::new();
    if ended.is_some()
        && let Some(mut err) = session.0.stderr.take()
    {
        let _ = std::io::Read::read_to_string(&mut err, &mut errors);
    }
    println!(
        "the open session answered {before} times in the 2 s before the kill, {after} in the 3 s after"
    );
    assert!(
        ended.is_none() && after >= 10,
        "the open session keeps working across the kill of the MASTER's agent ({after} answers in 3 s, {ended:?}): {errors}"
    );
    drop(session);
    let answered = (0..50).any(|_| {
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .env("PGCONNECT_TIMEOUT", "2")
            .output()
            .expect("run the printed psql command");
        let ok = String::from_utf8_lossy(&out.stdout).trim() == "via the VIP";
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(answered, "psql through the VIP answers after the failover");
    let events = text
        .lines()
        .find(|line| line.contains("the takeover, its reason"))
        .and_then(|line| line.trim().strip_prefix("sudo "))
        .and_then(|line| line.split(" #").next())
        .expect("the lab prints the events command");
    let events: Vec<&str> = events.split_whitespace().collect();
    let out = Command::new(events[0])
        .args(&events[1..])
        .output()
        .expect("run the printed events command");
    let timeline = String::from_utf8_lossy(&out.stdout);
    assert!(
        timeline.contains("MASTER") && timeline.contains("heartbeats from master"),
        "the other node took over on the heartbeat:\n{timeline}"
    );

    let namespaces = vipx_lab::leftovers_of(pid);
    assert!(
        namespaces.len() >= 5,
        "expected hub, 2 nodes, client and backend namespaces, found {namespaces:?}"
    );
    let inodes: Vec<u64> = namespaces
        .iter()
        .map(|ns| vipx_lab::netns_inode(ns).expect("namespace inode"))
        .collect();
    let processes = vipx_lab::processes_in_netns_inodes(&inodes);
    assert!(
        processes.len() >= 5,
        "expected the surviving agent, PostgreSQL and 3 PgBouncers in the lab, found pids {processes:?}"
    );

    nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGINT).expect("send SIGINT");
    let deadline = Instant::now() + DOWN_TIMEOUT;
    let status = loop {
        if let Some(status) = lab.0.try_wait().expect("wait for the lab") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the lab did not exit within {DOWN_TIMEOUT:?} of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "the lab exited with {status} after SIGINT"
    );
    assert_eq!(
        vipx_lab::leftovers_of(pid),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let still: Vec<_> = processes
        .iter()
        .filter(|&&p| vipx_lab::pid_alive(p))
        .collect();
    assert!(still.is_empty(), "lab processes still alive: {still:?}");
    assert!(
        vipx_lab::processes_in_netns_inodes(&inodes).is_empty(),
        "processes still in the lab's namespaces"
    );
}

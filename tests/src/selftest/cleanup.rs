//! Nothing outlives a lab: not on drop, not on panic, not after a dead process.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::{
    Lab, LabOptions, Signal, leftovers_of, list_netns, netns, netns_inode,
    processes_in_netns_inodes, sweep_stale,
};

/// Inodes of namespaces that exist right now: a deleted namespace's inode may
/// be handed to a namespace a parallel test creates.
fn live_inodes() -> Vec<u64> {
    list_netns()
        .iter()
        .filter_map(|ns| netns_inode(ns).ok())
        .collect()
}

#[test]
fn panicking_lab_leaves_nothing() {
    let seen: Mutex<Option<(u32, Vec<String>, Vec<u64>)>> = Mutex::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new(LabOptions::default()).expect("create lab");
        let h = lab.add_host("p1", &lab.v4(31)).expect("add p1");
        lab.add_host("p2", &lab.v4(32)).expect("add p2");
        let pid = h.spawn("sleep", ["sleep", "600"]).expect("spawn sleep");
        // A second process that ignores SIGTERM and is not in the table.
        h.run(&[
            "sh",
            "-c",
            "trap '' TERM; setsid sleep 600 >/dev/null 2>&1 < /dev/null &",
        ])
        .expect("start a stray process");
        let inodes = lab.netns_inodes().expect("inodes");
        assert_eq!(processes_in_netns_inodes(&inodes).len(), 2);
        *seen.lock().expect("lock") = Some((pid, lab.namespaces(), inodes));
        panic!("boom (expected by the test)");
    }));
    assert!(result.is_err(), "the closure must panic");
    let (pid, names, inodes) = seen.lock().expect("lock").take().expect("recorded");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "sleep {pid} survived"
    );
    for ns in &names {
        assert!(!netns::netns_exists(ns), "namespace {ns} survived");
    }
    let live = live_inodes();
    let dead: Vec<u64> = inodes.into_iter().filter(|i| !live.contains(i)).collect();
    assert!(
        processes_in_netns_inodes(&dead).is_empty(),
        "processes outlived the lab"
    );
}

#[test]
fn kill_and_wait_exit() {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let h = lab.add_host("k1", &lab.v4(41)).expect("add k1");
    let pid = h
        .spawn("echoer", ["sh", "-c", "echo started; exec sleep 600"])
        .expect("spawn");
    assert!(lab.is_running(pid));
    assert_eq!(
        lab.wait_exit(pid, Duration::from_millis(100))
            .expect("wait"),
        None
    );
    lab.kill(pid, Signal::SIGKILL).expect("kill -9");
    let status = lab
        .wait_exit(pid, Duration::from_secs(5))
        .expect("wait")
        .expect("exited after SIGKILL");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    assert!(
        lab.kill(pid, Signal::SIGTERM).is_err(),
        "signalled a reaped pid"
    );
    assert!(
        lab.log_tail(pid, 5).contains("started"),
        "{}",
        lab.log_tail(pid, 5)
    );
    assert!(h.log_path("echoer").exists());
    // A process that ignores its stop signal is killed after the grace period.
    let stubborn = h
        .spawn(
            "stubborn",
            ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
        )
        .expect("spawn stubborn");
    std::thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    lab.stop_process(stubborn).expect("stop stubborn");
    assert!(t.elapsed() < Duration::from_secs(8));
}

#[test]
fn sweep_removes_namespaces_of_dead_processes() {
    // A pid that certainly belongs to no process: a child we reaped.
    let mut child = Command::new("true").spawn().expect("spawn true");
    child.wait().expect("wait true");
    let dead = child.id();
    let ns = format!("vipx-{dead}-0-sw");
    netns::add(&ns).expect("add stale namespace");
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &ns, "sleep", "600"])
        .spawn()
        .expect("spawn sleeper");
    let inode = netns_inode(&ns).expect("inode");
    for _ in 0..100 {
        if !processes_in_netns_inodes(&[inode]).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(leftovers_of(dead), vec![ns.clone()]);
    let removed = sweep_stale().expect("sweep");
    assert!(removed.contains(&ns), "{removed:?}");
    assert!(leftovers_of(dead).is_empty());
    assert!(!netns::netns_exists(&ns));
    let status = sleeper.wait().expect("reap sleeper");
    assert!(!status.success());
    // Our own labs are never swept.
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    sweep_stale().expect("sweep again");
    assert!(netns::netns_exists(lab.hub_netns()));
}

//! Nothing outlives a lab: not on drop, not on panic, not after a dead
//! process (namespaces, processes, temp dirs, bpffs mounts and pins).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::{
    Lab, LabOptions, Pid, Signal, leftovers_of, list_netns, netns, netns_inode, process,
    processes_in_netns_inodes, sweep, sweep_stale, sweep_stale_dirs,
};

/// Inodes of namespaces that exist right now: a deleted namespace's inode may
/// be handed to a namespace a parallel test creates.
fn live_inodes() -> Vec<u64> {
    list_netns()
        .iter()
        .filter_map(|ns| netns_inode(ns).ok())
        .collect()
}

/// What a panicking lab leaves for the checks: a pid, namespace names, inodes.
type Seen = (Pid, Vec<String>, Vec<u64>);

#[test]
fn panicking_lab_leaves_nothing() {
    let seen: Mutex<Option<Seen>> = Mutex::new(None);
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
    // Set the stale namespace up while no sweep (of any process) can run.
    let lock = sweep::lock_sweeps().expect("sweep lock");
    netns::add(&ns).expect("add stale namespace");
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &ns, "sleep", "600"])
        .spawn()
        .expect("spawn sleeper");
    let inode = netns_inode(&ns).expect("inode");
    let inside = (0..250).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        processes_in_netns_inodes(&[inode]).contains(&sleeper.id())
    });
    assert!(inside, "the sleeper did not enter {ns}");
    assert_eq!(leftovers_of(dead), vec![ns.clone()]);
    drop(lock);

    let removed = sweep_stale().expect("sweep");
    // A test process running beside this one may have swept it first.
    assert!(
        removed.contains(&ns) || !netns::netns_exists(&ns),
        "{removed:?}"
    );
    assert!(leftovers_of(dead).is_empty());
    assert!(!netns::netns_exists(&ns));
    let status = process::wait_child(&mut sleeper, Duration::from_secs(10)).expect("wait");
    if status.is_none() {
        process::kill_group_and_reap(&mut sleeper);
    }
    assert!(
        status.is_some_and(|s| !s.success()),
        "sleeper survived: {status:?}"
    );
    // Temporary directories of dead labs go too; our own labs never do.
    let stale_dir = std::env::temp_dir().join(format!("vipx-{dead}-0-Xy12ab"));
    std::fs::create_dir_all(stale_dir.join("sub")).expect("create stale dir");
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    sweep_stale().expect("sweep again");
    let dirs = sweep_stale_dirs().expect("sweep dirs");
    if std::env::var(crate::KEEP_ENV).is_ok_and(|v| v == "1") {
        std::fs::remove_dir_all(&stale_dir).expect("remove stale dir");
    }
    assert!(!stale_dir.exists(), "{dirs:?}");
    assert!(netns::netns_exists(lab.hub_netns()));
    assert!(lab.tmp_dir().exists());
}

/// Whether `dir` is a mount point in this process's mount namespace.
fn mounted(dir: &std::path::Path) -> bool {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(dir.as_str()))
}

#[test]
fn sweep_unmounts_the_bpffs_of_dead_labs_with_their_pins() {
    let mut child = Command::new("true").spawn().expect("spawn true");
    child.wait().expect("wait true");
    let dead = child.id();
    // Set the stale bpffs up while no sweep (of any process) can run: a
    // killed lab's, with a map pinned in a node's directory.
    let lock = sweep::lock_sweeps().expect("sweep lock");
    let stale = crate::pins::mount_for(&format!("vipx-{dead}-0")).expect("mount a bpffs");
    let node = stale.join("n1");
    std::fs::create_dir(&node).expect("a node's pin directory");
    let out = Command::new("bpftool")
        .args(["map", "create"])
        .arg(node.join("VIPX_GROUPS"))
        .args(["type", "array", "key", "4", "value", "16", "entries", "8"])
        .args(["name", "VIPX_GROUPS"])
        .output()
        .expect("run bpftool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(crate::pins_under(&stale), vec![node.join("VIPX_GROUPS")]);
    drop(lock);

    // A live lab's bpffs stays.
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let live = lab.pin_dir("n1").expect("the live lab's bpffs");
    let live_root = live.parent().expect("the lab's mount").to_owned();
    let removed = crate::sweep_stale_pins().expect("sweep pins");
    // A test process running beside this one may have swept it first.
    assert!(removed.contains(&stale) || !stale.exists(), "{removed:?}");
    assert!(!stale.exists(), "the stale mount point is gone");
    assert!(!mounted(&stale), "the stale bpffs is unmounted");
    assert!(mounted(&live_root), "the live lab keeps its bpffs");
    drop(lab);
    assert!(
        !mounted(&live_root) && !live_root.exists(),
        "teardown unmounts it"
    );
}

#[test]
fn spawned_processes_do_not_inherit_a_blocked_stop_signal() {
    // `cargo xtask lab` blocks SIGINT/SIGTERM to wait for them; what the lab
    // starts must still be stoppable.
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let h = lab.add_host("m1", &lab.v4(42)).expect("add m1");
    let pid = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut blocked = nix::sys::signal::SigSet::empty();
                blocked.add(Signal::SIGTERM);
                blocked.add(Signal::SIGINT);
                blocked.thread_block().expect("block signals");
                h.spawn("sleeper", ["sleep", "600"]).expect("spawn")
            })
            .join()
            .expect("spawning thread")
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigBlk:"))
        .expect("SigBlk line")
        .trim();
    assert_eq!(
        u64::from_str_radix(mask, 16).expect("hex mask"),
        0,
        "child inherited a blocked mask"
    );
    use std::os::unix::process::ExitStatusExt;
    let exit = lab.stop_process(pid).expect("stop");
    assert_eq!(exit.signal(), Some(15), "stopped by SIGTERM, not SIGKILL");
}

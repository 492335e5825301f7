//! The fence command with real processes: what it is given, its retries,
//! its timeout (the process group killed), HA debug mode, and what the
//! timeline and `/metrics` say.

use std::path::Path;

use super::*;

const NODE: &str = "n2";

fn address() -> IpAddr {
    "10.0.0.2".parse().expect("address")
}

fn fence(argv: &[&str], timeout: Duration, retries: u32) -> FenceCommand {
    FenceCommand {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        timeout,
        retries,
    }
}

/// `sh -c SCRIPT fence ARGS...`: the script sees ARGS as $1...
fn script<'a>(script: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec!["sh", "-c", script, "fence"];
    argv.extend_from_slice(args);
    argv
}

async fn run(command: &FenceCommand, ha_debug: bool) -> (FenceOutcome, Metrics, EventLog) {
    let metrics = Metrics::new("n1").expect("metrics");
    let events = EventLog::default();
    let outcome = command
        .run(NODE, address(), ha_debug, &metrics, &events)
        .await;
    (outcome, metrics, events)
}

fn has_line(metrics: &Metrics, line: &str) -> bool {
    let text = metrics.render();
    text.lines().any(|l| l == line)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

#[test]
fn node_and_address_are_substituted_in_every_argument() {
    let command = fence(
        &["/usr/bin/x", "--host={node}", "{address}:{node}", "plain"],
        Duration::from_secs(1),
        0,
    );
    assert_eq!(
        command.argv_for(NODE, address()),
        ["/usr/bin/x", "--host=n2", "10.0.0.2:n2", "plain"]
    );
}

#[tokio::test]
async fn the_command_gets_the_node_and_its_address_and_exit_0_is_fenced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("fenced");
    let argv = script(
        r#"printf '%s %s\n' "$1" "$2" > "$3""#,
        &["{node}", "{address}", path_str(&out)],
    );
    let (outcome, metrics, events) = run(&fence(&argv, Duration::from_secs(5), 0), false).await;
    assert_eq!(outcome, FenceOutcome::Fenced { attempts: 1 });
    assert_eq!(
        std::fs::read_to_string(&out).expect("the command wrote"),
        "n2 10.0.0.2\n"
    );
    let timeline = events.since(0);
    assert_eq!(timeline.len(), 1, "{timeline:?}");
    assert!(timeline[0].is(EventKind::Fence, "fenced"), "{timeline:?}");
    assert_eq!(timeline[0].subject, "n2");
    for line in [
        r#"vipx_fence_runs_total{node="n2",result="fenced"} 1"#,
        r#"vipx_fence_runs_total{node="n2",result="failed"} 0"#,
        r#"vipx_fence_last_success{node="n2"} 1"#,
    ] {
        assert!(has_line(&metrics, line), "{line}: {}", metrics.render());
    }
}

#[tokio::test]
async fn a_failing_command_is_retried_until_it_succeeds_or_its_retries_are_spent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let count = dir.path().join("count");
    // Fails on its first two runs, succeeds from the third.
    let body = r#"n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"; echo "run $n" >&2; [ $n -ge 3 ]"#;
    let argv = script(body, &[path_str(&count)]);
    let (outcome, _, _) = run(&fence(&argv, Duration::from_secs(5), 2), false).await;
    assert_eq!(outcome, FenceOutcome::Fenced { attempts: 3 });

    std::fs::remove_file(&count).expect("reset the count");
    let (outcome, metrics, events) = run(&fence(&argv, Duration::from_secs(5), 1), false).await;
    assert_eq!(
        outcome,
        FenceOutcome::Failed {
            attempts: 2,
            error: "exit status 1: run 2".to_owned()
        }
    );
    assert!(events.since(0)[0].is(EventKind::Fence, "failed"));
    for line in [
        r#"vipx_fence_runs_total{node="n2",result="failed"} 1"#,
        r#"vipx_fence_last_success{node="n2"} 0"#,
    ] {
        assert!(has_line(&metrics, line), "{line}: {}", metrics.render());
    }
}

#[tokio::test]
async fn a_failed_attempt_says_what_the_command_wrote() {
    let argv = script("echo out; echo err1 >&2; echo err2 >&2; exit 4", &[]);
    let (outcome, _, _) = run(&fence(&argv, Duration::from_secs(5), 0), false).await;
    assert_eq!(
        outcome,
        FenceOutcome::Failed {
            attempts: 1,
            error: "exit status 4: err1 / err2; stdout: out".to_owned()
        }
    );
    let missing = fence(&["/nonexistent/fence"], Duration::from_secs(5), 0);
    let (outcome, _, _) = run(&missing, false).await;
    assert_eq!(
        outcome,
        FenceOutcome::Failed {
            attempts: 1,
            error: "/nonexistent/fence: No such file or directory (os error 2)".to_owned()
        }
    );
}

/// Whether process `pid` is gone (or a zombie: dead, not yet reaped by
/// whoever inherited it).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn an_attempt_past_its_timeout_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (shell, sleeper) = (dir.path().join("shell"), dir.path().join("sleeper"));
    let body = r#"echo $$ > "$1"; sleep 30 & echo $! > "$2"; echo started; wait"#;
    let argv = script(body, &[path_str(&shell), path_str(&sleeper)]);
    let started = Instant::now();
    let (outcome, _, _) = run(&fence(&argv, Duration::from_millis(500), 0), false).await;
    assert_eq!(
        outcome,
        FenceOutcome::Failed {
            attempts: 1,
            error: "killed after 500ms; stdout: started".to_owned()
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run did not wait for the 30 s sleep"
    );
    for file in [&shell, &sleeper] {
        let pid = std::fs::read_to_string(file).expect("the script wrote its pids");
        let pid = pid.trim();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(pid), "process {pid} ({}) was killed", file.display());
    }
}

#[tokio::test]
async fn in_ha_debug_mode_nothing_runs_and_the_timeline_says_what_would() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("ran");
    let argv = script(r#"touch "$1""#, &[path_str(&out)]);
    let (outcome, metrics, events) = run(&fence(&argv, Duration::from_secs(5), 3), true).await;
    assert_eq!(outcome, FenceOutcome::Skipped);
    assert!(!out.exists(), "the command did not run");
    let timeline = events.since(0);
    assert!(
        timeline[0].is(EventKind::Fence, "would fence"),
        "{timeline:?}"
    );
    assert!(timeline[0].reason.contains("touch"), "{timeline:?}");
    assert!(
        has_line(
            &metrics,
            r#"vipx_fence_runs_total{node="n2",result="skipped"} 1"#
        ),
        "{}",
        metrics.render()
    );
}

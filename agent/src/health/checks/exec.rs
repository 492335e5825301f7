//! `exec`: a command; exit status 0 is up.
//!
//! The command runs in a process group of its own, so that a probe that
//! times out kills it and whatever it started (`sh -c 'curl ...'`).

use std::net::SocketAddr;

use super::{ExecCheck, Stage, Verdict, io_reason};
use crate::command::{Group, Tails, status_reason};

/// Runs `check.command` with the target in its environment.
pub(super) async fn probe(check: &ExecCheck, target: SocketAddr, stage: &Stage) -> Verdict {
    let Some((program, args)) = check.command.split_first() else {
        return Verdict::down("no command");
    };
    stage.set("spawn");
    let env = [
        ("VIPX_BACKEND_ADDR", target.ip().to_string()),
        ("VIPX_BACKEND_PORT", target.port().to_string()),
    ];
    let mut child = match Group::spawn(program, args, &env, false) {
        Ok(child) => child,
        Err(e) => return Verdict::down(format!("{program}: {}", io_reason(&e))),
    };
    stage.set("exit status");
    let mut tails = Tails::default();
    match child.wait(&mut tails).await {
        Ok(status) if status.success() => Verdict::Up,
        Ok(status) => Verdict::down(status_reason(status, &tails.stderr)),
        Err(e) => Verdict::down(format!("wait: {}", io_reason(&e))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::{Check, probe};
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn exec(argv: &[&str]) -> Check {
        Check::Exec(ExecCheck {
            command: argv.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    fn target() -> SocketAddr {
        "127.0.0.1:6432".parse().expect("address")
    }

    #[tokio::test]
    async fn exit_0_is_up() {
        assert_eq!(
            probe(&exec(&["true"]), target(), TIMEOUT).await,
            Verdict::Up
        );
    }

    #[tokio::test]
    async fn another_status_is_down_with_stderr() {
        let check = exec(&["sh", "-c", "echo noise >&2; echo bad >&2; exit 3"]);
        assert_eq!(
            probe(&check, target(), TIMEOUT).await,
            Verdict::down("exit status 3: noise / bad")
        );
        let check = exec(&["sh", "-c", "kill -9 $$"]);
        let verdict = probe(&check, target(), TIMEOUT).await;
        assert_eq!(verdict, Verdict::down("signal 9 (SIGKILL)"));
    }

    #[tokio::test]
    async fn the_command_sees_the_target() {
        let script = r#"test "$VIPX_BACKEND_ADDR:$VIPX_BACKEND_PORT" = 127.0.0.1:6432"#;
        assert_eq!(
            probe(&exec(&["sh", "-c", script]), target(), TIMEOUT).await,
            Verdict::Up
        );
    }

    #[tokio::test]
    async fn a_missing_program_or_none_is_down() {
        let verdict = probe(&exec(&["/nonexistent/check"]), target(), TIMEOUT).await;
        assert_eq!(
            verdict,
            Verdict::down("/nonexistent/check: No such file or directory")
        );
        assert_eq!(
            probe(&exec(&[]), target(), TIMEOUT).await,
            Verdict::down("no command")
        );
    }

    #[tokio::test]
    async fn a_background_process_holding_stderr_does_not_hold_the_probe() {
        let start = Instant::now();
        let check = exec(&["sh", "-c", "sleep 3 & echo done >&2; exit 1"]);
        let verdict = probe(&check, target(), TIMEOUT).await;
        assert_eq!(verdict, Verdict::down("exit status 1: done"));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_command_and_its_children() {
        let start = Instant::now();
        let verdict = probe(
            &exec(&["sleep", "10"]),
            target(),
            Duration::from_millis(200),
        )
        .await;
        assert!(
            start.elapsed() < Duration::from_millis(700),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            verdict,
            Verdict::down("timed out after 200ms (exit status)")
        );

        let dir = tempfile::tempdir().expect("temporary directory");
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 10 & echo $! > {}; wait", pid_file.display());
        let start = Instant::now();
        let timeout = Duration::from_millis(200);
        let verdict = probe(&exec(&["sh", "-c", &script]), target(), timeout).await;
        assert!(
            start.elapsed() < timeout + Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            verdict,
            Verdict::down("timed out after 200ms (exit status)")
        );

        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("the script wrote the pid of its sleep")
            .trim()
            .parse()
            .expect("a pid");
        // SIGKILL is asynchronous: give the kernel a moment (bounded).
        let mut alive = true;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for its reaper (init, or us).
            alive = !stat.is_empty() && !stat.contains(") Z ");
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive, "the command's sleep {pid} survived the timeout");
    }
}

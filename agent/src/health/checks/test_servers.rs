//! Servers for the checkers' tests, all on 127.0.0.1: a scripted TCP
//! server and, where the binaries are installed, a real PostgreSQL and a
//! real PgBouncer.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown, geteuid};
use tokio::net::{TcpListener, TcpStream};

/// Listens on 127.0.0.1 (port 0) and hands each of the first `connections`
/// connections, numbered from 0, to `handler` in a task of its own.
pub(super) async fn serve<F, Fut>(connections: usize, handler: F) -> SocketAddr
where
    F: Fn(usize, TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        for n in 0..connections {
            let (stream, _) = listener.accept().await.expect("accept");
            tokio::spawn(handler(n, stream));
        }
    });
    addr
}

/// A throwaway PostgreSQL cluster (initdb in a temporary directory) on
/// 127.0.0.1 and a free port, user `postgres` with a SCRAM-SHA-256
/// password; stopped (SIGQUIT, then SIGKILL) and deleted on drop.
pub(super) struct PgServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl PgServer {
    /// Starts one with `password`, or says why not (no PostgreSQL installed,
    /// no `postgres` user to run it as root) and returns `None`. It may not
    /// accept connections yet: the caller probes until it does.
    pub fn start(password: &str) -> Option<Self> {
        let Some(bin) = pg_bin_dir() else {
            eprintln!("skipped: no /usr/lib/postgresql/*/bin/initdb");
            return None;
        };
        let owner = owner()?;
        let dir = tempfile::tempdir().expect("temporary directory");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, password).expect("write password file");
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), pwfile.as_path()] {
                chown(path, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let command = |program: &str| {
            let mut cmd = Command::new(bin.join(program));
            cmd.current_dir(dir.path())
                .env("LC_ALL", "C")
                .stdin(Stdio::null());
            if let Some((uid, gid)) = owner {
                cmd.uid(uid.as_raw()).gid(gid.as_raw());
            }
            cmd
        };
        let data = dir.path().join("data");
        let initdb = command("initdb")
            .args([
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .args(["--locale=C", "-D"])
            .arg(&data)
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );

        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        let child = command("postgres")
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "fsync=off", "-c", "max_connections=20"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        Some(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        })
    }

    /// The server's log so far (for a failed assertion's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the postmaster takes its backends along.
        stop(&mut self.child, Signal::SIGQUIT);
    }
}

/// A PgBouncer on 127.0.0.1 and a free port whose database `app` is on
/// `server`, admin user `admin` with a password (SCRAM-SHA-256); stopped
/// and deleted on drop.
pub(super) struct PgBouncer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts one with `password`, or says why not and returns `None`.
    pub fn start(password: &str, server: SocketAddr) -> Option<Self> {
        let program = Path::new("/usr/sbin/pgbouncer");
        if !program.exists() {
            eprintln!("skipped: no {}", program.display());
            return None;
        }
        let owner = owner()?;
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let (ini, users) = (
            dir.path().join("pgbouncer.ini"),
            dir.path().join("users.txt"),
        );
        let config = format!(
            "[databases]\napp = host={host} port={server_port} dbname=app\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {users}\nadmin_users = admin\n\
             logfile = {log}\n",
            host = server.ip(),
            server_port = server.port(),
            users = users.display(),
            log = dir.path().join("pgbouncer.log").display(),
        );
        std::fs::write(&ini, config).expect("write pgbouncer.ini");
        std::fs::write(&users, format!("\"admin\" \"{password}\"\n")).expect("write users.txt");
        let mut command = Command::new(program);
        command
            .arg(&ini)
            .current_dir(dir.path())
            .stdin(Stdio::null());
        command.stdout(Stdio::null()).stderr(Stdio::null()); // it logs to its logfile too
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), ini.as_path(), users.as_path()] {
                chown(path, Some(uid), Some(gid)).expect("chown to postgres");
            }
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let child = command.spawn().expect("start pgbouncer");
        Some(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        })
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGINT: PgBouncer's immediate shutdown.
        stop(&mut self.child, Signal::SIGINT);
    }
}

/// Signals `child`, waits (5 s at most), then kills it.
fn stop(child: &mut Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    let _ = kill(pid, signal);
    for _ in 0..50 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whom to run a server as: PostgreSQL and PgBouncer refuse root, so as
/// root the user `postgres` (`Some(None)`: as ourselves; `None`: there is
/// no such user, skip).
fn owner() -> Option<Option<(nix::unistd::Uid, nix::unistd::Gid)>> {
    if !geteuid().is_root() {
        return Some(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Some(Some((user.uid, user.gid))),
        _ => {
            eprintln!("skipped: running as root and there is no user postgres");
            None
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The newest installed PostgreSQL's bin directory (Debian's layout).
fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir(Path::new("/usr/lib/postgresql"))
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

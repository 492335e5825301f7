//! PgBouncer in a lab host, in front of a PostgreSQL server.

use std::fmt::{self, Display, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Signal;
use crate::host::Host;
use crate::postgres::{PG_USER, READY_TIMEOUT, make_user_dir, psql, psql_db};
use crate::process::{Pid, ProcSpec};

/// PgBouncer's pool mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolMode {
    /// A server connection per client session (the default).
    #[default]
    Session,
    /// A server connection per transaction.
    Transaction,
    /// A server connection per statement.
    Statement,
}

impl Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
            Self::Statement => "statement",
        })
    }
}

/// How a [`PgBouncer`] is configured.
#[derive(Debug, Clone)]
pub struct PgBouncerOptions {
    /// `pool_mode`.
    pub pool_mode: PoolMode,
    /// `default_pool_size`.
    pub default_pool_size: u32,
    /// `max_client_conn`.
    pub max_client_conn: u32,
    /// Further `[pgbouncer]` settings, written last.
    pub settings: Vec<(String, String)>,
}

impl Default for PgBouncerOptions {
    fn default() -> Self {
        Self {
            pool_mode: PoolMode::Session,
            default_pool_size: 20,
            max_client_conn: 1000,
            settings: Vec::new(),
        }
    }
}

/// A PgBouncer running in the foreground in a lab host as user `postgres`,
/// with trust authentication; `postgres` is its admin and stats user.
#[derive(Debug, Clone)]
pub struct PgBouncer {
    host: Host,
    pid: Pid,
    listen_addr: String,
    port: u16,
    dir: PathBuf,
}

impl PgBouncer {
    /// Writes `{tmp}/{host}-pgbouncer-{port}/pgbouncer.ini` (database
    /// `postgres` and a `*` fallback pointing at `pg_addr:pg_port`), starts
    /// `pgbouncer` on `listen_addr:listen_port` in `host`, and waits until a
    /// `SELECT 1` through it works (at most [`READY_TIMEOUT`]).
    pub fn start(
        host: &Host,
        listen_addr: &str,
        listen_port: u16,
        pg_addr: impl Display,
        pg_port: u16,
        opts: &PgBouncerOptions,
    ) -> Result<Self> {
        let dir = host
            .lab()
            .tmp_dir()
            .join(format!("{}-pgbouncer-{listen_port}", host.name()));
        make_user_dir(&dir)?;
        make_user_dir(&dir.join("sock"))?;
        // A restart on the same port after kill -9: the old pidfile would
        // stop it while the killed process is still a zombie (an old instance
        // that really runs still holds the port, and the start fails there).
        let _ = std::fs::remove_file(dir.join("pgbouncer.pid"));
        let ini = dir.join("pgbouncer.ini");
        let config = render_ini(
            &dir,
            listen_addr,
            listen_port,
            &pg_addr.to_string(),
            pg_port,
            opts,
        );
        std::fs::write(&ini, config).context("writing pgbouncer.ini")?;
        std::fs::write(dir.join("userlist.txt"), format!("\"{PG_USER}\" \"\"\n"))?;
        let spec = ProcSpec::new(binary())
            .arg(&ini)
            .user(PG_USER)
            .current_dir(&dir)
            .stop_signal(stop_signal());
        let pid = host.spawn(&format!("pgbouncer-{listen_port}"), spec)?;
        let bouncer = Self {
            host: host.clone(),
            pid,
            listen_addr: listen_addr.to_owned(),
            port: listen_port,
            dir,
        };
        bouncer.wait_ready()?;
        Ok(bouncer)
    }

    fn wait_ready(&self) -> Result<()> {
        let lab = self.host.lab();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !lab.is_running(self.pid) {
                bail!(
                    "pgbouncer in {} exited; log:\n{}",
                    self.host.name(),
                    lab.log_tail(self.pid, 30)
                );
            }
            match self.psql("SELECT 1") {
                Ok(out) if out == "1" => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                other => bail!(
                    "pgbouncer in {} not ready after {READY_TIMEOUT:?} ({other:?}); log:\n{}",
                    self.host.name(),
                    lab.log_tail(self.pid, 30)
                ),
            }
        }
    }

    /// Its pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The host it runs in.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address clients use: the first `listen_addr`, or the host's IPv4
    /// address when it listens on all of them.
    pub fn addr(&self) -> IpAddr {
        let first = self.listen_addr.split(',').next().unwrap_or("*").trim();
        match first.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => IpAddr::V4(self.host.ipv4()),
        }
    }

    /// Its working directory (ini, auth file, pidfile, logfile, socket dir).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `sql` through it (database `postgres`) from its own host.
    pub fn psql(&self, sql: &str) -> Result<String> {
        psql(&self.host, self.addr(), self.port, sql)
    }

    /// Runs a command on its admin console (database `pgbouncer`), e.g.
    /// `SHOW POOLS`.
    pub fn admin(&self, command: &str) -> Result<String> {
        psql_db(&self.host, self.addr(), self.port, "pgbouncer", command)
    }

    /// Transactions served to database `postgres` so far (`SHOW STATS`;
    /// PgBouncer refreshes the totals every `stats_period`).
    pub fn transactions(&self) -> Result<u64> {
        let stats = self.admin("SHOW STATS")?;
        Ok(stats
            .lines()
            .filter_map(|line| line.strip_prefix("postgres|"))
            .filter_map(|rest| rest.split('|').next()?.parse::<u64>().ok())
            .sum())
    }

    /// Stops it (immediate shutdown, then SIGKILL after the lab's grace period).
    pub fn stop(&self) -> Result<ExitStatus> {
        self.host.lab().stop_process(self.pid)
    }
}

fn render_ini(
    dir: &Path,
    listen_addr: &str,
    listen_port: u16,
    pg_addr: &str,
    pg_port: u16,
    opts: &PgBouncerOptions,
) -> String {
    let d = dir.display();
    let mut ini = format!(
        "[databases]\n\
         postgres = host={pg_addr} port={pg_port} dbname=postgres\n\
         * = host={pg_addr} port={pg_port}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = {listen_addr}\n\
         listen_port = {listen_port}\n\
         unix_socket_dir = {d}/sock\n\
         auth_type = trust\n\
         auth_file = {d}/userlist.txt\n\
         admin_users = {PG_USER}\n\
         stats_users = {PG_USER}\n\
         pool_mode = {}\n\
         default_pool_size = {}\n\
         max_client_conn = {}\n\
         pidfile = {d}/pgbouncer.pid\n\
         logfile = {d}/pgbouncer.log\n\
         ignore_startup_parameters = extra_float_digits,options\n",
        opts.pool_mode, opts.default_pool_size, opts.max_client_conn
    );
    for (name, value) in &opts.settings {
        let _ = writeln!(ini, "{name} = {value}");
    }
    ini
}

fn binary() -> &'static str {
    if Path::new("/usr/sbin/pgbouncer").exists() {
        "/usr/sbin/pgbouncer"
    } else {
        "pgbouncer"
    }
}

/// SIGTERM is an immediate shutdown up to PgBouncer 1.22; from 1.23 on it
/// waits for every client to leave, and SIGQUIT is the immediate one.
fn stop_signal() -> Signal {
    static SIGNAL: OnceLock<Signal> = OnceLock::new();
    *SIGNAL.get_or_init(|| {
        let version = Command::new(binary())
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        match parse_version(&version) {
            Some((major, minor)) if (major, minor) >= (1, 23) => Signal::SIGQUIT,
            _ => Signal::SIGTERM,
        }
    })
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.lines().next()?.strip_prefix("PgBouncer ")?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_and_renders_ini() {
        assert_eq!(
            parse_version("PgBouncer 1.18.0\nlibevent 2.1.12"),
            Some((1, 18))
        );
        assert_eq!(parse_version("PgBouncer 1.23.1"), Some((1, 23)));
        assert_eq!(parse_version("garbage"), None);
        let opts = PgBouncerOptions {
            pool_mode: PoolMode::Transaction,
            settings: vec![("server_check_delay".into(), "1".into())],
            ..PgBouncerOptions::default()
        };
        let ini = render_ini(Path::new("/x"), "*", 6432, "10.0.0.1", 5432, &opts);
        assert!(ini.contains("pool_mode = transaction\n"));
        assert!(ini.contains("* = host=10.0.0.1 port=5432\n"));
        assert!(ini.contains("unix_socket_dir = /x/sock\n"));
        assert!(ini.ends_with("server_check_delay = 1\n"));
    }
}

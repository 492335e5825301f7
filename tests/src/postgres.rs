//! PostgreSQL in a lab host (initdb, start, wait until it accepts) and the
//! client helpers the tests use: `psql`, `pg_isready`, `pgbench`.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Signal;
use crate::host::Host;
use crate::process::{Pid, ProcSpec, check_output, run_output, tail};

/// The system user PostgreSQL and PgBouncer run as, and the database superuser.
pub const PG_USER: &str = "postgres";

/// How long a server gets to accept connections after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `bin` directory of the newest PostgreSQL in `/usr/lib/postgresql/*/bin`.
pub fn pg_bin_dir() -> Result<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("postgres").exists().then_some((version, bin))
            })
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, bin)| bin)
    })
    .as_deref()
    .context("no PostgreSQL in /usr/lib/postgresql/*/bin")
}

/// How a [`Postgres`] is started.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// TCP port.
    pub port: u16,
    /// `listen_addresses` (`-h`): `*` (the default) listens on every address
    /// of the host, including ones added later such as a VIP on `lo`.
    pub listen_addresses: String,
    /// `max_connections`.
    pub max_connections: u32,
    /// Further `-c name=value` settings.
    pub settings: Vec<(String, String)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            port: 5432,
            listen_addresses: "*".into(),
            max_connections: 300,
            settings: Vec::new(),
        }
    }
}

/// A PostgreSQL server running in a lab host as user `postgres`, with trust
/// authentication from anywhere; stopped (fast shutdown) with the lab.
#[derive(Debug, Clone)]
pub struct Postgres {
    host: Host,
    pid: Pid,
    port: u16,
    dir: PathBuf,
}

impl Postgres {
    /// Starts PostgreSQL in `host` on `port` with [`PgOptions::default`].
    pub fn start(host: &Host, port: u16) -> Result<Self> {
        Self::start_with(
            host,
            &PgOptions {
                port,
                ..PgOptions::default()
            },
        )
    }

    /// `initdb` (trust, `--no-sync`) into `{tmp}/{host}-pg{port}/data`, start
    /// `postgres` in `host` (fsync and synchronous commit off), wait until it
    /// accepts connections (at most [`READY_TIMEOUT`]).
    pub fn start_with(host: &Host, opts: &PgOptions) -> Result<Self> {
        let bin = pg_bin_dir()?;
        let port = opts.port;
        let dir = host
            .lab()
            .tmp_dir()
            .join(format!("{}-pg{port}", host.name()));
        let data = dir.join("data");
        let sock = dir.join("sock");
        make_user_dir(&dir)?;
        make_user_dir(&sock)?;
        let initdb = ProcSpec::new(bin.join("initdb"))
            .args(["-D".as_ref(), data.as_os_str()])
            .args([
                "-A",
                "trust",
                "-U",
                PG_USER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .user(PG_USER)
            .current_dir(&dir);
        let what = format!("[{}] {}", host.name(), initdb.display());
        check_output(
            run_output(initdb.to_command(None)?, &what, Duration::from_secs(120))?,
            &what,
        )?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n",
        )
        .context("writing pg_hba.conf")?;

        let mut spec = ProcSpec::new(bin.join("postgres"))
            .args([
                "-D".as_ref(),
                data.as_os_str(),
                "-k".as_ref(),
                sock.as_os_str(),
            ])
            .args(["-h", &opts.listen_addresses, "-p", &port.to_string()])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", &format!("max_connections={}", opts.max_connections)]);
        for (name, value) in &opts.settings {
            spec = spec.args(["-c", &format!("{name}={value}")]);
        }
        let spec = spec
            .user(PG_USER)
            .current_dir(&dir)
            .stop_signal(Signal::SIGINT);
        let pid = host.spawn(&format!("postgres-{port}"), spec)?;
        let pg = Self {
            host: host.clone(),
            pid,
            port,
            dir,
        };
        pg.wait_ready(&opts.listen_addresses)?;
        Ok(pg)
    }

    fn wait_ready(&self, listen: &str) -> Result<()> {
        let first = listen.split(',').next().unwrap_or("*").trim();
        let addr = match first {
            "*" | "0.0.0.0" | "" => self.host.ipv4().to_string(),
            "::" => "::1".to_owned(),
            other => other.to_owned(),
        };
        let lab = self.host.lab();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !lab.is_running(self.pid) {
                bail!(
                    "postgres in {} exited; log:\n{}",
                    self.host.name(),
                    lab.log_tail(self.pid, 30)
                );
            }
            if pg_isready(&self.host, &addr, self.port)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "postgres in {} not ready after {READY_TIMEOUT:?}; log:\n{}",
                    self.host.name(),
                    lab.log_tail(self.pid, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The postmaster's pid.
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

    /// The address clients use: the host's IPv4 address.
    pub fn addr(&self) -> std::net::Ipv4Addr {
        self.host.ipv4()
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Its Unix-socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Runs `sql` through `psql` from its own host; trimmed output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        psql(&self.host, self.addr(), self.port, sql)
    }

    /// Stops it (fast shutdown, then SIGKILL after the lab's grace period).
    pub fn stop(&self) -> Result<ExitStatus> {
        self.host.lab().stop_process(self.pid)
    }
}

/// Creates `dir` (and parents) owned by [`PG_USER`], mode 0700.
pub(crate) fn make_user_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let user = nix::unistd::User::from_name(PG_USER)?.context("no user postgres")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    nix::unistd::chown(dir, Some(user.uid), Some(user.gid))
        .with_context(|| format!("chown {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// `psql -X -A -t -c SQL` as user `postgres` to database `postgres` at
/// `addr:port`, run in host `from`; returns trimmed stdout. Connect timeout
/// 5 s, whole command at most 60 s.
pub fn psql(from: &Host, addr: impl Display, port: u16, sql: &str) -> Result<String> {
    psql_db(from, addr, port, "postgres", sql)
}

/// [`psql`] to database `db`.
pub fn psql_db(from: &Host, addr: impl Display, port: u16, db: &str, sql: &str) -> Result<String> {
    let spec = ProcSpec::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", &addr.to_string(), "-p", &port.to_string()])
        .args(["-U", PG_USER, "-d", db, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5");
    let out = from.run_spec_checked(&spec, Duration::from_secs(60))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether a server at `addr:port` accepts connections, asked from `from`
/// with `pg_isready` (at most 2 s).
pub fn pg_isready(from: &Host, addr: impl Display, port: u16) -> Result<bool> {
    let spec = ProcSpec::new(pg_bin_dir()?.join("pg_isready")).args([
        "-q",
        "-t",
        "2",
        "-h",
        &addr.to_string(),
        "-p",
        &port.to_string(),
    ]);
    Ok(from
        .run_spec(&spec, Duration::from_secs(10))?
        .status
        .success())
}

/// `pgbench -i -s SCALE` against database `postgres` at `addr:port`, from `from`.
pub fn pgbench_init(from: &Host, addr: impl Display, port: u16, scale: u32) -> Result<()> {
    let args = ["-i", "-q", "-s", &scale.to_string()];
    pgbench(from, addr, port, &args, Duration::from_secs(600)).map(drop)
}

/// `pgbench ARGS` as `postgres` to database `postgres` at `addr:port`, run in
/// `from`, at most `timeout`; returns stdout (the report).
pub fn pgbench(
    from: &Host,
    addr: impl Display,
    port: u16,
    args: &[&str],
    timeout: Duration,
) -> Result<String> {
    let spec = ProcSpec::new(pg_bin_dir()?.join("pgbench"))
        .args([
            "-h",
            &addr.to_string(),
            "-p",
            &port.to_string(),
            "-U",
            PG_USER,
        ])
        .args(args)
        .arg("postgres")
        .env("PGCONNECT_TIMEOUT", "5");
    let out = from.run_spec_checked(&spec, timeout)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if stdout.is_empty() {
        return Ok(tail(&String::from_utf8_lossy(&out.stderr), 50));
    }
    Ok(stdout)
}

//! Health checkers: one probe of one backend, bounded by a timeout, answers
//! a [`Verdict`].
//!
//! Every checker opens its own connection to the backend (nothing is pooled
//! between probes: a probe must see what a new client would see) and says
//! in a short, human reason what failed.

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::{CheckKind, HealthConfig};

mod exec;
mod http;
mod pgbouncer;
mod postgres;
mod tcp;
#[cfg(test)]
mod test_servers;

pub use pgbouncer::{PoolRow, pools_verdict};

/// What to check on a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A TCP connect succeeds.
    Tcp,
    /// An HTTP/1.1 GET answers the expected status (and body).
    Http(HttpCheck),
    /// The server speaks PostgreSQL's protocol (and runs a query).
    Postgres(PostgresCheck),
    /// PgBouncer's admin console: `SHOW POOLS` under the thresholds.
    Pgbouncer(PgbouncerCheck),
    /// A command exits 0.
    Exec(ExecCheck),
}

impl Check {
    /// The checker a `[service.health]` section describes.
    pub fn from_config(config: &HealthConfig) -> Self {
        match config.check {
            CheckKind::Tcp => Check::Tcp,
            CheckKind::Http => Check::Http(HttpCheck {
                path: config.path.clone().unwrap_or_else(|| "/".to_owned()),
                expect_status: config.expect_status.unwrap_or(200),
                body_contains: config.body.clone(),
                host: None,
            }),
            CheckKind::Postgres => Check::Postgres(PostgresCheck {
                user: config.user.clone().unwrap_or_else(|| "postgres".to_owned()),
                database: config
                    .database
                    .clone()
                    .unwrap_or_else(|| "postgres".to_owned()),
                password: config.password.clone(),
                query: config.query.clone(),
            }),
            CheckKind::Pgbouncer => Check::Pgbouncer(PgbouncerCheck {
                user: config
                    .user
                    .clone()
                    .unwrap_or_else(|| "pgbouncer".to_owned()),
                password: config.password.clone(),
                database: config.database.clone(),
                max_waiting_clients: config.max_waiting_clients.unwrap_or(0),
                max_wait: config.max_wait.unwrap_or(Duration::from_secs(1)),
            }),
            CheckKind::Exec => Check::Exec(ExecCheck {
                command: config.command.clone().unwrap_or_default(),
            }),
        }
    }

    /// The checker's name: `tcp`, `http`, `postgres`, `pgbouncer`, `exec`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http(_) => "http",
            Self::Postgres(_) => "postgres",
            Self::Pgbouncer(_) => "pgbouncer",
            Self::Exec(_) => "exec",
        }
    }
}

/// `http`: a GET of `path`; up iff the status is `expect_status` and the
/// body contains `body_contains` (when set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// The request's path (and query), e.g. `/health`.
    pub path: String,
    /// The status that means up.
    pub expect_status: u16,
    /// A string the body must contain.
    pub body_contains: Option<String>,
    /// The `Host` header; the target address when `None`.
    pub host: Option<String>,
}

/// `postgres`: SSLRequest + startup message; up when the server answers
/// with an authentication request or ReadyForQuery. With `query`, a real
/// login (trust, md5, SCRAM-SHA-256) that runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresCheck {
    /// The startup message's user.
    pub user: String,
    /// The startup message's database.
    pub database: String,
    /// The password, for a login with `query`.
    pub password: Option<String>,
    /// A query to run (simple query protocol), e.g. `SELECT 1`.
    pub query: Option<String>,
}

/// `pgbouncer`: `SHOW POOLS` on the admin console (database `pgbouncer`);
/// degraded when a pool has too many waiting clients or one waited too long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgbouncerCheck {
    /// An admin or stats user of the console.
    pub user: String,
    /// Its password, when PgBouncer asks for one.
    pub password: Option<String>,
    /// Only the pools of this database count.
    pub database: Option<String>,
    /// Degraded when a pool has more clients waiting (`cl_waiting`).
    pub max_waiting_clients: u64,
    /// Degraded when a pool's oldest waiting client waited longer
    /// (`maxwait` + `maxwait_us`).
    pub max_wait: Duration,
}

/// `exec`: a command; exit status 0 is up. It gets `VIPX_BACKEND_ADDR` and
/// `VIPX_BACKEND_PORT` in its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCheck {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
}

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy.
    Up,
    /// Alive but overloaded.
    Degraded {
        /// What is over its threshold.
        reason: String,
    },
    /// Failed.
    Down {
        /// What failed.
        reason: String,
    },
}

impl Verdict {
    /// A `Down` with this reason.
    pub fn down(reason: impl Into<String>) -> Self {
        Self::Down {
            reason: reason.into(),
        }
    }
}

/// Probes `target` with `check`. Never takes (much) longer than `timeout`:
/// a probe that has no answer by then is `Down` ("timed out after 500ms
/// (connect)"), and whatever it started (connections, a child process) is
/// dropped with it.
pub async fn probe(check: &Check, target: SocketAddr, timeout: Duration) -> Verdict {
    let stage = Stage::new();
    let run = async {
        match check {
            Check::Tcp => tcp::probe(target, &stage).await,
            Check::Http(http) => http::probe(http, target, &stage).await,
            Check::Postgres(pg) => postgres::probe(pg, target, &stage).await,
            Check::Pgbouncer(pgb) => pgbouncer::probe(pgb, target, &stage).await,
            Check::Exec(exec) => exec::probe(exec, target, &stage).await,
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(verdict) => verdict,
        Err(_) => Verdict::down(format!(
            "timed out after {} ({})",
            humantime::format_duration(timeout),
            stage.get()
        )),
    }
}

/// What a probe is doing, for the reason of a timeout.
pub(crate) struct Stage(Mutex<&'static str>);

impl Stage {
    fn new() -> Self {
        Self(Mutex::new("start"))
    }

    /// Records what the probe waits for now.
    pub(crate) fn set(&self, what: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }

    fn get(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An I/O error as a short reason: "Connection refused", without the
/// "(os error 111)" that `Display` adds.
pub(crate) fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

/// An error and its sources, joined with ": ", each said once.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next.take() {
        let text = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io_reason(io),
            None => e.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// `tokio_postgres`'s error as a reason: a server's error by severity,
/// SQLSTATE and message (as the raw `postgres` check says it), else the
/// error and its sources.
pub(crate) fn pg_error_reason(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!(
            "server answered ErrorResponse: {} {} {}",
            db.severity(),
            db.code().code(),
            db.message()
        ),
        None => match error.source() {
            Some(source) => format!("{error}: {}", error_chain(source)),
            None => error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Check::Tcp.name(), "tcp");
        let exec = Check::Exec(ExecCheck { command: vec![] });
        assert_eq!(exec.name(), "exec");
    }

    #[test]
    fn io_reasons_drop_the_os_error_number() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_reason(&refused), "Connection refused");
        let custom = std::io::Error::other("no (os error here");
        assert_eq!(io_reason(&custom), "no (os error here");
    }

    #[tokio::test]
    async fn a_timeout_names_the_stage() {
        let exec = Check::Exec(ExecCheck {
            command: vec!["sleep".into(), "10".into()],
        });
        let verdict = probe(
            &exec,
            "127.0.0.1:1".parse().expect("addr"),
            Duration::from_millis(100),
        )
        .await;
        assert_eq!(
            verdict,
            Verdict::down("timed out after 100ms (exit status)")
        );
    }
}

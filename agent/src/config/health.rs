//! `[service.health]`: how a service's backends are checked.

use std::time::Duration;

use serde::Deserialize;

/// The kind of check.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connect.
    #[default]
    Tcp,
    /// An HTTP GET with an expected status (and body).
    Http,
    /// SSLRequest + startup: the server must speak PostgreSQL's protocol
    /// (and run `query`, when given, as `user`).
    Postgres,
    /// PgBouncer's admin console: degraded past the waiting thresholds.
    Pgbouncer,
    /// A command; exit status 0 is up.
    Exec,
}

/// What happens to existing flows of a backend that goes down.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnDown {
    /// They stay on it (a backend that is only slow keeps its sessions).
    #[default]
    Keep,
    /// They are forgotten: their next packet is a new flow to a live
    /// backend, which resets it, and the client reconnects at once.
    Reset,
}

/// What a service does when every backend is down.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AllDown {
    /// Keep sending new flows to every backend (the checks may be wrong).
    #[default]
    Keep,
    /// Refuse new flows (dropped and counted).
    Refuse,
}

/// `[service.health]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `tcp` (default), `http`, `postgres`, `pgbouncer` or `exec`.
    #[serde(default)]
    pub check: CheckKind,
    /// Time between two checks of one backend.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A check that takes longer fails.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Up to this much random delay is added to every interval, so checks
    /// of many backends do not align.
    #[serde(default = "default_jitter", with = "humantime_serde")]
    pub jitter: Duration,
    /// Existing flows of a backend that goes down.
    #[serde(default)]
    pub on_down: OnDown,
    /// When every backend is down.
    #[serde(default)]
    pub all_down: AllDown,
    /// Port to check, when not the backend's own (e.g. an HTTP health port).
    pub port: Option<u16>,
    /// `http`: the path.
    pub path: Option<String>,
    /// `http`: the expected status (default 200).
    pub expect_status: Option<u16>,
    /// `http`: a string the body must contain.
    pub body: Option<String>,
    /// `postgres`, `pgbouncer`: the user (default `postgres` / `pgbouncer`).
    pub user: Option<String>,
    /// `postgres`, `pgbouncer`: its password, when the server asks for one.
    pub password: Option<String>,
    /// `postgres`: the database (default `postgres`); `pgbouncer`: only
    /// this database's pools count.
    pub database: Option<String>,
    /// `postgres`: a query to run (`SELECT 1`), which needs a login.
    pub query: Option<String>,
    /// `pgbouncer`: degraded when a pool has more waiting clients.
    pub max_waiting_clients: Option<u64>,
    /// `pgbouncer`: degraded when a client of a pool waited longer.
    #[serde(default, with = "humantime_serde::option")]
    pub max_wait: Option<Duration>,
    /// `exec`: the command and its arguments.
    pub command: Option<Vec<String>>,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    2
}
fn default_jitter() -> Duration {
    Duration::from_millis(100)
}

impl Default for HealthConfig {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

impl HealthConfig {
    /// Checks of the section on its own; `Err` is the message.
    pub(super) fn check(&self, service: &str) -> Result<(), String> {
        let fail = |what: &str| Err(format!("service {service}: health: {what}"));
        if self.rise == 0 || self.fall == 0 {
            return fail("rise and fall must be at least 1");
        }
        if self.interval.is_zero() || self.timeout.is_zero() {
            return fail("interval and timeout must be non-zero");
        }
        if self.timeout > self.interval {
            return fail("timeout must not exceed interval");
        }
        let given = |set: bool, name: &str, kinds: &[CheckKind]| -> Result<(), String> {
            if set && !kinds.contains(&self.check) {
                return Err(format!(
                    "service {service}: health: `{name}` does not apply to check {:?}",
                    self.check
                ));
            }
            Ok(())
        };
        use CheckKind::{Exec, Http, Pgbouncer, Postgres};
        given(self.path.is_some(), "path", &[Http])?;
        given(self.expect_status.is_some(), "expect_status", &[Http])?;
        given(self.body.is_some(), "body", &[Http])?;
        given(self.user.is_some(), "user", &[Postgres, Pgbouncer])?;
        given(self.password.is_some(), "password", &[Postgres, Pgbouncer])?;
        given(self.database.is_some(), "database", &[Postgres, Pgbouncer])?;
        given(self.query.is_some(), "query", &[Postgres])?;
        given(
            self.max_waiting_clients.is_some(),
            "max_waiting_clients",
            &[Pgbouncer],
        )?;
        given(self.max_wait.is_some(), "max_wait", &[Pgbouncer])?;
        given(self.command.is_some(), "command", &[Exec])?;
        if self.check == Exec && self.command.as_ref().is_none_or(Vec::is_empty) {
            return fail("check exec needs a `command`");
        }
        Ok(())
    }
}

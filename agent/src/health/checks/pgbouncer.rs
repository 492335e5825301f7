//! `pgbouncer`: `SHOW POOLS` on PgBouncer's admin console; degraded when a
//! pool has too many clients waiting for a server connection, or one of them
//! waited too long.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use super::postgres::{Login, simple_query};
use super::{PgbouncerCheck, Stage, Verdict};

/// PgBouncer's admin console is this database.
const ADMIN_DATABASE: &str = "pgbouncer"; // PgBouncer, admin console
/// The console speaks only the simple query protocol.
const SHOW_POOLS: &str = "SHOW POOLS"; // PgBouncer, admin console
/// How many over-threshold pools a reason names.
const MAX_NAMED: usize = 3;

/// One row of `SHOW POOLS`, the columns this check uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRow {
    /// `database`
    pub database: String,
    /// `user`
    pub user: String,
    /// `cl_waiting`: clients waiting for a server connection.
    pub cl_waiting: u64,
    /// `maxwait` + `maxwait_us`: how long the oldest waiting client waited.
    pub maxwait: Duration,
}

impl PoolRow {
    /// A row from its columns by name: `column("cl_waiting")` is the text of
    /// that column, `None` when the PgBouncer version has no such column.
    /// `maxwait_us` (PgBouncer 1.8+) is optional.
    pub fn from_columns<'a>(column: impl Fn(&str) -> Option<&'a str>) -> Result<Self, String> {
        let text = |name: &str| column(name).ok_or_else(|| format!("no column {name}"));
        let number = |name: &str| -> Result<u64, String> {
            let value = text(name)?;
            value
                .trim()
                .parse()
                .map_err(|_| format!("column {name} is {value:?}"))
        };
        let micros = match column("maxwait_us") {
            Some(_) => number("maxwait_us")?,
            None => 0,
        };
        Ok(Self {
            database: text("database")?.to_owned(),
            user: text("user")?.to_owned(),
            cl_waiting: number("cl_waiting")?,
            maxwait: Duration::from_secs(number("maxwait")?) + Duration::from_micros(micros),
        })
    }
}

/// Logs in to the console and judges `SHOW POOLS`.
pub(super) async fn probe(check: &PgbouncerCheck, target: SocketAddr, stage: &Stage) -> Verdict {
    let login = Login {
        user: &check.user,
        password: check.password.as_deref(),
        database: ADMIN_DATABASE,
    };
    let messages = match simple_query(&login, SHOW_POOLS, target, stage).await {
        Ok(messages) => messages,
        Err(down) => return down,
    };
    let rows: Result<Vec<PoolRow>, String> = messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(PoolRow::from_columns(|name| {
                row.try_get(name).ok().flatten()
            })),
            _ => None,
        })
        .collect();
    match rows {
        Ok(rows) => pools_verdict(&rows, check),
        Err(e) => Verdict::down(format!("{SHOW_POOLS}: {e}")),
    }
}

/// Degraded when a pool (of `check.database`, when set) has more than
/// `max_waiting_clients` waiting or its oldest waited longer than
/// `max_wait`; the reason names the pools and their figures.
pub fn pools_verdict(rows: &[PoolRow], check: &PgbouncerCheck) -> Verdict {
    let mut over = Vec::new();
    let wanted = rows
        .iter()
        .filter(|row| check.database.as_ref().is_none_or(|db| *db == row.database));
    for row in wanted {
        let pool = format!("pool {}/{}", row.database, row.user);
        if row.cl_waiting > check.max_waiting_clients {
            over.push(format!(
                "{pool}: {} clients waiting (max {})",
                row.cl_waiting, check.max_waiting_clients
            ));
        }
        if row.maxwait > check.max_wait {
            over.push(format!(
                "{pool}: a client waited {:?} (max {:?})",
                row.maxwait, check.max_wait
            ));
        }
    }
    if over.is_empty() {
        return Verdict::Up;
    }
    let more = over.len().saturating_sub(MAX_NAMED);
    over.truncate(MAX_NAMED);
    let mut reason = over.join("; ");
    if more > 0 {
        reason.push_str(&format!("; and {more} more"));
    }
    Verdict::Degraded { reason }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::test_servers::{PgBouncer, serve};
    use super::super::{Check, probe};
    use super::*;

    fn row(database: &str, user: &str, cl_waiting: u64, maxwait_ms: u64) -> PoolRow {
        PoolRow {
            database: database.into(),
            user: user.into(),
            cl_waiting,
            maxwait: Duration::from_millis(maxwait_ms),
        }
    }

    fn check(database: Option<&str>) -> PgbouncerCheck {
        PgbouncerCheck {
            user: "pgbouncer".into(),
            password: None,
            database: database.map(str::to_owned),
            max_waiting_clients: 5,
            max_wait: Duration::from_secs(1),
        }
    }

    #[test]
    fn pools_under_the_thresholds_are_up() {
        let rows = [
            row("app", "alice", 5, 1000),
            row("pgbouncer", "pgbouncer", 0, 0),
        ];
        assert_eq!(pools_verdict(&rows, &check(None)), Verdict::Up);
        assert_eq!(pools_verdict(&[], &check(None)), Verdict::Up);
    }

    #[test]
    fn too_many_waiting_clients_or_too_long_a_wait_is_degraded() {
        let waiting = [row("app", "alice", 0, 0), row("app", "bob", 6, 0)];
        let reason = "pool app/bob: 6 clients waiting (max 5)".to_owned();
        assert_eq!(
            pools_verdict(&waiting, &check(None)),
            Verdict::Degraded { reason }
        );
        let slow = [row("app", "alice", 1, 2500)];
        let reason = "pool app/alice: a client waited 2.5s (max 1s)".to_owned();
        assert_eq!(
            pools_verdict(&slow, &check(None)),
            Verdict::Degraded { reason }
        );
    }

    #[test]
    fn only_the_given_database_counts() {
        let rows = [row("app", "alice", 1, 0), row("batch", "bob", 100, 60_000)];
        assert_eq!(pools_verdict(&rows, &check(Some("app"))), Verdict::Up);
        let Verdict::Degraded { reason } = pools_verdict(&rows, &check(Some("batch"))) else {
            panic!("batch is over both thresholds");
        };
        assert_eq!(
            reason,
            "pool batch/bob: 100 clients waiting (max 5); pool batch/bob: a client waited 60s (max 1s)"
        );
    }

    #[test]
    fn a_reason_names_at_most_three_pools() {
        let rows: Vec<PoolRow> = (0..5).map(|i| row("app", &format!("u{i}"), 9, 0)).collect();
        let Verdict::Degraded { reason } = pools_verdict(&rows, &check(None)) else {
            panic!("every pool is over");
        };
        assert!(
            reason.starts_with("pool app/u0: 9 clients waiting (max 5); pool app/u1"),
            "{reason}"
        );
        assert!(reason.ends_with("; and 2 more"), "{reason}");
    }

    #[test]
    fn rows_are_read_by_column_name() {
        let columns = |pairs: &[(&'static str, &'static str)]| -> HashMap<&str, &str> {
            pairs.iter().copied().collect()
        };
        let new = columns(&[
            ("database", "app"),
            ("user", "alice"),
            ("cl_active", "7"),
            ("cl_waiting", "3"),
            ("maxwait", "2"),
            ("maxwait_us", "250000"),
        ]);
        let parsed = PoolRow::from_columns(|name| new.get(name).copied()).expect("a row");
        assert_eq!(parsed, row("app", "alice", 3, 2250));

        // PgBouncer before 1.8: no maxwait_us.
        let old = columns(&[
            ("database", "app"),
            ("user", "alice"),
            ("cl_waiting", "0"),
            ("maxwait", "4"),
        ]);
        let parsed = PoolRow::from_columns(|name| old.get(name).copied()).expect("a row");
        assert_eq!(parsed, row("app", "alice", 0, 4000));

        let broken = columns(&[("database", "app"), ("user", "alice"), ("cl_waiting", "x")]);
        let error =
            PoolRow::from_columns(|name| broken.get(name).copied()).expect_err("bad number");
        assert_eq!(error, "column cl_waiting is \"x\"");
        let error = PoolRow::from_columns(|name| old.get(name).filter(|_| name != "user").copied())
            .expect_err("no user");
        assert_eq!(error, "no column user");
    }

    #[tokio::test]
    async fn show_pools_on_a_real_pgbouncer() {
        // A server that accepts and never answers: PgBouncer's clients wait.
        let server = serve(8, |_, stream| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(stream);
        })
        .await;
        let Some(bouncer) = PgBouncer::start("s3cret", server) else {
            return;
        };
        let timeout = Duration::from_secs(2);
        let check = |password: &str| {
            Check::Pgbouncer(PgbouncerCheck {
                user: "admin".into(),
                password: Some(password.into()),
                database: Some("app".into()),
                max_waiting_clients: 0,
                max_wait: Duration::from_secs(30),
            })
        };
        let mut verdict = probe(&check("s3cret"), bouncer.addr, timeout).await;
        for _ in 0..50 {
            if verdict == Verdict::Up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            verdict = probe(&check("s3cret"), bouncer.addr, timeout).await;
        }
        assert_eq!(verdict, Verdict::Up, "pgbouncer log:\n{}", bouncer.log());

        let wrong = probe(&check("wrong"), bouncer.addr, timeout).await;
        let Verdict::Down { reason } = wrong else {
            panic!("a wrong password is down, got {wrong:?}");
        };
        assert!(
            reason.starts_with("login: server answered ErrorResponse: FATAL 08P01"),
            "{reason}"
        );

        // A client of `app` waits for a server connection.
        let addr = bouncer.addr;
        let client = tokio::spawn(async move {
            let login = Login {
                user: "admin",
                password: Some("s3cret"),
                database: "app",
            };
            simple_query(&login, "SELECT 1", addr, &Stage::new()).await
        });
        let expected = Verdict::Degraded {
            reason: "pool app/admin: 1 clients waiting (max 0)".into(),
        };
        for _ in 0..50 {
            verdict = probe(&check("s3cret"), bouncer.addr, timeout).await;
            if verdict == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(verdict, expected, "pgbouncer log:\n{}", bouncer.log());
        client.abort();
    }
}

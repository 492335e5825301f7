//! `postgres`: the server speaks PostgreSQL's protocol (SSLRequest, then a
//! startup message); with a query, a real login that runs it.
//!
//! The first part is raw protocol (frontend/backend protocol 3.0) so that
//! it needs no credentials and tells apart "accepts TCP" from "answers as
//! PostgreSQL": a server that accepts connections but never answers (a
//! wedged postmaster, a full listen queue behind a proxy) is down.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::tcp::connect;
use super::{PostgresCheck, Stage, Verdict, io_reason, pg_error_reason};

const SSL_REQUEST_CODE: i32 = 80877103; // PostgreSQL protocol, SSLRequest
const PROTOCOL_VERSION_3_0: i32 = 196608; // PostgreSQL protocol, StartupMessage (3 << 16)
const SSL_ACCEPTED: u8 = b'S'; // PostgreSQL protocol, answer to SSLRequest
const SSL_REFUSED: u8 = b'N'; // PostgreSQL protocol, answer to SSLRequest
const MSG_AUTHENTICATION: u8 = b'R'; // PostgreSQL protocol, Authentication*
const MSG_READY_FOR_QUERY: u8 = b'Z'; // PostgreSQL protocol, ReadyForQuery
const MSG_ERROR_RESPONSE: u8 = b'E'; // PostgreSQL protocol, ErrorResponse
const MSG_TERMINATE: u8 = b'X'; // PostgreSQL protocol, Terminate
const AUTHENTICATION_OK: i32 = 0; // PostgreSQL protocol, AuthenticationOk
/// The `application_name` the checks give, to tell them apart in
/// `pg_stat_activity` and the server's log.
pub(super) const APPLICATION_NAME: &str = "vipx-health";
/// The longest message this check reads (an ErrorResponse is far shorter).
const MAX_MESSAGE: usize = 64 * 1024;
/// How many messages after AuthenticationOk it reads for ReadyForQuery
/// (ParameterStatus, BackendKeyData, notices: about 15 on PostgreSQL 15).
const MAX_STARTUP_MESSAGES: usize = 256;

/// Probes `target` as `check` says.
pub(super) async fn probe(check: &PostgresCheck, target: SocketAddr, stage: &Stage) -> Verdict {
    if let Err(down) = startup(check, target, stage).await {
        return down;
    }
    let Some(query) = &check.query else {
        return Verdict::Up;
    };
    let login = Login {
        user: &check.user,
        password: check.password.as_deref(),
        database: &check.database,
    };
    match simple_query(&login, query, target, stage).await {
        Ok(_) => Verdict::Up,
        Err(down) => down,
    }
}

/// SSLRequest, then a startup message on the same connection (answer `N`)
/// or on a new one (answer `S`: this check speaks no TLS); the first answer
/// must be an authentication request or ReadyForQuery.
async fn startup(check: &PostgresCheck, target: SocketAddr, stage: &Stage) -> Result<(), Verdict> {
    let mut stream = connect(target, stage).await?;
    stage.set("answer to SSLRequest");
    let mut ssl_request = [0u8; 8];
    ssl_request[..4].copy_from_slice(&8i32.to_be_bytes());
    ssl_request[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    send(&mut stream, &ssl_request, "SSLRequest").await?;
    let mut answer = [0u8; 1];
    match stream.read(&mut answer).await {
        Ok(0) => return Err(not_postgres("closed the connection after SSLRequest")),
        Ok(_) => {}
        Err(e) => return Err(Verdict::down(format!("SSLRequest: {}", io_reason(&e)))),
    }
    match answer[0] {
        SSL_REFUSED => {}
        SSL_ACCEPTED => stream = connect(target, stage).await?,
        other => {
            let other = std::ascii::escape_default(other);
            return Err(not_postgres(&format!("answered '{other}' to SSLRequest")));
        }
    }

    stage.set("answer to the startup message");
    send(
        &mut stream,
        &startup_message(&check.user, &check.database),
        "startup message",
    )
    .await?;
    let (kind, body) = read_message(&mut stream).await?;
    match kind {
        MSG_AUTHENTICATION if body.get(..4) == Some(&AUTHENTICATION_OK.to_be_bytes()[..]) => {
            // Logged in (trust): the rest of the startup may still fail
            // (no such database, too many connections for the role).
            stage.set("ReadyForQuery");
            for _ in 0..MAX_STARTUP_MESSAGES {
                match read_message(&mut stream).await? {
                    (MSG_READY_FOR_QUERY, _) => return terminate(stream).await,
                    (MSG_ERROR_RESPONSE, body) => return Err(error_response(&body)),
                    _ => {}
                }
            }
            Err(not_postgres("sent no ReadyForQuery after AuthenticationOk"))
        }
        // A password request: the server works. Leave without a word, as
        // psql does when it has no password (the server logs nothing).
        MSG_AUTHENTICATION => Ok(()),
        MSG_READY_FOR_QUERY => terminate(stream).await,
        MSG_ERROR_RESPONSE => Err(error_response(&body)),
        other => {
            let other = std::ascii::escape_default(other);
            Err(not_postgres(&format!(
                "answered message '{other}' to the startup message"
            )))
        }
    }
}

/// A StartupMessage for protocol 3.0.
pub(super) fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut message = vec![0u8; 4];
    message.extend_from_slice(&PROTOCOL_VERSION_3_0.to_be_bytes());
    let params = [
        ("user", user),
        ("database", database),
        ("application_name", APPLICATION_NAME),
    ];
    for (name, value) in params {
        for text in [name, value] {
            message.extend_from_slice(text.as_bytes());
            message.push(0);
        }
    }
    message.push(0);
    let len = i32::try_from(message.len()).unwrap_or(i32::MAX);
    message[..4].copy_from_slice(&len.to_be_bytes());
    message
}

async fn send(stream: &mut TcpStream, bytes: &[u8], what: &str) -> Result<(), Verdict> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| Verdict::down(format!("{what}: {}", io_reason(&e))))
}

/// Reads one message: its type and its body (without the length).
async fn read_message(stream: &mut TcpStream) -> Result<(u8, Vec<u8>), Verdict> {
    let lost = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Verdict::down("server closed the connection"),
        _ => Verdict::down(format!("read: {}", io_reason(&e))),
    };
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).await.map_err(lost)?;
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let body_len = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_sub(4))
        .filter(|&len| len <= MAX_MESSAGE)
        .ok_or_else(|| not_postgres(&format!("sent a message of length {len}")))?;
    let mut body = vec![0u8; body_len];
    stream.read_exact(&mut body).await.map_err(lost)?;
    Ok((header[0], body))
}

/// Says goodbye (Terminate) so that the server logs no lost connection.
async fn terminate(mut stream: TcpStream) -> Result<(), Verdict> {
    let mut goodbye = [MSG_TERMINATE, 0, 0, 0, 0];
    goodbye[1..].copy_from_slice(&4i32.to_be_bytes());
    // The verdict is made: a failure to say goodbye changes nothing.
    let _ = stream.write_all(&goodbye).await;
    let _ = stream.shutdown().await;
    Ok(())
}

/// An ErrorResponse's severity, SQLSTATE and message as a `Down`.
fn error_response(body: &[u8]) -> Verdict {
    let (mut severity, mut code, mut message) = (None, None, None);
    for field in body.split(|&b| b == 0) {
        let Some((&kind, value)) = field.split_first() else {
            break; // the terminating zero
        };
        let value = String::from_utf8_lossy(value);
        match kind {
            // 'V' is never localized; 'S' is, and older servers send only it.
            b'V' => severity = Some(value),
            b'S' if severity.is_none() => severity = Some(value),
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            _ => {}
        }
    }
    let fields: Vec<_> = [severity, code, message].into_iter().flatten().collect();
    Verdict::down(format!(
        "server answered ErrorResponse: {}",
        fields.join(" ")
    ))
}

fn not_postgres(what: &str) -> Verdict {
    Verdict::down(format!("not a PostgreSQL server ({what})"))
}

/// Who logs in, where.
pub(super) struct Login<'a> {
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub database: &'a str,
}

/// Logs in to `target` (trust, md5 or SCRAM-SHA-256, no TLS) and runs
/// `query` with the simple query protocol.
pub(super) async fn simple_query(
    login: &Login<'_>,
    query: &str,
    target: SocketAddr,
    stage: &Stage,
) -> Result<Vec<SimpleQueryMessage>, Verdict> {
    let stream = connect(target, stage).await?;
    stage.set("login");
    let mut config = tokio_postgres::Config::new();
    config
        .user(login.user)
        .dbname(login.database)
        .application_name(APPLICATION_NAME)
        .ssl_mode(SslMode::Disable);
    if let Some(password) = login.password {
        config.password(password);
    }
    let (client, connection) = config
        .connect_raw(stream, NoTls)
        .await
        .map_err(|e| Verdict::down(format!("login: {}", pg_error_reason(&e))))?;
    stage.set("query");
    let work = async move {
        let result = client.simple_query(query).await;
        // Dropping the client ends the connection with a Terminate.
        drop(client);
        result
    };
    let (result, connection) = tokio::join!(work, connection);
    result.map_err(|e| {
        let e = match connection {
            // The connection's own error says more than "connection closed".
            Err(lost) if e.as_db_error().is_none() => lost,
            _ => e,
        };
        Verdict::down(format!("query: {}", pg_error_reason(&e)))
    })
}

#[cfg(test)]
#[path = "postgres_tests.rs"]
mod tests;

//! The `postgres` check against scripted fake servers and, where it is
//! installed, a real PostgreSQL.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::super::test_servers::{PgServer, serve};
use super::super::{Check, probe};
use super::*;

const TIMEOUT: Duration = Duration::from_secs(2);
const AUTH_OK: &[u8] = b"R\0\0\0\x08\0\0\0\0";
const AUTH_SCRAM: &[u8] = b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0";
const READY: &[u8] = b"Z\0\0\0\x05I";
const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// What a fake server's connection received: the length-prefixed packets
/// it answered, then everything else up to EOF.
#[derive(Debug)]
struct Received {
    connection: usize,
    packets: Vec<Vec<u8>>,
    rest: Vec<u8>,
}

/// A fake server: on connection `n`, for each answer of `script(n)`, reads
/// one untyped packet (SSLRequest, StartupMessage) and writes the answer;
/// then closes its sending side and reads to EOF.
async fn fake<S>(script: S) -> (SocketAddr, mpsc::UnboundedReceiver<Received>)
where
    S: Fn(usize) -> Vec<Vec<u8>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = serve(4, move |connection, mut stream| {
        let tx = tx.clone();
        let script = script(connection);
        async move {
            let mut packets = Vec::new();
            for answer in script {
                packets.push(read_packet(&mut stream).await);
                stream.write_all(&answer).await.expect("write answer");
            }
            stream.shutdown().await.expect("shutdown");
            let mut rest = Vec::new();
            let read = stream.read_to_end(&mut rest);
            tokio::time::timeout(TIMEOUT, read)
                .await
                .expect("EOF in time")
                .expect("read rest");
            let _ = tx.send(Received {
                connection,
                packets,
                rest,
            });
        }
    })
    .await;
    (addr, rx)
}

async fn read_packet(stream: &mut TcpStream) -> Vec<u8> {
    let len = stream.read_i32().await.expect("packet length");
    let len = usize::try_from(len).expect("positive length");
    assert!((8..=10_000).contains(&len), "packet length {len}");
    let mut packet = len.to_be_bytes()[4..].to_vec();
    packet.resize(len, 0);
    stream
        .read_exact(&mut packet[4..])
        .await
        .expect("packet body");
    packet
}

fn check(query: Option<&str>) -> Check {
    Check::Postgres(PostgresCheck {
        user: "alice".into(),
        database: "app".into(),
        password: None,
        query: query.map(str::to_owned),
    })
}

fn error_response(fields: &[(u8, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, value) in fields {
        body.push(*kind);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&i32::try_from(body.len() + 4).expect("short").to_be_bytes());
    message.extend_from_slice(&body);
    message
}

fn too_many_clients() -> Vec<u8> {
    error_response(&[
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ])
}

#[test]
fn the_startup_message_is_protocol_3_with_user_database_and_name() {
    let message = startup_message("alice", "app");
    let expected =
        b"\0\0\0\x3e\0\x03\0\0user\0alice\0database\0app\0application_name\0vipx-health\0\0";
    assert_eq!(message, expected.to_vec());
}

#[tokio::test]
async fn ssl_refused_then_authentication_ok_is_up_and_says_goodbye() {
    let (target, mut received) = fake(|_| vec![b"N".to_vec(), [AUTH_OK, READY].concat()]).await;
    assert_eq!(probe(&check(None), target, TIMEOUT).await, Verdict::Up);
    let got = received.recv().await.expect("a connection");
    assert_eq!(got.packets[0], b"\0\0\0\x08\x04\xd2\x16\x2f", "SSLRequest");
    let startup = &got.packets[1];
    assert_eq!(
        startup[4..8],
        PROTOCOL_VERSION_3_0.to_be_bytes(),
        "protocol 3.0"
    );
    let text = String::from_utf8_lossy(&startup[8..]);
    assert!(text.contains("user\0alice\0database\0app\0"), "{text:?}");
    assert_eq!(got.rest, TERMINATE);
}

#[tokio::test]
async fn a_password_request_is_up() {
    let (target, mut received) = fake(|_| vec![b"N".to_vec(), AUTH_SCRAM.to_vec()]).await;
    assert_eq!(probe(&check(None), target, TIMEOUT).await, Verdict::Up);
    let got = received.recv().await.expect("a connection");
    assert_eq!(got.rest, b"", "leaves without a word");
}

#[tokio::test]
async fn a_server_that_never_answers_is_down_where_tcp_is_up() {
    let target = serve(2, |_, stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await;
    assert_eq!(probe(&Check::Tcp, target, TIMEOUT).await, Verdict::Up);
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let verdict = probe(&check(None), target, timeout).await;
    assert!(
        start.elapsed() < timeout + Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        verdict,
        Verdict::down("timed out after 300ms (answer to SSLRequest)")
    );
}

#[tokio::test]
async fn an_error_response_is_down_with_its_fields() {
    let (target, _received) = fake(|_| vec![b"N".to_vec(), too_many_clients()]).await;
    assert_eq!(
        probe(&check(None), target, TIMEOUT).await,
        Verdict::down("server answered ErrorResponse: FATAL 53300 sorry, too many clients already")
    );
}

#[tokio::test]
async fn an_error_after_authentication_ok_is_down() {
    let error = error_response(&[
        (b'S', "FATAL"),
        (b'C', "3D000"),
        (b'M', "database \"app\" does not exist"),
    ]);
    let (target, _received) = fake(move |_| vec![b"N".to_vec(), [AUTH_OK, &error].concat()]).await;
    assert_eq!(
        probe(&check(None), target, TIMEOUT).await,
        Verdict::down("server answered ErrorResponse: FATAL 3D000 database \"app\" does not exist")
    );
}

#[tokio::test]
async fn ssl_accepted_means_a_new_connection_without_ssl() {
    let (target, mut received) = fake(|connection| match connection {
        0 => vec![b"S".to_vec()],
        _ => vec![[AUTH_OK, READY].concat()],
    })
    .await;
    assert_eq!(probe(&check(None), target, TIMEOUT).await, Verdict::Up);
    let mut connections = [
        received.recv().await.expect("first connection"),
        received.recv().await.expect("second connection"),
    ];
    connections.sort_by_key(|r| r.connection);
    let [first, second] = connections;
    assert_eq!(first.packets.len(), 1);
    assert_eq!(first.packets[0][4..], SSL_REQUEST_CODE.to_be_bytes());
    assert_eq!(
        second.packets[0][4..8],
        PROTOCOL_VERSION_3_0.to_be_bytes(),
        "startup, no SSLRequest"
    );
    assert_eq!(second.rest, TERMINATE);
}

#[tokio::test]
async fn garbage_or_silence_is_not_postgres() {
    let (target, _received) = fake(|_| vec![b"X".to_vec()]).await;
    assert_eq!(
        probe(&check(None), target, TIMEOUT).await,
        Verdict::down("not a PostgreSQL server (answered 'X' to SSLRequest)")
    );
    let (target, _received) = fake(|_| vec![vec![]]).await;
    assert_eq!(
        probe(&check(None), target, TIMEOUT).await,
        Verdict::down("not a PostgreSQL server (closed the connection after SSLRequest)")
    );
    let (target, _received) =
        fake(|_| vec![b"N".to_vec(), b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()]).await;
    assert_eq!(
        probe(&check(None), target, TIMEOUT).await,
        Verdict::down(format!(
            "not a PostgreSQL server (sent a message of length {})",
            i32::from_be_bytes(*b"TTP/")
        ))
    );
}

#[tokio::test]
async fn a_query_on_a_real_postgresql() {
    let Some(server) = PgServer::start("s3cret") else {
        return;
    };
    let target = server.addr;
    let check = |password: &str, query: Option<&str>| {
        Check::Postgres(PostgresCheck {
            user: "postgres".into(),
            database: "postgres".into(),
            password: Some(password.into()),
            query: query.map(str::to_owned),
        })
    };
    // Starting up: "the database system is starting up", then up.
    let mut verdict = probe(&check("", None), target, TIMEOUT).await;
    for _ in 0..100 {
        if verdict == Verdict::Up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        verdict = probe(&check("", None), target, TIMEOUT).await;
    }
    assert_eq!(verdict, Verdict::Up, "postgres log:\n{}", server.log());

    let select_1 = check("s3cret", Some("SELECT 1"));
    assert_eq!(
        probe(&select_1, target, TIMEOUT).await,
        Verdict::Up,
        "{}",
        server.log()
    );

    let verdict = probe(&check("wrong", Some("SELECT 1")), target, TIMEOUT).await;
    let Verdict::Down { reason } = verdict else {
        panic!("a wrong password is down, got {verdict:?}");
    };
    assert!(
        reason.starts_with("login: server answered ErrorResponse: FATAL 28P01"),
        "{reason}"
    );

    let verdict = probe(&check("s3cret", Some("SELECT nope")), target, TIMEOUT).await;
    let Verdict::Down { reason } = verdict else {
        panic!("a failing query is down, got {verdict:?}");
    };
    assert!(reason.contains("ERROR 42703"), "{reason}");
}

//! What the flow-replication tests share: a node (its real XDP program run
//! through BPF_PROG_TEST_RUN, and the service table the replication code
//! reads and writes), its replicator as the daemon starts it, a cluster
//! CA that signs node certificates, a peer that is down, and a link that
//! can be cut.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::{net::TcpListener, task::JoinHandle};
use vipx_agent::{
    balancer::SharedTable,
    config::{AckLevel, SyncTls},
    dataplane::{ServiceSpec, ServiceTable},
    metrics::Metrics,
    sync::{Credentials, Replicator, SyncMetrics, SyncSetup, auth::Secret, tls::Tls},
};
use vipx_common::action;
use vipx_lab::{
    frames::{FrameSpec, tcp},
    rig::{Rig, backend_mac},
};

pub const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 50));
pub const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 30));
pub const SECRET: &[u8] = b"the lab's cluster secret, 32 b..";
/// Where every replicator listens (its port picked when it binds); node
/// certificates name this address.
pub const LISTEN: &str = "127.0.0.1:0";

/// How a node replicates.
#[derive(Clone)]
pub struct Options {
    pub secret: &'static [u8],
    pub tls: Option<Arc<Tls>>,
    pub ack: AckLevel,
}

impl Default for Options {
    /// Plain TCP, the lab's secret, `once`: as without the new keys.
    fn default() -> Self {
        Self {
            secret: SECRET,
            tls: None,
            ack: AckLevel::Once,
        }
    }
}

/// A node: its data plane (run through BPF_PROG_TEST_RUN) and the shared
/// service table the replication code reads and writes.
pub struct Node {
    pub rig: Rig,
    pub table: SharedTable,
    /// Its replication metrics, once it replicates.
    pub sync: Option<Arc<SyncMetrics>>,
}

impl Node {
    pub fn new(spec: &ServiceSpec) -> Self {
        let rig = Rig::master(std::slice::from_ref(spec)).expect("load the XDP program (root)");
        // The same service, installed again through a table the
        // replication code can share: same specs, same ids, same writes.
        let mut table = ServiceTable::new(rig.dataplane.maps(), false);
        table
            .apply(std::slice::from_ref(spec))
            .expect("install the service");
        for backend in &spec.backends {
            table
                .set_mac(backend.addr, backend_mac(backend.addr))
                .expect("the backend's MAC");
        }
        Self {
            rig,
            table: Arc::new(Mutex::new(table)),
            sync: None,
        }
    }

    /// Starts replicating with the defaults, with `secret`.
    pub async fn replicator(
        &mut self,
        node: &str,
        peers: Vec<SocketAddr>,
        secret: &'static [u8],
    ) -> Replicator {
        let options = Options {
            secret,
            ..Options::default()
        };
        self.replicator_with(node, peers, options).await
    }

    /// Starts replicating as the daemon does.
    pub async fn replicator_with(
        &mut self,
        node: &str,
        peers: Vec<SocketAddr>,
        options: Options,
    ) -> Replicator {
        let metrics = Arc::new(Metrics::new(node).expect("metrics").sync());
        self.sync = Some(Arc::clone(&metrics));
        Replicator::start(SyncSetup {
            node: node.into(),
            listen: LISTEN.parse().expect("addr"),
            peers,
            credentials: Credentials {
                secret: Secret::from_bytes(options.secret),
                tls: options.tls,
            },
            ack: options.ack,
            handover_wait: Duration::from_secs(1),
            table: Arc::clone(&self.table),
            metrics,
            events: self.rig.dataplane.take_flow_events(),
            ready_timeout: Duration::from_secs(3),
        })
        .await
        .expect("bind the replication port")
    }

    /// Its replication metrics.
    pub fn metrics(&self) -> Arc<SyncMetrics> {
        Arc::clone(self.sync.as_ref().expect("the node replicates"))
    }

    /// A client opens a connection through this node (its XDP creates the
    /// flow); returns the SYN.
    pub fn open(&mut self, client_port: u16) -> FrameSpec {
        let syn = FrameSpec::tcp(CLIENT, client_port, VIP, 5432, tcp::SYN);
        let (act, _) = self.rig.run(&syn.build()).expect("run the SYN");
        assert_eq!(act, action::TX, "the node forwards SYN {client_port}");
        syn
    }
}

/// B listens, A streams to it; returns once B holds A's (empty) table.
pub async fn connect(a: &mut Node, b: &mut Node) -> (Replicator, Replicator) {
    let rb = b.replicator("b", Vec::new(), SECRET).await;
    let ra = a.replicator("a", vec![rb.listen], SECRET).await;
    synced(&rb, "a").await;
    (rb, ra)
}

/// Waits (10 s at most) until `receiver` holds `sender`'s whole table.
pub async fn synced(receiver: &Replicator, sender: &str) {
    let mut synced = receiver.synced();
    tokio::time::timeout(
        Duration::from_secs(10),
        synced.wait_for(|s| s.iter().any(|n| n == sender)),
    )
    .await
    .unwrap_or_else(|_| panic!("{sender}'s whole table within 10 s"))
    .expect("the receiver runs");
}

/// Waits (bounded) until `done` holds.
pub async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After a refused connection from A to B: a moment later still, B holds
/// none of A's flows, and A sent no batch.
pub async fn nothing_passed(a: &Node, b: &Node) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b.rig.dataplane.maps().flows().is_empty(),
        "B installed nothing"
    );
    assert_eq!(a.metrics().batches.get(), 0, "A sent no batch");
}

/// The address of a peer that is down: nothing listens there.
pub async fn down_peer() -> SocketAddr {
    let listener = TcpListener::bind(LISTEN).await.expect("bind");
    listener.local_addr().expect("its address")
}

/// A link between two nodes that can be cut: a TCP relay to a peer (which
/// can change, as a peer's address does when its agent restarts). A cut
/// closes its connections; a silence keeps them open but passes nothing,
/// either way, as a pulled cable or a partition does.
pub struct Relay {
    pub addr: SocketAddr,
    to: Arc<Mutex<SocketAddr>>,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    silent: tokio::sync::watch::Sender<bool>,
}

/// Copies `from` to `to` while the relay is not silent.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut silent: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if silent.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Silenced while waiting: what arrives now stays unread.
            _ = silent.wait_for(|s| *s) => continue,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Relay {
    pub async fn to(to: SocketAddr) -> Self {
        let listener = TcpListener::bind(LISTEN).await.expect("bind the relay");
        let addr = listener.local_addr().expect("its address");
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let target = Arc::new(Mutex::new(to));
        let silent = tokio::sync::watch::Sender::new(false);
        let accept = tokio::spawn({
            let (conns, target, silent) = (Arc::clone(&conns), Arc::clone(&target), silent.clone());
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let to = *target.lock().expect("relay lock");
                    let silent = silent.subscribe();
                    let relay = tokio::spawn(async move {
                        let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                            return;
                        };
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            pass(in_read, out_write, silent.clone()),
                            pass(out_read, in_write, silent),
                        );
                    });
                    conns.lock().expect("relay lock").push(relay);
                }
            }
        });
        Self {
            addr,
            to: target,
            accept,
            conns,
            silent,
        }
    }

    /// New connections go to `to`.
    pub fn point_to(&self, to: SocketAddr) {
        *self.to.lock().expect("relay lock") = to;
    }

    /// Cuts every connection through the relay (new ones still pass).
    pub fn cut(&self) {
        for relay in self.conns.lock().expect("relay lock").drain(..) {
            relay.abort();
        }
    }

    /// Passes nothing (or everything again), connections kept open; new
    /// connections are accepted but silent too.
    pub fn silence(&self, silent: bool) {
        self.silent.send_replace(silent);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A certificate authority for the tests, with its files in a temporary
/// directory.
pub struct Pki {
    dir: tempfile::TempDir,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a CA key");
        let pem = params.self_signed(&key).expect("the CA signs itself").pem();
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// `name`'s TLS: a certificate naming 127.0.0.1 signed by this CA, its
    /// key, and this CA to trust (and `also`'s, when given).
    pub fn node(&self, name: &str, also: Option<&Pki>) -> Arc<Tls> {
        let key = KeyPair::generate().expect("a node key");
        let ip = LISTEN.parse::<SocketAddr>().expect("addr").ip().to_string();
        let cert = CertificateParams::new(vec![ip])
            .expect("an IP SAN")
            .signed_by(&key, &self.issuer)
            .expect("the CA signs it");
        let trusted = match also {
            Some(other) => format!("{}{}", self.pem, other.pem),
            None => self.pem.clone(),
        };
        let files = SyncTls {
            cert_file: self.write(&format!("{name}.pem"), &cert.pem()),
            key_file: self.write(&format!("{name}.key"), &key.serialize_pem()),
            ca_file: self.write(&format!("{name}-ca.pem"), &trusted),
        };
        let tls = Tls::load(&files, LISTEN.parse().expect("addr")).expect("the node's TLS loads");
        Arc::new(tls)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a PEM file");
        path
    }
}

//! A backend behind the segment's router (issue 13): the node's kernel
//! reaches it through a gateway, so it has no neighbour entry of its own,
//! and the data plane must send its frames to the router's MAC. Before,
//! every packet to it was dropped as `no_neigh` while a health check,
//! which uses the kernel's routing, would have stayed green.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use vipx_lab::{Cluster, ClusterOptions, Host, agent_bin};

/// The network behind the router, and the backend's address in it.
const FAR_NET: &str = "10.88.0.0/24";
const ROUTER_FAR: &str = "10.88.0.1";
const FAR_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 31);
const ECHO_PORT: u16 = 7000;
/// The VIP's port of the routed service.
const ROUTED_PORT: u16 = 5433;

/// An echo server on `host` (listening in its namespace), stopped on drop.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(host: &Host, port: u16) -> Self {
        let listener = host
            .enter(move || TcpListener::bind(("0.0.0.0", port)))
            .expect("enter the backend's namespace")
            .expect("listen on the backend");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Acquire) && Instant::now() < until {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 64];
                        if let Ok(n) = stream.read(&mut buf) {
                            let _ = stream.write_all(&buf[..n]);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One round trip from the client to `target`: what came back, if anything.
fn echo_through(client: &Host, target: SocketAddr, message: &'static [u8]) -> Option<Vec<u8>> {
    client
        .enter(move || -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
            stream.set_read_timeout(Some(Duration::from_secs(1)))?;
            stream.write_all(message)?;
            let mut buf = vec![0u8; message.len()];
            stream.read_exact(&mut buf)?;
            Ok(buf)
        })
        .expect("enter the client's namespace")
        .ok()
}

#[test]
fn a_backend_behind_the_router_gets_the_routers_mac() {
    let mut opts = ClusterOptions::new(1, agent_bin());
    opts.extra_config = format!(
        "[[service]]\nname = \"routed\"\nvip = \"{}\"\nport = {ROUTED_PORT}\nmode = \"nat\"\nbackends = [{{ address = \"{FAR_BACKEND}\", port = {ECHO_PORT} }}]\n",
        opts.vip()
    );
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    cluster
        .wait_master(0, Duration::from_secs(20))
        .expect("node 0 becomes MASTER");

    // A one-armed router on the segment, with an address in the far
    // network too; the backend sits in that network, reached through it.
    let router = cluster
        .lab
        .add_host("router", &cluster.lab.v4(50))
        .expect("add the router");
    router
        .add_addr(&format!("{ROUTER_FAR}/24"))
        .expect("the router's far address");
    router
        .sysctl("net.ipv4.ip_forward", "1")
        .expect("the router forwards");
    for scope in ["all", "default", "eth0"] {
        for (key, value) in [("send_redirects", "0"), ("rp_filter", "0")] {
            router
                .sysctl(&format!("net.ipv4.conf.{scope}.{key}"), value)
                .expect("router sysctl");
        }
    }
    let far = cluster
        .lab
        .add_host("far", &format!("{FAR_BACKEND}/24"))
        .expect("add the far backend");
    let lab_net = cluster.lab.v4(0);
    far.run(&["ip", "route", "add", &lab_net, "via", ROUTER_FAR])
        .expect("the backend's route back through the router");
    let router_addr = router.ipv4().to_string();
    cluster.nodes[0]
        .host
        .run(&["ip", "route", "add", FAR_NET, "via", &router_addr])
        .expect("the node's route to the far network");
    let _echo = Echo::start(&far, ECHO_PORT);

    // The node's kernel reaches the backend (what a health check sees).
    let direct = SocketAddr::from((FAR_BACKEND, ECHO_PORT));
    let node_ok = cluster.nodes[0]
        .host
        .enter(move || TcpStream::connect_timeout(&direct, Duration::from_secs(2)).is_ok())
        .expect("enter the node");
    assert!(
        node_ok,
        "the node's kernel must reach the backend through the router"
    );

    // Through the VIP: the agent resolves the MACs every few seconds.
    let target = SocketAddr::from((cluster.vip(), ROUTED_PORT));
    let answer = support::wait_for(Duration::from_secs(30), || {
        echo_through(&cluster.client, target, b"through the router")
    });
    let metrics = cluster.metrics(0).unwrap_or_default();
    let no_neigh: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("no_neigh") && !l.starts_with('#'))
        .collect();
    assert_eq!(
        answer.as_deref(),
        Some(&b"through the router"[..]),
        "a connection through the VIP to a backend behind the router must be echoed \
         within 30 s (the XDP decisions for a missing MAC: {no_neigh:?})"
    );
}

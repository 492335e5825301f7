//! Backend ids (the data plane has 1,024, `MAX_BACKENDS`) are freed once no
//! service uses a backend and no flow points at it: reloads that change
//! backends can go on for ever, and a removed backend with established
//! flows keeps its id (and its entry) until they are gone.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
};

use vipx_agent::dataplane::{BackendSpec, Dataplane, ServiceTable};
use vipx_common::service::MAX_BACKENDS;
use vipx_lab::rig::nat_spec;

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 79, 0, 100));
const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 79, 0, 31));

/// The service with three backends on ports `first..first + 3` (a small
/// Maglev table: this test reloads often).
fn spec(first: u16) -> vipx_agent::dataplane::ServiceSpec {
    let mut spec = nat_spec(VIP, BACKEND, 13);
    spec.backends = (0..3)
        .map(|i| BackendSpec {
            addr: BACKEND,
            port: first + i,
            weight: 1,
        })
        .collect();
    spec
}

#[test]
fn reloads_that_change_backends_never_run_out_of_ids() {
    let dataplane = Dataplane::load_with(4096).expect("load the XDP program");
    let mut table = ServiceTable::new(dataplane.maps(), false);
    // Three new backends per reload: more than MAX_BACKENDS in all.
    let reloads = u16::try_from(MAX_BACKENDS).expect("fits") / 3 + 50;
    for n in 0..reloads {
        table
            .apply(&[spec(10_000 + 3 * n)])
            .unwrap_or_else(|err| panic!("reload {n} ({} backends so far): {err}", 3 * n));
        // Two runs of the flow collector, no flow in the table.
        table.set_backend_flows(HashMap::new());
        table.set_backend_flows(HashMap::new());
    }
}

#[test]
fn a_removed_backend_keeps_its_id_while_flows_point_at_it() {
    let dataplane = Dataplane::load_with(4096).expect("load the XDP program");
    let mut table = ServiceTable::new(dataplane.maps(), false);
    table.apply(&[spec(6432)]).expect("install");
    let gone = table.backend_id(BACKEND, 6434).expect("an id");
    // The third backend leaves the service; a flow still points at it.
    let mut kept = spec(6432);
    kept.backends.pop();
    table.apply(&[kept.clone()]).expect("reload");
    for _ in 0..5 {
        table.set_backend_flows(HashMap::from([(gone, 1)]));
        assert_eq!(
            table.backend_id(BACKEND, 6434),
            Some(gone),
            "an established flow keeps reaching its backend"
        );
    }
    // The flow ended: one collector run is not enough (it may have started
    // before the backend left), the second frees the id.
    table.set_backend_flows(HashMap::new());
    assert_eq!(table.backend_id(BACKEND, 6434), Some(gone), "one run");
    table.set_backend_flows(HashMap::new());
    assert_eq!(table.backend_id(BACKEND, 6434), None, "freed");
    assert!(
        table.backend_id(BACKEND, 6432).is_some() && table.backend_id(BACKEND, 6433).is_some(),
        "the backends in use keep theirs"
    );
    // A new backend may now take the freed id.
    let mut next = kept;
    next.backends.push(BackendSpec {
        addr: BACKEND,
        port: 7000,
        weight: 1,
    });
    table.apply(&[next]).expect("a new backend");
    assert!(table.backend_id(BACKEND, 7000).is_some());
}

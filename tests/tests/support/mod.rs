//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different subset"
)]

use std::time::{Duration, Instant};

pub use vipx_lab::agent_bin;
pub use vipx_lab::http::{get as http_get, metric_value};

/// Polls `probe` every 50 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A session through the VIP answers (retried for a few seconds while the
/// client's ARP cache follows the gratuitous ARP).
pub fn vip_answers(cluster: &vipx_lab::Cluster) -> bool {
    wait_for(Duration::from_secs(5), || {
        vipx_lab::psql(
            &cluster.client,
            cluster.vip(),
            vipx_lab::VIP_PORT,
            "SELECT 'via the VIP'",
        )
        .ok()
        .filter(|out| out == "via the VIP")
    })
    .is_some()
}

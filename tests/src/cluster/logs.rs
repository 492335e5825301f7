//! The agents' logs, line by line with their stamps (the lab's shared
//! clock), for the reports of the scenario tests and the chaos run.

use super::Cluster;
use crate::walltime::WallTime;

impl Cluster {
    /// Node `index`'s agent log (every agent it ran, in turn): its lines
    /// with their stamps (lines without one, such as a panic's, belong to
    /// the stamp before them); empty when there is no log yet.
    pub fn agent_log(&self, index: usize) -> Vec<(WallTime, String)> {
        let host = &self.nodes[index].host;
        let path = self.lab.log_path(host.name(), "vipx-agent");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut last = None;
        text.lines()
            .filter_map(|line| {
                let stamp = line
                    .split_whitespace()
                    .next()
                    .and_then(WallTime::parse_rfc3339_utc);
                if stamp.is_some() {
                    last = stamp;
                }
                Some((last?, line.to_owned()))
            })
            .collect()
    }
}

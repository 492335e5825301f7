//! What the lab reads off a running cluster: who is MASTER, the agents'
//! metrics.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::Cluster;
use crate::http;

impl Cluster {
    /// Whether node `index` reports itself MASTER of the VIP group.
    pub fn is_master(&self, index: usize) -> bool {
        self.metric(index, "vipx_group_master{group=\"pg\"}") == Some(1.0)
    }

    /// Whether node `index` reports itself MASTER of the VIP group and no
    /// other node does (one that does not answer counts as not MASTER).
    pub fn is_only_master(&self, index: usize) -> bool {
        self.is_master(index) && (0..self.nodes.len()).all(|i| i == index || !self.is_master(i))
    }

    /// Waits until some node is MASTER of the VIP group; returns its index.
    pub fn wait_any_master(&self, limit: Duration) -> Result<usize> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(index) = (0..self.nodes.len()).find(|i| self.is_master(*i)) {
                return Ok(index);
            }
            if Instant::now() >= deadline {
                bail!("no node became MASTER within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until node `index` is MASTER of the VIP group.
    pub fn wait_master(&self, index: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !self.is_master(index) {
            if Instant::now() >= deadline {
                bail!(
                    "{} did not become MASTER within {limit:?}; its log:\n{}",
                    self.nodes[index].host.name(),
                    self.lab.log_tail(self.nodes[index].agent, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Node `index`'s `/metrics` page, scraped from the client.
    pub fn metrics(&self, index: usize) -> Result<String> {
        let (code, page) = http::get_from(&self.client, self.nodes[index].api, "/metrics")?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(page)
    }

    /// The value of one series on node `index`'s `/metrics` page.
    pub fn metric(&self, index: usize, series: &str) -> Option<f64> {
        http::metric_value(&self.metrics(index).ok()?, series)
    }
}

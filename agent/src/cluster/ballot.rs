//! The witness's one vote, given to one node at a time (as corosync's
//! qdevice gives its vote to one partition): a node that asks gets it when
//! nobody holds it; its holder keeps it while it asks again within the
//! lease (`quorum_timeout` + `ping_interval`), and gives it back by
//! pinging without asking. Two nodes that cannot see each other can
//! therefore never both count it.

use std::time::{Duration, Instant};

use tracing::info;

#[derive(Debug)]
pub struct Ballot {
    lease: Duration,
    holder: Option<(String, Instant)>,
}

impl Ballot {
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            holder: None,
        }
    }

    /// `node` pinged at `now`, asking for the vote or not; whom the vote
    /// belongs to afterwards.
    pub fn ask(&mut self, node: &str, want: bool, now: Instant) -> Option<String> {
        if let Some((holder, at)) = &self.holder
            && now.saturating_duration_since(*at) >= self.lease
        {
            info!(
                "witness: {holder} silent for {:?}: its vote is free",
                self.lease
            );
            self.holder = None;
        }
        match &mut self.holder {
            Some((holder, at)) if holder == node => {
                if want {
                    *at = now;
                } else {
                    info!("witness: {node} gave its vote back");
                    self.holder = None;
                }
            }
            None if want => {
                info!("witness: vote granted to {node}");
                self.holder = Some((node.to_owned(), now));
            }
            _ => {}
        }
        self.holder.as_ref().map(|(h, _)| h.clone())
    }

    /// Whom the vote belongs to at `now`.
    pub fn holder(&self, now: Instant) -> Option<&str> {
        self.holder
            .as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.lease)
            .map(|(h, _)| h.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(350);

    #[test]
    fn one_holder_at_a_time_until_it_falls_silent_or_gives_it_back() {
        let t0 = Instant::now();
        let mut ballot = Ballot::new(LEASE);
        assert_eq!(ballot.ask("n1", false, t0), None, "nobody asked");
        assert_eq!(ballot.ask("n1", true, t0).as_deref(), Some("n1"));
        assert_eq!(
            ballot.ask("n2", true, t0 + LEASE / 2).as_deref(),
            Some("n1"),
            "held: n2 does not get it"
        );
        assert_eq!(
            ballot
                .ask("n1", true, t0 + LEASE - Duration::from_millis(1))
                .as_deref(),
            Some("n1"),
            "renewed"
        );
        let renewed = t0 + LEASE - Duration::from_millis(1);
        assert_eq!(
            ballot
                .ask("n2", true, renewed + LEASE - Duration::from_millis(1))
                .as_deref(),
            Some("n1"),
            "the lease runs from the last renewal"
        );
        assert_eq!(
            ballot.ask("n2", true, renewed + LEASE).as_deref(),
            Some("n2"),
            "n1 silent for the lease: n2 gets it"
        );
        assert_eq!(
            ballot.ask("n2", false, renewed + LEASE).as_deref(),
            None,
            "given back"
        );
        assert_eq!(ballot.holder(renewed + LEASE), None);
    }
}

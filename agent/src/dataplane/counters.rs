//! The per-CPU counter maps, summed over CPUs.

use std::sync::Arc;

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use vipx_common::{Counter, MAP_ACTIONS, MAP_PEER_EVENTS_LOST, MAP_REASONS, action, reason};

use super::error::DataplaneError;

/// Names of the counter maps the agent reads (a missing one is reported by
/// name).
const COUNTER_MAPS: [&str; 3] = [MAP_ACTIONS, MAP_REASONS, MAP_PEER_EVENTS_LOST];

/// Handles on the counter maps; cheap to clone, shared with `/metrics`.
#[derive(Clone)]
pub struct CounterMaps {
    actions: Arc<PerCpuArray<MapData, Counter>>,
    reasons: Arc<PerCpuArray<MapData, Counter>>,
    events_lost: Arc<PerCpuArray<MapData, Counter>>,
}

/// Counters summed over CPUs, one entry per slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub actions: Vec<Counter>,
    pub reasons: Vec<Counter>,
    /// Peer events the ring buffer had no room for (packets: events).
    pub events_lost: Counter,
}

impl CounterSnapshot {
    /// The summed counter of one action (an `action::*` slot).
    pub fn action(&self, slot: u32) -> Counter {
        self.actions.get(slot as usize).copied().unwrap_or_default()
    }

    /// The summed counter of one reason (a `reason::*` slot).
    pub fn reason(&self, slot: u32) -> Counter {
        self.reasons.get(slot as usize).copied().unwrap_or_default()
    }

    /// `(label, counter)` pairs of the action slots.
    pub fn named_actions(&self) -> impl Iterator<Item = (&'static str, Counter)> + '_ {
        action::NAMES
            .iter()
            .copied()
            .zip(self.actions.iter().copied())
    }

    /// `(label, counter)` pairs of the reason slots.
    pub fn named_reasons(&self) -> impl Iterator<Item = (&'static str, Counter)> + '_ {
        reason::NAMES
            .iter()
            .copied()
            .zip(self.reasons.iter().copied())
    }
}

impl CounterMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        let mut take = |name: &'static str| -> Result<_, DataplaneError> {
            debug_assert!(COUNTER_MAPS.contains(&name));
            let map = ebpf
                .take_map(name)
                .ok_or(DataplaneError::Missing { kind: "map", name })?;
            let array = PerCpuArray::try_from(map)
                .map_err(|source| DataplaneError::Map { name, source })?;
            Ok(Arc::new(array))
        };
        Ok(Self {
            actions: take(MAP_ACTIONS)?,
            reasons: take(MAP_REASONS)?,
            events_lost: take(MAP_PEER_EVENTS_LOST)?,
        })
    }

    /// Reads every slot of the maps and sums the per-CPU values.
    pub fn snapshot(&self) -> Result<CounterSnapshot, DataplaneError> {
        Ok(CounterSnapshot {
            actions: sum_all(&self.actions, MAP_ACTIONS, action::COUNT)?,
            reasons: sum_all(&self.reasons, MAP_REASONS, reason::COUNT)?,
            events_lost: sum_all(&self.events_lost, MAP_PEER_EVENTS_LOST, 1)?
                .first()
                .copied()
                .unwrap_or_default(),
        })
    }
}

fn sum_all(
    map: &PerCpuArray<MapData, Counter>,
    name: &'static str,
    slots: u32,
) -> Result<Vec<Counter>, DataplaneError> {
    (0..slots)
        .map(|slot| {
            let per_cpu = map
                .get(&slot, 0)
                .map_err(|source| DataplaneError::Map { name, source })?;
            Ok(per_cpu
                .iter()
                .fold(Counter::default(), |sum, c| sum.add(*c)))
        })
        .collect()
}

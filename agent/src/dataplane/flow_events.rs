//! The program's flow events, for replication: each flow it creates and
//! each flow a reset ends, through a ring buffer, while the switch says so.
//! A full buffer loses events (counted, [`FlowEvents::lost`]), never flows.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, RingBuf},
};
use vipx_common::{Counter, FlowEvent, MAP_FLOW_EVENTS, MAP_FLOW_EVENTS_LOST, MAP_FLOW_EVENTS_ON};

use super::{error::DataplaneError, maps::take};

/// The ring buffer of flow events, its switch and its count of losses. One
/// consumer: wait for readability (epoll, tokio's `AsyncFd`), then call
/// [`FlowEvents::next`] until it returns `None`.
pub struct FlowEvents {
    ring: RingBuf<MapData>,
    on: Array<MapData, u32>,
    lost: PerCpuArray<MapData, Counter>,
}

impl FlowEvents {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Ok(Self {
            ring: take(ebpf, MAP_FLOW_EVENTS)?,
            on: take(ebpf, MAP_FLOW_EVENTS_ON)?,
            lost: take(ebpf, MAP_FLOW_EVENTS_LOST)?,
        })
    }

    /// Turns the events on (the agent replicates) or off.
    pub fn enable(&mut self, on: bool) -> Result<(), DataplaneError> {
        self.on
            .set(0, u32::from(on), 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_FLOW_EVENTS_ON,
                source,
            })
    }

    /// The next event, or `None` when the buffer is empty. Never blocks.
    #[expect(
        clippy::should_implement_trait,
        reason = "a drain of a ring buffer that refills, not an iterator that ends"
    )]
    pub fn next(&mut self) -> Option<FlowEvent> {
        while let Some(item) = self.ring.next() {
            if item.len() >= size_of::<FlowEvent>() {
                // SAFETY: at least `size_of::<FlowEvent>()` readable bytes;
                // `FlowEvent` is plain integers, valid for any bytes.
                return Some(unsafe { item.as_ptr().cast::<FlowEvent>().read_unaligned() });
            }
        }
        None
    }

    /// Events the buffer had no room for, since the program was loaded.
    pub fn lost(&self) -> Result<u64, DataplaneError> {
        let per_cpu = self.lost.get(&0, 0).map_err(|source| DataplaneError::Map {
            name: MAP_FLOW_EVENTS_LOST,
            source,
        })?;
        Ok(per_cpu.iter().map(|c| c.packets).sum())
    }
}

impl AsFd for FlowEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl AsRawFd for FlowEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

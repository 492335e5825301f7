//! Flow events for replication: the program reports each flow it creates
//! and each flow a reset ends through a ring buffer, while the agent says
//! it replicates (`VIPX_FLOW_EVENTS_ON`). A full buffer loses the event,
//! never the flow, and counts it: the agent then sends its peers the whole
//! table.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use vipx_common::{Counter, Flow, FlowEvent, FlowKey, flow::FLOW_EVENTS_BYTES};

/// `FlowEvent`s for the agent.
#[map(name = "VIPX_FLOW_EVENTS")]
static VIPX_FLOW_EVENTS: RingBuf = RingBuf::with_byte_size(FLOW_EVENTS_BYTES, 0);

/// One `u32`: 1 while the agent replicates.
#[map(name = "VIPX_FLOW_EVENTS_ON")]
static VIPX_FLOW_EVENTS_ON: Array<u32> = Array::with_max_entries(1, 0);

/// Events the ring buffer had no room for (one slot).
#[map(name = "VIPX_FLOW_EVENTS_LOST")]
static VIPX_FLOW_EVENTS_LOST: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1, 0);

/// Reports a flow (`kind`: `FLOW_EVENT_*`), if the agent replicates.
#[inline(always)]
pub fn report(kind: u8, key: &FlowKey, flow: &Flow, client_mac: [u8; 6]) {
    if VIPX_FLOW_EVENTS_ON.get(0).copied().unwrap_or(0) == 0 {
        return;
    }
    let Some(mut slot) = VIPX_FLOW_EVENTS.reserve::<FlowEvent>(0) else {
        crate::bump(&VIPX_FLOW_EVENTS_LOST, 0, size_of::<FlowEvent>() as u64);
        return;
    };
    let event = slot.as_mut_ptr();
    // SAFETY: the reserved slot holds a `FlowEvent`; every field is written
    // before it is submitted.
    unsafe {
        (*event).key = *key;
        (*event).flow = *flow;
        (*event).client_mac = client_mac;
        (*event).kind = kind;
        (*event)._pad = 0;
    }
    slot.submit(0);
}

//! The benchmark's floor program (`vipx-floor`, built beside the main
//! object by `cargo xtask build-ebpf`): loaded from its file, its flow map
//! written here, run through `BPF_PROG_TEST_RUN` like the main program.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData},
    programs::Xdp,
};
use vipx_common::{
    FlowKey,
    floor::{MAP_FLOOR_FLOWS, PROG_FLOOR},
};

pub use vipx_common::floor::{FLOOR_MODE_DSR, FLOOR_MODE_NAT, FloorFlow};

/// The loaded floor program and its flow map.
pub struct Floor {
    ebpf: Ebpf,
    flows: HashMap<MapData, FlowKey, FloorFlow>,
}

impl Floor {
    /// Loads the object at `object` with room for `entries` flows.
    pub fn load(object: &Path, entries: u32) -> Result<Self> {
        let bytes = std::fs::read(object)
            .with_context(|| format!("read {} (cargo xtask build-ebpf)", object.display()))?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_FLOOR_FLOWS, entries)
            .load(&bytes)
            .context("load the floor object")?;
        program(&mut ebpf)?
            .load()
            .context("load the floor program")?;
        let flows = HashMap::try_from(
            ebpf.take_map(MAP_FLOOR_FLOWS)
                .context("the floor object has no flow map")?,
        )?;
        Ok(Self { ebpf, flows })
    }

    /// Writes (or replaces) the flow of `key`.
    pub fn insert(&mut self, key: &FlowKey, flow: &FloorFlow) -> Result<()> {
        self.flows
            .insert(key, flow, 0)
            .context("write the floor's flow map")
    }

    /// Runs one frame `repeat` times: action, output frame, mean time.
    pub fn run_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, Vec<u8>, Duration)> {
        crate::rig::test_run(program(&mut self.ebpf)?, frame, repeat)
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(ebpf
        .program_mut(PROG_FLOOR)
        .context("the floor object has no program")?
        .try_into()?)
}

//! Reading a whole hash map with `BPF_MAP_LOOKUP_BATCH`: thousands of
//! entries per system call, where iterating takes two calls per entry (the
//! flow collector reads the whole flow table every second).

use std::{
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Pod,
    maps::{HashMap, IterableMap as _, MapData},
};

/// `BPF_MAP_LOOKUP_BATCH` (`include/uapi/linux/bpf.h`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call.
const CHUNK: usize = 4096;

/// The `batch` part of `union bpf_attr`.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of `map`, or `None` if the kernel cannot batch (the caller
/// then iterates). Entries written or removed meanwhile may be missed or
/// seen twice, as with iteration.
pub(super) fn entries<K: Pod, V: Pod>(map: &HashMap<MapData, K, V>) -> Option<Vec<(K, V)>> {
    let fd = map.map().fd().as_fd().as_raw_fd();
    let mut keys: Vec<K> = Vec::with_capacity(CHUNK);
    let mut values: Vec<V> = Vec::with_capacity(CHUNK);
    let mut out = Vec::new();
    // Hash maps' batch cursor is a bucket index (a u32).
    let (mut cursor, mut next) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw const cursor as u64 },
            out_batch: &raw mut next as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: u32::try_from(fd).ok()?,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: `attr` is a live `repr(C)` prefix of `union bpf_attr`;
        // the kernel writes at most `count` keys and values into buffers
        // of that capacity, and the cursor into `next`.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>() as libc::c_uint,
            )
        };
        let done = if ret < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                // The end of the map: `count` says what this call filled.
                Some(libc::ENOENT) => true,
                _ => return None,
            }
        } else {
            false
        };
        let filled = (attr.count as usize).min(CHUNK);
        // SAFETY: the kernel initialised the first `filled` elements of
        // each buffer (plain-data types).
        unsafe {
            keys.set_len(filled);
            values.set_len(filled);
        }
        out.extend(keys.drain(..).zip(values.drain(..)));
        if done {
            return Some(out);
        }
        cursor = next;
        first = false;
    }
}

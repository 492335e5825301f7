//! The clock of the balancing path: `CLOCK_MONOTONIC_COARSE` (the time of
//! the last tick, a plain read), with the precise clock only where the
//! difference could matter: a lease that ends within [`COARSE_LAG_NS`].

use aya_ebpf::helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};

/// Most the coarse clock lags the precise one: a tick is at most 10 ms
/// (`HZ` >= 100); five of them are a wide margin.
pub const COARSE_LAG_NS: u64 = 50_000_000;

/// `CLOCK_MONOTONIC_COARSE`: never ahead of `CLOCK_MONOTONIC`, behind it by
/// less than [`COARSE_LAG_NS`].
#[inline(always)]
pub fn coarse_ns() -> u64 {
    // SAFETY: reading the clock has no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// `CLOCK_MONOTONIC`.
#[inline(always)]
pub fn precise_ns() -> u64 {
    // SAFETY: reading the clock has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Whether `deadline` (`CLOCK_MONOTONIC` ns) has passed, given the coarse
/// time `coarse`: decided by the coarse clock when the deadline is further
/// than its lag, by the precise clock otherwise, so the answer is always
/// the precise clock's.
#[inline(always)]
pub fn passed(deadline: u64, coarse: u64) -> bool {
    coarse.saturating_add(COARSE_LAG_NS) > deadline && precise_ns() > deadline
}

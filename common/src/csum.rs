//! Incremental Internet checksum updates (RFC 1624, eqn. 3:
//! `HC' = ~(~HC + ~m + m')`), on big-endian 16-bit words as they sit in the
//! packet. Shared by the XDP program and the tests that check it.

/// Folds a 32-bit one's complement sum to 16 bits.
#[inline(always)]
#[must_use]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum `check` after one 16-bit word changed from `old` to `new`.
#[inline(always)]
#[must_use]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold((!check) as u32 + (!old) as u32 + new as u32)
}

/// The checksum after a 4-byte field (an IPv4 address) changed.
#[inline(always)]
#[must_use]
pub const fn replace32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let check = replace16(
        check,
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    );
    replace16(
        check,
        u16::from_be_bytes([old[2], old[3]]),
        u16::from_be_bytes([new[2], new[3]]),
    )
}

/// The checksum after a 16-byte field (an IPv6 address) changed.
#[inline(always)]
#[must_use]
pub const fn replace128(check: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let mut check = check;
    let mut i = 0;
    while i < 16 {
        check = replace16(
            check,
            u16::from_be_bytes([old[i], old[i + 1]]),
            u16::from_be_bytes([new[i], new[i + 1]]),
        );
        i += 2;
    }
    check
}

/// The full checksum of `data` (for tests and for building frames).
#[must_use]
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header with a valid checksum (RFC 1071's example shape).
    fn header(src: [u8; 4], dst: [u8; 4]) -> [u8; 20] {
        let mut h = [
            0x45, 0, 0, 60, 0x1c, 0x46, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn incremental_update_matches_a_full_recompute() {
        let cases = [
            (
                [10, 0, 0, 1],
                [10, 0, 0, 100],
                [10, 0, 0, 100],
                [10, 0, 0, 31],
            ),
            (
                [192, 168, 255, 255],
                [0, 0, 0, 0],
                [255, 255, 255, 255],
                [1, 2, 3, 4],
            ),
            ([0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]),
        ];
        for (src, dst, new_src, new_dst) in cases {
            let before = header(src, dst);
            let check = u16::from_be_bytes([before[10], before[11]]);
            let check = replace32(replace32(check, src, new_src), dst, new_dst);
            let after = header(new_src, new_dst);
            assert_eq!(
                check.to_be_bytes(),
                [after[10], after[11]],
                "{src:?}->{new_src:?}, {dst:?}->{new_dst:?}"
            );
            assert_eq!(checksum(&after), 0, "a valid header sums to zero");
        }
    }

    #[test]
    fn replace128_matches_a_full_recompute() {
        let mut data = [0u8; 20];
        data[..16].copy_from_slice(&[0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11]);
        data[16..].copy_from_slice(&[0x12, 0x34, 0, 0]);
        let c = checksum(&data);
        data[18..].copy_from_slice(&c.to_be_bytes());
        let old: [u8; 16] = data[..16].try_into().unwrap();
        let new = [
            0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0xab, 0xcd, 0, 0, 0, 0, 0, 0x64,
        ];
        let updated = replace128(c, &old, &new);
        data[..16].copy_from_slice(&new);
        data[18..].copy_from_slice(&updated.to_be_bytes());
        assert_eq!(checksum(&data), 0);
    }
}

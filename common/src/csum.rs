//! The Internet checksum, on big-endian 16-bit words as they sit in the
//! packet: the one's complement sum of RFC 1071 with the IPv4 and IPv6
//! pseudo-headers (for the agent's VRRP adverts and neighbour
//! advertisements, and the tests' frames), and incremental updates (RFC
//! 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`) for the XDP program.

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

/// `sum` plus the one's complement sum of `data` (RFC 1071 section 4.1):
/// big-endian 16-bit words, an odd last byte padded with zero, every carry
/// folded back in. Sums chain: the sum of a pseudo-header then a message is
/// `add(add(0, header), message)` (the header of an even length).
#[must_use]
pub const fn add(sum: u16, data: &[u8]) -> u16 {
    let mut sum = sum;
    let mut i = 0;
    while i + 1 < data.len() {
        sum = fold(sum as u32 + u16::from_be_bytes([data[i], data[i + 1]]) as u32);
        i += 2;
    }
    if i < data.len() {
        sum = fold(sum as u32 + u16::from_be_bytes([data[i], 0]) as u32);
    }
    sum
}

/// The sum of the IPv4 pseudo-header (RFC 768, RFC 9293 section 3.1):
/// source, destination, a zero byte, the protocol and the upper-layer
/// length.
#[must_use]
pub const fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u16 {
    let len = len.to_be_bytes();
    add(add(add(0, &src), &dst), &[0, proto, len[0], len[1]])
}

/// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1): source,
/// destination, the 32-bit upper-layer length, three zero bytes and the
/// next header.
#[must_use]
pub const fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u16 {
    let len = len.to_be_bytes();
    add(
        add(add(0, src), dst),
        &[len[0], len[1], len[2], len[3], 0, 0, 0, proto],
    )
}

/// The full checksum of `data`: the complement of its sum.
#[must_use]
pub const fn checksum(data: &[u8]) -> u16 {
    !add(0, data)
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
    fn sums_the_rfc_1071_example() {
        // RFC 1071 section 3, "Numerical Examples": the bytes 00 01 f2 03
        // f4 f5 f6 f7 sum to ddf2 (one carry folded back in).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(add(0, &data), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
        assert_eq!(add(add(0, &data[..4]), &data[4..]), 0xddf2, "chained");
        assert_eq!(add(0, &[]), 0, "nothing");
    }

    #[test]
    fn an_odd_last_byte_is_padded_with_zero() {
        assert_eq!(add(0, &[0x12]), 0x1200);
        assert_eq!(add(0, &[0x00, 0x01, 0xf2]), 0xf201);
        assert_eq!(add(0xffff, &[0x00, 0x01]), 0x0001, "end-around carry");
    }

    #[test]
    fn pseudo_headers_sum_their_fields() {
        // 10.0.0.1 -> 224.0.0.18, VRRP (112), 20 bytes: 0a00 + 0001 + e000
        // + 0012 + 0070 + 0014 = ea97.
        assert_eq!(pseudo_v4([10, 0, 0, 1], [224, 0, 0, 18], 112, 20), 0xea97);
        // fe80::1 -> ff02::12, VRRP, 20 bytes: fe80 + 0001 + ff02 + 0012 +
        // 0014 + 0070 = 1_fe19, folded fe1a.
        let src = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12];
        assert_eq!(pseudo_v6(&src, &dst, 112, 20), 0xfe1a);
        assert_eq!(
            pseudo_v6(&src, &dst, 112, 0x0001_0000),
            0xfe07,
            "length high half"
        );
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

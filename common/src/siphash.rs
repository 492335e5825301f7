//! SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input
//! PRF", 2012): a keyed 64-bit MAC for short messages, made of 64-bit
//! additions, rotations and XORs only, so the XDP program computes it as
//! the agent does. It authenticates vipx heartbeats.
//!
//! Written here once for both sides; the tests check it against the
//! paper's test vectors and the `siphasher` crate.

/// SipHash-2-4 of the first `L` bytes of `m` (`L <= N`: the MAC of a
/// message that is followed by its tag in the same buffer), under the
/// 128-bit key `k0`, `k1` (little-endian halves, as in the paper).
#[inline(always)]
#[must_use]
pub fn siphash24<const N: usize, const L: usize>(k0: u64, k1: u64, m: &[u8; N]) -> u64 {
    let mut v0 = k0 ^ 0x736f_6d65_7073_6575;
    let mut v1 = k1 ^ 0x646f_7261_6e64_6f6d;
    let mut v2 = k0 ^ 0x6c79_6765_6e65_7261;
    let mut v3 = k1 ^ 0x7465_6462_7974_6573;
    let mut i = 0;
    while i + 8 <= L {
        let word = u64::from_le_bytes([
            m[i],
            m[i + 1],
            m[i + 2],
            m[i + 3],
            m[i + 4],
            m[i + 5],
            m[i + 6],
            m[i + 7],
        ]);
        v3 ^= word;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= word;
        i += 8;
    }
    // The last block: the remaining bytes, and the length's low byte on top.
    let mut last = ((L as u64) & 0xff) << 56;
    let mut j = 0;
    while i + j < L {
        last |= u64::from(m[i + j]) << (8 * j);
        j += 1;
    }
    v3 ^= last;
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^= last;
    v2 ^= 0xff;
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^ v1 ^ v2 ^ v3
}

/// One SipRound.
#[inline(always)]
fn round(v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64) {
    *v0 = v0.wrapping_add(*v1);
    *v1 = v1.rotate_left(13);
    *v1 ^= *v0;
    *v0 = v0.rotate_left(32);
    *v2 = v2.wrapping_add(*v3);
    *v3 = v3.rotate_left(16);
    *v3 ^= *v2;
    *v0 = v0.wrapping_add(*v3);
    *v3 = v3.rotate_left(21);
    *v3 ^= *v0;
    *v2 = v2.wrapping_add(*v1);
    *v1 = v1.rotate_left(17);
    *v1 ^= *v2;
    *v2 = v2.rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's key: bytes 00..0f.
    const K0: u64 = 0x0706_0504_0302_0100;
    const K1: u64 = 0x0f0e_0d0c_0b0a_0908;

    fn message<const N: usize>() -> [u8; N] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn the_papers_test_vector() {
        // Appendix A: the 15-byte message 00..0e gives a129ca6149be45e5.
        assert_eq!(
            siphash24::<15, 15>(K0, K1, &message()),
            0xa129_ca61_49be_45e5
        );
        // The reference implementation's vectors.h: the empty message.
        assert_eq!(siphash24::<0, 0>(K0, K1, &[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn agrees_with_the_siphasher_crate_on_every_length_to_64() {
        use core::hash::Hasher as _;
        let m: [u8; 64] = message();
        macro_rules! check {
            ($($len:literal)*) => {$(
                let mut h = siphasher::sip::SipHasher24::new_with_keys(K0, K1);
                h.write(&m[..$len]);
                assert_eq!(siphash24::<64, $len>(K0, K1, &m), h.finish(), "length {}", $len);
            )*};
        }
        check!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28
               29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53
               54 55 56 57 58 59 60 61 62 63 64);
    }
}

//! CRC-32C (Castagnoli): the checksum of every store record. The SSE 4.2 `crc32` instruction
//! computes exactly this polynomial, so on x86_64 it is used when the CPU has it (recovery
//! checks every byte of the log, twice); elsewhere a table does it. Hand-written because it is
//! forty lines and the store must not depend on anything it cannot audit.

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82f6_3b78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = make_table();

fn update_table(mut c: u32, p: &[u8]) -> u32 {
    for &b in p {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn update_sse42(c: u32, p: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c64 = c as u64;
    let mut words = p.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        c64 = _mm_crc32_u64(c64, u64::from_le_bytes(a));
    }
    let mut c = c64 as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    c
}

fn update(c: u32, p: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU was just checked to support SSE 4.2.
            return unsafe { update_sse42(c, p) };
        }
    }
    update_table(c, p)
}

/// CRC-32C of `parts` concatenated.
pub fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for p in parts {
        c = update(c, p);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_check_value() {
        // The CRC-32C check value of "123456789" (RFC 3720 appendix B.4).
        assert_eq!(crc32c(&[b"123456789"]), 0xe306_9283);
        assert_eq!(crc32c(&[b"1234", b"56789"]), 0xe306_9283);
        assert_eq!(crc32c(&[b""]), 0);
    }

    #[test]
    fn hardware_and_table_agree_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                let p = &data[start..end];
                assert_eq!(update(!0, p), update_table(!0, p), "{start}..{end}");
            }
        }
    }
}

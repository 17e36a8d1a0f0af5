//! QUIC variable-length integers (RFC 9000 §16): HTTP/3 frames and HTTP capsules both use
//! them.

use bytes::BufMut;

/// The largest value a varint holds.
pub(crate) const MAX: u64 = (1 << 62) - 1;

/// Reads a varint from the front of `buf`: the value and its length, or `None` when `buf`
/// holds only part of it.
pub(crate) fn get(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | u64::from(*b);
    }
    Some((v, len))
}

/// Appends `v` in its shortest form. Values above [`MAX`] are clamped (no caller passes one:
/// lengths and ids are bounded far below it).
pub(crate) fn put(buf: &mut impl BufMut, v: u64) {
    let v = v.min(MAX);
    if v < 1 << 6 {
        buf.put_u8(v as u8);
    } else if v < 1 << 14 {
        buf.put_u16(0x4000 | v as u16);
    } else if v < 1 << 30 {
        buf.put_u32(0x8000_0000 | v as u32);
    } else {
        buf.put_u64(0xc000_0000_0000_0000 | v);
    }
}

/// The encoded length of `v`.
pub(crate) fn len(v: u64) -> usize {
    match v {
        0..0x40 => 1,
        0x40..0x4000 => 2,
        0x4000..0x4000_0000 => 4,
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_boundary() {
        for v in [0, 63, 64, 16383, 16384, (1 << 30) - 1, 1 << 30, MAX] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(b.len(), len(v), "{v}");
            assert_eq!(get(&b), Some((v, b.len())), "{v}");
            assert_eq!(get(&b[..b.len() - 1]), None, "{v} truncated");
        }
        // RFC 9000 appendix A.1's examples.
        assert_eq!(
            get(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(get(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        assert_eq!(get(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(get(&[0x40, 0x25]), Some((37, 2)));
    }
}

//! Deterministic test data that never has to exist whole.

use bytes::Bytes;

/// Length of the pseudo-random block the pattern repeats. Not a power of two, so that any chunk
/// at a wrong offset has different bytes (reordered or dropped writes change the digest).
const BLOCK: usize = (1 << 20) + 7;

/// A seeded byte stream: `chunk(offset, len)` returns bytes `offset..offset + len` of it.
/// Producing a chunk is a memcpy, so generating gigabytes costs little.
#[derive(Clone)]
pub struct Pattern {
    block: Bytes,
}

impl Pattern {
    pub fn new(seed: u64) -> Self {
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let mut block = Vec::with_capacity(BLOCK + 8);
        while block.len() < BLOCK {
            // xorshift64*: fast and good enough to make every offset distinct.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            block.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        block.truncate(BLOCK);
        Pattern {
            block: Bytes::from(block),
        }
    }

    pub fn chunk(&self, offset: u64, len: usize) -> Bytes {
        let mut out = Vec::with_capacity(len);
        let mut pos = (offset % BLOCK as u64) as usize;
        while out.len() < len {
            let n = (len - out.len()).min(BLOCK - pos);
            out.extend_from_slice(&self.block[pos..pos + n]);
            pos = 0;
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_a_consistent_stream() {
        let p = Pattern::new(1);
        let whole = p.chunk(10, 3 * BLOCK);
        let a = p.chunk(10, BLOCK - 3);
        let b = p.chunk(10 + (BLOCK - 3) as u64, 2 * BLOCK + 3);
        assert_eq!(&whole[..a.len()], &a[..]);
        assert_eq!(&whole[a.len()..], &b[..]);
        assert_ne!(p.chunk(0, 64), p.chunk(64, 64));
        assert_ne!(Pattern::new(2).chunk(0, 64), p.chunk(0, 64));
    }
}

//! A big-endian bit reader for the few codec headers the track muxers read (VP9's
//! uncompressed header, H.265's SPS, AV1's sequence header). Every read is checked: a header
//! cut short gives `None`, never a panic.

pub struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    pub fn new(data: &'a [u8]) -> Bits<'a> {
        Bits { data, pos: 0 }
    }

    /// The next `n` bits (at most 32) as an unsigned number.
    pub fn read(&mut self, n: u32) -> Option<u32> {
        if n > 32 {
            return None;
        }
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    pub fn flag(&mut self) -> Option<bool> {
        self.read(1).map(|b| b == 1)
    }

    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.pos = self.pos.checked_add(n)?;
        (self.pos <= self.data.len() * 8).then_some(())
    }

    /// Exp-Golomb `ue(v)` (H.264/H.265).
    pub fn ue(&mut self) -> Option<u32> {
        let zeros = self.leading_zeros()?;
        let rest = self.read(zeros)?;
        u32::try_from((1u64 << zeros) - 1 + u64::from(rest)).ok()
    }

    /// AV1's `uvlc()` (AV1 spec §4.10.3).
    pub fn uvlc(&mut self) -> Option<u32> {
        let zeros = self.leading_zeros()?;
        Some(
            self.read(zeros)?
                .saturating_add(((1u64 << zeros) - 1) as u32),
        )
    }

    /// Zero bits up to and including the next one bit (at most 31).
    fn leading_zeros(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.flag()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(zeros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fixed_and_exp_golomb_fields_and_stops_at_the_end() {
        // 101 | 1 (ue 0) | 010 (ue 1) | 00111 (ue 6) | then 4 bits left of the 2nd byte.
        let mut r = Bits::new(&[0b1011_0100, 0b0111_1010]);
        assert_eq!(r.read(3), Some(0b101));
        assert_eq!(r.ue(), Some(0));
        assert_eq!(r.ue(), Some(1));
        assert_eq!(r.ue(), Some(6));
        assert_eq!(r.read(4), Some(0b1010));
        assert_eq!(r.read(1), None);
        assert_eq!(Bits::new(&[0, 0, 0, 0, 0]).ue(), None);
        assert_eq!(Bits::new(&[0xff]).read(33), None);
        assert!(Bits::new(&[0xff]).skip(9).is_none());
    }
}

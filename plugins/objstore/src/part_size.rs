//! How big each part of a multipart upload is.
//!
//! S3 and GCS's XML API allow at most 10 000 parts per upload and require every part but the
//! last to be at least 5 MiB; Azure allows 50 000 blocks. Parts are also the unit of memory:
//! an object holds at most one part being filled plus [`CONCURRENCY`] parts in flight.

/// Parts uploaded at once per object. Awaiting a write waits for one of them to finish.
pub const CONCURRENCY: usize = 2;
/// The smallest part S3 and GCS accept (except for the last one).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The part size when the object's size is unknown: up to 80 GB fit in 10 000 parts.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// The most parts S3 and GCS accept in one upload.
pub const MAX_PARTS: u64 = 10_000;

const MIB: u64 = 1 << 20;

/// The part size for an object of `expected_size` bytes (when known): the smallest whole number
/// of MiB, at least [`MIN_PART_SIZE`], that keeps the object within [`MAX_PARTS`] parts.
pub fn part_size(expected_size: Option<u64>) -> usize {
    let size = match expected_size {
        None => DEFAULT_PART_SIZE,
        Some(total) => total
            .div_ceil(MAX_PARTS)
            .div_ceil(MIB)
            .saturating_mul(MIB)
            .clamp(MIN_PART_SIZE, MAX_PART_SIZE),
    };
    // 5 GiB fits in usize on every 64-bit target; a 32-bit one gets the most it can address.
    usize::try_from(size).unwrap_or(usize::MAX)
}

/// Upper bound of the bytes an object holds in memory: one part being filled plus the parts in
/// flight.
pub fn memory_bound(part_size: usize) -> usize {
    part_size.saturating_mul(CONCURRENCY + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_size_uses_the_default() {
        assert_eq!(part_size(None), 8 << 20);
    }

    #[test]
    fn small_and_medium_objects_use_the_minimum() {
        for size in [0, 1, 5 << 20, 1 << 30, 48 << 30] {
            assert_eq!(part_size(Some(size)), 5 << 20, "{size}");
        }
    }

    #[test]
    fn large_objects_stay_under_ten_thousand_parts() {
        for size in [
            50 << 30,
            (50 << 30) + 1,
            100 << 30,
            1 << 40,
            5 << 40,
            48_828_125_000_000,
        ] {
            let part = part_size(Some(size)) as u64;
            assert!(size.div_ceil(part) <= MAX_PARTS, "{size}: {part}");
            assert_eq!(part % MIB, 0, "{size}: {part} is not whole MiB");
            assert!(part >= MIN_PART_SIZE);
        }
        // 100 GiB: 10.24 MiB per part, rounded up to 11 MiB.
        assert_eq!(part_size(Some(100 << 30)), 11 << 20);
    }

    #[test]
    fn absurd_sizes_are_capped() {
        assert_eq!(part_size(Some(u64::MAX)) as u64, MAX_PART_SIZE);
    }

    #[test]
    fn memory_is_parts_in_flight_plus_one() {
        assert_eq!(memory_bound(8 << 20), 24 << 20);
    }
}

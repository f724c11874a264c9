//! Wall-clock times for media timestamps, as Go names TIMESTAMP segments and images and dates
//! playlist entries: the first sample anchors the clock (`now` at that moment), every later
//! sample is that instant plus its distance in PTS (`builder/segment.go` `startDate`,
//! `sink/image.go` `getImageTime`).

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleClock {
    anchor: Option<(SystemTime, Duration)>,
}

impl SampleClock {
    pub fn new() -> SampleClock {
        SampleClock::default()
    }

    /// The wall clock of a sample with timestamp `pts`; the first call anchors the clock at
    /// `now`. A timestamp before the anchor's maps to the anchor (never earlier).
    pub fn wall_clock(&mut self, pts: Duration, now: SystemTime) -> SystemTime {
        let (start, first_pts) = *self.anchor.get_or_insert((now, pts));
        start + pts.saturating_sub(first_pts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn first_sample_anchors_later_ones_follow_pts() {
        let mut clock = SampleClock::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(clock.wall_clock(Duration::from_millis(300), t0), t0);
        // `now` is ignored once anchored: the PTS distance counts.
        let later = t0 + Duration::from_secs(99);
        assert_eq!(
            clock.wall_clock(Duration::from_millis(4300), later),
            t0 + Duration::from_secs(4)
        );
        assert_eq!(
            clock.wall_clock(Duration::ZERO, later),
            t0,
            "before the anchor: clamped"
        );
    }
}

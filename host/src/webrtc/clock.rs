//! Capture times on one clock for every subscribed track, so that audio and video (and several
//! publishers) line up in a composite recording.
//!
//! A frame's RTP time only orders it within its own track. The publisher's RTCP sender reports
//! (SR) pair an RTP time with its NTP wall clock, which is shared by all tracks of that
//! publisher: mapping each frame through its track's latest SR puts audio and video of one
//! publisher on the same time line, whatever their network delays. That sender clock is then
//! anchored to ours by the smallest transit seen (`arrival − sender time`) of the publisher, so
//! tracks of different publishers line up by arrival and the result stays near our wall clock.
//! The anchor may rise slowly ([`DRIFT_PER_SEC`]) to follow a sender clock running slower than
//! ours; a faster one lowers the minimum at once. So a recording does not drift from our clock
//! (and so from the mixer's, which runs on it) however long it lasts: the unit tests run an hour
//! of a publisher ±50 ppm off with 10–50 ms of jitter, and times stay within 1 ms of true.
//!
//! Until a track's first SR, its frames are timed by their RTP time, anchored to our clock by
//! the track's smallest transit seen so far (`arrival − RTP time`, the same drift allowance):
//! no jitter, a late first packet does not shift the track, but there is no cross-track sync
//! beyond arrival.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use str0m::rtp::rtcp::SenderInfo;

/// How fast a publisher's anchor may rise, in ns per second of media (100 ppm).
const DRIFT_PER_SEC: i64 = 100_000;

/// Unix nanoseconds of a wall-clock time (0 before 1970).
pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Our wall clock at `at` (an instant in the past, such as a packet's arrival).
pub fn wall_at(at: Instant) -> i64 {
    unix_nanos(SystemTime::now())
        - i64::try_from(Instant::now().saturating_duration_since(at).as_nanos()).unwrap_or(0)
}

/// The capture time of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureTime {
    /// Unix nanoseconds on the common clock.
    pub nanos: i64,
    /// Mapped through an RTCP sender report (false: from the arrival of the track's first frame).
    pub sender_synced: bool,
}

/// One sender clock (a publisher): how our clock relates to its NTP time.
#[derive(Debug, Default)]
struct Domain {
    /// Our wall clock minus the sender's, at the smallest transit seen.
    offset: Option<i64>,
    /// Sender time of the last update, for the drift allowance.
    last_sender_ns: i64,
}

/// One track's timing state before its first sender report: its RTP clock against ours.
#[derive(Debug, Default)]
struct Track {
    /// Our wall clock minus the RTP time (in ns), at the smallest transit seen.
    offset: Option<i64>,
    /// RTP time (ns) of the last update, for the drift allowance.
    last_rtp_ns: i64,
}

/// The capture clock of a recording: one per subscriber, shared by all its tracks.
#[derive(Debug, Default)]
pub struct CaptureClock {
    domains: HashMap<String, Domain>,
    tracks: HashMap<String, Track>,
}

/// How far an anchor may rise over `elapsed` ns of media.
fn drift_allowance(elapsed: i64) -> i64 {
    (i128::from(elapsed.max(0)) * i128::from(DRIFT_PER_SEC) / 1_000_000_000) as i64
}

fn ticks_to_ns(ticks: i64, rate: u32) -> i64 {
    if rate == 0 {
        return 0;
    }
    (i128::from(ticks) * 1_000_000_000 / i128::from(rate)) as i64
}

impl CaptureClock {
    pub fn new() -> CaptureClock {
        CaptureClock::default()
    }

    /// The capture time of a frame of `track_sid` (published by `publisher`, the sender clock)
    /// with extended RTP time `rtp` at `rate` Hz, received at `arrival` (Unix ns), given its
    /// track's latest sender report.
    pub fn capture_time(
        &mut self,
        publisher: &str,
        track_sid: &str,
        rtp: u64,
        rate: u32,
        arrival: i64,
        sr: Option<&SenderInfo>,
    ) -> CaptureTime {
        if let Some(sr) = sr {
            // RTP times wrap at 32 bits: the distance to the SR is what counts.
            let ticks = i64::from((rtp as u32).wrapping_sub(sr.rtp_time.numer() as u32) as i32);
            let sender = unix_nanos(sr.ntp_time) + ticks_to_ns(ticks, rate);
            let domain = self.domains.entry(publisher.to_owned()).or_default();
            let transit = arrival - sender;
            let offset = match domain.offset {
                None => transit,
                Some(o) => transit.min(o + drift_allowance(sender - domain.last_sender_ns)),
            };
            domain.offset = Some(offset);
            domain.last_sender_ns = domain.last_sender_ns.max(sender);
            return CaptureTime {
                nanos: sender + offset,
                sender_synced: true,
            };
        }
        let track = self.tracks.entry(track_sid.to_owned()).or_default();
        let rtp_ns = ticks_to_ns(i64::try_from(rtp).unwrap_or(i64::MAX), rate);
        let transit = arrival - rtp_ns;
        let offset = match track.offset {
            None => transit,
            Some(o) => transit.min(o + drift_allowance(rtp_ns - track.last_rtp_ns)),
        };
        track.offset = Some(offset);
        track.last_rtp_ns = track.last_rtp_ns.max(rtp_ns);
        CaptureTime {
            nanos: rtp_ns + offset,
            sender_synced: false,
        }
    }

    /// Forgets a track (unpublished): a republished track starts a new anchor.
    pub fn remove_track(&mut self, track_sid: &str) {
        self.tracks.remove(track_sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use str0m::media::MediaTime;

    const SEC: i64 = 1_000_000_000;

    fn sr(ntp_unix_ns: i64, rtp: u64, rate: u32) -> SenderInfo {
        SenderInfo {
            ssrc: 1.into(),
            ntp_time: UNIX_EPOCH + Duration::from_nanos(ntp_unix_ns as u64),
            rtp_time: MediaTime::new(rtp, str0m::media::Frequency::new(rate).unwrap()),
            sender_packet_count: 0,
            sender_octet_count: 0,
        }
    }

    #[test]
    fn sender_reports_align_audio_and_video_of_one_publisher_whatever_their_transit() {
        let mut c = CaptureClock::new();
        let base = 1_700_000_000 * SEC;
        // Video: RTP 90 kHz, SR says RTP 1000 = base. Audio: RTP 48 kHz, SR says RTP 5000 = base.
        let v_sr = sr(base, 1000, 90_000);
        let a_sr = sr(base, 5000, 48_000);
        // Both captured at base + 1 s; audio arrives after 20 ms, video after 80 ms.
        let v = c.capture_time(
            "alice",
            "TR_v",
            1000 + 90_000,
            90_000,
            base + SEC + 80_000_000,
            Some(&v_sr),
        );
        let a = c.capture_time(
            "alice",
            "TR_a",
            5000 + 48_000,
            48_000,
            base + SEC + 20_000_000,
            Some(&a_sr),
        );
        // The anchor is the smallest transit (20 ms, once audio is seen); later frames agree.
        let v2 = c.capture_time(
            "alice",
            "TR_v",
            1000 + 2 * 90_000,
            90_000,
            base + 2 * SEC + 80_000_000,
            Some(&v_sr),
        );
        let a2 = c.capture_time(
            "alice",
            "TR_a",
            5000 + 2 * 48_000,
            48_000,
            base + 2 * SEC + 20_000_000,
            Some(&a_sr),
        );
        assert!(v.sender_synced && a.sender_synced);
        // Equal up to the drift allowance (100 µs per second of media).
        assert!(
            (v2.nanos - a2.nanos).abs() <= 100_000,
            "same capture instant, same time: {} vs {}",
            v2.nanos,
            a2.nanos
        );
        assert_eq!(a2.nanos, base + 2 * SEC + 20_000_000);
    }

    #[test]
    fn before_a_sender_report_frames_follow_rtp_time_at_the_smallest_transit() {
        let mut c = CaptureClock::new();
        // The first packet arrives 50 ms late.
        let t = c.capture_time("bob", "TR_a", 0, 48_000, 10 * SEC + 50_000_000, None);
        assert_eq!(
            t,
            CaptureTime {
                nanos: 10 * SEC + 50_000_000,
                sender_synced: false
            }
        );
        // 1 s of RTP later, on time: the anchor moves to it ...
        let t = c.capture_time("bob", "TR_a", 48_000, 48_000, 11 * SEC, None);
        assert_eq!(t.nanos, 11 * SEC);
        // ... and a late packet after it is timed by RTP, not by its arrival.
        let t = c.capture_time(
            "bob",
            "TR_a",
            2 * 48_000,
            48_000,
            12 * SEC + 30_000_000,
            None,
        );
        assert!((t.nanos - 12 * SEC).abs() <= 100_000, "{}", t.nanos);
    }

    /// An hour of one publisher's audio (20 ms frames) and video (30 fps) whose clock runs
    /// `ppm` parts per million off ours, with SRs every 5 s and up to 40 ms of network jitter.
    /// Returns the largest |capture time − true capture time on our clock| seen in the last
    /// minute, and the largest audio-video disagreement after the first 10 s (until the anchor
    /// has met a packet near the smallest transit, frames differ by their jitter).
    fn an_hour_of_media_at(ppm: i64) -> (i64, i64) {
        let mut c = CaptureClock::new();
        let start = 1_700_000_000 * SEC;
        // Our time `t` ns into the recording is the sender's `t * (1 + ppm/1e6)`.
        let sender_at = |t: i64| start + t + t / 1_000_000 * ppm;
        // A deterministic jitter in [10, 50) ms from a small LCG.
        let mut seed = 0x2545_f491_u64;
        let mut jitter = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            10_000_000 + ((seed >> 33) % 40_000_000) as i64
        };
        let sr_every = 5 * SEC;
        let (mut worst_late, mut worst_av) = (0i64, 0i64);
        let (mut a_sr, mut v_sr) = (sr(sender_at(0), 0, 48_000), sr(sender_at(0), 0, 90_000));
        let hour = 3600 * SEC;
        let mut t = 0;
        while t < hour {
            if t % sr_every == 0 {
                // The sender's RTP clocks tick with its own clock: RTP time = sender time elapsed.
                let elapsed = sender_at(t) - start;
                a_sr = sr(
                    sender_at(t),
                    (elapsed as i128 * 48_000 / SEC as i128) as u64,
                    48_000,
                );
                v_sr = sr(
                    sender_at(t),
                    (elapsed as i128 * 90_000 / SEC as i128) as u64,
                    90_000,
                );
            }
            let elapsed = sender_at(t) - start;
            let a = c.capture_time(
                "p",
                "TR_a",
                (elapsed as i128 * 48_000 / SEC as i128) as u64,
                48_000,
                start + t + jitter(),
                Some(&a_sr),
            );
            if t % 100_000_000 == 0 {
                // A video frame captured at the same instant (30 fps meets the 20 ms audio grid
                // every 100 ms): it must get the same capture time whatever its own jitter.
                let v = c.capture_time(
                    "p",
                    "TR_v",
                    (elapsed as i128 * 90_000 / SEC as i128) as u64,
                    90_000,
                    start + t + jitter(),
                    Some(&v_sr),
                );
                if t >= 10 * SEC {
                    worst_av = worst_av.max((v.nanos - a.nanos).abs());
                }
            }
            if t >= hour - 60 * SEC {
                // Anchored at the smallest transit seen (10 ms): the capture time runs that far
                // behind arrival, so compare with the true instant plus the minimal delay.
                worst_late = worst_late.max((a.nanos - (start + t + 10_000_000)).abs());
            }
            t += 20_000_000;
        }
        (worst_late, worst_av)
    }

    #[test]
    fn an_hour_of_a_slow_or_fast_sender_clock_stays_on_our_clock_and_in_sync() {
        // Crystal oscillators are within about ±50 ppm: 180 ms per hour if nothing followed it.
        for ppm in [-50, 0, 50] {
            let (late, av) = an_hour_of_media_at(ppm);
            assert!(
                late < 5_000_000,
                "{ppm} ppm: capture time {} ms off our clock after an hour",
                late / 1_000_000
            );
            assert!(
                av < 2_000_000,
                "{ppm} ppm: audio and video {} µs apart",
                av / 1_000
            );
        }
    }

    #[test]
    fn rtp_wraparound_relative_to_the_report_is_handled() {
        let mut c = CaptureClock::new();
        let report = sr(100 * SEC, u64::from(u32::MAX) - 899, 90_000);
        // 900 ticks before the wrap, then 9000 ticks after the report: 100 ms later.
        let t = c.capture_time(
            "p",
            "TR_v",
            (1u64 << 32) + 8100,
            90_000,
            100 * SEC + 100_000_000,
            Some(&report),
        );
        assert_eq!(t.nanos, 100 * SEC + 100_000_000);
    }
}

//! Opus packets → raw PCM for the websocket output: S16LE, 48 kHz, stereo (Go's `audio/x-raw`
//! caps for a websocket sink), cut into messages of [`MESSAGE_BYTES`].
//!
//! Decoding is libopus (the `opus` crate): a 48 kHz stereo decoder turns mono or stereo packets
//! into stereo PCM at the output rate, so no resampler or channel mixer is needed. The PCM
//! stream follows the RTP clock from the first packet on: a gap in RTP time (lost packets,
//! discontinuous transmission, a muted publisher) is filled, first with libopus's concealment
//! (up to [`MAX_CONCEALMENT`]), then with silence, so the byte count is always 48000 × 2 × 2 per
//! second of media. A fill never exceeds the wall-clock time since the previous packet plus
//! [`FILL_SLACK`], so a bogus RTP jump cannot flood the consumer. Late and repeated packets are
//! dropped: the timeline only moves forward.

use std::time::{Duration, Instant};

/// Output format.
pub const SAMPLE_RATE: u64 = 48_000;
pub const CHANNELS: usize = 2;
/// Bytes per second of PCM: 48 kHz × 2 channels × 2 bytes.
pub const BYTES_PER_SECOND: u64 = SAMPLE_RATE * CHANNELS as u64 * 2;
/// One binary message carries 20 ms of PCM (3840 bytes): the usual WebRTC Opus packet, so a
/// packet normally becomes one message, as Go's appsink sends what each decoded buffer holds.
pub const MESSAGE_SAMPLES: usize = 960;
pub const MESSAGE_BYTES: usize = MESSAGE_SAMPLES * CHANNELS * 2;
/// Longest Opus packet (120 ms at 48 kHz), per channel.
const MAX_PACKET_SAMPLES: usize = 5760;
/// Concealment granularity: libopus conceals in multiples of 2.5 ms.
const PLC_STEP: u64 = 120;
/// Loss longer than this is silence: concealment fades out anyway, and decoding it costs CPU.
pub const MAX_CONCEALMENT: Duration = Duration::from_millis(100);
/// How much a gap may exceed the wall-clock time between the two packets (network jitter).
pub const FILL_SLACK: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
#[error("opus decoder: {0}")]
pub struct PcmError(#[from] opus::Error);

/// What was produced, for the logs and the stream's duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcmStats {
    /// Samples per channel produced (decoded, concealed or silent).
    pub samples: u64,
    /// Samples per channel that filled gaps.
    pub filled: u64,
    pub packets: u64,
    /// Late or repeated packets dropped.
    pub late: u64,
}

impl PcmStats {
    /// Media time produced.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.samples * 1_000_000_000 / SAMPLE_RATE)
    }
}

pub struct OpusToPcm {
    decoder: opus::Decoder,
    /// RTP time (48 kHz) the next packet should have, and when the previous one arrived.
    next_rtp: Option<u64>,
    last_arrival: Option<Instant>,
    /// PCM not yet sent: less than one message.
    pending: Vec<u8>,
    scratch: Vec<i16>,
    pub stats: PcmStats,
}

impl OpusToPcm {
    pub fn new() -> Result<OpusToPcm, PcmError> {
        Ok(OpusToPcm {
            decoder: opus::Decoder::new(SAMPLE_RATE as u32, opus::Channels::Stereo)?,
            next_rtp: None,
            last_arrival: None,
            pending: Vec::with_capacity(MESSAGE_BYTES),
            scratch: vec![0; MAX_PACKET_SAMPLES * CHANNELS],
            stats: PcmStats::default(),
        })
    }

    /// Adds one packet (RTP time in `clock_rate` units) and appends the whole messages that are
    /// ready to `out`.
    pub fn push(
        &mut self,
        rtp_time: u64,
        clock_rate: u32,
        arrived: Instant,
        packet: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), PcmError> {
        // Opus's RTP clock is 48 kHz (RFC 7587); scale anything else rather than trust it.
        let rtp = if clock_rate == 0 || u64::from(clock_rate) == SAMPLE_RATE {
            rtp_time
        } else {
            rtp_time.saturating_mul(SAMPLE_RATE) / u64::from(clock_rate)
        };
        if let Some(expected) = self.next_rtp {
            if rtp < expected {
                self.stats.late += 1;
                return Ok(());
            }
            let wall = self
                .last_arrival
                .map(|t| arrived.saturating_duration_since(t))
                .unwrap_or_default()
                + FILL_SLACK;
            let gap = (rtp - expected).min(duration_samples(wall));
            self.fill(gap, out)?;
        }
        self.last_arrival = Some(arrived);
        let decoded = if packet.is_empty() {
            // An empty payload carries nothing: conceal one 20 ms frame.
            self.conceal(MESSAGE_SAMPLES as u64)?
        } else {
            self.decoder.decode(packet, &mut self.scratch, false)?
        };
        self.stats.packets += 1;
        self.next_rtp = Some(rtp + decoded as u64);
        self.emit(decoded, out);
        Ok(())
    }

    /// The PCM left over (less than one message), at the end of the stream.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }

    /// Fills `samples` (per channel) of missing media: concealment, then silence.
    fn fill(&mut self, samples: u64, out: &mut Vec<Vec<u8>>) -> Result<(), PcmError> {
        if samples == 0 {
            return Ok(());
        }
        self.stats.filled += samples;
        let mut left = samples;
        let mut plc = samples.min(duration_samples(MAX_CONCEALMENT)) / PLC_STEP * PLC_STEP;
        while plc > 0 {
            let chunk = plc.min(MESSAGE_SAMPLES as u64);
            let n = self.conceal(chunk)?;
            self.emit(n, out);
            plc -= chunk;
            left = left.saturating_sub(n as u64);
        }
        self.scratch.iter_mut().for_each(|s| *s = 0);
        while left > 0 {
            let chunk = left.min(MAX_PACKET_SAMPLES as u64) as usize;
            self.emit(chunk, out);
            left -= chunk as u64;
        }
        Ok(())
    }

    /// Packet loss concealment of `samples` per channel (a multiple of 2.5 ms) into `scratch`.
    fn conceal(&mut self, samples: u64) -> Result<usize, PcmError> {
        let len = (samples as usize).min(MAX_PACKET_SAMPLES) * CHANNELS;
        Ok(self.decoder.decode(&[], &mut self.scratch[..len], false)?)
    }

    /// Moves `samples` per channel from `scratch` into pending PCM and whole messages.
    fn emit(&mut self, samples: usize, out: &mut Vec<Vec<u8>>) {
        self.stats.samples += samples as u64;
        for s in &self.scratch[..samples * CHANNELS] {
            self.pending.extend_from_slice(&s.to_le_bytes());
            if self.pending.len() == MESSAGE_BYTES {
                out.push(std::mem::replace(
                    &mut self.pending,
                    Vec::with_capacity(MESSAGE_BYTES),
                ));
            }
        }
    }
}

fn duration_samples(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 ms packets of a 440 Hz tone, encoded with libopus.
    fn tone_packets(count: usize) -> Vec<Vec<u8>> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio).unwrap();
        (0..count)
            .map(|i| {
                let pcm: Vec<i16> = (0..960)
                    .map(|n| {
                        let t = (i * 960 + n) as f64 / 48_000.0;
                        ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
                    })
                    .collect();
                enc.encode_vec(&pcm, 4000).unwrap()
            })
            .collect()
    }

    fn rms(messages: &[Vec<u8>]) -> f64 {
        let samples: Vec<f64> = messages
            .iter()
            .flat_map(|m| {
                m.chunks_exact(2)
                    .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
            })
            .collect();
        (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn each_20ms_packet_becomes_one_stereo_message() {
        let mut pcm = OpusToPcm::new().unwrap();
        let mut out = Vec::new();
        let t0 = Instant::now();
        for (i, p) in tone_packets(50).iter().enumerate() {
            pcm.push(
                1000 + i as u64 * 960,
                48_000,
                t0 + Duration::from_millis(20 * i as u64),
                p,
                &mut out,
            )
            .unwrap();
        }
        assert_eq!(out.len(), 50);
        assert!(out.iter().all(|m| m.len() == MESSAGE_BYTES));
        assert_eq!(pcm.stats.duration(), Duration::from_secs(1));
        assert!(pcm.flush().is_none());
        assert!(
            rms(&out[10..]) > 1000.0,
            "the tone is missing: rms {}",
            rms(&out[10..])
        );
    }

    #[test]
    fn a_gap_is_filled_so_bytes_follow_media_time() {
        let mut pcm = OpusToPcm::new().unwrap();
        let mut out = Vec::new();
        let packets = tone_packets(50);
        let t0 = Instant::now();
        for (i, p) in packets.iter().enumerate() {
            // Packets 10..30 (400 ms) are lost.
            if (10..30).contains(&i) {
                continue;
            }
            pcm.push(
                i as u64 * 960,
                48_000,
                t0 + Duration::from_millis(20 * i as u64),
                p,
                &mut out,
            )
            .unwrap();
        }
        let bytes: usize =
            out.iter().map(Vec::len).sum::<usize>() + pcm.flush().map_or(0, |p| p.len());
        assert_eq!(bytes as u64, BYTES_PER_SECOND, "one second of media");
        assert_eq!(pcm.stats.filled, 20 * 960);
        // Beyond the concealment, the gap is silence.
        let silent = &out[20..28];
        assert_eq!(rms(silent), 0.0);
    }

    #[test]
    fn late_packets_are_dropped_and_bogus_jumps_are_capped_by_the_wall_clock() {
        let mut pcm = OpusToPcm::new().unwrap();
        let mut out = Vec::new();
        let packets = tone_packets(3);
        let t0 = Instant::now();
        pcm.push(0, 48_000, t0, &packets[0], &mut out).unwrap();
        pcm.push(0, 48_000, t0, &packets[0], &mut out).unwrap();
        assert_eq!(pcm.stats.late, 1);
        // An hour of RTP time 20 ms later: at most the slack is filled.
        pcm.push(
            3600 * 48_000,
            48_000,
            t0 + Duration::from_millis(20),
            &packets[1],
            &mut out,
        )
        .unwrap();
        assert!(
            pcm.stats.filled <= duration_samples(Duration::from_millis(520)),
            "{:?}",
            pcm.stats
        );
        pcm.push(
            3600 * 48_000 + 960,
            48_000,
            t0 + Duration::from_millis(40),
            &packets[2],
            &mut out,
        )
        .unwrap();
        assert_eq!(pcm.stats.packets, 3);
    }
}

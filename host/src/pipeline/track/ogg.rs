//! Opus packets into an Ogg Opus file (RFC 7845), without transcoding. The `ogg` crate writes
//! the pages; this module decides what goes in them:
//!
//! * the ID header (`OpusHead`) and the comment header (`OpusTags`), each ending its page;
//! * granule positions from the RTP timestamps (48 kHz, as Opus RTP always is), so the file's
//!   timeline is the sender's;
//! * gaps (packet loss, DTX, a paused sender) filled with TOC-only packets, the Opus encoding of
//!   "no data: conceal or play silence" (RFC 6716 §3.2.1), so the granule position always equals
//!   the sum of the packet durations and players keep audio in time;
//! * a page ended about every second, flushed to the file, so the upload that tails the file
//!   and a file cut off by a crash both see whole pages. Ogg is append-only: nothing is ever
//!   rewritten.

use std::io::{self, Write};

use ogg::{PacketWriteEndInfo, PacketWriter};

/// Opus RTP runs at 48 kHz whatever the input rate (RFC 7587 §4.1).
pub const OPUS_RATE: u64 = 48_000;
/// Samples per page before a page is ended and flushed.
const PAGE_SAMPLES: u64 = OPUS_RATE;
/// The serial number of the one logical stream.
const SERIAL: u32 = 0x4567_7265; // "Egre"
/// CELT-only fullband configs by frame size, for gap packets: 20, 10, 5 and 2.5 ms.
const GAP_CONFIGS: [(u8, u64); 4] = [(31, 960), (30, 480), (29, 240), (28, 120)];

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 §3.1). `None` for a
/// malformed packet.
pub fn packet_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame: u64 = match config {
        // SILK: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3F),
    };
    let samples = frame * frames;
    // A packet longer than 120 ms is invalid (RFC 6716 §3.2.5).
    (samples > 0 && samples <= 5760).then_some(samples)
}

pub struct OggOpusWriter<W: Write> {
    pages: PacketWriter<'static, W>,
    /// RTP time of the first packet: granule 0.
    first_rtp: Option<u64>,
    /// Granule position after the last packet written.
    granule: u64,
    /// Granule at the end of the last page.
    page_granule: u64,
    stereo: bool,
    /// Packets and samples written, and gap samples filled (for the log).
    pub packets: u64,
    pub filled_samples: u64,
    pub late_packets: u64,
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes both headers. `channels` is 1 or 2 (what the decoder outputs; the packets may
    /// still be mono or stereo, which any Opus decoder mixes).
    pub fn new(out: W, channels: u8) -> io::Result<OggOpusWriter<W>> {
        let mut pages = PacketWriter::new(out);
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(channels.clamp(1, 2));
        // Pre-skip 0: the packets are the sender's, and its encoder delay is unknown here; the
        // file keeps the RTP timeline exactly.
        head.extend_from_slice(&0u16.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate (informative)
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0: mono or stereo
        pages.write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0)?;
        let vendor = concat!("egress-rs ", env!("CARGO_PKG_VERSION")).as_bytes();
        let mut tags = Vec::with_capacity(16 + vendor.len());
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        pages.write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0)?;
        pages.inner_mut().flush()?;
        Ok(OggOpusWriter {
            pages,
            first_rtp: None,
            granule: 0,
            page_granule: 0,
            stereo: channels >= 2,
            packets: 0,
            filled_samples: 0,
            late_packets: 0,
        })
    }

    /// Adds one packet with its (64-bit, 48 kHz) RTP time. Returns whether it was written
    /// (a late or malformed packet is dropped).
    pub fn push(&mut self, rtp_time: u64, packet: &[u8]) -> io::Result<bool> {
        let Some(samples) = packet_samples(packet) else {
            return Ok(false);
        };
        let first = *self.first_rtp.get_or_insert(rtp_time);
        let Some(at) = rtp_time.checked_sub(first) else {
            self.late_packets += 1;
            return Ok(false);
        };
        if at < self.granule {
            // Already covered (a duplicate, or a packet that arrived after its gap was filled).
            self.late_packets += 1;
            return Ok(false);
        }
        self.fill_gap(at - self.granule)?;
        self.granule += samples;
        self.packets += 1;
        self.write(packet.to_vec())
    }

    /// Fills `samples` of silence with TOC-only packets, largest first. A remainder below
    /// 2.5 ms is absorbed (the RTP clock of a real sender never produces one).
    fn fill_gap(&mut self, mut samples: u64) -> io::Result<()> {
        for (config, size) in GAP_CONFIGS {
            while samples >= size {
                let toc = (config << 3) | if self.stereo { 0x4 } else { 0 };
                self.granule += size;
                self.filled_samples += size;
                samples -= size;
                self.write(vec![toc])?;
            }
        }
        Ok(())
    }

    fn write(&mut self, packet: Vec<u8>) -> io::Result<bool> {
        let end_page = self.granule - self.page_granule >= PAGE_SAMPLES;
        let info = if end_page {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        self.pages
            .write_packet(packet, SERIAL, info, self.granule)?;
        if end_page {
            self.page_granule = self.granule;
            self.pages.inner_mut().flush()?;
        }
        Ok(true)
    }

    /// The media duration written so far.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.granule * 1_000_000_000 / OPUS_RATE)
    }

    /// Ends the stream (the last page carries the end-of-stream flag) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        // An empty packet cannot end the stream in Ogg Opus; a TOC-only packet of 2.5 ms can.
        if self.first_rtp.is_some() {
            let toc = (28 << 3) | if self.stereo { 0x4 } else { 0 };
            self.granule += 120;
            self.pages.write_packet(
                vec![toc],
                SERIAL,
                PacketWriteEndInfo::EndStream,
                self.granule,
            )?;
        }
        let mut out = self.pages.into_inner();
        out.flush()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 ms CELT mono packet (config 31, code 0) with some payload bytes.
    fn packet() -> Vec<u8> {
        vec![31 << 3, 1, 2, 3]
    }

    #[test]
    fn toc_durations_follow_rfc_6716() {
        assert_eq!(packet_samples(&[31 << 3]), Some(960));
        assert_eq!(packet_samples(&[1 << 3]), Some(960), "SILK 20 ms");
        assert_eq!(
            packet_samples(&[(3 << 3) | 1]),
            Some(5760),
            "two SILK 60 ms frames"
        );
        assert_eq!(
            packet_samples(&[(28 << 3) | 3, 4]),
            Some(480),
            "four 2.5 ms frames"
        );
        assert_eq!(
            packet_samples(&[(31 << 3) | 3, 7]),
            None,
            "140 ms is invalid"
        );
        assert_eq!(packet_samples(&[]), None);
    }

    fn pages(bytes: &[u8]) -> Vec<(u64, usize)> {
        let mut r = ogg::PacketReader::new(std::io::Cursor::new(bytes.to_vec()));
        let mut out = Vec::new();
        while let Some(p) = r.read_packet().unwrap() {
            out.push((p.absgp_page(), p.data.len()));
        }
        out
    }

    #[test]
    fn granules_follow_rtp_time_and_gaps_are_filled() {
        let mut w = OggOpusWriter::new(Vec::new(), 1).unwrap();
        let base = 1_000_000u64;
        for i in 0..3 {
            assert!(w.push(base + i * 960, &packet()).unwrap());
        }
        // 100 ms lost, then one more packet; then a duplicate and a packet from before the start.
        assert!(w.push(base + 3 * 960 + 4800, &packet()).unwrap());
        assert!(!w.push(base + 3 * 960 + 4800, &packet()).unwrap());
        assert!(!w.push(base - 960, &packet()).unwrap());
        assert_eq!(w.filled_samples, 4800);
        assert_eq!(w.duration(), std::time::Duration::from_millis(180));
        let bytes = w.finish().unwrap();
        let packets = pages(&bytes);
        assert_eq!(&bytes[28..36], b"OpusHead");
        // Head, tags, 3 packets, 5 gap packets, 1 packet, the end packet.
        assert_eq!(packets.len(), 2 + 3 + 5 + 1 + 1);
        assert_eq!(packets.iter().filter(|(_, len)| *len == 1).count(), 6);
        assert_eq!(
            packets.last().unwrap().0,
            9 * 960 + 120,
            "granule = all samples written"
        );
    }
}

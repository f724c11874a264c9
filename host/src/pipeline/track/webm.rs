//! VP8 frames into a WebM file, without transcoding, with libwebm (the `webm` crate).
//!
//! The segment is written in live mode to a writer that cannot seek, so libwebm only ever
//! appends (no cues, no duration rewritten at the end): the upload can tail the file, and a file
//! cut off by a crash plays up to its last whole cluster. Frames before the first keyframe are
//! dropped (a decoder cannot start on them); the frame size comes from that keyframe's header.

use std::io::{self, Write};

use webm::mux::{Segment, SegmentBuilder, SegmentMode, VideoCodecId, VideoTrack, Writer};

/// VP8's RTP clock (RFC 7741).
pub const VIDEO_RATE: u64 = 90_000;

/// Width and height from a VP8 keyframe's header (RFC 6386 §9.1), `None` for any other frame.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    let header = frame.get(..10)?;
    // Bit 0 of the frame tag is 0 for a keyframe, which carries a start code.
    if header[0] & 1 != 0 || header[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
    let height = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
    (width > 0 && height > 0).then_some((u32::from(width), u32::from(height)))
}

enum State<W: Write> {
    /// No keyframe yet: nothing written.
    Waiting(W),
    Writing { segment: Segment<W>, track: VideoTrack },
    /// A libwebm call failed; the file ends here.
    Broken,
}

pub struct WebmVp8Writer<W: Write> {
    state: State<W>,
    first_rtp: Option<u64>,
    /// Timestamp of the last frame written (ns from the first).
    last_ns: u64,
    pub frames: u64,
    pub dropped: u64,
    pub size: (u32, u32),
}

fn webm_error(what: &str, e: webm::mux::Error) -> io::Error {
    io::Error::other(format!("libwebm {what}: {e}"))
}

impl<W: Write> WebmVp8Writer<W> {
    pub fn new(out: W) -> WebmVp8Writer<W> {
        WebmVp8Writer { state: State::Waiting(out), first_rtp: None, last_ns: 0, frames: 0, dropped: 0, size: (0, 0) }
    }

    /// Adds one frame with its (64-bit, 90 kHz) RTP time. Returns whether it was written.
    pub fn push(&mut self, rtp_time: u64, frame: &[u8], keyframe: bool) -> io::Result<bool> {
        if let State::Waiting(_) = self.state {
            let Some((width, height)) = vp8_keyframe_size(frame) else {
                self.dropped += 1;
                return Ok(false);
            };
            let State::Waiting(out) = std::mem::replace(&mut self.state, State::Broken) else { return Ok(false) };
            let builder = SegmentBuilder::new(Writer::new_non_seek(out))
                .and_then(|b| b.set_mode(SegmentMode::Live))
                .and_then(|b| b.set_writing_app(concat!("egress-rs ", env!("CARGO_PKG_VERSION"))))
                .map_err(|e| webm_error("segment", e))?;
            let (builder, track) =
                builder.add_video_track(width, height, VideoCodecId::VP8, None).map_err(|e| webm_error("video track", e))?;
            self.state = State::Writing { segment: builder.build(), track };
            self.size = (width, height);
            self.first_rtp = Some(rtp_time);
        }
        let State::Writing { segment, track } = &mut self.state else { return Ok(false) };
        let first = self.first_rtp.unwrap_or(rtp_time);
        let Some(ticks) = rtp_time.checked_sub(first) else {
            self.dropped += 1;
            return Ok(false);
        };
        let ns = ticks * 1_000_000_000 / VIDEO_RATE;
        if self.frames > 0 && ns <= self.last_ns {
            // Late or repeated: timestamps must grow.
            self.dropped += 1;
            return Ok(false);
        }
        let keyframe = keyframe || vp8_keyframe_size(frame).is_some();
        segment.add_frame(*track, frame, ns, keyframe).map_err(|e| webm_error("frame", e))?;
        self.last_ns = ns;
        self.frames += 1;
        Ok(true)
    }

    /// Media time from the first frame to the last.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.last_ns)
    }

    /// Writes the last cluster. `None` when no keyframe ever came (nothing was written).
    pub fn finish(self) -> io::Result<Option<W>> {
        match self.state {
            State::Waiting(_) | State::Broken => Ok(None),
            State::Writing { segment, .. } => match segment.finalize(None) {
                Ok(w) => Ok(Some(w.into_inner())),
                Err(_) => Err(io::Error::other("libwebm could not finalize the segment")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 keyframe header for 640x360 followed by some bytes.
    fn keyframe() -> Vec<u8> {
        let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        f.extend_from_slice(&640u16.to_le_bytes());
        f.extend_from_slice(&360u16.to_le_bytes());
        f.extend_from_slice(&[0u8; 32]);
        f
    }

    #[test]
    fn keyframe_header_gives_the_size() {
        assert_eq!(vp8_keyframe_size(&keyframe()), Some((640, 360)));
        let mut delta = keyframe();
        delta[0] |= 1;
        assert_eq!(vp8_keyframe_size(&delta), None);
    }

    #[test]
    fn frames_before_the_first_keyframe_are_dropped_and_the_file_is_webm() {
        let mut w = WebmVp8Writer::new(Vec::new());
        let mut delta = keyframe();
        delta[0] |= 1;
        assert!(!w.push(0, &delta, false).unwrap());
        assert!(w.push(3000, &keyframe(), true).unwrap());
        assert!(w.push(6000, &delta, false).unwrap());
        assert!(!w.push(6000, &delta, false).unwrap(), "a repeated timestamp is dropped");
        assert_eq!((w.frames, w.dropped, w.size), (2, 2, (640, 360)));
        assert_eq!(w.duration(), std::time::Duration::from_nanos(3000 * 1_000_000_000 / 90_000));
        let bytes = w.finish().unwrap().expect("a file");
        assert_eq!(&bytes[..4], &[0x1a, 0x45, 0xdf, 0xa3], "EBML header");
        assert!(bytes.windows(4).any(|x| x == b"webm"), "DocType webm");
    }
}

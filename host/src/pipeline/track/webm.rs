//! VP8, VP9 or AV1 frames into a WebM file, without transcoding, with libwebm (the `webm` crate).
//!
//! The segment is written in live mode to a writer that cannot seek, so libwebm only ever
//! appends (no cues, no duration rewritten at the end): the upload can tail the file, and a file
//! cut off by a crash plays up to its last whole cluster. Its head goes through
//! [`HeadRoom`], which leaves room there for the Duration and the SeekHead that
//! `crate::outputs::webm_finish::finish` writes once the recording is over (with the Cues it
//! appends), so that the stored file is seekable. Frames before the first keyframe are
//! dropped (a decoder cannot start on them); the frame size comes from that keyframe's header
//! (VP8: RFC 6386 §9.1; VP9: the uncompressed frame header, VP9 bitstream spec §6.2).

use std::io::{self, Write};

use webm::mux::{Segment, SegmentBuilder, SegmentMode, VideoCodecId, VideoTrack, Writer};

use crate::outputs::webm_finish::HeadRoom;

/// VP8's and VP9's RTP clock (RFC 7741, RFC 9628).
pub const VIDEO_RATE: u64 = 90_000;

/// The codecs written to WebM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebmCodec {
    Vp8,
    Vp9,
    Av1,
}

impl WebmCodec {
    /// Width and height when `frame` is a keyframe.
    pub fn keyframe_size(self, frame: &[u8]) -> Option<(u32, u32)> {
        match self {
            WebmCodec::Vp8 => vp8_keyframe_size(frame),
            WebmCodec::Vp9 => vp9_keyframe_size(frame),
            // A keyframe's temporal unit starts with the sequence header.
            WebmCodec::Av1 => super::av1::sequence_header(frame).map(|s| (s.width, s.height)),
        }
    }

    /// The track's CodecPrivate, from its first keyframe: AV1's `av1C` (VP8 and VP9 have none).
    fn codec_private(self, keyframe: &[u8]) -> Option<Vec<u8>> {
        match self {
            WebmCodec::Av1 => super::av1::sequence_header(keyframe).map(|s| s.av1c()),
            WebmCodec::Vp8 | WebmCodec::Vp9 => None,
        }
    }

    fn id(self) -> VideoCodecId {
        match self {
            WebmCodec::Vp8 => VideoCodecId::VP8,
            WebmCodec::Vp9 => VideoCodecId::VP9,
            WebmCodec::Av1 => VideoCodecId::AV1,
        }
    }
}

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

/// Width and height from a VP9 keyframe's uncompressed header (VP9 bitstream spec §6.2:
/// frame marker, profile, `show_existing_frame`, `frame_type` 0, the sync code 0x49 0x83 0x42,
/// the colour config, then `frame_width_minus_1` and `frame_height_minus_1`), `None` for any
/// other frame. A superframe starts with its first frame's header, so it is read the same way.
pub fn vp9_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    let mut r = super::bits::Bits::new(frame);
    if r.read(2)? != 2 {
        return None;
    }
    let profile_low = r.read(1)?;
    let profile = (r.read(1)? << 1) | profile_low;
    if profile == 3 {
        r.read(1)?;
    }
    // show_existing_frame, then frame_type (0 = key frame).
    if r.read(1)? == 1 || r.read(1)? != 0 {
        return None;
    }
    // show_frame, error_resilient_mode.
    r.read(2)?;
    if r.read(24)? != 0x49_83_42 {
        return None;
    }
    if profile >= 2 {
        r.read(1)?; // ten_or_twelve_bit
    }
    const CS_RGB: u32 = 7;
    if r.read(3)? != CS_RGB {
        r.read(1)?; // color_range
        if profile == 1 || profile == 3 {
            r.read(3)?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if profile == 1 || profile == 3 {
        r.read(1)?; // reserved_zero
    }
    let width = r.read(16)? + 1;
    let height = r.read(16)? + 1;
    Some((width, height))
}

enum State<W: Write> {
    /// No keyframe yet: nothing written.
    Waiting(W),
    Writing {
        segment: Segment<HeadRoom<W>>,
        track: VideoTrack,
    },
    /// A libwebm call failed; the file ends here.
    Broken,
}

pub struct WebmWriter<W: Write> {
    codec: WebmCodec,
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

impl<W: Write> WebmWriter<W> {
    pub fn new(out: W, codec: WebmCodec) -> WebmWriter<W> {
        WebmWriter {
            codec,
            state: State::Waiting(out),
            first_rtp: None,
            last_ns: 0,
            frames: 0,
            dropped: 0,
            size: (0, 0),
        }
    }

    /// Adds one frame with its (64-bit, 90 kHz) RTP time. Returns whether it was written.
    pub fn push(&mut self, rtp_time: u64, frame: &[u8], keyframe: bool) -> io::Result<bool> {
        if let State::Waiting(_) = self.state {
            let Some((width, height)) = self.codec.keyframe_size(frame) else {
                self.dropped += 1;
                return Ok(false);
            };
            let State::Waiting(out) = std::mem::replace(&mut self.state, State::Broken) else {
                return Ok(false);
            };
            let builder = SegmentBuilder::new(Writer::new_non_seek(HeadRoom::new(out)))
                .and_then(|b| b.set_mode(SegmentMode::Live))
                .and_then(|b| b.set_writing_app(concat!("egress-rs ", env!("CARGO_PKG_VERSION"))))
                .map_err(|e| webm_error("segment", e))?;
            let (mut builder, track) = builder
                .add_video_track(width, height, self.codec.id(), None)
                .map_err(|e| webm_error("video track", e))?;
            if let Some(private) = self.codec.codec_private(frame) {
                builder = builder
                    .set_codec_private(track, &private)
                    .map_err(|e| webm_error("codec private", e))?;
            }
            self.state = State::Writing {
                segment: builder.build(),
                track,
            };
            self.size = (width, height);
            self.first_rtp = Some(rtp_time);
        }
        let State::Writing { segment, track } = &mut self.state else {
            return Ok(false);
        };
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
        let keyframe = keyframe || self.codec.keyframe_size(frame).is_some();
        segment
            .add_frame(*track, frame, ns, keyframe)
            .map_err(|e| webm_error("frame", e))?;
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
                Ok(w) => Ok(Some(w.into_inner().into_inner()?)),
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
        let mut w = WebmWriter::new(Vec::new(), WebmCodec::Vp8);
        let mut delta = keyframe();
        delta[0] |= 1;
        assert!(!w.push(0, &delta, false).unwrap());
        assert!(w.push(3000, &keyframe(), true).unwrap());
        assert!(w.push(6000, &delta, false).unwrap());
        assert!(
            !w.push(6000, &delta, false).unwrap(),
            "a repeated timestamp is dropped"
        );
        assert_eq!((w.frames, w.dropped, w.size), (2, 2, (640, 360)));
        assert_eq!(
            w.duration(),
            std::time::Duration::from_nanos(3000 * 1_000_000_000 / 90_000)
        );
        let bytes = w.finish().unwrap().expect("a file");
        assert_eq!(&bytes[..4], &[0x1a, 0x45, 0xdf, 0xa3], "EBML header");
        assert!(bytes.windows(4).any(|x| x == b"webm"), "DocType webm");
        assert!(bytes.windows(5).any(|x| x == b"V_VP8"), "CodecID V_VP8");
    }

    /// A VP9 profile 0 keyframe header for 640x360 (frame marker 2, profile 0, not an existing
    /// frame, key frame, shown, not error resilient, sync code, BT.601 studio range).
    fn vp9_keyframe() -> Vec<u8> {
        let mut bits = String::from("10" /* marker */);
        bits += "00"; // profile 0
        bits += "0"; // show_existing_frame
        bits += "0"; // frame_type = KEY_FRAME
        bits += "1"; // show_frame
        bits += "0"; // error_resilient_mode
        bits += "010010011000001101000010"; // sync code 0x498342
        bits += "010"; // color_space BT_601
        bits += "0"; // color_range
        bits += &format!("{:016b}{:016b}", 639, 359);
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let mut f: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|b| u8::from_str_radix(std::str::from_utf8(b).unwrap(), 2).unwrap())
            .collect();
        f.extend_from_slice(&[0u8; 32]);
        f
    }

    #[test]
    fn vp9_keyframe_header_gives_the_size() {
        assert_eq!(vp9_keyframe_size(&vp9_keyframe()), Some((640, 360)));
        // An inter frame: frame_type 1.
        let mut inter = vp9_keyframe();
        inter[0] |= 0b0000_0100;
        assert_eq!(vp9_keyframe_size(&inter), None);
        assert_eq!(vp9_keyframe_size(&[0x82]), None, "truncated");
    }

    fn ffprobe(args: &[&str], file: &std::path::Path) -> String {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error"])
            .args(args)
            .arg(file)
            .output()
            .expect("run ffprobe");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// 5 s of VP8 at 30 fps, a keyframe every 15 frames, written to `path` as a recording is.
    fn record_five_seconds(path: &std::path::Path) {
        let mut w = WebmWriter::new(std::fs::File::create(path).unwrap(), WebmCodec::Vp8);
        let mut delta = keyframe();
        delta[0] |= 1;
        for n in 0..150u64 {
            let frame = if n % 15 == 0 {
                keyframe()
            } else {
                delta.clone()
            };
            assert!(w.push(1_000 + n * 3000, &frame, n % 15 == 0).unwrap());
        }
        w.finish().unwrap().expect("a file").sync_all().unwrap();
    }

    #[test]
    fn a_finished_recording_has_its_duration_and_seeks_to_a_keyframe() {
        use crate::outputs::webm_finish::{Finished, finish};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("track.webm");
        record_five_seconds(&path);
        // While recording: playable, no duration (append-only).
        assert_eq!(
            ffprobe(
                &["-show_entries", "format=duration", "-of", "csv=p=0"],
                &path
            ),
            "N/A"
        );
        let frames = ffprobe(
            &["-show_entries", "packet=pts_time", "-of", "csv=p=0"],
            &path,
        );
        assert_eq!(frames.lines().count(), 150);

        match finish(&path).unwrap() {
            Finished::Finished {
                duration,
                cue_points,
            } => {
                assert_eq!(cue_points, 10, "a cue per keyframe");
                assert!((duration.as_secs_f64() - 5.0).abs() < 0.01, "{duration:?}");
            }
            other => panic!("not finished: {other:?}"),
        }
        let duration: f64 = ffprobe(
            &["-show_entries", "format=duration", "-of", "csv=p=0"],
            &path,
        )
        .parse()
        .expect("ffprobe reports a duration");
        assert!((duration - 5.0).abs() < 0.05, "ffprobe: {duration} s");
        assert_eq!(
            ffprobe(
                &["-show_entries", "packet=pts_time", "-of", "csv=p=0"],
                &path
            ),
            frames,
            "the same frames at the same times"
        );
        // Seeking to 2.6 s lands on the keyframe at 2.5 s.
        let landed = ffprobe(
            &[
                "-read_intervals",
                "2.6%+#1",
                "-show_entries",
                "packet=pts_time,flags",
                "-of",
                "csv=p=0",
            ],
            &path,
        );
        assert!(landed.starts_with("2.500000,K"), "{landed}");
        assert_eq!(
            finish(&path).unwrap(),
            Finished::AlreadySeekable,
            "finishing twice changes nothing"
        );
    }

    /// A finish cut short after the Cues were appended but before the head was written is
    /// finished again to the same bytes (one Cues, not two).
    #[test]
    fn a_finish_cut_short_is_done_again() {
        use crate::outputs::webm_finish::{Finished, finish};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("again.webm");
        record_five_seconds(&path);
        let live = std::fs::read(&path).unwrap();
        assert!(matches!(finish(&path).unwrap(), Finished::Finished { .. }));
        let finished = std::fs::read(&path).unwrap();
        // The head (up to the first Cluster) as it was while recording, the rest finished.
        let cluster = live
            .windows(4)
            .position(|w| w == [0x1F, 0x43, 0xB6, 0x75])
            .unwrap();
        let cut_short = [&live[..cluster], &finished[cluster..]].concat();
        std::fs::write(&path, &cut_short).unwrap();
        assert!(matches!(finish(&path).unwrap(), Finished::Finished { .. }));
        assert_eq!(std::fs::read(&path).unwrap(), finished);
    }

    #[test]
    fn a_file_cut_off_mid_block_is_left_as_it_is() {
        use crate::outputs::webm_finish::finish;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.webm");
        record_five_seconds(&path);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
        assert!(finish(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..bytes.len() - 20]);
    }

    #[test]
    fn vp9_frames_are_written_with_the_vp9_codec_id() {
        let mut w = WebmWriter::new(Vec::new(), WebmCodec::Vp9);
        let mut inter = vp9_keyframe();
        inter[0] |= 0b0000_0100;
        assert!(!w.push(0, &inter, false).unwrap());
        assert!(w.push(3000, &vp9_keyframe(), true).unwrap());
        assert!(w.push(6000, &inter, false).unwrap());
        assert_eq!((w.frames, w.size), (2, (640, 360)));
        let bytes = w.finish().unwrap().expect("a file");
        assert!(bytes.windows(5).any(|x| x == b"V_VP9"), "CodecID V_VP9");
    }
}

//! Test media for live destinations: a recorded FLV or MPEG-TS file cut into the chunks the
//! host sends ([`LiveStream`]), so that the kit feeds a destination what it gets in production.

use std::time::Duration;

use crate::live::{LiveChunk, LiveFormat};

/// One chunk, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedChunk {
    pub data: Vec<u8>,
    pub pts: Duration,
    pub keyframe: bool,
    pub header: bool,
}

impl OwnedChunk {
    pub fn as_chunk(&self) -> LiveChunk<'_> {
        LiveChunk::new(&self.data, self.pts)
            .keyframe(self.keyframe)
            .header(self.header)
    }
}

/// A stream in a destination's format: its headers, then media starting at a keyframe.
#[derive(Debug, Clone)]
pub struct LiveStream {
    pub format: LiveFormat,
    pub headers: Vec<OwnedChunk>,
    pub media: Vec<OwnedChunk>,
}

impl LiveStream {
    /// Cut an FLV file (as `ffmpeg … -f flv` or GStreamer's `flvmux` write it) into tags, as
    /// the host sends them: no file header, no `PreviousTagSize`; the script tag and the AVC
    /// and AAC sequence headers flagged `header`; video keyframes flagged `keyframe`. Media
    /// before the first keyframe is dropped (the host gates on keyframes too).
    pub fn from_flv(file: &[u8]) -> Result<LiveStream, String> {
        if file.len() < 13 || &file[..3] != b"FLV" {
            return Err("not an FLV file".into());
        }
        let header_len = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize;
        let mut at = header_len + 4;
        let mut headers = Vec::new();
        let mut media = Vec::new();
        while at + 11 <= file.len() {
            let size = u32::from_be_bytes([0, file[at + 1], file[at + 2], file[at + 3]]) as usize;
            let end = at + 11 + size;
            if end > file.len() {
                break;
            }
            let tag = &file[at..end];
            let kind = tag[0] & 0x1f;
            let ts = u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]);
            let body = &tag[11..];
            let header = match kind {
                18 => true,
                // AVC (codec 7) packet type 0: the sequence header.
                9 => body.len() > 1 && body[0] & 0x0f == 7 && body[1] == 0,
                // AAC (sound format 10) packet type 0: the AudioSpecificConfig.
                8 => body.len() > 1 && body[0] >> 4 == 10 && body[1] == 0,
                _ => false,
            };
            let keyframe = kind == 9 && !header && body.first().is_some_and(|b| b >> 4 == 1);
            let chunk = OwnedChunk {
                data: tag.to_vec(),
                pts: Duration::from_millis(u64::from(ts)),
                keyframe,
                header,
            };
            if header {
                headers.push(chunk);
            } else if keyframe || !media.is_empty() {
                media.push(chunk);
            }
            at = end + 4;
        }
        rebase(&mut media);
        if media.is_empty() {
            return Err("the FLV file has no video keyframe".into());
        }
        Ok(LiveStream {
            format: LiveFormat::Flv,
            headers,
            media,
        })
    }

    /// Cut an MPEG-TS file into chunks of up to 7 packets (1316 bytes, one SRT payload): the
    /// PAT and PMT first, as one `header` chunk; media from the first packet with the random
    /// access indicator (a keyframe), a chunk ending before each later one so that keyframes
    /// start chunks. Times come from the PCR.
    pub fn from_ts(file: &[u8]) -> Result<LiveStream, String> {
        const PACKET: usize = 188;
        if file.len() < PACKET || file[0] != 0x47 {
            return Err("not an MPEG-TS file (no sync byte)".into());
        }
        let packets: Vec<&[u8]> = file.chunks_exact(PACKET).filter(|p| p[0] == 0x47).collect();
        let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let pmt_pids = pmt_pids(&packets);
        let is_psi = |p: &[u8]| pid(p) == 0 || pmt_pids.contains(&pid(p));
        let headers: Vec<u8> = packets
            .iter()
            .filter(|p| is_psi(p))
            .take(2)
            .flat_map(|p| p.iter().copied())
            .collect();
        if headers.is_empty() {
            return Err("the MPEG-TS file has no PAT".into());
        }
        let mut media: Vec<OwnedChunk> = Vec::new();
        let mut current: Vec<u8> = Vec::new();
        let mut current_key = false;
        let mut started = false;
        let mut first_pcr = None;
        let mut pts = Duration::ZERO;
        for p in &packets {
            let (rai, pcr) = adaptation(p);
            if let Some(pcr) = pcr {
                let first = *first_pcr.get_or_insert(pcr);
                pts = Duration::from_micros(pcr.saturating_sub(first) / 27);
            }
            if !started {
                if !rai {
                    continue;
                }
                started = true;
            }
            // Repeated PAT/PMT packets travel with the media, where the muxer put them.
            if (rai && !current.is_empty()) || current.len() == 7 * PACKET {
                media.push(OwnedChunk {
                    data: std::mem::take(&mut current),
                    pts,
                    keyframe: current_key,
                    header: false,
                });
                current_key = false;
            }
            current_key |= rai;
            current.extend_from_slice(p);
        }
        if !current.is_empty() {
            media.push(OwnedChunk {
                data: current,
                pts,
                keyframe: current_key,
                header: false,
            });
        }
        rebase(&mut media);
        if media.is_empty() {
            return Err("the MPEG-TS file has no random access point".into());
        }
        Ok(LiveStream {
            format: LiveFormat::MpegTs,
            headers: vec![OwnedChunk {
                data: headers,
                pts: Duration::ZERO,
                keyframe: false,
                header: true,
            }],
            media,
        })
    }

    /// Media duration (last chunk's time).
    pub fn duration(&self) -> Duration {
        self.media.last().map(|c| c.pts).unwrap_or_default()
    }

    /// Media bytes (headers excluded).
    pub fn media_bytes(&self) -> u64 {
        self.media.iter().map(|c| c.data.len() as u64).sum()
    }
}

/// Times relative to the first media chunk, as a session's are.
fn rebase(media: &mut [OwnedChunk]) {
    let Some(start) = media.first().map(|c| c.pts) else {
        return;
    };
    for c in media {
        c.pts = c.pts.saturating_sub(start);
    }
}

/// The PMT PIDs the PAT lists.
fn pmt_pids(packets: &[&[u8]]) -> Vec<u16> {
    for p in packets {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        if pid != 0 || p[1] & 0x40 == 0 {
            continue;
        }
        let mut at = 4;
        if p[3] & 0x20 != 0 {
            at += 1 + usize::from(p[4]);
        }
        at += 1 + usize::from(*p.get(at).unwrap_or(&0)); // pointer field
        let Some(section) = p.get(at..) else { continue };
        if section.len() < 8 {
            continue;
        }
        let len = ((usize::from(section[1]) & 0x0f) << 8) | usize::from(section[2]);
        let end = (3 + len).saturating_sub(4).min(section.len());
        let mut pids = Vec::new();
        let mut i = 8;
        while i + 4 <= end {
            let program = u16::from_be_bytes([section[i], section[i + 1]]);
            let pid = (u16::from(section[i + 2] & 0x1f) << 8) | u16::from(section[i + 3]);
            if program != 0 {
                pids.push(pid);
            }
            i += 4;
        }
        return pids;
    }
    Vec::new()
}

/// The random access indicator and the PCR (27 MHz) of a packet's adaptation field.
fn adaptation(p: &[u8]) -> (bool, Option<u64>) {
    if p[3] & 0x20 == 0 || p[4] == 0 {
        return (false, None);
    }
    let flags = p[5];
    let rai = flags & 0x40 != 0;
    let pcr = (flags & 0x10 != 0 && p.len() >= 12).then(|| {
        let base = (u64::from(p[6]) << 25)
            | (u64::from(p[7]) << 17)
            | (u64::from(p[8]) << 9)
            | (u64::from(p[9]) << 1)
            | (u64::from(p[10]) >> 7);
        let ext = (u64::from(p[10] & 1) << 8) | u64::from(p[11]);
        base * 300 + ext
    });
    (rai, pcr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut t = vec![kind];
        t.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        t.extend_from_slice(&ts.to_be_bytes()[1..]);
        t.push((ts >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(body);
        t
    }

    #[test]
    fn flv_tags_and_flags() {
        let mut file = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        for t in [
            tag(18, 0, &[2, 0, 10]),
            tag(9, 0, &[0x17, 0, 0, 0, 0, 1]),
            tag(8, 0, &[0xaf, 0, 0x12, 0x10]),
            tag(9, 0, &[0x27, 1, 0, 0, 0]), // delta before any keyframe: dropped
            tag(9, 33, &[0x17, 1, 0, 0, 0]),
            tag(8, 40, &[0xaf, 1, 9]),
            tag(9, 66, &[0x27, 1, 0, 0, 0]),
        ] {
            let n = t.len() as u32;
            file.extend_from_slice(&t);
            file.extend_from_slice(&n.to_be_bytes());
        }
        let s = LiveStream::from_flv(&file).unwrap();
        assert_eq!(s.headers.len(), 3);
        assert!(s.headers.iter().all(|c| c.header));
        assert_eq!(s.media.len(), 3);
        assert!(s.media[0].keyframe && !s.media[1].keyframe);
        assert_eq!(s.media[0].pts, Duration::ZERO);
        assert_eq!(s.duration(), Duration::from_millis(33));
        assert_eq!(s.media[0].data, tag(9, 33, &[0x17, 1, 0, 0, 0]));
    }
}

//! H.264 or H.265 access units into a fragmented MP4, without transcoding. `mp4-atom` encodes
//! the boxes; this module decides what goes in them:
//!
//! * nothing is written before a keyframe that carries the parameter sets (H.264: SPS and PPS,
//!   the sample entry's `avcC`, the frame size read with `h264-reader`; H.265: VPS, SPS and PPS,
//!   the `hvcC` of an `hvc1` entry, read by [`super::hevc`]);
//! * Annex B access units (what str0m depacketizes) become length-prefixed samples;
//! * a fragment (`moof` + `mdat`) is written and flushed at each keyframe and at least every
//!   second, so the file is append-only: the upload tails it and a file cut off by a crash
//!   plays up to its last fragment, like the web path's fragmented mp4mux;
//! * sample times are the RTP times (90 kHz) from the first keyframe; a sample's duration is the
//!   distance to the next one (WebRTC H.264/H.265 has no B-frames, so decode = presentation
//!   order).

use std::io::{self, Write};

use super::hevc;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, ByteReader};
use mp4_atom::{
    Avc1, Avcc, Codec, Dinf, Dref, Encode, Ftyp, Hdlr, Hvc1, Mdat, Mdhd, Mdia, Mfhd, Minf, Moof,
    Moov, Mvex, Mvhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun,
    TrunEntry, TrunSamples, Url, Visual, Vmhd,
};

/// H.264's RTP clock (RFC 6184), also the track timescale.
pub const VIDEO_RATE: u64 = 90_000;
/// A fragment is cut at the next sample after this much media.
const FRAGMENT_TICKS: u64 = VIDEO_RATE;
/// Duration of the last sample when there is nothing to measure it against (1/30 s).
const DEFAULT_SAMPLE_TICKS: u64 = VIDEO_RATE / 30;
/// `sample_depends_on = 2` (an I-frame); and `depends_on = 1` + `is_non_sync_sample`.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;
const TRACK_ID: u32 = 1;

/// The NAL units of an Annex B access unit (start codes removed).
pub fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // The next start code, minus the extra zero of a 4-byte start code.
            let end = s - 3;
            if end > 0 && annex_b[end - 1] == 0 {
                end - 1
            } else {
                end
            }
        })
        .chain(std::iter::once(annex_b.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter_map(move |(s, e)| annex_b.get(s..e))
        .filter(|n| !n.is_empty())
}

/// The video codecs written to MP4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mp4Codec {
    H264,
    H265,
}

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map(|b| b & 0x1f).unwrap_or(0)
}

/// Whether an H.264 access unit holds an IDR slice.
pub fn is_keyframe(annex_b: &[u8]) -> bool {
    nal_units(annex_b).any(|n| nal_type(n) == 5)
}

impl Mp4Codec {
    /// Whether an access unit can start decoding (H.264 IDR, H.265 IRAP).
    pub fn is_keyframe(self, annex_b: &[u8]) -> bool {
        match self {
            Mp4Codec::H264 => is_keyframe(annex_b),
            Mp4Codec::H265 => nal_units(annex_b).any(hevc::is_irap),
        }
    }
}

struct Sample {
    ticks: u64,
    data: Vec<u8>,
    keyframe: bool,
}

pub struct Mp4VideoWriter<W: Write> {
    out: W,
    codec: Mp4Codec,
    started: bool,
    first_rtp: u64,
    /// Samples of the fragment being built (the last one's duration is not known yet).
    pending: Vec<Sample>,
    sequence: u32,
    last_ticks: u64,
    pub frames: u64,
    pub dropped: u64,
    pub size: (u32, u32),
    /// Where the last fragment ended, in ticks.
    end_ticks: u64,
}

fn encode(atom: &impl Encode, buf: &mut Vec<u8>) -> io::Result<()> {
    atom.encode(buf)
        .map_err(|e| io::Error::other(format!("mp4 box: {e}")))
}

impl<W: Write> Mp4VideoWriter<W> {
    pub fn new(out: W, codec: Mp4Codec) -> Mp4VideoWriter<W> {
        Mp4VideoWriter {
            out,
            codec,
            started: false,
            first_rtp: 0,
            pending: Vec::new(),
            sequence: 0,
            last_ticks: 0,
            frames: 0,
            dropped: 0,
            size: (0, 0),
            end_ticks: 0,
        }
    }

    /// Adds one access unit (Annex B) with its (64-bit, 90 kHz) RTP time. Returns whether it
    /// was taken.
    pub fn push(&mut self, rtp_time: u64, access_unit: &[u8]) -> io::Result<bool> {
        let keyframe = self.codec.is_keyframe(access_unit);
        if !self.started {
            if !keyframe || !self.start(access_unit)? {
                self.dropped += 1;
                return Ok(false);
            }
            self.first_rtp = rtp_time;
        }
        let Some(ticks) = rtp_time.checked_sub(self.first_rtp) else {
            self.dropped += 1;
            return Ok(false);
        };
        if self.frames > 0 && ticks <= self.last_ticks {
            self.dropped += 1;
            return Ok(false);
        }
        if let Some(first) = self.pending.first()
            && (keyframe || ticks - first.ticks >= FRAGMENT_TICKS)
        {
            self.flush_fragment(ticks)?;
        }
        // Length-prefixed NAL units; parameter sets stay in band too (harmless, and a player
        // that joins mid-file finds them).
        let mut data = Vec::with_capacity(access_unit.len() + 16);
        for nal in nal_units(access_unit) {
            data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            data.extend_from_slice(nal);
        }
        self.pending.push(Sample {
            ticks,
            data,
            keyframe,
        });
        self.last_ticks = ticks;
        self.frames += 1;
        Ok(true)
    }

    /// Writes `ftyp` and `moov` from the first keyframe's parameter sets. `false` when it has
    /// none.
    fn start(&mut self, access_unit: &[u8]) -> io::Result<bool> {
        let entry = match self.codec {
            Mp4Codec::H264 => avc1_entry(access_unit),
            Mp4Codec::H265 => hvc1_entry(access_unit),
        };
        let Some((codec, brand, (width, height))) = entry else {
            return Ok(false);
        };
        let w16 = u16::try_from(width).unwrap_or(0);
        let h16 = u16::try_from(height).unwrap_or(0);
        let ftyp = Ftyp {
            major_brand: b"isom".into(),
            minor_version: 512,
            compatible_brands: vec![b"isom".into(), b"iso6".into(), brand.into(), b"mp41".into()],
        };
        let moov = Moov {
            mvhd: Mvhd {
                timescale: 1000,
                rate: 1.into(),
                volume: 1.into(),
                next_track_id: TRACK_ID + 1,
                ..Default::default()
            },
            mvex: Some(Mvex {
                trex: vec![Trex {
                    track_id: TRACK_ID,
                    default_sample_description_index: 1,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            trak: vec![Trak {
                tkhd: Tkhd {
                    track_id: TRACK_ID,
                    enabled: true,
                    in_movie: true,
                    width: w16.into(),
                    height: h16.into(),
                    ..Default::default()
                },
                mdia: Mdia {
                    mdhd: Mdhd {
                        timescale: VIDEO_RATE as u32,
                        language: "und".into(),
                        ..Default::default()
                    },
                    hdlr: Hdlr {
                        handler: b"vide".into(),
                        name: "VideoHandler".into(),
                    },
                    minf: Minf {
                        vmhd: Some(Vmhd::default()),
                        dinf: Dinf {
                            dref: Dref {
                                entries: vec![
                                    Url {
                                        location: "".into(),
                                    }
                                    .into(),
                                ],
                            },
                        },
                        stbl: Stbl {
                            stsd: Stsd {
                                codecs: vec![codec],
                            },
                            stts: Stts::default(),
                            stsc: Stsc::default(),
                            stsz: Stsz::default(),
                            stco: Some(Stco::default()),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                },
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut buf = Vec::new();
        encode(&ftyp, &mut buf)?;
        encode(&moov, &mut buf)?;
        self.out.write_all(&buf)?;
        self.out.flush()?;
        self.started = true;
        self.size = (width, height);
        Ok(true)
    }

    /// Writes the pending samples as one fragment; `next_ticks` is the time of the sample after
    /// them (their last one's end).
    fn flush_fragment(&mut self, next_ticks: u64) -> io::Result<()> {
        let samples = std::mem::take(&mut self.pending);
        let Some(first) = samples.first() else {
            return Ok(());
        };
        let base = first.ticks;
        let ends = samples
            .iter()
            .skip(1)
            .map(|s| s.ticks)
            .chain(std::iter::once(next_ticks));
        let entries: Vec<TrunEntry> = samples
            .iter()
            .zip(ends)
            .map(|(s, end)| TrunEntry {
                duration: Some(
                    u32::try_from(end.saturating_sub(s.ticks).max(1)).unwrap_or(u32::MAX),
                ),
                size: Some(s.data.len() as u32),
                flags: Some(if s.keyframe {
                    SYNC_SAMPLE_FLAGS
                } else {
                    NON_SYNC_SAMPLE_FLAGS
                }),
                cts: None,
            })
            .collect();
        self.sequence += 1;
        let mut moof = Moof {
            mfhd: Mfhd {
                sequence_number: self.sequence,
            },
            traf: vec![Traf {
                tfhd: Tfhd {
                    track_id: TRACK_ID,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: base,
                }),
                trun: vec![Trun {
                    data_offset: Some(0),
                    samples: TrunSamples::Explicit(entries),
                }],
                ..Default::default()
            }],
        };
        // The data offset counts from the moof's first byte to the first sample: the moof's own
        // size (which the offset's value does not change) plus the mdat header.
        let mut probe = Vec::new();
        encode(&moof, &mut probe)?;
        if let Some(traf) = moof.traf.first_mut()
            && let Some(trun) = traf.trun.first_mut()
        {
            trun.data_offset = Some(i32::try_from(probe.len() + 8).unwrap_or(i32::MAX));
        }
        let mdat = Mdat {
            data: samples.into_iter().flat_map(|s| s.data).collect(),
        };
        let mut buf = Vec::with_capacity(probe.len() + mdat.data.len() + 16);
        encode(&moof, &mut buf)?;
        encode(&mdat, &mut buf)?;
        self.out.write_all(&buf)?;
        self.out.flush()?;
        self.end_ticks = next_ticks;
        Ok(())
    }

    /// Media time from the first keyframe to the end of the last sample, including the samples
    /// still waiting for their fragment (up to a second of them, more when keyframes are rare,
    /// as a browser's H.264 sends them: read before `finish`, the written fragments alone fell
    /// a second short).
    pub fn duration(&self) -> std::time::Duration {
        let end = if self.pending.is_empty() {
            self.end_ticks
        } else {
            self.pending_end()
        };
        std::time::Duration::from_nanos(end * 1_000_000_000 / VIDEO_RATE)
    }

    /// Where the pending samples end: the last one lasts as long as the one before it.
    fn pending_end(&self) -> u64 {
        let last_duration = match self.pending.as_slice() {
            [.., a, b] => b.ticks - a.ticks,
            _ => DEFAULT_SAMPLE_TICKS,
        };
        self.last_ticks + last_duration
    }

    /// Writes the last fragment. `None` when no keyframe ever came (nothing was written).
    pub fn finish(mut self) -> io::Result<Option<W>> {
        if !self.started {
            return Ok(None);
        }
        let end = self.pending_end();
        self.flush_fragment(end)?;
        self.out.flush()?;
        Ok(Some(self.out))
    }
}

fn visual(width: u32, height: u32) -> Visual {
    Visual {
        data_reference_index: 1,
        width: u16::try_from(width).unwrap_or(0),
        height: u16::try_from(height).unwrap_or(0),
        ..Default::default()
    }
}

/// The `avc1` sample entry, brand and picture size from an H.264 keyframe's SPS and PPS.
fn avc1_entry(access_unit: &[u8]) -> Option<(Codec, &'static [u8; 4], (u32, u32))> {
    let sps: Vec<&[u8]> = nal_units(access_unit)
        .filter(|n| nal_type(n) == 7)
        .collect();
    let pps: Vec<&[u8]> = nal_units(access_unit)
        .filter(|n| nal_type(n) == 8)
        .collect();
    let first_sps = *sps.first()?;
    if pps.is_empty() {
        return None;
    }
    let (width, height) =
        SeqParameterSet::from_bits(BitReader::new(ByteReader::skipping_h264_header(first_sps)))
            .ok()
            .and_then(|s| s.pixel_dimensions().ok())
            .unwrap_or((0, 0));
    let avcc = Avcc {
        configuration_version: 1,
        avc_profile_indication: first_sps.get(1).copied().unwrap_or(0),
        profile_compatibility: first_sps.get(2).copied().unwrap_or(0),
        avc_level_indication: first_sps.get(3).copied().unwrap_or(0),
        length_size: 4,
        sequence_parameter_sets: sps.iter().map(|s| s.to_vec()).collect(),
        picture_parameter_sets: pps.iter().map(|p| p.to_vec()).collect(),
        ext: None,
    };
    let entry = Avc1 {
        visual: visual(width, height),
        avcc,
        btrt: None,
        colr: None,
        pasp: None,
        taic: None,
        fiel: None,
        spatial: Default::default(),
    };
    Some((Codec::Avc1(entry), b"avc1", (width, height)))
}

/// The `hvc1` sample entry (parameter sets in `hvcC`), brand and picture size from an H.265
/// keyframe's VPS, SPS and PPS.
fn hvc1_entry(access_unit: &[u8]) -> Option<(Codec, &'static [u8; 4], (u32, u32))> {
    let of = |t: u8| -> Vec<&[u8]> {
        nal_units(access_unit)
            .filter(|n| hevc::nal_type(n) == t)
            .collect()
    };
    let (vps, sps, pps) = (of(hevc::NAL_VPS), of(hevc::NAL_SPS), of(hevc::NAL_PPS));
    if vps.is_empty() || pps.is_empty() {
        return None;
    }
    let info = hevc::parse_sps(sps.first()?)?;
    let entry = Hvc1 {
        visual: visual(info.width, info.height),
        hvcc: hevc::hvcc(&info, &vps, &sps, &pps),
        ..Default::default()
    };
    Some((Codec::Hvc1(entry), b"hvc1", (info.width, info.height)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::{Decode, DecodeMaybe};

    // A 64x64 baseline SPS and its PPS (from x264), and IDR / non-IDR slice stubs.
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0a, 0xd9, 0x04, 0x26, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00,
        0x00, 0x03, 0x00, 0xf0, 0x3c, 0x48, 0x99, 0x20,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat())
            .collect()
    }

    #[test]
    fn annex_b_splits_into_nal_units() {
        let au = [
            &[0u8, 0, 0, 1, 0x67, 1, 2][..],
            &[0, 0, 1, 0x68, 3][..],
            &[0, 0, 0, 1, 0x65, 0, 0, 3, 9][..],
        ]
        .concat();
        let nals: Vec<&[u8]> = nal_units(&au).collect();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 0, 0, 3, 9][..]]
        );
        assert!(is_keyframe(&au));
    }

    #[test]
    fn writes_a_fragmented_mp4_from_the_first_keyframe() {
        let mut w = Mp4VideoWriter::new(Vec::new(), Mp4Codec::H264);
        let idr = annex_b(&[SPS, PPS, &[0x65, 0x88, 0x84]]);
        let p = annex_b(&[&[0x41, 0x9a, 0x00]]);
        assert!(!w.push(0, &p).unwrap(), "no keyframe yet");
        assert!(w.push(3000, &idr).unwrap());
        assert!(w.push(6000, &p).unwrap());
        assert!(w.push(9000, &idr).unwrap(), "a keyframe cuts a fragment");
        assert_eq!((w.frames, w.dropped, w.size), (3, 1, (64, 64)));
        let bytes = w.finish().unwrap().expect("a file");
        let mut r = std::io::Cursor::new(&bytes);
        let ftyp = Ftyp::decode(&mut r).unwrap();
        assert_eq!(ftyp.major_brand, b"isom".into());
        let moov = Moov::decode(&mut r).unwrap();
        assert!(moov.mvex.is_some());
        let mut samples = 0;
        while let Some(moof) = Moof::decode_maybe(&mut r).unwrap() {
            let trun = &moof.traf[0].trun[0];
            samples += trun.samples.len();
            let mdat = Mdat::decode(&mut r).unwrap();
            let sizes: u32 = trun.samples.iter().filter_map(|s| s.size).sum();
            assert_eq!(sizes as usize, mdat.data.len());
        }
        assert_eq!(samples, 3);
    }

    #[test]
    fn the_duration_counts_the_samples_not_yet_in_a_fragment() {
        let mut w = Mp4VideoWriter::new(Vec::new(), Mp4Codec::H264);
        let idr = annex_b(&[SPS, PPS, &[0x65, 0x88, 0x84]]);
        let p = annex_b(&[&[0x41, 0x9a, 0x00]]);
        // One keyframe, then 0.9 s of delta frames at 30 fps: all still pending (a fragment is
        // cut at a keyframe or after a second).
        assert!(w.push(0, &idr).unwrap());
        for i in 1..28u64 {
            assert!(w.push(i * 3000, &p).unwrap());
        }
        assert_eq!(
            w.duration(),
            std::time::Duration::from_nanos(28 * 3000 * 1_000_000_000 / VIDEO_RATE)
        );
    }

    #[test]
    fn writes_h265_as_hvc1_with_the_parameter_sets() {
        const VPS: &[u8] = &[
            0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00,
            0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3f, 0x95, 0x98, 0x09,
        ];
        const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];
        let sps = crate::pipeline::track::hevc::tests::SPS_640X360;
        let mut w = Mp4VideoWriter::new(Vec::new(), Mp4Codec::H265);
        let idr = annex_b(&[VPS, sps, PPS, &[19 << 1, 0x01, 0xaf]]);
        let trail = annex_b(&[&[1 << 1, 0x01, 0xd0]]);
        assert!(!w.push(0, &trail).unwrap(), "no keyframe yet");
        assert!(w.push(3000, &idr).unwrap());
        assert!(w.push(6000, &trail).unwrap());
        assert_eq!((w.frames, w.size), (2, (640, 360)));
        let bytes = w.finish().unwrap().expect("a file");
        let mut r = std::io::Cursor::new(&bytes);
        let ftyp = Ftyp::decode(&mut r).unwrap();
        assert!(ftyp.compatible_brands.contains(&b"hvc1".into()));
        let moov = Moov::decode(&mut r).unwrap();
        let Codec::Hvc1(entry) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
            panic!("not hvc1")
        };
        assert_eq!((entry.visual.width, entry.visual.height), (640, 360));
        assert_eq!(
            (entry.hvcc.general_profile_idc, entry.hvcc.general_level_idc),
            (1, 63)
        );
        let types: Vec<u8> = entry.hvcc.arrays.iter().map(|a| a.nal_unit_type).collect();
        assert_eq!(types, vec![32, 33, 34]);
        assert_eq!(entry.hvcc.arrays[1].nalus[0], sps.to_vec());
    }
}

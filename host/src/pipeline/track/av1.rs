//! What a WebM AV1 track needs from the bitstream (AV1 spec §5.3, §5.5; Matroska AV1 codec
//! mapping): the sequence header OBU of a keyframe's temporal unit, read for the frame size and
//! for the `av1C` record that becomes the track's CodecPrivate. str0m's depacketizer gives each
//! temporal unit as OBUs with size fields (the low-overhead format), which is what a Matroska
//! block holds. No crate parses AV1 sequence headers with a maintained API; only the header is
//! needed, so this is a small reader.

const OBU_SEQUENCE_HEADER: u8 = 1;

/// The sequence header fields the track needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SequenceHeader {
    pub profile: u8,
    pub level: u8,
    pub tier: bool,
    pub high_bitdepth: bool,
    pub twelve_bit: bool,
    pub monochrome: bool,
    pub subsampling_x: bool,
    pub subsampling_y: bool,
    pub chroma_sample_position: u8,
    pub width: u32,
    pub height: u32,
    /// The whole OBU (header, size, payload): the `configOBUs` of `av1C`.
    pub obu: Vec<u8>,
}

impl SequenceHeader {
    /// The `AV1CodecConfigurationRecord` (the `av1C` box body, Matroska CodecPrivate).
    pub fn av1c(&self) -> Vec<u8> {
        let b = |v: bool, shift: u8| u8::from(v) << shift;
        let mut out = vec![
            0x81, // marker 1, version 1
            (self.profile << 5) | (self.level & 0x1f),
            b(self.tier, 7)
                | b(self.high_bitdepth, 6)
                | b(self.twelve_bit, 5)
                | b(self.monochrome, 4)
                | b(self.subsampling_x, 3)
                | b(self.subsampling_y, 2)
                | (self.chroma_sample_position & 3),
            0, // no initial presentation delay
        ];
        out.extend_from_slice(&self.obu);
        out
    }
}

/// The sequence header of a temporal unit, if it carries one (every keyframe does).
pub fn sequence_header(temporal_unit: &[u8]) -> Option<SequenceHeader> {
    let mut rest = temporal_unit;
    while !rest.is_empty() {
        let header = rest[0];
        let obu_type = (header >> 3) & 0xf;
        let has_extension = header & 0x4 != 0;
        let has_size = header & 0x2 != 0;
        let mut pos = 1 + usize::from(has_extension);
        let size = if has_size {
            let (size, len) = leb128(rest.get(pos..)?)?;
            pos += len;
            usize::try_from(size).ok()?
        } else {
            rest.len().checked_sub(pos)?
        };
        let end = pos.checked_add(size)?;
        let payload = rest.get(pos..end)?;
        if obu_type == OBU_SEQUENCE_HEADER {
            let mut seq = parse_sequence_header(payload)?;
            seq.obu = rest[..end].to_vec();
            return Some(seq);
        }
        rest = &rest[end..];
    }
    None
}

fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in data.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// `sequence_header_obu()` up to and including `color_config()` (§5.5).
fn parse_sequence_header(payload: &[u8]) -> Option<SequenceHeader> {
    let mut r = super::bits::Bits::new(payload);
    let mut seq = SequenceHeader {
        profile: r.read(3)? as u8,
        ..Default::default()
    };
    r.read(1)?; // still_picture
    let reduced = r.flag()?;
    let mut decoder_model_info_present = false;
    let mut buffer_delay_length = 0;
    if reduced {
        seq.level = r.read(5)? as u8;
    } else {
        if r.flag()? {
            // timing_info()
            r.read(32)?;
            r.read(32)?;
            if r.flag()? {
                r.uvlc()?;
            }
            decoder_model_info_present = r.flag()?;
            if decoder_model_info_present {
                buffer_delay_length = r.read(5)? + 1;
                r.read(32)?;
                r.read(10)?; // buffer_removal_time_length_minus_1, frame_presentation_time_length_minus_1
            }
        }
        let initial_display_delay_present = r.flag()?;
        let operating_points = r.read(5)? + 1;
        for i in 0..operating_points {
            r.read(12)?; // operating_point_idc
            let level = r.read(5)? as u8;
            let tier = level > 7 && r.flag()?;
            if i == 0 {
                seq.level = level;
                seq.tier = tier;
            }
            if decoder_model_info_present && r.flag()? {
                r.read(buffer_delay_length)?;
                r.read(buffer_delay_length)?;
                r.read(1)?;
            }
            if initial_display_delay_present && r.flag()? {
                r.read(4)?;
            }
        }
    }
    let width_bits = r.read(4)? + 1;
    let height_bits = r.read(4)? + 1;
    seq.width = r.read(width_bits)? + 1;
    seq.height = r.read(height_bits)? + 1;
    if !reduced && r.flag()? {
        // frame_id_numbers_present: delta_frame_id_length_minus_2, additional_frame_id_length_minus_1
        r.read(7)?;
    }
    r.read(3)?; // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    if !reduced {
        r.read(4)?; // interintra compound, masked compound, warped motion, dual filter
        let order_hint = r.flag()?;
        if order_hint {
            r.read(2)?; // enable_jnt_comp, enable_ref_frame_mvs
        }
        let force_screen_content_tools = if r.flag()? { 2 } else { r.read(1)? };
        if force_screen_content_tools > 0 && !r.flag()? {
            r.read(1)?; // seq_force_integer_mv
        }
        if order_hint {
            r.read(3)?; // order_hint_bits_minus_1
        }
    }
    r.read(3)?; // enable_superres, enable_cdef, enable_restoration
    // color_config()
    seq.high_bitdepth = r.flag()?;
    if seq.profile == 2 && seq.high_bitdepth {
        seq.twelve_bit = r.flag()?;
    }
    seq.monochrome = seq.profile != 1 && r.flag()?;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if r.flag()? {
        primaries = r.read(8)?;
        transfer = r.read(8)?;
        matrix = r.read(8)?;
    }
    if seq.monochrome {
        r.read(1)?; // color_range
        (seq.subsampling_x, seq.subsampling_y) = (true, true);
        return Some(seq);
    }
    const CP_BT_709: u32 = 1;
    const TC_SRGB: u32 = 13;
    const MC_IDENTITY: u32 = 0;
    if primaries == CP_BT_709 && transfer == TC_SRGB && matrix == MC_IDENTITY {
        return Some(seq);
    }
    r.read(1)?; // color_range
    (seq.subsampling_x, seq.subsampling_y) = match seq.profile {
        0 => (true, true),
        1 => (false, false),
        _ if seq.twelve_bit => {
            let x = r.flag()?;
            (x, x && r.flag()?)
        }
        _ => (true, false),
    };
    if seq.subsampling_x && seq.subsampling_y {
        seq.chroma_sample_position = r.read(2)? as u8;
    }
    Some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first temporal unit libaom writes for 640x360 yuv420p (`ffmpeg -f lavfi -i
    /// testsrc=s=640x360 -pix_fmt yuv420p -c:v libaom-av1 -usage realtime -f ivf`), cut after
    /// the sequence header and the start of the frame OBU.
    const KEY_TU: &[u8] = &[
        0x12, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x0c, 0xc4, 0xff, 0x67, 0x36, 0xbe, 0x40, 0x10,
        0x32, 0xfa, 0x38, 0x10, 0x00,
    ];

    #[test]
    fn reads_size_and_config_from_the_sequence_header() {
        let seq = sequence_header(KEY_TU).expect("a sequence header");
        assert_eq!((seq.width, seq.height), (640, 360), "{seq:?}");
        assert_eq!(
            (seq.profile, seq.high_bitdepth, seq.monochrome),
            (0, false, false),
            "{seq:?}"
        );
        assert_eq!(
            (seq.subsampling_x, seq.subsampling_y),
            (true, true),
            "{seq:?}"
        );
        assert_eq!(seq.obu, KEY_TU[2..15].to_vec());
        let av1c = seq.av1c();
        assert_eq!(av1c[0], 0x81);
        assert_eq!(av1c[1] >> 5, 0, "profile");
        assert_eq!(av1c[2] & 0x0c, 0x0c, "4:2:0");
        assert_eq!(&av1c[4..], &KEY_TU[2..15]);
    }

    #[test]
    fn a_unit_without_a_sequence_header_or_cut_short_is_none() {
        assert!(sequence_header(&[0x12, 0x00, 0x32, 0x02, 0x10, 0x00]).is_none());
        for len in 0..15 {
            assert!(sequence_header(&KEY_TU[..len]).is_none(), "cut at {len}");
        }
    }
}

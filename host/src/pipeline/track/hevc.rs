//! What an MP4 sample entry needs from H.265 parameter sets (ITU-T H.265 §7.3): the
//! `hvcC` profile/tier/level fields, chroma format and bit depths, and the picture size, all from
//! the SPS. No crate on crates.io parses H.265 SPS with a maintained API (h264-reader is
//! H.264-only), and only the head of the SPS is needed, so this is a small reader.

use mp4_atom::{HvcCArray, Hvcc};

pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;

/// The NAL unit type of an H.265 NAL unit (its two-byte header, §7.3.1.2).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map(|b| (b >> 1) & 0x3f).unwrap_or(0)
}

/// IRAP pictures (BLA, IDR, CRA: types 16–23) are where decoding can start.
pub fn is_irap(nal: &[u8]) -> bool {
    (16..=23).contains(&nal_type(nal))
}

/// The SPS fields the sample entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpsInfo {
    pub profile_space: u8,
    pub tier: bool,
    pub profile_idc: u8,
    pub compatibility: [u8; 4],
    pub constraints: [u8; 6],
    pub level_idc: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    pub temporal_layers: u8,
    pub temporal_id_nested: bool,
    pub width: u32,
    pub height: u32,
}

/// Reads an SPS NAL unit (header included). `None` when it is cut short or malformed.
pub fn parse_sps(nal: &[u8]) -> Option<SpsInfo> {
    let rbsp = unescape(nal.get(2..)?);
    let mut r = super::bits::Bits::new(&rbsp);
    r.read(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.read(3)? as usize;
    let temporal_id_nested = r.read(1)? == 1;
    let mut info = SpsInfo {
        profile_space: r.read(2)? as u8,
        tier: r.read(1)? == 1,
        profile_idc: r.read(5)? as u8,
        temporal_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nested,
        ..Default::default()
    };
    for b in &mut info.compatibility {
        *b = r.read(8)? as u8;
    }
    for b in &mut info.constraints {
        *b = r.read(8)? as u8;
    }
    info.level_idc = r.read(8)? as u8;
    // Sub-layer profile/level presence flags, padded to eight entries, then their contents.
    let mut present = Vec::with_capacity(max_sub_layers_minus1);
    for _ in 0..max_sub_layers_minus1 {
        present.push((r.read(1)? == 1, r.read(1)? == 1));
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.read(2)?;
        }
    }
    for (profile, level) in present {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    info.chroma_format_idc = u8::try_from(r.ue()?).ok()?;
    if info.chroma_format_idc == 3 {
        r.read(1)?; // separate_colour_plane_flag
    }
    let width = r.ue()?;
    let height = r.ue()?;
    let (mut crop_x, mut crop_y) = (0, 0);
    if r.read(1)? == 1 {
        // Conformance window offsets count in chroma units.
        let (sub_w, sub_h) = match info.chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        crop_x = sub_w * (left + right);
        crop_y = sub_h * (top + bottom);
    }
    info.width = width.checked_sub(crop_x)?;
    info.height = height.checked_sub(crop_y)?;
    info.bit_depth_luma_minus8 = u8::try_from(r.ue()?).ok()?;
    info.bit_depth_chroma_minus8 = u8::try_from(r.ue()?).ok()?;
    Some(info)
}

/// The `hvcC` record for these parameter sets.
pub fn hvcc(sps: &SpsInfo, vps: &[&[u8]], sps_nals: &[&[u8]], pps: &[&[u8]]) -> Hvcc {
    let array = |nal_unit_type, nals: &[&[u8]]| HvcCArray {
        completeness: true,
        nal_unit_type,
        nalus: nals.iter().map(|n| n.to_vec()).collect(),
    };
    Hvcc {
        configuration_version: 1,
        general_profile_space: sps.profile_space,
        general_tier_flag: sps.tier,
        general_profile_idc: sps.profile_idc,
        general_profile_compatibility_flags: sps.compatibility,
        general_constraint_indicator_flags: sps.constraints,
        general_level_idc: sps.level_idc,
        min_spatial_segmentation_idc: 0,
        parallelism_type: 0,
        chroma_format_idc: sps.chroma_format_idc,
        bit_depth_luma_minus8: sps.bit_depth_luma_minus8,
        bit_depth_chroma_minus8: sps.bit_depth_chroma_minus8,
        avg_frame_rate: 0,
        constant_frame_rate: 0,
        num_temporal_layers: sps.temporal_layers,
        temporal_id_nested: sps.temporal_id_nested,
        length_size_minus_one: 3,
        arrays: vec![
            array(NAL_VPS, vps),
            array(NAL_SPS, sps_nals),
            array(NAL_PPS, pps),
        ],
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`, §7.4.2).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // The SPS x265 writes for 640x360 yuv420p, Main profile, level 2.1 (`ffmpeg -f lavfi -i
    // testsrc=s=640x360 -pix_fmt yuv420p -c:v libx265 -f hevc`), emulation prevention included.
    pub const SPS_640X360: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3f, 0xa0, 0x05, 0x02, 0x01, 0x69, 0x65, 0x95, 0x9a, 0x49, 0x32, 0xbc, 0x05,
        0xa0, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0xc1,
    ];

    #[test]
    fn reads_profile_level_and_size_from_an_sps() {
        assert_eq!(nal_type(SPS_640X360), NAL_SPS);
        let sps = parse_sps(SPS_640X360).expect("an SPS");
        assert_eq!(
            (sps.profile_idc, sps.level_idc, sps.tier),
            (1, 63, false),
            "{sps:?}"
        );
        assert_eq!(sps.compatibility, [0x60, 0, 0, 0]);
        assert_eq!(
            (sps.width, sps.height, sps.chroma_format_idc),
            (640, 360, 1),
            "{sps:?}"
        );
        assert_eq!(
            (sps.bit_depth_luma_minus8, sps.bit_depth_chroma_minus8),
            (0, 0)
        );
    }

    #[test]
    fn malformed_sps_is_none_not_a_panic() {
        for len in 0..SPS_640X360.len() - 8 {
            let _ = parse_sps(&SPS_640X360[..len]);
        }
        assert!(parse_sps(&[0x42, 0x01]).is_none());
    }

    #[test]
    fn irap_types() {
        assert!(is_irap(&[19 << 1, 1])); // IDR_W_RADL
        assert!(is_irap(&[21 << 1, 1])); // CRA
        assert!(!is_irap(&[1 << 1, 1])); // TRAIL_R
    }
}

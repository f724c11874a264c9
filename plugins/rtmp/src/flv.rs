//! The FLV tags the host sends, taken apart into what RTMP carries: audio and video message
//! bodies with their timestamps, and `onMetaData` as stream metadata.
//!
//! An RTMP publish carries exactly the body of each FLV tag as the message payload (audio tag
//! 8 → RTMP audio message, video tag 9 → video message) with the tag's 32-bit timestamp, so no
//! remuxing is needed. A script tag (18) carries `onMetaData`; RTMP sends it as
//! `@setDataFrame` data, which `rml_rtmp` builds from its `StreamMetadata` record, so the
//! known properties are read out of the tag's AMF0.

use std::io::Cursor;

use egress_plugin_api::SinkError;
use rml_amf0::Amf0Value;
use rml_rtmp::sessions::StreamMetadata;

const HEADER_LEN: usize = 11;

/// One FLV tag, borrowed from the chunk.
#[derive(Debug, PartialEq)]
pub enum Tag<'a> {
    Audio { timestamp: u32, body: &'a [u8] },
    Video { timestamp: u32, body: &'a [u8] },
    Script { body: &'a [u8] },
}

impl<'a> Tag<'a> {
    /// Read one tag: the 11-byte header and its body. A trailing `PreviousTagSize` (4 bytes)
    /// is tolerated, so that a writer copying tags straight out of a file is not refused.
    pub fn parse(data: &'a [u8]) -> Result<Tag<'a>, SinkError> {
        let not_flv = |why: &str| SinkError::permanent(format!("not an FLV tag: {why}"));
        if data.len() < HEADER_LEN {
            return Err(not_flv("shorter than the 11-byte tag header"));
        }
        let size = u32::from_be_bytes([0, data[1], data[2], data[3]]) as usize;
        let end = HEADER_LEN + size;
        if data.len() != end && data.len() != end + 4 {
            return Err(not_flv(&format!(
                "the header says {size} body bytes, the chunk has {}",
                data.len() - HEADER_LEN
            )));
        }
        // 24 bits of timestamp, then the extension byte with bits 24-31.
        let timestamp = u32::from_be_bytes([data[7], data[4], data[5], data[6]]);
        let body = &data[HEADER_LEN..end];
        match data[0] & 0x1f {
            8 => Ok(Tag::Audio { timestamp, body }),
            9 => Ok(Tag::Video { timestamp, body }),
            18 => Ok(Tag::Script { body }),
            t => Err(not_flv(&format!("unknown tag type {t}"))),
        }
    }
}

/// The `onMetaData` of a script tag body, or `None` for another script (cue points and the
/// like, which a live publish does not need).
pub fn metadata(body: &[u8]) -> Result<Option<StreamMetadata>, SinkError> {
    let values = rml_amf0::deserialize(&mut Cursor::new(body))
        .map_err(|e| SinkError::permanent(format!("the FLV script tag is not AMF0: {e}")))?;
    let mut values = values.into_iter();
    let mut name = values.next();
    // A tag copied from an RTMP capture may carry the `@setDataFrame` prefix already.
    if matches!(&name, Some(Amf0Value::Utf8String(s)) if s == "@setDataFrame") {
        name = values.next();
    }
    if !matches!(&name, Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
        return Ok(None);
    }
    let Some(Amf0Value::Object(props)) = values.next() else {
        return Ok(Some(StreamMetadata::new()));
    };
    let number = |key: &str| match props.get(key) {
        Some(Amf0Value::Number(n)) if n.is_finite() && *n >= 0.0 => Some(*n),
        _ => None,
    };
    // Float-to-int `as` saturates: a silly value becomes a silly value, never a panic.
    let int = |key: &str| number(key).map(|n| n.round() as u32);
    let mut m = StreamMetadata::new();
    m.video_width = int("width");
    m.video_height = int("height");
    m.video_codec_id = int("videocodecid");
    m.video_frame_rate = number("framerate").map(|n| n as f32);
    m.video_bitrate_kbps = int("videodatarate");
    m.audio_codec_id = int("audiocodecid");
    m.audio_bitrate_kbps = int("audiodatarate");
    m.audio_sample_rate = int("audiosamplerate");
    m.audio_channels = int("audiochannels");
    m.audio_is_stereo = match props.get("stereo") {
        Some(Amf0Value::Boolean(b)) => Some(*b),
        _ => None,
    };
    m.encoder = match props.get("encoder") {
        Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn tag(kind: u8, timestamp: u32, body: &[u8]) -> Vec<u8> {
        let mut t = vec![kind];
        t.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        t.extend_from_slice(&timestamp.to_be_bytes()[1..]);
        t.push((timestamp >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(body);
        t
    }

    #[test]
    fn parses_tags_and_extended_timestamps() {
        let v = tag(9, 0x0123_4567, &[0x17, 0, 0, 0, 0]);
        assert_eq!(
            Tag::parse(&v).unwrap(),
            Tag::Video {
                timestamp: 0x0123_4567,
                body: &[0x17, 0, 0, 0, 0]
            }
        );
        let mut with_size = tag(8, 40, &[0xaf, 1, 2]);
        with_size.extend_from_slice(&14u32.to_be_bytes());
        assert_eq!(
            Tag::parse(&with_size).unwrap(),
            Tag::Audio {
                timestamp: 40,
                body: &[0xaf, 1, 2]
            }
        );
        assert!(Tag::parse(&v[..12]).unwrap_err().is_permanent());
        assert!(Tag::parse(&tag(7, 0, &[])).is_err());
        assert!(Tag::parse(&[9, 0]).is_err());
    }

    #[test]
    fn reads_on_meta_data() {
        let mut props = HashMap::new();
        props.insert("width".to_string(), Amf0Value::Number(1280.0));
        props.insert("height".to_string(), Amf0Value::Number(720.0));
        props.insert("videocodecid".to_string(), Amf0Value::Number(7.0));
        props.insert("framerate".to_string(), Amf0Value::Number(30.0));
        props.insert("stereo".to_string(), Amf0Value::Boolean(true));
        props.insert(
            "encoder".to_string(),
            Amf0Value::Utf8String("egress".into()),
        );
        let body = rml_amf0::serialize(&vec![
            Amf0Value::Utf8String("onMetaData".into()),
            Amf0Value::Object(props),
        ])
        .unwrap();
        let m = metadata(&body).unwrap().expect("metadata");
        assert_eq!(
            (m.video_width, m.video_height, m.video_codec_id),
            (Some(1280), Some(720), Some(7))
        );
        assert_eq!(
            (m.video_frame_rate, m.audio_is_stereo),
            (Some(30.0), Some(true))
        );
        assert_eq!(m.encoder.as_deref(), Some("egress"));
        let other = rml_amf0::serialize(&vec![Amf0Value::Utf8String("onCuePoint".into())]).unwrap();
        assert!(metadata(&other).unwrap().is_none());
        assert!(metadata(&[0xff, 0xff]).unwrap_err().is_permanent());
    }
}

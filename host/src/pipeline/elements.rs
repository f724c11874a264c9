//! GStreamer building blocks shared by the two pipelines that encode: the Chrome capture
//! ([`super::gst`]) and the WebRTC composite ([`super::composite::mixer`]). Checked property
//! setters and linking (glib panics on a wrong property name or type; these return an error),
//! and the parts both configure alike — the encoders, and the file end (muxer → append-only
//! file sink) — so that a recording is encoded the same way whichever source it comes from.

use std::path::Path;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

use super::encoding::{AudioCodec, Container, Encoding};
use crate::core::PipelineError;

/// MP4 fragment and WebM cluster length: how much a killed recording can lose at most.
pub const FRAGMENT_MS: u32 = 1000;
/// x264's VBV buffer (Go: 2 s for file outputs); also vp8enc's rate-control buffer.
const VBV_BUFFER_MS: u32 = 2000;
/// libvpx speed in realtime mode (0 best … 16 fastest). Measured at 720p30 on a 2-core host,
/// one thread: 8 costs what x264 `veryfast` costs (0.13 cores for a web page, 0.28 for
/// full-frame motion) and encodes three times faster than real time.
const VP8_CPU_USED: i32 = 8;
/// VP8 keyframe distance when the request sets no `key_frame_interval`: seeking lands within
/// this, at a small bitrate cost (libvpx's own default is 128 frames).
const VP8_KEYFRAME_SECS: f64 = 2.0;
/// Pixels a second one vp8enc thread is given when `video_encoder_threads` is 0 (1080p30): more
/// threads only where one cannot keep up, because libvpx's VP8 threads spin while they wait
/// for each other: on a busy 2-core host a 720p30 web recording's handler used 0.7 cores with
/// two threads and 0.2 (as with x264) with one.
const VP8_PIXELS_PER_THREAD: u64 = 1920 * 1080 * 30;
/// At most this many vp8enc threads are chosen automatically.
const VP8_MAX_AUTO_THREADS: u64 = 4;

pub fn gst_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Gst(e.to_string())
}

/// A new element; `name` only helps reading GStreamer's logs and graph dumps.
pub fn make(factory: &str, name: Option<&str>) -> Result<gst::Element, PipelineError> {
    let builder = gst::ElementFactory::make(factory);
    let builder = match name {
        Some(name) => builder.name(name),
        None => builder,
    };
    builder.build().map_err(|_| {
        gst_err(format!(
            "could not create {factory} (is its GStreamer plugin installed?)"
        ))
    })
}

/// Sets a property, refusing (instead of panicking, as glib would) on a name or type mismatch.
pub fn set<V: ToValue>(el: &gst::Element, prop: &str, v: V) -> Result<(), PipelineError> {
    let pspec = el
        .find_property(prop)
        .ok_or_else(|| gst_err(format!("{} has no property {prop}", el.name())))?;
    let value = v.to_value();
    if !value.type_().is_a(pspec.value_type()) {
        return Err(gst_err(format!(
            "{}.{prop} is a {}, not a {}",
            el.name(),
            pspec.value_type(),
            value.type_()
        )));
    }
    el.set_property_from_value(prop, &value);
    Ok(())
}

/// Sets an enum or flags property from its nick (`"veryfast"`, `"downstream"`).
pub fn set_str(el: &gst::Element, prop: &str, s: &str) -> Result<(), PipelineError> {
    let pspec = el
        .find_property(prop)
        .ok_or_else(|| gst_err(format!("{} has no property {prop}", el.name())))?;
    let value = glib::Value::deserialize_with_pspec(s, &pspec)
        .map_err(|_| gst_err(format!("{}.{prop} cannot be {s:?}", el.name())))?;
    el.set_property_from_value(prop, &value);
    Ok(())
}

pub fn caps_filter(name: Option<&str>, caps: gst::Caps) -> Result<gst::Element, PipelineError> {
    let el = make("capsfilter", name)?;
    set(&el, "caps", caps)?;
    Ok(el)
}

pub fn link_chain(elements: &[&gst::Element]) -> Result<(), PipelineError> {
    gst::Element::link_many(elements.iter().copied())
        .map_err(|e| gst_err(format!("failed to link elements: {e}")))
}

/// Links `src`'s src pad to a new request pad of `sink` (a mixer or muxer); returns that pad.
pub fn link_request(
    src: &gst::Element,
    sink: &gst::Element,
    template: &str,
) -> Result<gst::Pad, PipelineError> {
    let pad = sink
        .request_pad_simple(template)
        .ok_or_else(|| gst_err(format!("{} has no {template} pad", sink.name())))?;
    let srcpad = src
        .static_pad("src")
        .ok_or_else(|| gst_err(format!("{} has no src pad", src.name())))?;
    srcpad.link(&pad).map_err(|e| {
        gst_err(format!(
            "failed to link {} to {}: {e:?}",
            src.name(),
            sink.name()
        ))
    })?;
    Ok(pad)
}

/// Links the last element of an encoder chain to the muxer: a request pad of MP4/Ogg/WebM, or
/// xingmux's one sink (an MP3 file is just the stream).
pub fn link_to_muxer(
    last: &gst::Element,
    mux: &gst::Element,
    container: Container,
    template: &str,
) -> Result<(), PipelineError> {
    match container {
        Container::Mp3 => link_chain(&[last, mux]),
        Container::Mp4 | Container::Ogg | Container::Webm => {
            link_request(last, mux, template).map(|_| ())
        }
    }
}

/// Frames between keyframes for an interval in seconds (at least 1).
pub fn keyframe_distance(interval_secs: f64, framerate: i32) -> u32 {
    (interval_secs * f64::from(framerate))
        .round()
        .clamp(1.0, f64::from(u32::MAX)) as u32
}

/// The end of every recording pipeline: the container's muxer into an append-only file sink,
/// added to `pipeline` and linked. Returns the muxer, for the encoders to link into.
///
/// Storage uploads the file while it grows, so nothing written may be rewritten: the sink
/// tells the muxer it cannot seek, and then mp4mux leaves the moov's durations unset and
/// xingmux its Xing frame, which with fragmented MP4 and CBR MP3 costs nothing (players take
/// the duration from the fragments or the bitrate). webmmux writes each cluster whole when it
/// closes and never touches it again, but at EOS it seeks back to fill in the segment size,
/// duration and seek head in the first few hundred bytes; storage notices the changed head and
/// uploads the finished file again, and a file cut off before EOS keeps Matroska's "unknown
/// size" there and plays as it is.
pub fn file_end(
    pipeline: &gst::Pipeline,
    container: Container,
    out_path: &Path,
) -> Result<gst::Element, PipelineError> {
    let mux = match container {
        Container::Mp4 => {
            let m = make("mp4mux", Some("mux"))?;
            set(&m, "fragment-duration", FRAGMENT_MS)?;
            // Write for a stream: the moov carries no total duration (players sum the
            // fragments), so nothing has to be rewritten at the end.
            set(&m, "streamable", true)?;
            m
        }
        Container::Ogg => make("oggmux", Some("mux"))?,
        Container::Mp3 => make("xingmux", Some("mux"))?,
        Container::Webm => {
            let m = make("webmmux", Some("mux"))?;
            set(
                &m,
                "max-cluster-duration",
                i64::from(FRAGMENT_MS) * 1_000_000,
            )?;
            m
        }
    };
    let sink = make("filesink", Some("file_sink"))?;
    set(&sink, "location", out_path.to_string_lossy().as_ref())?;
    set(&sink, "sync", false)?;
    set(&sink, "async", false)?;
    // Everything muxed is in the page cache at once, so a killed handler loses nothing that
    // was already written.
    set_str(&sink, "buffer-mode", "unbuffered")?;
    pipeline.add_many([&mux, &sink]).map_err(gst_err)?;
    link_chain(&[&mux, &sink])?;
    if matches!(container, Container::Mp4 | Container::Mp3) {
        refuse_seeking(&sink)?;
    }
    Ok(mux)
}

/// Answers the muxer's seeking query for the file: not seekable.
fn refuse_seeking(sink: &gst::Element) -> Result<(), PipelineError> {
    let pad = sink
        .static_pad("sink")
        .ok_or_else(|| gst_err("filesink has no sink pad"))?;
    pad.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, |_, info| {
        if let Some(gst::PadProbeData::Query(q)) = info.data.as_mut()
            && let gst::QueryViewMut::Seeking(s) = q.view_mut()
        {
            s.set(
                false,
                gst::GenericFormattedValue::none_for_format(s.format()),
                gst::GenericFormattedValue::none_for_format(s.format()),
            );
            return gst::PadProbeReturn::Handled;
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// x264 → profile caps → h264parse, the encoder first. `threads` 0 lets x264 choose.
pub fn h264_encoder(e: &Encoding, threads: u32) -> Result<Vec<gst::Element>, PipelineError> {
    let enc = make("x264enc", Some("video_encoder"))?;
    set_str(&enc, "speed-preset", "veryfast")?;
    set(&enc, "bitrate", e.video_bitrate.max(1) as u32)?;
    set(&enc, "vbv-buf-capacity", VBV_BUFFER_MS)?;
    // No B-frames: fragmented MP4 has no edit list to undo their reordering delay.
    set(&enc, "bframes", 0u32)?;
    if threads > 0 {
        set(&enc, "threads", threads)?;
    }
    if e.key_frame_interval > 0.0 {
        set(
            &enc,
            "key-int-max",
            keyframe_distance(e.key_frame_interval, e.framerate),
        )?;
        set(&enc, "option-string", "scenecut=0")?;
    }
    let profile = caps_filter(
        None,
        gst::Caps::builder("video/x-h264")
            .field("profile", e.profile.as_str())
            .build(),
    )?;
    Ok(vec![enc, profile, make("h264parse", None)?])
}

/// vp8enc in realtime mode: each frame is encoded within its frame time, with no look-ahead
/// (`lag-in-frames=0`: no delay between the tracks, no alt-ref frames), constant bitrate with
/// x264's buffer, and a keyframe at least every `key_frame_interval` (else 2 s). `threads` 0
/// picks one thread per [`VP8_PIXELS_PER_THREAD`].
pub fn vp8_encoder(e: &Encoding, threads: u32) -> Result<gst::Element, PipelineError> {
    let enc = make("vp8enc", Some("video_encoder"))?;
    set(&enc, "deadline", 1i64)?;
    set(&enc, "cpu-used", VP8_CPU_USED)?;
    let threads = if threads > 0 {
        u64::from(threads)
    } else {
        let dim = |v: i32| u64::try_from(v).unwrap_or(0).max(1);
        let pixels = dim(e.width) * dim(e.height) * dim(e.framerate);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        pixels
            .div_ceil(VP8_PIXELS_PER_THREAD)
            .clamp(1, VP8_MAX_AUTO_THREADS.min(cores).max(1))
    };
    set(&enc, "threads", threads.clamp(1, 64) as i32)?;
    set_str(&enc, "end-usage", "cbr")?;
    set(
        &enc,
        "target-bitrate",
        e.video_bitrate.max(1).saturating_mul(1000),
    )?;
    set(&enc, "buffer-size", VBV_BUFFER_MS as i32)?;
    set(&enc, "lag-in-frames", 0i32)?;
    let interval = if e.key_frame_interval > 0.0 {
        e.key_frame_interval
    } else {
        VP8_KEYFRAME_SECS
    };
    set(
        &enc,
        "keyframe-max-dist",
        i32::try_from(keyframe_distance(interval, e.framerate)).unwrap_or(i32::MAX),
    )?;
    Ok(enc)
}

/// The audio encoder (and its parser, for AAC and MP3), the encoder first.
pub fn audio_encoder(codec: AudioCodec, e: &Encoding) -> Result<Vec<gst::Element>, PipelineError> {
    Ok(match codec {
        AudioCodec::Aac => {
            let enc = make("avenc_aac", Some("audio_encoder"))?;
            set(&enc, "bitrate", e.audio_bitrate.saturating_mul(1000))?;
            // Forced mid/side coding leaks a left-only route into the right channel (measured:
            // both at the same level); the encoder still uses M/S where it pays.
            set(&enc, "aac-ms", false)?;
            vec![enc, make("aacparse", None)?]
        }
        AudioCodec::Opus => {
            let enc = make("opusenc", Some("audio_encoder"))?;
            set(
                &enc,
                "bitrate",
                e.audio_bitrate.saturating_mul(1000).clamp(4000, 650_000),
            )?;
            vec![enc]
        }
        AudioCodec::Mp3 => {
            let enc = make("lamemp3enc", Some("audio_encoder"))?;
            set_str(&enc, "target", "bitrate")?;
            set(&enc, "cbr", true)?;
            set(&enc, "bitrate", e.audio_bitrate.clamp(8, 320))?;
            vec![enc, make("mpegaudioparse", None)?]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_distance_is_at_least_one_frame() {
        assert_eq!(keyframe_distance(2.0, 30), 60);
        assert_eq!(keyframe_distance(0.01, 30), 1);
    }

    #[test]
    fn a_wrong_property_is_an_error_not_a_panic() {
        gst::init().expect("gstreamer");
        let q = make("queue", None).expect("queue");
        assert!(set(&q, "no-such-property", 1u32).is_err());
        assert!(set(&q, "max-size-buffers", "not a number").is_err());
        assert!(set_str(&q, "leaky", "sideways").is_err());
        set_str(&q, "leaky", "downstream").expect("a valid nick");
    }
}

//! The GStreamer end of the stream outputs: one muxer per live format (FLV for RTMP, MPEG-TS
//! for SRT) fed from the recorder's encoded video and audio tees, ending in an `appsink` whose
//! chunks are fanned out to every destination of that format.
//!
//! ```text
//! video tee ─▶ queue ─┐
//!                     ├─▶ flvmux streamable ─▶ appsink ─▶ fan-out ─▶ destination queues
//! audio tee ─▶ queue ─┘   (or mpegtsmux alignment=7)
//! ```
//!
//! One mux per format, however many URLs: an extra destination costs its queue and its
//! socket, not another mux (Go muxes once and tees after the muxer; here the tee is the
//! fan-out, so each destination can start its own session at a keyframe with its own
//! timestamps).
//!
//! The appsink callback never blocks: destinations take chunks with a non-blocking push (see
//! `destination`), so neither the file output nor another destination ever waits for a slow
//! network.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use egress_plugin_api::LiveFormat;
use gstreamer as gst;
use gstreamer::prelude::*;

use super::destination::{Chunk, DestinationInput, Headers, KeyframeRequester};
use crate::outputs::tap::EncodedStreams;

/// Keyframes are asked of the encoder at most this often, however many destinations
/// (re)connect: each request costs every output an extra IDR.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// What may wait between the tee and the muxer before the oldest is dropped (only when the
/// muxer thread is starved of CPU: the appsink never blocks).
const BRANCH_QUEUE: Duration = Duration::from_secs(3);
const TS_PACKET: usize = 188;

#[derive(Debug, thiserror::Error)]
#[error("stream output: {0}")]
pub struct MuxError(String);

fn err(e: impl std::fmt::Display) -> MuxError {
    MuxError(e.to_string())
}

/// Destinations fed by one mux, by id.
pub type Fanout = Arc<Mutex<BTreeMap<u64, DestinationInput>>>;

/// A live mux in the pipeline: where destinations of its format subscribe.
#[derive(Clone)]
pub struct MuxTap {
    pub format: LiveFormat,
    pub headers: Headers,
    pub fanout: Fanout,
    pub keyframes: KeyframeRequester,
}

/// Adds the mux for `format` to the pipeline, linked to the tees (the pipeline is not yet
/// playing).
pub fn attach(tees: &EncodedStreams, format: LiveFormat) -> Result<MuxTap, MuxError> {
    let name = format.as_str();
    let mux = match format {
        LiveFormat::Flv => {
            let m = make("flvmux", &format!("stream_{name}_mux"))?;
            m.set_property("streamable", true);
            // Live sources: wait this long for the later stream before muxing without it
            // (with 0, AAC tags came out with repeated timestamps on a loaded host).
            m.set_property("latency", tees.latency.as_nanos() as u64);
            m
        }
        LiveFormat::MpegTs => {
            let m = make("mpegtsmux", &format!("stream_{name}_mux"))?;
            // 7 packets a buffer: one SRT/UDP payload (1316 bytes).
            m.set_property("alignment", 7i32);
            m.set_property("latency", tees.latency.as_nanos() as u64);
            m
        }
        other => return Err(err(format!("no muxer for live format {other}"))),
    };
    let sink = make("appsink", &format!("stream_{name}_sink"))?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    sink.set_property("emit-signals", false);
    tees.pipeline.add_many([&mux, &sink]).map_err(err)?;
    mux.link(&sink).map_err(err)?;
    for (tee, pad) in [
        (tees.video.as_ref(), "video"),
        (tees.audio.as_ref(), "audio"),
    ] {
        let Some(tee) = tee else { continue };
        let q = make("queue", &format!("stream_{name}_{pad}_queue"))?;
        q.set_property("max-size-time", BRANCH_QUEUE.as_nanos() as u64);
        q.set_property("max-size-bytes", 0u32);
        q.set_property("max-size-buffers", 0u32);
        q.set_property_from_str("leaky", "downstream");
        tees.pipeline.add(&q).map_err(err)?;
        tee.link(&q).map_err(err)?;
        // The tee carries H.264 as the file's muxer wants it (avc); MPEG-TS carries Annex B
        // with SPS/PPS before every keyframe, so that a receiver can start at any of them.
        let last = if format == LiveFormat::MpegTs && pad == "video" {
            let parse = make("h264parse", &format!("stream_{name}_h264parse"))?;
            parse.set_property("config-interval", -1i32);
            tees.pipeline.add(&parse).map_err(err)?;
            q.link(&parse).map_err(err)?;
            parse
        } else {
            q.clone()
        };
        let template = match (format, pad) {
            (LiveFormat::Flv, p) => p,
            (_, _) => "sink_%d",
        };
        let mux_pad = mux
            .request_pad_simple(template)
            .ok_or_else(|| err(format!("{} has no {template} pad", mux.name())))?;
        last.static_pad("src")
            .ok_or_else(|| err("no src pad"))?
            .link(&mux_pad)
            .map_err(|e| err(format!("{e:?}")))?;
    }
    let tap = MuxTap {
        format,
        headers: Arc::new(RwLock::new(Vec::new())),
        fanout: Arc::default(),
        keyframes: keyframe_requester(tees.video_encoder.clone()),
    };
    install_callbacks(&sink, tap.clone(), tees.video.is_some())?;
    Ok(tap)
}

fn make(factory: &str, name: &str) -> Result<gst::Element, MuxError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| {
            err(format!(
                "could not create {factory} (is its GStreamer plugin installed?)"
            ))
        })
}

/// An upstream `GstForceKeyUnit` to the encoder (all headers: SPS/PPS again), at most one per
/// [`KEYFRAME_REQUEST_INTERVAL`].
fn keyframe_requester(encoder: Option<gst::Element>) -> KeyframeRequester {
    let last = Mutex::new(None::<Instant>);
    Arc::new(move || {
        let Some(enc) = &encoder else { return };
        {
            let Ok(mut last) = last.lock() else { return };
            if last.is_some_and(|t| t.elapsed() < KEYFRAME_REQUEST_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let s = gst::Structure::builder("GstForceKeyUnit")
            .field("all-headers", true)
            .build();
        if let Some(pad) = enc.static_pad("src")
            && !pad.send_event(gst::event::CustomUpstream::new(s))
        {
            tracing::debug!("the video encoder did not take a keyframe request");
        }
    })
}

/// `appsink` has no Rust type without gstreamer-app; its `pull-sample` action signal and
/// `new-sample` signal are used through GObject instead (one dependency less).
fn install_callbacks(appsink: &gst::Element, tap: MuxTap, has_video: bool) -> Result<(), MuxError> {
    appsink.set_property("emit-signals", true);
    let seen = AtomicU64::new(0);
    appsink.connect("new-sample", false, move |args| {
        let flow = (|| {
            let sink = args.first()?.get::<gst::Element>().ok()?;
            let sample = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[])?;
            on_sample(&tap, &sample, has_video, &seen);
            Some(())
        })();
        Some(
            if flow.is_some() {
                gst::FlowReturn::Ok
            } else {
                gst::FlowReturn::Error
            }
            .to_value(),
        )
    });
    appsink.connect("eos", false, |_| None);
    Ok(())
}

fn on_sample(tap: &MuxTap, sample: &gst::Sample, has_video: bool, seen: &AtomicU64) {
    let Some(buffer) = sample.buffer() else {
        return;
    };
    if seen.fetch_add(1, Ordering::Relaxed) == 0
        && let Some(caps) = sample.caps()
    {
        set_headers(tap, caps);
    }
    if buffer.flags().contains(gst::BufferFlags::HEADER) {
        // Already among the stream headers (from the caps), which every session sends first.
        return;
    }
    let Ok(map) = buffer.map_readable() else {
        return;
    };
    let pts = buffer
        .dts_or_pts()
        .map(|t| Duration::from_nanos(t.nseconds()))
        .unwrap_or_default();
    let (data, keyframe) = match tap.format {
        LiveFormat::Flv => {
            let Some(tag) = flv_tag(map.as_slice()) else {
                return;
            };
            // A video tag whose frame type (the body's high nibble) is 1: a keyframe. Audio
            // tags start a session only in an audio-only stream.
            let keyframe = if has_video {
                tag[0] == 9 && tag.get(11).is_some_and(|b| b >> 4 == 1)
            } else {
                true
            };
            (Bytes::copy_from_slice(tag), keyframe)
        }
        _ => {
            let data = map.as_slice();
            (
                Bytes::copy_from_slice(data),
                !has_video || ts_random_access(data),
            )
        }
    };
    let chunk = Chunk {
        data,
        pts,
        keyframe,
    };
    if let Ok(fanout) = tap.fanout.lock() {
        for input in fanout.values() {
            input.offer(chunk.clone());
        }
    }
}

/// The stream headers from the caps' `streamheader` (flvmux: the FLV header, onMetaData and the
/// sequence headers; mpegtsmux: PAT and PMT), as chunks.
fn set_headers(tap: &MuxTap, caps: &gst::CapsRef) {
    let Some(s) = caps.structure(0) else { return };
    let Ok(array) = s.get::<gst::Array>("streamheader") else {
        return;
    };
    let mut headers = Vec::new();
    for v in array.iter() {
        let Ok(buf) = v.get::<gst::Buffer>() else {
            continue;
        };
        let Ok(map) = buf.map_readable() else {
            continue;
        };
        match tap.format {
            LiveFormat::Flv => {
                if let Some(tag) = flv_tag(map.as_slice()) {
                    headers.push(Bytes::copy_from_slice(tag));
                }
            }
            _ => headers.push(Bytes::copy_from_slice(map.as_slice())),
        }
    }
    if let Ok(mut h) = tap.headers.write() {
        *h = headers;
    }
}

/// One FLV tag without its trailing PreviousTagSize; `None` for the FLV file header (which a
/// live destination never sends: RTMP carries tags, not files).
fn flv_tag(buf: &[u8]) -> Option<&[u8]> {
    if buf.len() < 15 || buf.starts_with(b"FLV") {
        return None;
    }
    let size = usize::from(buf[1]) << 16 | usize::from(buf[2]) << 8 | usize::from(buf[3]);
    buf.get(..11 + size)
}

/// Whether TS packets carry the start of a keyframe: mpegtsmux sets the adaptation field's
/// random_access_indicator on the packet that starts a video keyframe's PES (its output
/// buffers, 7 packets each, carry no keyframe flag of their own).
fn ts_random_access(data: &[u8]) -> bool {
    data.chunks_exact(TS_PACKET).any(|p| {
        let adaptation = (p[3] >> 4) & 0b10 != 0;
        p[0] == 0x47 && adaptation && p[4] > 0 && p[5] & 0x40 != 0
    })
}

#[cfg(test)]
mod tests {
    use super::super::destination::{Destination, DestinationEvent, DestinationSetup, Framing};
    use super::*;
    use egress_plugin_api::{LiveChunk, LiveFactory, LiveSession, SinkError};

    /// The chunks a session was sent: (bytes, keyframe, header).
    type Chunks = Arc<Mutex<Vec<(Vec<u8>, bool, bool)>>>;

    struct Collect(Chunks);
    struct CollectSession(Chunks);

    #[egress_plugin_api::async_trait]
    impl LiveFactory for Collect {
        async fn connect(&self, _url: &str) -> Result<Box<dyn LiveSession>, SinkError> {
            Ok(Box::new(CollectSession(self.0.clone())))
        }
    }

    #[egress_plugin_api::async_trait]
    impl LiveSession for CollectSession {
        async fn send(&mut self, chunk: LiveChunk<'_>) -> Result<(), SinkError> {
            self.0
                .lock()
                .unwrap()
                .push((chunk.data.to_vec(), chunk.keyframe, chunk.header));
            Ok(())
        }
        async fn close(self: Box<Self>) -> Result<(), SinkError> {
            Ok(())
        }
        fn bytes_sent(&self) -> u64 {
            0
        }
    }

    fn encoded_pipeline() -> (gst::Pipeline, gst::Element, gst::Element, gst::Element) {
        gst::init().unwrap();
        let p = gst::Pipeline::new();
        let parse = |s: &str| {
            gst::parse::bin_from_description(s, true)
                .unwrap()
                .upcast::<gst::Element>()
        };
        let v = parse(
            "videotestsrc num-buffers=90 is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc name=venc key-int-max=30 bframes=0 tune=zerolatency ! h264parse",
        );
        let a = parse("audiotestsrc num-buffers=140 is-live=true ! avenc_aac ! aacparse");
        let vt = gst::ElementFactory::make("tee").build().unwrap();
        let at = gst::ElementFactory::make("tee").build().unwrap();
        p.add_many([&v, &a, &vt, &at]).unwrap();
        v.link(&vt).unwrap();
        a.link(&at).unwrap();
        let enc = v
            .downcast_ref::<gst::Bin>()
            .unwrap()
            .by_name("venc")
            .unwrap();
        (p, vt, at, enc)
    }

    async fn stream_through(format: LiveFormat) -> Vec<(Vec<u8>, bool, bool)> {
        let (p, vt, at, enc) = encoded_pipeline();
        let mut streams = EncodedStreams::new(p.clone(), Duration::from_millis(200));
        streams.video = Some(vt);
        streams.audio = Some(at);
        streams.video_encoder = Some(enc);
        let tap = attach(&streams, format).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (events, mut ev) = tokio::sync::mpsc::unbounded_channel();
        let d = Destination::spawn(DestinationSetup {
            url: "x://y".into(),
            redacted: "x://y".into(),
            factory: Arc::new(Collect(got.clone())),
            framing: if format == LiveFormat::Flv {
                Framing::Flv
            } else {
                Framing::MpegTs
            },
            headers: tap.headers.clone(),
            keyframes: tap.keyframes.clone(),
            policy: Default::default(),
            events,
        });
        assert!(matches!(
            ev.recv().await,
            Some(DestinationEvent::Publishing { .. })
        ));
        tap.fanout.lock().unwrap().insert(1, d.input());
        p.set_state(gst::State::Playing).unwrap();
        let bus = p.bus().unwrap();
        let msg = tokio::task::spawn_blocking(move || {
            bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(20),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
        })
        .await
        .unwrap();
        assert!(
            matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos)),
            "pipeline ends"
        );
        p.set_state(gst::State::Null).unwrap();
        tap.fanout.lock().unwrap().clear();
        d.finish().await;
        got.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn flv_sessions_get_tags_headers_first_then_a_keyframe() {
        let got = stream_through(LiveFormat::Flv).await;
        let headers: Vec<_> = got.iter().take_while(|c| c.2).collect();
        assert!(
            headers.len() >= 2,
            "metadata and sequence headers first: {}",
            headers.len()
        );
        assert!(
            headers.iter().all(|h| !h.0.starts_with(b"FLV")),
            "no file header on the wire"
        );
        let first_media = &got[headers.len()];
        assert!(
            first_media.1 && first_media.0[0] == 9,
            "the first media tag is a video keyframe"
        );
        assert_eq!(&first_media.0[4..8], &[0, 0, 0, 0], "at time zero");
        let video = got.iter().filter(|c| !c.2 && c.0[0] == 9).count();
        let audio = got.iter().filter(|c| !c.2 && c.0[0] == 8).count();
        assert!(
            video >= 80 && audio >= 100,
            "{video} video and {audio} audio tags"
        );
        for c in &got {
            let size = usize::from(c.0[1]) << 16 | usize::from(c.0[2]) << 8 | usize::from(c.0[3]);
            assert_eq!(
                c.0.len(),
                11 + size,
                "one whole tag per chunk, no PreviousTagSize"
            );
        }
    }

    #[tokio::test]
    async fn ts_sessions_get_pat_pmt_then_packets_from_a_keyframe() {
        let got = stream_through(LiveFormat::MpegTs).await;
        let headers = got.iter().take_while(|c| c.2).count();
        assert!(headers >= 1, "PAT/PMT first");
        assert!(got[headers].1, "then a keyframe");
        assert!(
            got.iter()
                .all(|c| c.0.len() % TS_PACKET == 0 && c.0[0] == 0x47)
        );
        let keyframes = got.iter().filter(|c| c.1).count();
        assert!(
            (2..=4).contains(&keyframes),
            "a keyframe a second over 3 s: {keyframes}"
        );
    }
}

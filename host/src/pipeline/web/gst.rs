//! The GStreamer pipeline of a web recording, built element by element (no launch strings, so
//! nothing from a request is ever parsed as pipeline syntax).
//!
//! ```text
//! ximagesrc → framerate caps → queue → videoconvert → videorate → caps → tee → queue → x264enc → profile caps → h264parse → tee ─┐
//!                                                                          (images)        (or vp8enc, for WebM)   (streams, segments)
//! pulsesrc → queue → audiorate → audioconvert → audioresample → caps → encoder → parser → tee ──────────────────────────────────────┤
//!                                                      queue → mp4mux (fragmented) | oggmux | xingmux | webmmux → filesink ◀────┘
//! ```
//!
//! The tees are the recorder's [`EncodedStreams`]: the file is one branch of them (none for a
//! stream- or segments-only egress), and the stream, segments and image outputs attach theirs
//! (`crate::outputs::live`) before capture starts.
//!
//! MP4 is written fragmented (one fragment a second): a handler that is killed mid-recording
//! still leaves a playable file up to the last fragment, which the service then delivers.
//! WebM loses at most its last cluster (one second) the same way.
//!
//! Storage uploads the file while it grows, so the muxers must only append. Left alone they
//! patch their first bytes at EOS (measured with GStreamer 1.22): mp4mux rewrites the moov's
//! durations (first ~1 KiB, even fragmented), xingmux its Xing frame (first ~150 bytes),
//! matroskamux its segment header (first ~250 bytes); only oggmux never goes back. For MP4
//! and MP3 the filesink answers "not seekable" ([`crate::pipeline::elements::file_end`]), so they
//! write for a stream and never go back. WebM keeps its seekable header (its duration and cues
//! need it): storage compares the head at the end and uploads the finished file again.
//!
//! The sources run from before the page has loaded, behind a gate that drops their buffers
//! until the start signal ([`Recording::open_gate`]). A PulseAudio monitor stream opened later
//! only delivers after the null sink's current render block (up to 2 s) ends, so opening it on
//! the start signal lost the first second of audio; with the gate, both sources are already
//! flowing, and the first frame reaches the encoder a frame interval after the signal. The gate
//! also moves timestamps so the recording starts at zero.
//!
//! Fragmented MP4 has no edit list to shift a track, so the two tracks start where their
//! first buffers are (within one video frame of each other, thanks to the gate), and x264 runs
//! without B-frames: their reordering delay would otherwise start the video 2-3 frames after
//! the audio.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::WebConfig;
use crate::core::PipelineError;
use crate::outputs::tap::EncodedStreams;
use crate::pipeline::elements::{
    audio_encoder, caps_filter, file_end, gst_err, h264_encoder, link_chain, link_request,
    link_to_muxer, make, set, set_str, vp8_encoder,
};
use crate::pipeline::encoding::{AudioCodec, VideoCodec};

/// `audiorate` tolerance before it fills or drops samples (Go: 3 ms).
const AUDIO_RATE_TOLERANCE: Duration = Duration::from_millis(3);

/// Where capture reads from.
pub struct CaptureInputs {
    pub display: String,
    pub pulse_server: String,
    pub pulse_device: String,
}

/// What the pipeline reports.
#[derive(Debug, Clone, PartialEq)]
pub enum GstEvent {
    /// The first frame (or audio buffer, when audio-only) reached the encoder.
    FirstFrame,
    /// EOS reached the file sink: the file is complete.
    Eos,
    Error(String),
}

/// Media time seen at the encoder inputs, to report the file's real duration.
#[derive(Default)]
struct Timing {
    first_pts: AtomicU64,
    last_end: AtomicU64,
    first_seen: AtomicBool,
}

impl Timing {
    fn new() -> Timing {
        Timing {
            first_pts: AtomicU64::new(u64::MAX),
            last_end: AtomicU64::new(0),
            first_seen: AtomicBool::new(false),
        }
    }

    fn observe(&self, pts: u64, duration: u64) {
        self.first_pts.fetch_min(pts, Ordering::Relaxed);
        self.last_end
            .fetch_max(pts.saturating_add(duration), Ordering::Relaxed);
    }

    fn duration(&self) -> Option<Duration> {
        let first = self.first_pts.load(Ordering::Relaxed);
        let last = self.last_end.load(Ordering::Relaxed);
        (first != u64::MAX && last > first).then(|| Duration::from_nanos(last - first))
    }
}

/// Drops source buffers until opened, then those captured before the opening.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    /// Running time of the opening, in ns.
    at: AtomicU64,
}

pub struct Recording {
    pipeline: gst::Pipeline,
    /// Where outputs beside the file attach (the encoders' tees).
    streams: EncodedStreams,
    gate: Arc<Gate>,
    events: mpsc::UnboundedReceiver<GstEvent>,
    timing: Arc<Timing>,
    bus_task: JoinHandle<()>,
}

/// A queue holding up to `latency` of media; leaky ones drop the oldest instead of blocking a
/// live source when the encoder falls behind.
fn queue(name: &str, latency: Duration, leaky: bool) -> Result<gst::Element, PipelineError> {
    let q = make("queue", Some(name))?;
    set(&q, "max-size-time", latency.as_nanos() as u64)?;
    set(&q, "max-size-bytes", 0u32)?;
    set(&q, "max-size-buffers", 0u32)?;
    if leaky {
        set_str(&q, "leaky", "downstream")?;
    }
    Ok(q)
}

/// A tee whose branches come and go (an output with no branch yet must not stop the others).
fn tee(name: &str) -> Result<gst::Element, PipelineError> {
    let t = make("tee", Some(name))?;
    set(&t, "allow-not-linked", true)?;
    Ok(t)
}

/// Watches buffers entering an encoder: media timing, and the first one as `FirstFrame`.
fn watch_encoder_input(
    el: &gst::Element,
    timing: Arc<Timing>,
    first: Option<mpsc::UnboundedSender<GstEvent>>,
) {
    let Some(pad) = el.static_pad("sink") else {
        return;
    };
    let name = el.name().to_string();
    let logged = AtomicBool::new(false);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            if !logged.swap(true, Ordering::Relaxed) {
                tracing::debug!(branch = %name, pts = ?buffer.pts(), "first buffer into the encoder");
            }
            if let Some(pts) = buffer.pts() {
                let duration = buffer.duration().map(|d| d.nseconds()).unwrap_or(0);
                timing.observe(pts.nseconds(), duration);
            }
            if let Some(tx) = &first
                && !timing.first_seen.swap(true, Ordering::Relaxed)
            {
                let _ = tx.send(GstEvent::FirstFrame);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Puts `pad` behind the gate: nothing passes until it opens, and what passes after is
/// re-timestamped to start at zero, so every container (Ogg's granule positions included)
/// starts at the opening as if the pipeline had started then.
fn gate_pad(pad: &gst::Pad, gate: Arc<Gate>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if !gate.open.load(Ordering::Acquire) {
            return gst::PadProbeReturn::Drop;
        }
        let at = gst::ClockTime::from_nseconds(gate.at.load(Ordering::Acquire));
        let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        match buffer.pts() {
            Some(pts) if pts >= at => {
                let b = buffer.make_mut();
                b.set_pts(pts - at);
                if let Some(dts) = b.dts() {
                    b.set_dts(dts.checked_sub(at));
                }
                gst::PadProbeReturn::Ok
            }
            // Captured before the opening.
            _ => gst::PadProbeReturn::Drop,
        }
    });
}

impl Recording {
    /// Builds the pipeline, writing the file to `out_path` when there is one. Nothing runs until
    /// [`start_capture`](Self::start_capture); the other outputs attach to
    /// [`streams`](Self::streams) before that.
    pub fn build(
        cfg: &WebConfig,
        inputs: &CaptureInputs,
        out_path: Option<&Path>,
    ) -> Result<Recording, PipelineError> {
        gst::init().map_err(gst_err)?;
        let pipeline = gst::Pipeline::with_name("pipeline");
        // The system clock runs from the start; pulsesrc's own clock only advances once its
        // stream is running, which held back ximagesrc's first frame by over a second.
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let (tx, events) = mpsc::unbounded_channel();
        let timing = Arc::new(Timing::new());
        let gate = Arc::new(Gate::default());
        let latency = cfg.pipeline_latency;

        let mux = out_path
            .map(|p| file_end(&pipeline, cfg.file.container, p))
            .transpose()?;
        let mut streams = EncodedStreams::new(pipeline.clone(), latency);

        if cfg.video {
            let e = &cfg.encoding;
            let src = make("ximagesrc", Some("video_src"))?;
            set(&src, "display-name", inputs.display.as_str())?;
            set(&src, "use-damage", false)?;
            set(&src, "show-pointer", false)?;
            let rate_caps = gst::Caps::builder("video/x-raw")
                .field("framerate", gst::Fraction::new(e.framerate, 1))
                .build();
            let src_caps = caps_filter(Some("video_src_caps"), rate_caps.clone())?;
            let in_queue = queue("video_input_queue", latency, true)?;
            let convert = make("videoconvert", Some("video_convert"))?;
            let rate = make("videorate", Some("video_rate"))?;
            set(&rate, "skip-to-first", true)?;
            let out_caps = caps_filter(Some("video_caps"), rate_caps)?;
            let raw_tee = tee("raw_video_tee")?;
            let enc_queue = queue("video_encoder_queue", latency, false)?;
            let encoder = match cfg.video_codec.unwrap_or(VideoCodec::H264) {
                VideoCodec::H264 => h264_encoder(&cfg.encoding, cfg.encoder_threads)?,
                VideoCodec::Vp8 => vec![vp8_encoder(&cfg.encoding, cfg.encoder_threads)?],
            };
            let video_tee = tee("video_tee")?;
            let mut chain = vec![
                &src, &src_caps, &in_queue, &convert, &rate, &out_caps, &raw_tee, &enc_queue,
            ];
            chain.extend(encoder.iter());
            chain.push(&video_tee);
            pipeline.add_many(chain.iter().copied()).map_err(gst_err)?;
            link_chain(&chain)?;
            let Some(enc) = encoder.first() else {
                return Err(gst_err("no video encoder"));
            };
            if let Some(mux) = &mux {
                let q = make("queue", Some("file_video_queue"))?;
                pipeline.add(&q).map_err(gst_err)?;
                link_chain(&[&video_tee, &q])?;
                link_request(&q, mux, "video_%u")?;
            }
            streams.video_encoder = Some(enc.clone());
            streams.raw_video = Some(raw_tee.clone());
            streams.video = Some(video_tee.clone());
            if let Some(pad) = src_caps.static_pad("src") {
                gate_pad(&pad, gate.clone());
            }
            watch_encoder_input(enc, timing.clone(), Some(tx.clone()));
        }

        if let Some(codec) = cfg.audio_codec.filter(|_| cfg.audio) {
            let e = &cfg.encoding;
            let src = make("pulsesrc", Some("audio_src"))?;
            set(&src, "server", inputs.pulse_server.as_str())?;
            set(&src, "device", inputs.pulse_device.as_str())?;
            let in_queue = queue("audio_input_queue", latency, true)?;
            let rate = make("audiorate", Some("audio_rate"))?;
            set(&rate, "skip-to-first", true)?;
            set(&rate, "tolerance", AUDIO_RATE_TOLERANCE.as_nanos() as u64)?;
            let convert = make("audioconvert", Some("audio_convert"))?;
            let resample = make("audioresample", Some("audio_resample"))?;
            let sample_rate = if codec == AudioCodec::Opus {
                48_000
            } else {
                e.audio_frequency
            };
            let caps = caps_filter(
                Some("audio_caps"),
                gst::Caps::builder("audio/x-raw")
                    .field("rate", sample_rate)
                    .field("channels", 2i32)
                    .build(),
            )?;
            let encoder = audio_encoder(codec, e)?;
            let audio_tee = tee("audio_tee")?;
            let mut chain = vec![&src, &in_queue, &rate, &convert, &resample, &caps];
            chain.extend(encoder.iter());
            chain.push(&audio_tee);
            pipeline.add_many(chain.iter().copied()).map_err(gst_err)?;
            link_chain(&chain)?;
            if let Some(pad) = src.static_pad("src") {
                gate_pad(&pad, gate.clone());
            }
            let Some(enc) = encoder.first() else {
                return Err(gst_err("no audio encoder"));
            };
            if let Some(mux) = &mux {
                let q = make("queue", Some("file_audio_queue"))?;
                pipeline.add(&q).map_err(gst_err)?;
                link_chain(&[&audio_tee, &q])?;
                link_to_muxer(&q, mux, cfg.file.container, "audio_%u")?;
            }
            streams.audio = Some(audio_tee.clone());
            let first = (!cfg.video).then(|| tx.clone());
            watch_encoder_input(enc, timing.clone(), first);
        }

        let bus = pipeline
            .bus()
            .ok_or_else(|| gst_err("pipeline has no bus"))?;
        let bus_task = tokio::spawn(watch_bus(bus, tx, streams.clone()));
        Ok(Recording {
            pipeline,
            streams,
            gate,
            events,
            timing,
            bus_task,
        })
    }

    /// The encoded streams, for the outputs beside the file to attach to (before
    /// [`start_capture`](Self::start_capture)).
    pub fn streams(&self) -> &EncodedStreams {
        &self.streams
    }

    /// Starts capturing behind the closed gate: the sources connect and run, nothing is
    /// encoded or written yet.
    pub fn start_capture(&self) -> Result<(), PipelineError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|_| self.state_error("PLAYING"))
    }

    /// Starts recording: everything captured from now on goes to the file.
    pub fn open_gate(&self) {
        let now = self
            .pipeline
            .current_running_time()
            .map(|t| t.nseconds())
            .unwrap_or(0);
        self.gate.at.store(now, Ordering::Release);
        self.gate.open.store(true, Ordering::Release);
        tracing::debug!(at = ?Duration::from_nanos(now), "recording gate open");
    }

    fn state_error(&self, state: &str) -> PipelineError {
        gst_err(format!("pipeline could not go to {state}"))
    }

    /// Asks every source to finish; `Eos` follows once the file is complete.
    pub fn send_eos(&self) {
        if !self.pipeline.send_event(gst::event::Eos::new()) {
            tracing::warn!("pipeline did not accept EOS");
        }
    }

    pub async fn next_event(&mut self) -> Option<GstEvent> {
        self.events.recv().await
    }

    /// The media time recorded so far (first to last buffer into the encoders).
    pub fn media_duration(&self) -> Option<Duration> {
        self.timing.duration()
    }

    pub fn stop(self) {
        // Drop does the work.
    }
}

impl Drop for Recording {
    /// Streaming threads must be stopped before the elements go away, on every path.
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        self.bus_task.abort();
    }
}

async fn watch_bus(bus: gst::Bus, tx: mpsc::UnboundedSender<GstEvent>, streams: EncodedStreams) {
    let mut messages = bus.stream();
    while let Some(msg) = messages.next().await {
        use gst::MessageView;
        // An output's own messages (splitmuxsink's fragments, a stream branch's errors).
        if streams.on_bus_message(&msg) {
            continue;
        }
        match msg.view() {
            MessageView::Eos(_) => {
                tracing::info!("pipeline received EOS");
                let _ = tx.send(GstEvent::Eos);
            }
            MessageView::Error(err) => {
                let source = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                tracing::error!(source, error = %err.error(), debug = ?err.debug(), "pipeline error");
                let _ = tx.send(GstEvent::Error(err.error().to_string()));
            }
            MessageView::Warning(w) => {
                let source = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                tracing::warn!(source, warning = %w.error(), debug = ?w.debug(), "pipeline warning");
            }
            MessageView::StateChanged(s)
                if msg.src().is_some_and(|src| src.name() == "pipeline") =>
            {
                tracing::debug!(from = ?s.old(), to = ?s.current(), "pipeline state");
            }
            _ => {}
        }
    }
}

//! The GStreamer pipeline of a web recording, built element by element (no launch strings, so
//! nothing from a request is ever parsed as pipeline syntax).
//!
//! ```text
//! ximagesrc → framerate caps → queue → videoconvert → videorate → caps → queue → x264enc → profile caps → h264parse ─┐
//!                                                                              (or vp8enc, for WebM) ────────────────┤
//! pulsesrc → queue → audiorate → audioconvert → audioresample → caps → encoder → parser ─────────────────────────────┤
//!                                                 mp4mux (fragmented) | oggmux | xingmux | webmmux → filesink
//! ```
//!
//! MP4 is written fragmented (one fragment a second): a handler that is killed mid-recording
//! still leaves a playable file up to the last fragment, which the service then delivers.
//! WebM loses at most its last cluster (one second) the same way.
//!
//! Storage uploads the file while it grows, so the muxers must only append. Left alone they
//! patch their first bytes at EOS (measured with GStreamer 1.22): mp4mux rewrites the moov's
//! durations (first ~1 KiB, even fragmented), xingmux its Xing frame (first ~150 bytes),
//! matroskamux its segment header (first ~250 bytes, see [`webm_muxer`]); only oggmux never
//! goes back. For MP4 and MP3 the filesink answers "not seekable" ([`append_only`]), so they
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
use gstreamer::glib;
use gstreamer::prelude::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::PipelineConfig;
use super::encoding::{AudioCodec, Container, VideoCodec};
use super::error::PipelineError;

/// MP4 fragment length: how much a killed recording can lose at most.
const FRAGMENT_MS: u32 = 1000;
/// `audiorate` tolerance before it fills or drops samples (Go: 3 ms).
const AUDIO_RATE_TOLERANCE: Duration = Duration::from_millis(3);
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
        Timing { first_pts: AtomicU64::new(u64::MAX), last_end: AtomicU64::new(0), first_seen: AtomicBool::new(false) }
    }

    fn observe(&self, pts: u64, duration: u64) {
        self.first_pts.fetch_min(pts, Ordering::Relaxed);
        self.last_end.fetch_max(pts.saturating_add(duration), Ordering::Relaxed);
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
    gate: Arc<Gate>,
    events: mpsc::UnboundedReceiver<GstEvent>,
    timing: Arc<Timing>,
    bus_task: JoinHandle<()>,
}

fn gst_err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Gst(e.to_string())
}

fn make(factory: &str, name: &str) -> Result<gst::Element, PipelineError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| PipelineError::Gst(format!("could not create {factory} (is its GStreamer plugin installed?)")))
}

/// Sets a property, refusing (instead of panicking, as glib would) on a name or type mismatch.
fn set<V: ToValue>(el: &gst::Element, prop: &str, v: V) -> Result<(), PipelineError> {
    let pspec = el.find_property(prop).ok_or_else(|| gst_err(format!("{} has no property {prop}", el.name())))?;
    let value = v.to_value();
    if !value.type_().is_a(pspec.value_type()) {
        return Err(gst_err(format!("{}.{prop} is a {}, not a {}", el.name(), pspec.value_type(), value.type_())));
    }
    el.set_property_from_value(prop, &value);
    Ok(())
}

/// Sets an enum or flags property from its nick (`"veryfast"`, `"downstream"`).
fn set_str(el: &gst::Element, prop: &str, s: &str) -> Result<(), PipelineError> {
    let pspec = el.find_property(prop).ok_or_else(|| gst_err(format!("{} has no property {prop}", el.name())))?;
    let value = glib::Value::deserialize_with_pspec(s, &pspec).map_err(|_| gst_err(format!("{}.{prop} cannot be {s:?}", el.name())))?;
    el.set_property_from_value(prop, &value);
    Ok(())
}

fn caps_filter(name: &str, caps: gst::Caps) -> Result<gst::Element, PipelineError> {
    let el = make("capsfilter", name)?;
    set(&el, "caps", caps)?;
    Ok(el)
}

/// A queue holding up to `latency` of media; leaky ones drop the oldest instead of blocking a
/// live source when the encoder falls behind.
fn queue(name: &str, latency: Duration, leaky: bool) -> Result<gst::Element, PipelineError> {
    let q = make("queue", name)?;
    set(&q, "max-size-time", latency.as_nanos() as u64)?;
    set(&q, "max-size-bytes", 0u32)?;
    set(&q, "max-size-buffers", 0u32)?;
    if leaky {
        set_str(&q, "leaky", "downstream")?;
    }
    Ok(q)
}

fn link_chain(elements: &[&gst::Element]) -> Result<(), PipelineError> {
    gst::Element::link_many(elements.iter().copied()).map_err(|e| gst_err(format!("failed to link elements: {e}")))
}

fn link_to_muxer(src: &gst::Element, mux: &gst::Element, template: &str) -> Result<(), PipelineError> {
    let sink = mux
        .request_pad_simple(template)
        .ok_or_else(|| gst_err(format!("{} has no {template} pad", mux.name())))?;
    let srcpad = src.static_pad("src").ok_or_else(|| gst_err(format!("{} has no src pad", src.name())))?;
    srcpad
        .link(&sink)
        .map(|_| ())
        .map_err(|e| gst_err(format!("failed to link {} to {}: {e:?}", src.name(), mux.name())))
}

/// Watches buffers entering an encoder: media timing, and the first one as `FirstFrame`.
fn watch_encoder_input(el: &gst::Element, timing: Arc<Timing>, first: Option<mpsc::UnboundedSender<GstEvent>>) {
    let Some(pad) = el.static_pad("sink") else { return };
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

/// The WebM muxer. It writes each cluster whole when the cluster closes (at the latest after
/// [`FRAGMENT_MS`], so a killed handler loses at most that much) and never touches it again,
/// but at EOS it seeks back to fill in the segment size, duration and seek head in the file's
/// first few hundred bytes (and appends cues). Storage notices the changed head and uploads the
/// finished file again; a file cut off before EOS keeps Matroska's "unknown size" there and
/// plays as it is.
fn webm_muxer() -> Result<gst::Element, PipelineError> {
    let m = make("webmmux", "mux")?;
    set(&m, "max-cluster-duration", i64::from(FRAGMENT_MS) * 1_000_000)?;
    Ok(m)
}

/// x264 → profile caps → h264parse; the encoder first.
fn h264_encoder(cfg: &PipelineConfig) -> Result<Vec<gst::Element>, PipelineError> {
    let e = &cfg.encoding;
    let enc = make("x264enc", "video_encoder")?;
    set_str(&enc, "speed-preset", "veryfast")?;
    set(&enc, "bitrate", e.video_bitrate.max(1) as u32)?;
    set(&enc, "vbv-buf-capacity", VBV_BUFFER_MS)?;
    set(&enc, "bframes", 0u32)?;
    if cfg.encoder_threads > 0 {
        set(&enc, "threads", cfg.encoder_threads)?;
    }
    if e.key_frame_interval > 0.0 {
        set(&enc, "key-int-max", keyframe_distance(e.key_frame_interval, e.framerate))?;
        set(&enc, "option-string", "scenecut=0")?;
    }
    let profile = caps_filter(
        "video_profile_caps",
        gst::Caps::builder("video/x-h264").field("profile", e.profile.as_str()).build(),
    )?;
    let parse = make("h264parse", "video_parse")?;
    Ok(vec![enc, profile, parse])
}

/// vp8enc in realtime mode: each frame is encoded within its frame time, with no look-ahead
/// (`lag-in-frames=0`: no delay between the tracks, no alt-ref frames), constant bitrate with
/// x264's buffer, and a keyframe at least every `key_frame_interval` (else 2 s).
fn vp8_encoder(cfg: &PipelineConfig) -> Result<gst::Element, PipelineError> {
    let e = &cfg.encoding;
    let enc = make("vp8enc", "video_encoder")?;
    set(&enc, "deadline", 1i64)?;
    set(&enc, "cpu-used", VP8_CPU_USED)?;
    let threads = if cfg.encoder_threads > 0 {
        u64::from(cfg.encoder_threads)
    } else {
        let dim = |v: i32| u64::try_from(v).unwrap_or(0).max(1);
        let pixels = dim(e.width) * dim(e.height) * dim(e.framerate);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        pixels.div_ceil(VP8_PIXELS_PER_THREAD).clamp(1, VP8_MAX_AUTO_THREADS.min(cores).max(1))
    };
    set(&enc, "threads", threads.clamp(1, 64) as i32)?;
    set_str(&enc, "end-usage", "cbr")?;
    set(&enc, "target-bitrate", e.video_bitrate.max(1).saturating_mul(1000))?;
    set(&enc, "buffer-size", VBV_BUFFER_MS as i32)?;
    set(&enc, "lag-in-frames", 0i32)?;
    let interval = if e.key_frame_interval > 0.0 { e.key_frame_interval } else { VP8_KEYFRAME_SECS };
    set(&enc, "keyframe-max-dist", i32::try_from(keyframe_distance(interval, e.framerate)).unwrap_or(i32::MAX))?;
    Ok(enc)
}

/// Makes the file look unseekable to the muxer, so that it never goes back to patch bytes it
/// already wrote (storage streams the file while it grows; see the module docs). mp4mux then
/// leaves the moov's durations unset and xingmux its Xing frame, which with CBR MP3 and
/// fragmented MP4 costs nothing: ffprobe and players take the duration from the fragments or
/// the bitrate.
fn append_only(sink: &gst::Element) -> Result<(), PipelineError> {
    let pad = sink.static_pad("sink").ok_or_else(|| PipelineError::Gst("filesink has no sink pad".into()))?;
    pad.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, |_, info| {
        if let Some(gst::PadProbeData::Query(q)) = info.data.as_mut()
            && let gst::QueryViewMut::Seeking(s) = q.view_mut()
        {
            s.set(false, gst::GenericFormattedValue::none_for_format(s.format()), gst::GenericFormattedValue::none_for_format(s.format()));
            return gst::PadProbeReturn::Handled;
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Frames between keyframes for an interval in seconds (at least 1).
fn keyframe_distance(interval_secs: f64, framerate: i32) -> u32 {
    (interval_secs * f64::from(framerate)).round().clamp(1.0, f64::from(u32::MAX)) as u32
}

impl Recording {
    /// Builds the pipeline writing to `out_path`. Nothing runs until [`prepare`](Self::prepare).
    pub fn build(cfg: &PipelineConfig, inputs: &CaptureInputs, out_path: &Path) -> Result<Recording, PipelineError> {
        gst::init().map_err(gst_err)?;
        let pipeline = gst::Pipeline::with_name("pipeline");
        // The system clock runs from the start; pulsesrc's own clock only advances once its
        // stream is running, which held back ximagesrc's first frame by over a second.
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        let (tx, events) = mpsc::unbounded_channel();
        let timing = Arc::new(Timing::new());
        let gate = Arc::new(Gate::default());
        let latency = cfg.pipeline_latency;

        let mux = match cfg.file.container {
            Container::Mp4 => {
                let m = make("mp4mux", "mux")?;
                set(&m, "fragment-duration", FRAGMENT_MS)?;
                // Write for a stream: the moov carries no total duration (players sum the
                // fragments), so nothing has to be rewritten at the end.
                set(&m, "streamable", true)?;
                m
            }
            Container::Ogg => make("oggmux", "mux")?,
            Container::Mp3 => make("xingmux", "mux")?,
            Container::Webm => webm_muxer()?,
        };
        let sink = make("filesink", "file_sink")?;
        set(&sink, "location", out_path.to_string_lossy().as_ref())?;
        set(&sink, "sync", false)?;
        set(&sink, "async", false)?;
        // Everything muxed is in the page cache at once, so a killed handler loses nothing
        // that was already written.
        set_str(&sink, "buffer-mode", "unbuffered")?;
        pipeline.add_many([&mux, &sink]).map_err(gst_err)?;
        link_chain(&[&mux, &sink])?;
        if matches!(cfg.file.container, Container::Mp4 | Container::Mp3) {
            append_only(&sink)?;
        }

        if cfg.video {
            let e = &cfg.encoding;
            let src = make("ximagesrc", "video_src")?;
            set(&src, "display-name", inputs.display.as_str())?;
            set(&src, "use-damage", false)?;
            set(&src, "show-pointer", false)?;
            let rate_caps = gst::Caps::builder("video/x-raw").field("framerate", gst::Fraction::new(e.framerate, 1)).build();
            let src_caps = caps_filter("video_src_caps", rate_caps.clone())?;
            let in_queue = queue("video_input_queue", latency, true)?;
            let convert = make("videoconvert", "video_convert")?;
            let rate = make("videorate", "video_rate")?;
            set(&rate, "skip-to-first", true)?;
            let out_caps = caps_filter("video_caps", rate_caps)?;
            let enc_queue = queue("video_encoder_queue", latency, false)?;
            let encoder = match cfg.video_codec.unwrap_or(VideoCodec::H264) {
                VideoCodec::H264 => h264_encoder(cfg)?,
                VideoCodec::Vp8 => vec![vp8_encoder(cfg)?],
            };
            let mut chain = vec![&src, &src_caps, &in_queue, &convert, &rate, &out_caps, &enc_queue];
            chain.extend(encoder.iter());
            pipeline.add_many(chain.iter().copied()).map_err(gst_err)?;
            link_chain(&chain)?;
            let (Some(enc), Some(last)) = (encoder.first(), encoder.last()) else {
                return Err(gst_err("no video encoder"));
            };
            link_to_muxer(last, &mux, "video_%u")?;
            if let Some(pad) = src_caps.static_pad("src") {
                gate_pad(&pad, gate.clone());
            }
            watch_encoder_input(enc, timing.clone(), Some(tx.clone()));
        }

        if let Some(codec) = cfg.audio_codec.filter(|_| cfg.audio) {
            let e = &cfg.encoding;
            let src = make("pulsesrc", "audio_src")?;
            set(&src, "server", inputs.pulse_server.as_str())?;
            set(&src, "device", inputs.pulse_device.as_str())?;
            let in_queue = queue("audio_input_queue", latency, true)?;
            let rate = make("audiorate", "audio_rate")?;
            set(&rate, "skip-to-first", true)?;
            set(&rate, "tolerance", AUDIO_RATE_TOLERANCE.as_nanos() as u64)?;
            let convert = make("audioconvert", "audio_convert")?;
            let resample = make("audioresample", "audio_resample")?;
            let sample_rate = if codec == AudioCodec::Opus { 48_000 } else { e.audio_frequency };
            let caps = caps_filter(
                "audio_caps",
                gst::Caps::builder("audio/x-raw").field("rate", sample_rate).field("channels", 2i32).build(),
            )?;
            let (enc, parse) = match codec {
                AudioCodec::Aac => {
                    let enc = make("avenc_aac", "audio_encoder")?;
                    set(&enc, "bitrate", e.audio_bitrate.saturating_mul(1000))?;
                    (enc, Some(make("aacparse", "audio_parse")?))
                }
                AudioCodec::Opus => {
                    let enc = make("opusenc", "audio_encoder")?;
                    set(&enc, "bitrate", e.audio_bitrate.saturating_mul(1000).clamp(4000, 650_000))?;
                    (enc, None)
                }
                AudioCodec::Mp3 => {
                    let enc = make("lamemp3enc", "audio_encoder")?;
                    set_str(&enc, "target", "bitrate")?;
                    set(&enc, "cbr", true)?;
                    set(&enc, "bitrate", e.audio_bitrate.clamp(8, 320))?;
                    (enc, Some(make("mpegaudioparse", "audio_parse")?))
                }
            };
            let mut chain = vec![&src, &in_queue, &rate, &convert, &resample, &caps, &enc];
            if let Some(p) = &parse {
                chain.push(p);
            }
            pipeline.add_many(chain.iter().copied()).map_err(gst_err)?;
            link_chain(&chain)?;
            if let Some(pad) = src.static_pad("src") {
                gate_pad(&pad, gate.clone());
            }
            let last = parse.as_ref().unwrap_or(&enc);
            match cfg.file.container {
                Container::Mp4 | Container::Ogg | Container::Webm => link_to_muxer(last, &mux, "audio_%u")?,
                Container::Mp3 => link_chain(&[last, &mux])?,
            }
            let first = (!cfg.video).then(|| tx.clone());
            watch_encoder_input(&enc, timing.clone(), first);
        }

        let bus = pipeline.bus().ok_or_else(|| gst_err("pipeline has no bus"))?;
        let bus_task = tokio::spawn(watch_bus(bus, tx));
        Ok(Recording { pipeline, gate, events, timing, bus_task })
    }

    /// Starts capturing behind the closed gate: the sources connect and run, nothing is
    /// encoded or written yet.
    pub fn start_capture(&self) -> Result<(), PipelineError> {
        self.pipeline.set_state(gst::State::Playing).map(|_| ()).map_err(|_| self.state_error("PLAYING"))
    }

    /// Starts recording: everything captured from now on goes to the file.
    pub fn open_gate(&self) {
        let now = self.pipeline.current_running_time().map(|t| t.nseconds()).unwrap_or(0);
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

async fn watch_bus(bus: gst::Bus, tx: mpsc::UnboundedSender<GstEvent>) {
    let mut messages = bus.stream();
    while let Some(msg) = messages.next().await {
        use gst::MessageView;
        match msg.view() {
            MessageView::Eos(_) => {
                tracing::info!("pipeline received EOS");
                let _ = tx.send(GstEvent::Eos);
            }
            MessageView::Error(err) => {
                let source = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                tracing::error!(source, error = %err.error(), debug = ?err.debug(), "pipeline error");
                let _ = tx.send(GstEvent::Error(err.error().to_string()));
            }
            MessageView::Warning(w) => {
                let source = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                tracing::warn!(source, warning = %w.error(), debug = ?w.debug(), "pipeline warning");
            }
            MessageView::StateChanged(s) if msg.src().is_some_and(|src| src.name() == "pipeline") => {
                tracing::debug!(from = ?s.old(), to = ?s.current(), "pipeline state");
            }
            _ => {}
        }
    }
}

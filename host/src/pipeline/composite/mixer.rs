//! The GStreamer pipeline of a composite recording: encoded frames in (one `appsrc` per track),
//! decoded, mixed onto one time line, encoded and muxed into the file. Built element by element.
//!
//! ```text
//! appsrc (H.264|H.265|VP8|VP9|AV1) → parse → decoder → videoconvert → videoscale → caps ─┐
//! videotestsrc black (live) ──────────────────────────────────────────────────── compositor → x264enc|vp8enc ─┐
//! appsrc (Opus) → opusdec → audioconvert → audioresample → [mono → pan L/R] → caps ─┐                          │
//! audiotestsrc silence (live) ──────────────────────────────────────── audiomixer → raw tee (websocket) → encoder ┤
//!                                                       mp4mux (fragmented, append-only) | oggmux | webmmux → filesink
//! ```
//!
//! Timing: the pipeline runs live on the system clock, and a frame's PTS is its capture time
//! (on the recording's common clock, `crate::webrtc::clock`) minus the first media's, so that
//! audio and video line up however they arrived. The running time starts when the pipeline is
//! started, which the caller does a short hold after the first frame: every frame then reaches
//! its mixer that much before the mixer needs it, which is the jitter buffer. The live black and
//! silent sources keep both mixers producing from the first instant to the end, so gaps (a
//! muted or republished track, a late one) become silence or the last frame repeated
//! (compositor keeps a pad's last frame), nothing is sped up, and both tracks of a fragmented
//! MP4 (which has no edit list) start at zero together.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::PipelineError;
use crate::outputs::tap::EncodedStreams;
use crate::pipeline::elements::{
    audio_encoder, caps_filter, file_end, gst_err, h264_encoder, link_chain, link_request,
    link_to_muxer, make, set, set_str, vp8_encoder,
};
use crate::pipeline::encoding::{AudioCodec, Container, Encoding, VideoCodec};
use crate::webrtc::TrackCodec;
use crate::webrtc::room::Channel;

/// How long the mixers wait for late input before producing without it. Frames arrive a hold
/// ahead of their running time, so this only covers scheduling.
const MIXER_LATENCY: Duration = Duration::from_millis(200);
/// Opus packets are 20 ms: the silence source uses the same size.
const SILENCE_SAMPLES: i32 = 960;
/// libopus (every browser's and lk's encoder) delays the audio it encodes by its look-ahead,
/// 312 samples at 48 kHz (the pre-skip of an Ogg file; WebRTC has no way to say it).
const OPUS_LOOKAHEAD: Duration = Duration::from_micros(6_500);
/// Samples an AAC encoder puts before the first real one (priming). A fragmented MP4 has no
/// edit list to tell a player, so decoders play them: the audio would sound that much late.
const AAC_PRIMING_SAMPLES: u64 = 1024;

/// What the pipeline reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MixerEvent {
    Eos,
    Error(String),
}

/// What the file holds.
#[derive(Debug, Clone)]
pub struct MixerSettings {
    pub container: Container,
    pub audio: Option<AudioCodec>,
    pub video: Option<VideoCodec>,
    pub encoding: Encoding,
    pub encoder_threads: u32,
}

impl MixerSettings {
    /// How much earlier than its capture time decoded audio is put on the time line, so that
    /// what a player hears lines up with what it shows: the sender's Opus look-ahead and our
    /// encoder's priming. Only with video: an audio-only file has nothing to line up with.
    pub fn audio_lead(&self) -> Duration {
        if self.video.is_none() {
            return Duration::ZERO;
        }
        let priming = match self.audio {
            Some(AudioCodec::Aac) => {
                let rate = u64::try_from(self.sample_rate()).unwrap_or(48_000).max(1);
                Duration::from_nanos(AAC_PRIMING_SAMPLES * 1_000_000_000 / rate)
            }
            // opusenc writes its pre-skip in the header, and players skip it.
            _ => Duration::ZERO,
        };
        OPUS_LOOKAHEAD + priming
    }

    fn sample_rate(&self) -> i32 {
        match self.audio {
            Some(AudioCodec::Opus) | None => 48_000,
            Some(_) => self.encoding.audio_frequency,
        }
    }

    fn raw_audio_caps(&self, channels: i32) -> gst::Caps {
        gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("layout", "interleaved")
            .field("rate", self.sample_rate())
            .field("channels", channels)
            .build()
    }

    fn raw_video_caps(&self, with_rate: bool) -> gst::Caps {
        let e = &self.encoding;
        let mut b = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", e.width)
            .field("height", e.height)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1));
        if with_rate {
            b = b.field("framerate", gst::Fraction::new(e.framerate.max(1), 1));
        }
        b.build()
    }
}

/// One track's input.
struct Branch {
    appsrc: gst::Element,
    codec: TrackCodec,
    last_pts: Option<u64>,
    ended: bool,
    /// Every element of the branch, the appsrc first.
    elements: Vec<gst::Element>,
    /// The mixer's request pad it feeds.
    mixer_pad: gst::Pad,
}

pub struct Mixer {
    pipeline: gst::Pipeline,
    /// Where outputs beside the file attach (the encoders' tees).
    streams: EncodedStreams,
    settings: MixerSettings,
    audio_mixer: Option<gst::Element>,
    compositor: Option<gst::Element>,
    /// The live black and silent sources (sent EOS at the end).
    fillers: Vec<gst::Element>,
    branches: HashMap<String, Branch>,
    /// Tracks whose end (EOS) has gone through their branch, sent from the branch's streaming
    /// thread: their branches are removed from the pipeline by the next call that owns the
    /// mixer (see [`Mixer::remove_drained`]).
    drained: std::sync::mpsc::Receiver<String>,
    drained_tx: std::sync::mpsc::Sender<String>,
    next_zorder: u32,
    events: mpsc::UnboundedReceiver<MixerEvent>,
    bus_task: JoinHandle<()>,
    /// The end of the latest frame pushed, ns of running time.
    media_end: u64,
    /// See [`MixerSettings::audio_lead`].
    audio_lead: Duration,
}

impl Mixer {
    /// Builds the pipeline writing to `out_path`, without any track yet. Nothing runs until
    /// [`start`](Self::start).
    pub fn build(settings: MixerSettings, out_path: Option<&Path>) -> Result<Mixer, PipelineError> {
        gst::init().map_err(gst_err)?;
        let pipeline = gst::Pipeline::with_name("composite");
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        // The base time is ours (see `start`), not reset by state changes.
        pipeline.set_start_time(gst::ClockTime::NONE);
        let (tx, events) = mpsc::unbounded_channel();

        // The file is one branch of the encoded streams (none for a stream-only egress); the
        // other outputs attach theirs through `streams` before the pipeline starts.
        let mux = out_path
            .map(|p| file_end(&pipeline, settings.container, p))
            .transpose()?;
        let mut streams = EncodedStreams::new(pipeline.clone(), MIXER_LATENCY);

        let mut fillers = Vec::new();
        let compositor = match settings.video {
            Some(codec) => {
                let (comp, black) =
                    Self::build_video(&pipeline, &settings, codec, mux.as_ref(), &mut streams)?;
                fillers.push(black);
                Some(comp)
            }
            None => None,
        };
        let audio_mixer = match settings.audio {
            Some(codec) => {
                let (mixer, silence) =
                    Self::build_audio(&pipeline, &settings, codec, mux.as_ref(), &mut streams)?;
                fillers.push(silence);
                Some(mixer)
            }
            None => None,
        };
        let bus = pipeline
            .bus()
            .ok_or_else(|| gst_err("pipeline has no bus"))?;
        let bus_task = tokio::spawn(watch_bus(bus, tx, streams.clone()));
        let (drained_tx, drained) = std::sync::mpsc::channel();
        Ok(Mixer {
            pipeline,
            streams,
            audio_lead: settings.audio_lead(),
            settings,
            audio_mixer,
            compositor,
            fillers,
            branches: HashMap::new(),
            drained,
            drained_tx,
            next_zorder: 1,
            events,
            bus_task,
            media_end: 0,
        })
    }

    /// black source → compositor → encoder → muxer.
    fn build_video(
        pipeline: &gst::Pipeline,
        s: &MixerSettings,
        codec: VideoCodec,
        mux: Option<&gst::Element>,
        streams: &mut EncodedStreams,
    ) -> Result<(gst::Element, gst::Element), PipelineError> {
        let e = &s.encoding;
        let black = make("videotestsrc", None)?;
        set_str(&black, "pattern", "black")?;
        set(&black, "is-live", true)?;
        let black_caps = caps_filter(None, s.raw_video_caps(true))?;
        let comp = make("compositor", None)?;
        set_str(&comp, "background", "black")?;
        set(&comp, "latency", MIXER_LATENCY.as_nanos() as u64)?;
        let out_caps = caps_filter(None, s.raw_video_caps(true))?;
        let raw_tee = make("tee", Some("raw_video_tee"))?;
        set(&raw_tee, "allow-not-linked", true)?;
        let queue = make("queue", None)?;
        let mut chain: Vec<gst::Element> = vec![comp.clone(), out_caps, raw_tee.clone(), queue];
        let encoder = match codec {
            VideoCodec::H264 => h264_encoder(e, s.encoder_threads)?,
            VideoCodec::Vp8 => vec![vp8_encoder(e, s.encoder_threads)?],
        };
        streams.video_encoder = encoder.first().cloned();
        chain.extend(encoder);
        let video_tee = make("tee", Some("video_tee"))?;
        set(&video_tee, "allow-not-linked", true)?;
        chain.push(video_tee.clone());
        streams.raw_video = Some(raw_tee);
        streams.video = Some(video_tee);
        pipeline.add_many([&black, &black_caps]).map_err(gst_err)?;
        pipeline.add_many(chain.iter()).map_err(gst_err)?;
        link_chain(&[&black, &black_caps])?;
        let pad = link_request(&black_caps, &comp, "sink_%u")?;
        set_zorder(&pad, 0);
        let refs: Vec<&gst::Element> = chain.iter().collect();
        link_chain(&refs)?;
        if let (Some(mux), Some(tee)) = (mux, streams.video.as_ref()) {
            let q = make("queue", Some("file_video_queue"))?;
            pipeline.add(&q).map_err(gst_err)?;
            link_chain(&[tee, &q])?;
            link_request(&q, mux, "video_%u")?;
        }
        Ok((comp, black))
    }

    /// silent source → audiomixer → encoder → muxer.
    fn build_audio(
        pipeline: &gst::Pipeline,
        s: &MixerSettings,
        codec: AudioCodec,
        mux: Option<&gst::Element>,
        streams: &mut EncodedStreams,
    ) -> Result<(gst::Element, gst::Element), PipelineError> {
        let e = &s.encoding;
        let silence = make("audiotestsrc", None)?;
        set_str(&silence, "wave", "silence")?;
        set(&silence, "is-live", true)?;
        set(&silence, "samplesperbuffer", SILENCE_SAMPLES)?;
        let silence_caps = caps_filter(None, s.raw_audio_caps(2))?;
        let mixer = make("audiomixer", None)?;
        set(&mixer, "latency", MIXER_LATENCY.as_nanos() as u64)?;
        let out_caps = caps_filter(None, s.raw_audio_caps(2))?;
        // The mixed audio before it is encoded, for the websocket's raw PCM.
        let raw_tee = make("tee", Some("raw_audio_tee"))?;
        set(&raw_tee, "allow-not-linked", true)?;
        streams.raw_audio = Some(raw_tee.clone());
        let queue = make("queue", None)?;
        // The encoders take their own sample formats (avenc_aac: planar float).
        let mut chain: Vec<gst::Element> = vec![
            mixer.clone(),
            out_caps,
            raw_tee,
            queue,
            make("audioconvert", None)?,
        ];
        chain.extend(audio_encoder(codec, e)?);
        let audio_tee = make("tee", Some("audio_tee"))?;
        set(&audio_tee, "allow-not-linked", true)?;
        chain.push(audio_tee.clone());
        streams.audio = Some(audio_tee);
        pipeline
            .add_many([&silence, &silence_caps])
            .map_err(gst_err)?;
        pipeline.add_many(chain.iter()).map_err(gst_err)?;
        link_chain(&[&silence, &silence_caps])?;
        link_request(&silence_caps, &mixer, "sink_%u")?;
        let refs: Vec<&gst::Element> = chain.iter().collect();
        link_chain(&refs)?;
        if let (Some(mux), Some(tee)) = (mux, streams.audio.as_ref()) {
            let q = make("queue", Some("file_audio_queue"))?;
            pipeline.add(&q).map_err(gst_err)?;
            link_chain(&[tee, &q])?;
            link_to_muxer(&q, mux, s.container, "audio_%u")?;
        }
        Ok((mixer, silence))
    }

    /// The encoded streams, for the outputs beside the file to attach to (before
    /// [`start`](Self::start)).
    pub fn streams(&self) -> &EncodedStreams {
        &self.streams
    }

    /// Starts the pipeline: running time 0 is now. Frames pushed afterwards are timed from the
    /// first media (PTS = capture time − first capture time).
    pub fn start(&self) -> Result<(), PipelineError> {
        let clock = gst::SystemClock::obtain();
        let now = clock.time();
        self.pipeline.set_base_time(now);
        self.pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|_| gst_err("pipeline could not go to PLAYING"))
    }

    /// The pipeline's running time now.
    pub fn running_time(&self) -> Option<Duration> {
        self.pipeline
            .current_running_time()
            .map(|t| Duration::from_nanos(t.nseconds()))
    }

    pub fn has_track(&self, track_sid: &str) -> bool {
        self.branches.contains_key(track_sid)
    }

    /// Adds an input for a track (before or after `start`).
    pub fn add_track(
        &mut self,
        track_sid: &str,
        codec: TrackCodec,
        channel: Channel,
    ) -> Result<(), PipelineError> {
        self.remove_drained();
        if self.branches.contains_key(track_sid) {
            return Ok(());
        }
        let appsrc = make("appsrc", None)?;
        set_str(&appsrc, "format", "time")?;
        set(&appsrc, "is-live", true)?;
        set(&appsrc, "do-timestamp", false)?;
        // The hold keeps up to a few seconds queued; the subscriber's channel bounds the rest.
        set(&appsrc, "max-bytes", 0u64)?;
        let mut chain = vec![appsrc.clone()];
        let (target, template) = if codec == TrackCodec::Opus {
            let Some(mixer) = self.audio_mixer.clone() else {
                return Ok(());
            };
            set(
                &appsrc,
                "caps",
                gst::Caps::builder("audio/x-opus")
                    .field("rate", 48_000i32)
                    .field("channels", 2i32)
                    .field("channel-mapping-family", 0i32)
                    .build(),
            )?;
            let dec = make("opusdec", None)?;
            set(&dec, "plc", true)?;
            chain.extend([
                dec,
                make("audioconvert", None)?,
                make("audioresample", None)?,
            ]);
            match channel {
                Channel::Both => chain.push(caps_filter(None, self.settings.raw_audio_caps(2))?),
                Channel::Left | Channel::Right => {
                    chain.push(caps_filter(None, self.settings.raw_audio_caps(1))?);
                    let pan = make("audiopanorama", None)?;
                    set_str(&pan, "method", "simple")?;
                    set(
                        &pan,
                        "panorama",
                        if channel == Channel::Left {
                            -1.0f32
                        } else {
                            1.0f32
                        },
                    )?;
                    chain.extend([
                        pan,
                        make("audioconvert", None)?,
                        caps_filter(None, self.settings.raw_audio_caps(2))?,
                    ]);
                }
            }
            (mixer, "sink_%u")
        } else {
            let Some(comp) = self.compositor.clone() else {
                return Ok(());
            };
            let (caps, decoders) = video_input(codec);
            set(&appsrc, "caps", caps)?;
            for d in decoders {
                chain.push(make(d, None)?);
            }
            let scale = make("videoscale", None)?;
            // Letterbox rather than stretch a track of another aspect ratio.
            set(&scale, "add-borders", true)?;
            chain.extend([
                make("videoconvert", None)?,
                scale,
                caps_filter(None, self.settings.raw_video_caps(false))?,
            ]);
            (comp, "sink_%u")
        };
        chain.push(make("queue", None)?);
        self.pipeline.add_many(chain.iter()).map_err(gst_err)?;
        let refs: Vec<&gst::Element> = chain.iter().collect();
        link_chain(&refs)?;
        let last = chain.last().ok_or_else(|| gst_err("empty branch"))?;
        let pad = link_request(last, &target, template)?;
        if codec != TrackCodec::Opus {
            // A newer track (a republished camera) is drawn over the older ones.
            set_zorder(&pad, self.next_zorder);
            self.next_zorder += 1;
        }
        // Downstream first, so that each element is fully started before anything can reach
        // it. The other way round crashed the handler (issue 20): the appsrc, PLAYING first,
        // pushes its caps event from its own thread at once, and GStreamer unflushes a sink
        // pad (and resends the peer's sticky events) *before* the element's start runs, so
        // h264parse could get the caps before `start` had created its NAL parser and
        // dereference NULL (`gst_h264_parse_set_caps`, SIGSEGV in appsrc's thread).
        for el in chain.iter().rev() {
            el.sync_state_with_parent()
                .map_err(|e| gst_err(format!("branch for {track_sid}: {e}")))?;
        }
        self.notify_drained(last, track_sid);
        tracing::info!(
            track_sid,
            ?codec,
            ?channel,
            "track input added to the pipeline"
        );
        self.branches.insert(
            track_sid.to_owned(),
            Branch {
                appsrc,
                codec,
                last_pts: None,
                ended: false,
                elements: chain,
                mixer_pad: pad,
            },
        );
        Ok(())
    }

    /// Tells [`Mixer::remove_drained`] when the branch's end has reached the mixer. Only the
    /// message is sent from the streaming thread: an element cannot be stopped from its own
    /// streaming thread (setting it to NULL joins that thread).
    fn notify_drained(&self, last: &gst::Element, track_sid: &str) {
        let Some(src) = last.static_pad("src") else {
            return;
        };
        let tx = self.drained_tx.clone();
        let track_sid = track_sid.to_owned();
        src.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && e.type_() == gst::EventType::Eos
            {
                let _ = tx.send(track_sid.clone());
                return gst::PadProbeReturn::Remove;
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Takes the branches of ended tracks out of the running pipeline, so that a meeting's
    /// camera toggles and reconnects do not pile up threads and decoders (each branch has an
    /// appsrc and a queue thread, and a video decoder its own threads and frames): stopped,
    /// unlinked from the mixer, whose request pad is released (the mixer carries on without
    /// it), and removed. Not at the end of the recording: the mixers must see every
    /// input's EOS to finish the file, and no call comes after `send_eos` but `shutdown`.
    fn remove_drained(&mut self) {
        while let Ok(track_sid) = self.drained.try_recv() {
            let Some(branch) = self.branches.get(&track_sid) else {
                continue;
            };
            if !branch.ended {
                continue;
            }
            let Some(branch) = self.branches.remove(&track_sid) else {
                continue;
            };
            // Stopped first (which joins the branch's threads, the queue's once it has handed
            // the EOS on), so that nothing is pushing into the mixer's pad when it goes.
            for el in &branch.elements {
                let _ = el.set_state(gst::State::Null);
            }
            if let Some(src) = branch.mixer_pad.peer() {
                let _ = src.unlink(&branch.mixer_pad);
            }
            if let Some(mixer) = branch.mixer_pad.parent_element() {
                mixer.release_request_pad(&branch.mixer_pad);
            }
            let _ = self.pipeline.remove_many(branch.elements.iter());
            tracing::info!(track_sid, "ended track's input removed from the pipeline");
        }
    }

    /// Pushes one encoded frame of `track_sid` at `pts` (running time).
    pub fn push(
        &mut self,
        track_sid: &str,
        data: Arc<[u8]>,
        pts: Duration,
        discont: bool,
    ) -> Result<(), PipelineError> {
        self.remove_drained();
        let Some(branch) = self.branches.get_mut(track_sid) else {
            return Ok(());
        };
        if branch.ended {
            return Ok(());
        }
        let mut pts = pts.as_nanos() as u64;
        if branch.codec == TrackCodec::Opus {
            // Audio from before the file's start is dropped, not clamped: the mixer aligns a
            // stream on its first buffer and takes later ones within 40 ms as contiguous.
            let Some(shifted) = pts.checked_sub(self.audio_lead.as_nanos() as u64) else {
                return Ok(());
            };
            pts = shifted;
        }
        // Decoders want rising timestamps; a sender-report correction may step back a little.
        if let Some(last) = branch.last_pts
            && pts <= last
        {
            pts = last + 1;
        }
        branch.last_pts = Some(pts);
        let frame_ns = if branch.codec == TrackCodec::Opus {
            20_000_000
        } else {
            33_000_000
        };
        self.media_end = self.media_end.max(pts + frame_ns);
        let mut buffer = gst::Buffer::from_slice(data);
        {
            let b = buffer
                .get_mut()
                .ok_or_else(|| gst_err("new buffer is not writable"))?;
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            if discont {
                b.set_flags(gst::BufferFlags::DISCONT);
            }
        }
        let flow = branch
            .appsrc
            .emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        if flow != gst::FlowReturn::Ok && flow != gst::FlowReturn::Flushing {
            return Err(gst_err(format!(
                "track {track_sid}: pushing a frame failed ({flow:?})"
            )));
        }
        Ok(())
    }

    /// The track ended (unpublished): its input finishes, the mixers carry on without it.
    pub fn end_track(&mut self, track_sid: &str) {
        if let Some(branch) = self.branches.get_mut(track_sid)
            && !branch.ended
        {
            branch.ended = true;
            let _ = branch
                .appsrc
                .emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
        }
    }

    /// Ends every input: `MixerEvent::Eos` follows once the file is complete.
    pub fn send_eos(&mut self) {
        let sids: Vec<String> = self.branches.keys().cloned().collect();
        for sid in sids {
            self.end_track(&sid);
        }
        for filler in &self.fillers {
            filler.send_event(gst::event::Eos::new());
        }
    }

    pub async fn next_event(&mut self) -> Option<MixerEvent> {
        self.events.recv().await
    }

    /// The media time in the file so far (to the end of the latest frame).
    pub fn media_duration(&self) -> Duration {
        Duration::from_nanos(self.media_end)
    }

    /// Stops the pipeline (streaming threads joined) off the async executor.
    pub async fn shutdown(self) {
        let pipeline = self.pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
    }
}

impl Drop for Mixer {
    /// Streaming threads must be stopped before the elements go away, on every path (after
    /// `shutdown` this is a no-op).
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        self.bus_task.abort();
    }
}

/// The caps of a video track's encoded frames as the subscriber hands them over, and the
/// parser + decoder that turn them into raw video.
fn video_input(codec: TrackCodec) -> (gst::Caps, &'static [&'static str]) {
    let annex_b = |media: &str| {
        gst::Caps::builder(media)
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build()
    };
    match codec {
        TrackCodec::H264 => (annex_b("video/x-h264"), &["h264parse", "avdec_h264"]),
        TrackCodec::H265 => (annex_b("video/x-h265"), &["h265parse", "avdec_h265"]),
        TrackCodec::Vp8 => (gst::Caps::builder("video/x-vp8").build(), &["vp8dec"]),
        TrackCodec::Vp9 => (
            gst::Caps::builder("video/x-vp9").build(),
            &["vp9parse", "vp9dec"],
        ),
        // str0m gives each temporal unit as OBUs with size fields (the low-overhead format).
        TrackCodec::Av1 => (
            gst::Caps::builder("video/x-av1")
                .field("stream-format", "obu-stream")
                .field("alignment", "tu")
                .build(),
            &["av1parse", "av1dec"],
        ),
        // Not a video codec: the caller routes Opus to the audio mixer.
        TrackCodec::Opus => (gst::Caps::new_empty(), &[]),
    }
}

/// Stacks a compositor input (higher on top); checked, as glib would panic on a missing
/// property.
fn set_zorder(pad: &gst::Pad, z: u32) {
    if pad.find_property("zorder").is_some() {
        pad.set_property("zorder", z);
    }
}

async fn watch_bus(bus: gst::Bus, tx: mpsc::UnboundedSender<MixerEvent>, streams: EncodedStreams) {
    let mut messages = bus.stream();
    while let Some(msg) = messages.next().await {
        use gst::MessageView;
        if streams.on_bus_message(&msg) {
            continue;
        }
        match msg.view() {
            MessageView::Eos(_) => {
                tracing::info!("composite pipeline received EOS");
                let _ = tx.send(MixerEvent::Eos);
            }
            MessageView::Error(err) => {
                let source = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                tracing::error!(source, error = %err.error(), debug = ?err.debug(), "composite pipeline error");
                let _ = tx.send(MixerEvent::Error(err.error().to_string()));
            }
            MessageView::Warning(w) => {
                let source = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                tracing::warn!(source, warning = %w.error(), debug = ?w.debug(), "composite pipeline warning");
            }
            _ => {}
        }
    }
}

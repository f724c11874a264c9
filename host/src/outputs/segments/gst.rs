//! The GStreamer end of an HLS segment output: a `splitmuxsink` fed from the recorder's
//! encoded tees, cutting MPEG-TS segments into the work dir, and the events that hand each
//! finished segment to the upload task.
//!
//! ```text
//! video tee (after h264parse) ─▶ queue ─┐
//!                                       ├─▶ splitmuxsink muxer-factory=mpegtsmux
//! audio tee (after aacparse)  ─▶ queue ─┘     max-size-time=d send-keyframe-requests=true
//!                                             async-finalize=false location=<work dir>/<name>
//! ```
//!
//! * Names: `format-location-full` gives Go's names (INDEX `<prefix>_%05d.ts`, TIMESTAMP
//!   `<prefix>_<YYYYMMDDhhmmss><mmm>.ts` from the wall clock of the fragment's first sample:
//!   the first sample of the output anchors the clock, later ones add their running time).
//! * Durations come from the media: a fragment runs from its `splitmuxsink-fragment-opened`
//!   running time to its `splitmuxsink-fragment-closed` one (the next fragment's start). For
//!   the last fragment, closed at EOS, splitmuxsink reports the *start* of its last buffer;
//!   the end of that buffer (seen by a probe in front of the sink) is used instead. So EXTINF
//!   is right at any frame rate (Go's pts-fixer made 16 fps segments run fast, #853).
//! * Program date time: the same clock as the names, at the fragment's start, so consecutive
//!   PDTs differ by exactly the previous EXTINF.
//! * splitmuxsink reports fragments as element messages on the pipeline bus; the recorder's
//!   bus handler passes them to [`SegmentsBranch::handle_message`], which only does
//!   arithmetic and an unbounded channel send (never blocks the bus thread). The upload
//!   task bounds the work (see `uploader`).
//!
//! Keyframes: splitmuxsink asks upstream for a keyframe at every boundary
//! (`GstForceKeyUnit`, through queue, tee and h264parse to the encoder). The encoder must
//! honour it: for x264enc, `key-int-max` unset (x264's 250) or a multiple of
//! fps × segment_duration, and `option-string=scenecut=0` so no scene-cut keyframe lands just
//! before a boundary (Go: KFI reset to 0 with segments, `scenecut=0`, `vbv-buf-capacity` =
//! segment duration in ms capped at 10 000).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::naming::SegmentNaming;
use crate::outputs::filename::LocalTime;
use crate::outputs::sample_clock::SampleClock;
use gstreamer as gst;
use gstreamer::prelude::*;

use super::uploader::SegmentSender;
use crate::outputs::tap::EncodedStreams;

/// What may wait between a tee and splitmuxsink. splitmuxsink itself holds a whole GOP before
/// it decides where to cut, so this only absorbs scheduling hiccups; it never leaks (a
/// leaking queue would punch holes in the segments).
const BRANCH_QUEUE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("segment output: {0}")]
pub struct SegmentsGstError(String);

fn err(e: impl std::fmt::Display) -> SegmentsGstError {
    SegmentsGstError(e.to_string())
}

/// One finished segment on local disk, for the upload task.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentClosed {
    /// splitmuxsink's fragment id (from 0).
    pub index: u64,
    /// As listed in the playlist (relative to the storage dir: `[segment_dir/]prefix_00000.ts`).
    pub name: String,
    pub local_path: PathBuf,
    /// Running time of the segment's first sample.
    pub start_running_time: Duration,
    pub duration: Duration,
    /// Wall clock of the segment's first sample (`EXT-X-PROGRAM-DATE-TIME`).
    pub program_date_time: SystemTime,
    /// When the pipeline reported it closed (the start of "segment end → playlists stored").
    pub closed_at: Instant,
}

/// Settings of one segment branch.
#[derive(Debug, Clone)]
pub struct SegmentsBranchConfig {
    pub naming: SegmentNaming,
    /// Where segments are written before their upload (the egress's work dir, or a
    /// sub-directory of it per output).
    pub work_dir: PathBuf,
    /// Element names start with this (`segments0`), unique in the pipeline.
    pub element_prefix: String,
}

struct Named {
    index: u64,
    name: String,
}

/// State shared by the streaming threads (names, probe) and the bus handler.
struct Shared {
    naming: SegmentNaming,
    work_dir: PathBuf,
    clock: Mutex<SampleClock>,
    /// Fragments named by `format-location-full`, by local path.
    named: Mutex<HashMap<String, Named>>,
    /// The open fragment: (location, running time of its start).
    open: Mutex<Option<(String, Duration)>>,
    /// In front of splitmuxsink on the reference stream (video, else audio): start and end
    /// running times (ns) of the last buffer, and whether EOS went past.
    last_start: AtomicU64,
    last_end: AtomicU64,
    eos: AtomicBool,
}

impl Shared {
    fn wall_clock(&self, running_time: Duration) -> SystemTime {
        match self.clock.lock() {
            Ok(mut c) => c.wall_clock(running_time, SystemTime::now()),
            Err(_) => SystemTime::now(),
        }
    }
}

/// A segment branch in the pipeline.
pub struct SegmentsBranch {
    sink: gst::Element,
    shared: Arc<Shared>,
    events: SegmentSender,
}

impl SegmentsBranch {
    /// Adds the branch to the (not yet playing) pipeline, linked to the tees: video and audio
    /// when both are given, audio alone for an audio-only egress. Segments go to `events`
    /// (the upload task's [`SegmentSender`]).
    pub fn attach(
        tees: &EncodedStreams,
        config: &SegmentsBranchConfig,
        events: SegmentSender,
    ) -> Result<SegmentsBranch, SegmentsGstError> {
        if tees.video.is_none() && tees.audio.is_none() {
            return Err(err("neither video nor audio to segment"));
        }
        let segment_dir = config.work_dir.join(config.naming.segment_dir());
        std::fs::create_dir_all(&segment_dir)
            .map_err(|e| err(format!("cannot create {}: {e}", segment_dir.display())))?;
        let p = &config.element_prefix;
        let sink = make("splitmuxsink", &format!("{p}_splitmux"))?;
        sink.set_property("muxer-factory", "mpegtsmux");
        sink.set_property(
            "max-size-time",
            u64::from(config.naming.segment_duration) * 1_000_000_000,
        );
        sink.set_property("max-size-bytes", 0u64);
        sink.set_property("send-keyframe-requests", true);
        // Finalize each fragment before the next starts (Go #281): one muxer, files complete
        // when "fragment-closed" is posted.
        sink.set_property("async-finalize", false);
        sink.set_property(
            "location",
            config
                .work_dir
                .join("segment%05d.ts")
                .to_string_lossy()
                .as_ref(),
        );

        let shared = Arc::new(Shared {
            naming: config.naming.clone(),
            work_dir: config.work_dir.clone(),
            clock: Mutex::new(SampleClock::new()),
            named: Mutex::new(HashMap::new()),
            open: Mutex::new(None),
            last_start: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
            eos: AtomicBool::new(false),
        });
        install_format_location(&sink, shared.clone());

        tees.pipeline.add(&sink).map_err(err)?;
        for (tee, kind) in [
            (tees.video.as_ref(), "video"),
            (tees.audio.as_ref(), "audio"),
        ] {
            let Some(tee) = tee else { continue };
            let q = make("queue", &format!("{p}_{kind}_queue"))?;
            q.set_property("max-size-time", BRANCH_QUEUE.as_nanos() as u64);
            q.set_property("max-size-bytes", 0u32);
            q.set_property("max-size-buffers", 0u32);
            tees.pipeline.add(&q).map_err(err)?;
            tee.link(&q).map_err(err)?;
            // The tee carries H.264 as the file's muxer wants it (avc); MPEG-TS segments carry
            // Annex B with SPS/PPS at every keyframe, so each segment decodes on its own.
            let last = if kind == "video" {
                let parse = make("h264parse", &format!("{p}_h264parse"))?;
                parse.set_property("config-interval", -1i32);
                tees.pipeline.add(&parse).map_err(err)?;
                q.link(&parse).map_err(err)?;
                if tees.pipeline.current_state() > gst::State::Null {
                    parse.sync_state_with_parent().map_err(err)?;
                }
                parse
            } else {
                q.clone()
            };
            let template = if kind == "video" { "video" } else { "audio_%u" };
            let mux_pad = sink
                .request_pad_simple(template)
                .ok_or_else(|| err(format!("splitmuxsink has no {template} pad")))?;
            let src = last.static_pad("src").ok_or_else(|| err("no src pad"))?;
            src.link(&mux_pad).map_err(|e| err(format!("{e:?}")))?;
            // The reference stream is the one splitmuxsink cuts on: video when there is video.
            if kind == "video" || tees.video.is_none() {
                install_end_probe(&src, shared.clone());
            }
            if tees.pipeline.current_state() > gst::State::Null {
                q.sync_state_with_parent().map_err(err)?;
            }
        }
        if tees.pipeline.current_state() > gst::State::Null {
            sink.sync_state_with_parent().map_err(err)?;
        }
        Ok(SegmentsBranch {
            sink,
            shared,
            events,
        })
    }

    /// The splitmuxsink (to tell its messages apart, or to remove the branch).
    pub fn sink(&self) -> &gst::Element {
        &self.sink
    }

    /// Takes splitmuxsink's fragment messages off the pipeline bus; `true` when the message was
    /// this branch's (the recorder then ignores it). Cheap and non-blocking: call it from the
    /// bus handler for every element message.
    pub fn handle_message(&self, msg: &gst::MessageRef) -> bool {
        let gst::MessageView::Element(e) = msg.view() else {
            return false;
        };
        if msg.src() != Some(self.sink.upcast_ref::<gst::Object>()) {
            return false;
        }
        let Some(s) = e.structure() else { return false };
        let opened = match s.name().as_str() {
            "splitmuxsink-fragment-opened" => true,
            "splitmuxsink-fragment-closed" => false,
            _ => return false,
        };
        let (Ok(location), Ok(rt)) = (s.get::<String>("location"), s.get::<u64>("running-time"))
        else {
            tracing::warn!(structure = %s, "splitmuxsink fragment message without location or running time");
            return true;
        };
        let rt = Duration::from_nanos(rt);
        if opened {
            if let Ok(mut open) = self.shared.open.lock() {
                *open = Some((location, rt));
            }
            return true;
        }
        self.on_closed(location, rt);
        true
    }

    fn on_closed(&self, location: String, closed_rt: Duration) {
        let start = match self.shared.open.lock().ok().and_then(|mut o| o.take()) {
            Some((open_location, start)) if open_location == location => start,
            other => {
                tracing::warn!(
                    location,
                    ?other,
                    "splitmuxsink closed a fragment it did not open; timing from its close"
                );
                closed_rt
            }
        };
        // The last fragment (EOS): splitmuxsink reports the start of its last buffer.
        let mut end = closed_rt;
        let last_start = Duration::from_nanos(self.shared.last_start.load(Ordering::Acquire));
        let last_end = Duration::from_nanos(self.shared.last_end.load(Ordering::Acquire));
        if self.shared.eos.load(Ordering::Acquire) && closed_rt == last_start && last_end > end {
            end = last_end;
        }
        let named = self
            .shared
            .named
            .lock()
            .ok()
            .and_then(|mut n| n.remove(&location));
        let Some(Named { index, name }) = named else {
            tracing::error!(
                location,
                "splitmuxsink closed a fragment that was never named; it is not uploaded"
            );
            return;
        };
        let segment = SegmentClosed {
            index,
            name,
            local_path: PathBuf::from(location),
            start_running_time: start,
            duration: end.saturating_sub(start),
            program_date_time: self.shared.wall_clock(start),
            closed_at: Instant::now(),
        };
        tracing::debug!(index, duration = ?segment.duration, "segment closed");
        self.events.send(segment);
    }
}

fn make(factory: &str, name: &str) -> Result<gst::Element, SegmentsGstError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| {
            err(format!(
                "could not create {factory} (is its GStreamer plugin installed?)"
            ))
        })
}

/// `format-location-full(splitmux, fragment_id, first_sample) -> location`: Go's name for
/// the fragment, as a file in the work dir. Runs on a streaming thread: arithmetic only.
fn install_format_location(sink: &gst::Element, shared: Arc<Shared>) {
    sink.connect("format-location-full", false, move |args| {
        let index = args.get(1).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
        let sample = args.get(2).and_then(|v| v.get::<gst::Sample>().ok());
        let rt = sample
            .as_ref()
            .and_then(sample_running_time)
            .unwrap_or(Duration::ZERO);
        let wall = shared.wall_clock(rt);
        let name = shared
            .naming
            .segment_name(u64::from(index), LocalTime::from_system(wall));
        let local = local_path(&shared.work_dir, &name);
        let location = local.to_string_lossy().into_owned();
        if let Ok(mut named) = shared.named.lock() {
            named.insert(
                location.clone(),
                Named {
                    index: u64::from(index),
                    name,
                },
            );
        }
        Some(location.to_value())
    });
}

/// The segment's local file: its storage name under the work dir (the segment dir, if any,
/// was created at attach).
fn local_path(work_dir: &Path, name: &str) -> PathBuf {
    work_dir.join(name)
}

fn sample_running_time(sample: &gst::Sample) -> Option<Duration> {
    let pts = sample.buffer()?.pts()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    segment
        .to_running_time(pts)
        .map(|t| Duration::from_nanos(t.nseconds()))
}

/// Watches the reference stream in front of splitmuxsink: running times of the last buffer
/// (its start and end) and EOS, for the last fragment's true end.
fn install_end_probe(pad: &gst::Pad, shared: Arc<Shared>) {
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |pad, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => {
                    if let (Some(pts), Some(ev)) =
                        (buffer.pts(), pad.sticky_event::<gst::event::Segment>(0))
                        && let Some(seg) = ev.segment().downcast_ref::<gst::ClockTime>()
                        && let Some(start) = seg.to_running_time(pts)
                    {
                        let end = seg
                            .to_running_time(
                                pts + buffer.duration().unwrap_or(gst::ClockTime::ZERO),
                            )
                            .unwrap_or(start);
                        shared.last_start.store(start.nseconds(), Ordering::Release);
                        shared.last_end.fetch_max(end.nseconds(), Ordering::AcqRel);
                    }
                }
                Some(gst::PadProbeData::Event(ev)) if ev.type_() == gst::EventType::Eos => {
                    shared.eos.store(true, Ordering::Release);
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

//! The GStreamer end of an image snapshot output: one JPEG every `capture_interval` seconds
//! from the recorder's raw video, handed to the upload task without ever blocking.
//!
//! ```text
//! raw video tee ─▶ queue (leaky, 200 ms) ─▶ videorate (drop-only, skip-to-first)
//!   ─▶ videoconvert ─▶ videoscale (add-borders) ─▶ capsfilter (framerate=1/N, I420, PAR 1/1[, W×H])
//!   ─▶ jpegenc ─▶ appsink
//! ```
//!
//! * Go's chain, with an `appsink` instead of `multifilesink`: no temp files, and no bus-thread
//!   work (Go's image sink once deadlocked the bus thread, #1336).
//! * The leaky queue keeps a slow JPEG encode from ever holding back the tee (the file and
//!   segments share it).
//! * `videorate drop-only` only drops frames (never duplicates), so a stalled source yields no
//!   image rather than copies of an old one; the composite keeps producing frames, so images
//!   show what the recording shows.
//! * Width × height only when both are set (`ImageSize::Exact`); `add-borders` keeps the
//!   aspect ratio (letterbox) like Go's `videoscale`.
//! * `videoconvert` is a passthrough when the raw tee is already I420 (the recorders' format).
//! * Each JPEG's capture time: the wall clock of the first image plus the running-time
//!   distance (Go's `getImageTime`), computed on the streaming thread at capture.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::naming::ImageSize;
use crate::outputs::sample_clock::SampleClock;
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;

use super::uploader::ImageSender;

/// Go's `queue max-size-time=200ms leaky=downstream`.
const QUEUE_TIME: Duration = Duration::from_millis(200);
/// Go uses jpegenc's default (85).
const JPEG_QUALITY: i32 = 85;

#[derive(Debug, thiserror::Error)]
#[error("image output: {0}")]
pub struct ImagesGstError(String);

fn err(e: impl std::fmt::Display) -> ImagesGstError {
    ImagesGstError(e.to_string())
}

/// One JPEG, as captured.
#[derive(Debug, Clone)]
pub struct CapturedImage {
    pub data: Bytes,
    /// Running time of the frame.
    pub running_time: Duration,
    /// Wall clock of the frame (names with TIMESTAMP, manifest).
    pub captured_at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct ImagesBranchConfig {
    pub capture_interval: u32,
    pub size: ImageSize,
    /// Element names start with this (`images0`), unique in the pipeline.
    pub element_prefix: String,
}

/// An image branch in the pipeline.
pub struct ImagesBranch {
    queue: gst::Element,
    sink: gst::Element,
}

impl ImagesBranch {
    /// Adds the branch to the pipeline, linked to the raw video tee. JPEGs go to `images`.
    pub fn attach(
        pipeline: &gst::Pipeline,
        raw_video_tee: &gst::Element,
        config: &ImagesBranchConfig,
        images: ImageSender,
    ) -> Result<ImagesBranch, ImagesGstError> {
        let p = &config.element_prefix;
        let queue = make("queue", &format!("{p}_queue"))?;
        queue.set_property("max-size-time", QUEUE_TIME.as_nanos() as u64);
        queue.set_property("max-size-bytes", 0u32);
        queue.set_property("max-size-buffers", 0u32);
        queue.set_property_from_str("leaky", "downstream");
        let rate = make("videorate", &format!("{p}_rate"))?;
        rate.set_property("drop-only", true);
        rate.set_property("skip-to-first", true);
        let convert = make("videoconvert", &format!("{p}_convert"))?;
        let scale = make("videoscale", &format!("{p}_scale"))?;
        scale.set_property("add-borders", true);
        let caps = make("capsfilter", &format!("{p}_caps"))?;
        let mut s = gst::Structure::builder("video/x-raw")
            .field(
                "framerate",
                gst::Fraction::new(1, config.capture_interval.max(1) as i32),
            )
            .field("format", "I420")
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build();
        if let ImageSize::Exact { width, height } = config.size {
            s.set("width", width as i32);
            s.set("height", height as i32);
        }
        caps.set_property("caps", gst::Caps::builder_full().structure(s).build());
        let enc = make("jpegenc", &format!("{p}_jpegenc"))?;
        enc.set_property("quality", JPEG_QUALITY);
        let sink = make("appsink", &format!("{p}_sink"))?;
        sink.set_property("sync", false);
        sink.set_property("async", false);
        sink.set_property("emit-signals", true);

        let chain = [&queue, &rate, &convert, &scale, &caps, &enc, &sink];
        pipeline.add_many(chain).map_err(err)?;
        gst::Element::link_many(chain).map_err(err)?;
        raw_video_tee.link(&queue).map_err(err)?;
        install_callback(&sink, images);
        if pipeline.current_state() > gst::State::Null {
            for e in chain {
                e.sync_state_with_parent().map_err(err)?;
            }
        }
        Ok(ImagesBranch { queue, sink })
    }

    pub fn sink(&self) -> &gst::Element {
        &self.sink
    }

    /// The branch's first element (to unlink it from the tee when removing the output).
    pub fn head(&self) -> &gst::Element {
        &self.queue
    }
}

fn make(factory: &str, name: &str) -> Result<gst::Element, ImagesGstError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| {
            err(format!(
                "could not create {factory} (is its GStreamer plugin installed?)"
            ))
        })
}

/// `appsink` without gstreamer-app: its `new-sample` signal and `pull-sample` action.
fn install_callback(appsink: &gst::Element, images: ImageSender) {
    let clock = Mutex::new(SampleClock::new());
    appsink.connect("new-sample", false, move |args| {
        let ok = (|| {
            let sink = args.first()?.get::<gst::Element>().ok()?;
            let sample = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[])?;
            let buffer = sample.buffer()?;
            let running_time = buffer
                .pts()
                .and_then(|pts| {
                    sample
                        .segment()?
                        .downcast_ref::<gst::ClockTime>()?
                        .to_running_time(pts)
                })
                .map(|t| Duration::from_nanos(t.nseconds()))
                .unwrap_or_default();
            let captured_at = clock
                .lock()
                .ok()?
                .wall_clock(running_time, SystemTime::now());
            let map = buffer.map_readable().ok()?;
            images.offer(CapturedImage {
                data: Bytes::copy_from_slice(map.as_slice()),
                running_time,
                captured_at,
            });
            Some(())
        })();
        // A sample we could not read is skipped; the pipeline goes on.
        if ok.is_none() {
            tracing::warn!("could not take an image sample");
        }
        Some(gst::FlowReturn::Ok.to_value())
    });
}

//! Where outputs attach to a recorder's GStreamer pipeline: the recorder builds its encoders
//! ending in `tee`s and hands them over as [`EncodedStreams`]; each output kind that needs the
//! encoded media (streams, segments) or the raw video (images) adds its own branch. The file
//! output is one such branch too, built by the recorder since it predates the others.
//!
//! The tees are always there, so adding an output kind never changes a recorder's encoders.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;

/// Called with every message of the pipeline's bus; returns whether it was the hook's own.
/// Hooks run on the recorder's bus task and must not block.
pub type BusHook = Arc<dyn Fn(&gst::Message) -> bool + Send + Sync>;

/// A recorder's encoded streams, before the pipeline plays.
#[derive(Clone)]
pub struct EncodedStreams {
    pub pipeline: gst::Pipeline,
    /// `tee` after the video encoder's parser (H.264 for streams and segments).
    pub video: Option<gst::Element>,
    /// `tee` after the audio encoder (and its parser).
    pub audio: Option<gst::Element>,
    /// `tee` of the raw video the encoder takes (images).
    pub raw_video: Option<gst::Element>,
    /// `tee` of the raw (mixed) audio the encoder takes (the websocket's PCM).
    pub raw_audio: Option<gst::Element>,
    /// The video encoder, asked for keyframes.
    pub video_encoder: Option<gst::Element>,
    /// How late one stream may be against the other at a muxer (the pipeline's latency).
    pub latency: Duration,
    bus_hooks: Arc<Mutex<Vec<BusHook>>>,
}

impl EncodedStreams {
    pub fn new(pipeline: gst::Pipeline, latency: Duration) -> EncodedStreams {
        EncodedStreams {
            pipeline,
            video: None,
            audio: None,
            raw_video: None,
            raw_audio: None,
            video_encoder: None,
            latency,
            bus_hooks: Arc::default(),
        }
    }

    /// Registers a hook for the pipeline's bus messages (e.g. splitmuxsink's fragment messages).
    pub fn add_bus_hook(&self, hook: BusHook) {
        if let Ok(mut hooks) = self.bus_hooks.lock() {
            hooks.push(hook);
        }
    }

    /// Offers a bus message to the hooks; `true` when one of them took it.
    pub fn on_bus_message(&self, msg: &gst::Message) -> bool {
        let hooks: Vec<BusHook> = self.bus_hooks.lock().map(|h| h.clone()).unwrap_or_default();
        hooks.iter().any(|h| h(msg))
    }
}

#![allow(dead_code)]
//! Test support shared by the segment and image tests. Real GStreamer pipelines shaped like
//! the recorders' scaffolding:
//! `videotestsrc ─▶ tee raw ─▶ x264enc ─▶ h264parse ─▶ tee video`, `audiotestsrc ─▶ avenc_aac ─▶
//! aacparse ─▶ tee audio`, and stores that keep every object version.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::outputs::store::testing::LocalDirStore;
use crate::outputs::store::{ObjectBody, ObjectMeta, ObjectStore, StoreError, StoredObject};
use crate::outputs::tap::EncodedStreams;
use bytes::Bytes;
use egress_plugin_api::async_trait;
use gstreamer as gst;
use gstreamer::prelude::*;

pub struct Recorder {
    pub pipeline: gst::Pipeline,
    pub raw: Option<gst::Element>,
    pub video: Option<gst::Element>,
    pub audio: Option<gst::Element>,
    pub encoder: Option<gst::Element>,
}

impl Recorder {
    /// The tees as a recorder hands them to outputs.
    pub fn streams(&self) -> EncodedStreams {
        let mut s = EncodedStreams::new(self.pipeline.clone(), Duration::from_millis(200));
        s.video = self.video.clone();
        s.audio = self.audio.clone();
        s.raw_video = self.raw.clone();
        s.video_encoder = self.encoder.clone();
        s
    }
}

/// `seconds` of media; video at `fps` (None: audio only); live sources when `live`;
/// `key_int_max` for x264enc (0: x264's default, 250).
pub fn recorder(
    fps: Option<u32>,
    audio: bool,
    seconds: f64,
    live: bool,
    key_int_max: u32,
) -> Recorder {
    gst::init().unwrap();
    let pipeline = gst::Pipeline::new();
    let bin = |s: &str| {
        gst::parse::bin_from_description(s, true)
            .unwrap()
            .upcast::<gst::Element>()
    };
    let (mut raw, mut video, mut encoder) = (None, None, None);
    if let Some(fps) = fps {
        let frames = (seconds * fps as f64).round() as u32;
        let src = bin(&format!(
            "videotestsrc num-buffers={frames} is-live={live} pattern=smpte ! capsfilter caps=video/x-raw,format=I420,width=320,height=240,framerate={fps}/1"
        ));
        let raw_tee = gst::ElementFactory::make("tee")
            .name("raw_video_tee")
            .build()
            .unwrap();
        let enc = bin(&format!(
            "queue ! x264enc name=venc speed-preset=ultrafast bframes=0 key-int-max={key_int_max} option-string=scenecut=0 ! h264parse"
        ));
        let vt = gst::ElementFactory::make("tee")
            .name("video_tee")
            .build()
            .unwrap();
        pipeline.add_many([&src, &raw_tee, &enc, &vt]).unwrap();
        gst::Element::link_many([&src, &raw_tee, &enc, &vt]).unwrap();
        encoder = enc.downcast_ref::<gst::Bin>().unwrap().by_name("venc");
        raw = Some(raw_tee);
        video = Some(vt);
    }
    let mut audio_tee = None;
    if audio {
        let buffers = (seconds * 48_000.0 / 1024.0).round() as u32;
        let src = bin(&format!(
            "audiotestsrc num-buffers={buffers} samplesperbuffer=1024 is-live={live} wave=sine freq=440 ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse"
        ));
        let at = gst::ElementFactory::make("tee")
            .name("audio_tee")
            .build()
            .unwrap();
        pipeline.add_many([&src, &at]).unwrap();
        src.link(&at).unwrap();
        audio_tee = Some(at);
    }
    // The file output every recording has (here a fakesink), so tees always have a consumer.
    for tee in [&video, &audio_tee].into_iter().flatten() {
        let file = bin("queue ! fakesink sync=false async=false");
        pipeline.add(&file).unwrap();
        tee.link(&file).unwrap();
    }
    Recorder {
        pipeline,
        raw,
        video,
        audio: audio_tee,
        encoder,
    }
}

/// Plays the pipeline to EOS on a blocking thread, giving every message to `on_message`.
pub async fn run_to_eos(
    pipeline: gst::Pipeline,
    on_message: impl Fn(&gst::MessageRef) + Send + 'static,
) -> gst::Pipeline {
    pipeline.set_state(gst::State::Playing).unwrap();
    tokio::task::spawn_blocking(move || {
        let bus = pipeline.bus().unwrap();
        loop {
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(120)) else {
                panic!("pipeline stalled")
            };
            on_message(&msg);
            match msg.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(e) => {
                    panic!("pipeline error: {} ({:?})", e.error(), e.debug())
                }
                _ => {}
            }
        }
        pipeline.set_state(gst::State::Null).unwrap();
        pipeline
    })
    .await
    .unwrap()
}

/// A directory store that also keeps every version of every playlist it was given.
pub struct VersionedStore {
    pub dir: LocalDirStore,
    pub playlist_versions: Mutex<Vec<(String, String)>>,
}

impl VersionedStore {
    pub fn new(root: &Path) -> Arc<VersionedStore> {
        Arc::new(VersionedStore {
            dir: LocalDirStore::new(root),
            playlist_versions: Mutex::new(Vec::new()),
        })
    }

    pub fn versions_of(&self, path: &str) -> Vec<String> {
        self.playlist_versions
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, t)| t.clone())
            .collect()
    }
}

#[async_trait]
impl ObjectStore for VersionedStore {
    async fn put(
        &self,
        path: &str,
        body: ObjectBody,
        meta: &ObjectMeta,
    ) -> Result<StoredObject, StoreError> {
        if path.ends_with(".m3u8")
            && let ObjectBody::Bytes(b) = &body
        {
            self.playlist_versions
                .lock()
                .unwrap()
                .push((path.to_owned(), String::from_utf8_lossy(b).into_owned()));
        }
        self.dir.put(path, body, meta).await
    }
}

/// A store shared behind an `Arc` is a store.
pub struct Shared<S>(pub Arc<S>);

#[async_trait]
impl<S: ObjectStore> ObjectStore for Shared<S> {
    async fn put(
        &self,
        path: &str,
        body: ObjectBody,
        meta: &ObjectMeta,
    ) -> Result<StoredObject, StoreError> {
        self.0.put(path, body, meta).await
    }
}

pub fn bytes_of(path: &Path) -> Bytes {
    Bytes::from(std::fs::read(path).unwrap())
}

/// `ffprobe` a file or playlist; stdout as text.
pub fn ffprobe(args: &[&str], input: &Path) -> String {
    let out = Command::new("ffprobe")
        .arg("-v")
        .arg("error")
        .args(args)
        .arg(input)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {args:?} {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ffmpeg -i <playlist> -c copy -f null -`: the duration it read, in seconds.
pub fn ffmpeg_copy_duration(playlist: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostats",
            "-stats",
            "-allowed_extensions",
            "ALL",
            "-i",
        ])
        .arg(playlist)
        .args(["-c", "copy", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {err}");
    let t = err
        .rsplit("time=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .expect("a time= in ffmpeg's output");
    let parts: Vec<f64> = t.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

/// Whether a TS file has a PAT and the PMT it points to.
pub fn has_pat_and_pmt(ts: &[u8]) -> bool {
    let mut pmt_pid = None;
    for p in ts.chunks_exact(188) {
        if p[0] != 0x47 {
            return false;
        }
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let start = p[1] & 0x40 != 0;
        let payload_at = if p[3] & 0x20 != 0 {
            5 + usize::from(p[4])
        } else {
            4
        };
        if pid == 0 && start && pmt_pid.is_none() {
            // pointer field, then the PAT section: 8 header bytes, then program entries.
            let s = payload_at + 1 + usize::from(p[payload_at]);
            let entry = &p[s + 8..s + 12];
            pmt_pid = Some((u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]));
        } else if Some(pid) == pmt_pid && start {
            return true;
        }
    }
    false
}

pub fn p95(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 * 0.95).ceil() as usize)
        .saturating_sub(1)
        .min(v.len() - 1)]
}

pub fn work_dir(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

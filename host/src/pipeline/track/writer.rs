//! The file writer of a passthrough track, on its own thread: file writes are blocking calls and
//! stay off the async executor. Frames arrive through a bounded channel (a slow disk slows the
//! subscriber, it does not grow memory). The container follows the codec: Opus → Ogg
//! ([`super::ogg`]), VP8 → WebM ([`super::webm`]), H.264 → fragmented MP4 ([`super::mp4`]).

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;

use super::ogg::{OPUS_RATE, OggOpusWriter};
use super::mp4::Mp4H264Writer;
use super::webm::WebmVp8Writer;
use crate::webrtc::{Frame, TrackCodec};

/// Frames in flight between the subscriber and the writer thread (about 5 s of Opus, 8 s of
/// 30 fps video).
const QUEUE: usize = 256;

/// What the writer thread reports at the end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Media time covered by the file.
    pub duration: Duration,
    pub frames: u64,
    /// Frames dropped: late, repeated, before the first keyframe.
    pub dropped: u64,
    /// Audio gaps filled with concealment packets.
    pub filled: Duration,
}

enum Muxer {
    Ogg(OggOpusWriter<BufWriter<File>>),
    WebmVp8(WebmVp8Writer<BufWriter<File>>),
    Mp4H264(Mp4H264Writer<BufWriter<File>>),
}

impl Muxer {
    fn push(&mut self, f: &Frame) -> io::Result<bool> {
        match self {
            Muxer::Ogg(w) => w.push(f.rtp_time, &f.data),
            Muxer::WebmVp8(w) => w.push(f.rtp_time, &f.data, f.keyframe),
            Muxer::Mp4H264(w) => w.push(f.rtp_time, &f.data),
        }
    }

    fn finish(self) -> io::Result<Written> {
        let (written, out) = match self {
            Muxer::Ogg(w) => {
                let written = Written {
                    duration: w.duration(),
                    frames: w.packets,
                    dropped: w.late_packets,
                    filled: Duration::from_nanos(w.filled_samples * 1_000_000_000 / OPUS_RATE),
                };
                (written, Some(w.finish()?))
            }
            Muxer::WebmVp8(w) => {
                let written = Written { duration: w.duration(), frames: w.frames, dropped: w.dropped, filled: Duration::ZERO };
                (written, w.finish()?)
            }
            Muxer::Mp4H264(w) => {
                let written = Written { duration: w.duration(), frames: w.frames, dropped: w.dropped, filled: Duration::ZERO };
                (written, w.finish()?)
            }
        };
        if let Some(out) = out {
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        Ok(written)
    }
}

pub struct TrackFileWriter {
    tx: mpsc::Sender<Frame>,
    thread: std::thread::JoinHandle<io::Result<Written>>,
}

impl TrackFileWriter {
    /// Creates `path` for the track whose first frame is `first` (its codec picks the container;
    /// an Opus TOC says mono or stereo, RFC 6716 §3.1) and starts the writing thread.
    pub fn create(path: &Path, first: &Frame) -> io::Result<TrackFileWriter> {
        let file = BufWriter::new(File::create(path)?);
        let mut muxer = match first.codec {
            TrackCodec::Opus => {
                let channels = if first.data.first().is_some_and(|toc| toc & 0x4 != 0) { 2 } else { 1 };
                Muxer::Ogg(OggOpusWriter::new(file, channels)?)
            }
            TrackCodec::Vp8 => Muxer::WebmVp8(WebmVp8Writer::new(file)),
            TrackCodec::H264 => Muxer::Mp4H264(Mp4H264Writer::new(file)),
            other => return Err(io::Error::other(format!("no muxer for {other:?}"))),
        };
        let (tx, mut rx) = mpsc::channel::<Frame>(QUEUE);
        let thread = std::thread::Builder::new().name("track-writer".into()).spawn(move || {
            while let Some(frame) = rx.blocking_recv() {
                muxer.push(&frame)?;
            }
            muxer.finish()
        })?;
        Ok(TrackFileWriter { tx, thread })
    }

    /// Queues one frame. `false` when the writer thread has stopped (an I/O error, reported by
    /// [`finish`](Self::finish)).
    pub async fn write(&self, frame: Frame) -> bool {
        self.tx.send(frame).await.is_ok()
    }

    /// Writes what is queued, ends the stream and syncs the file.
    pub async fn finish(self) -> io::Result<Written> {
        drop(self.tx);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(io::Error::other)?
            .map_err(|_| io::Error::other("the track writer thread panicked"))?
    }
}

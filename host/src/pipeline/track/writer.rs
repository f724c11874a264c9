//! The file writer of a passthrough track. The container follows the codec: Opus → Ogg
//! ([`super::ogg`]), VP8, VP9 and AV1 → WebM ([`super::webm`]), H.264 and H.265 → fragmented MP4
//! ([`super::mp4`]).
//!
//! Muxing runs on the recording task (a few microseconds of copying per frame); the bytes it
//! produces collect in memory and go to the file in one blocking write on tokio's blocking pool
//! every [`FLUSH_EVERY`] or [`FLUSH_BYTES`], whichever comes first. That is one hand-off per
//! second per track instead of one per frame: with a writer thread per track, waking it for
//! each frame was half of a 100-track handler's CPU (kernel wake-ups, `bench/tracks`). The file
//! trails the media by at most a second, which the live upload and a crash both tolerate.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::mp4::{Mp4Codec, Mp4VideoWriter};
use super::ogg::{OPUS_RATE, OggOpusWriter};
use super::webm::{WebmCodec, WebmWriter};
use crate::webrtc::{Frame, TrackCodec};

/// How often muxed bytes are written to the file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Write sooner when this much is waiting (a high-rate video track).
const FLUSH_BYTES: usize = 512 * 1024;

/// What the writer reports at the end.
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

/// Where the muxers write: memory, drained into the file by [`TrackFileWriter::flush`].
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<Vec<u8>>>);

impl Pending {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Muxer {
    Ogg(OggOpusWriter<Pending>),
    Webm(WebmWriter<Pending>),
    Mp4(Mp4VideoWriter<Pending>),
}

impl Muxer {
    fn push(&mut self, f: &Frame) -> io::Result<bool> {
        match self {
            Muxer::Ogg(w) => w.push(f.rtp_time, &f.data),
            Muxer::Webm(w) => w.push(f.rtp_time, &f.data, f.keyframe),
            Muxer::Mp4(w) => w.push(f.rtp_time, &f.data),
        }
    }

    /// Ends the container (its last bytes land in [`Pending`]).
    fn finish(self) -> io::Result<Written> {
        let written = match self {
            Muxer::Ogg(w) => {
                let written = Written {
                    duration: w.duration(),
                    frames: w.packets,
                    dropped: w.late_packets,
                    filled: Duration::from_nanos(w.filled_samples * 1_000_000_000 / OPUS_RATE),
                };
                w.finish()?;
                written
            }
            Muxer::Webm(w) => {
                let written = Written {
                    duration: w.duration(),
                    frames: w.frames,
                    dropped: w.dropped,
                    filled: Duration::ZERO,
                };
                w.finish()?;
                written
            }
            Muxer::Mp4(w) => {
                let written = Written {
                    duration: w.duration(),
                    frames: w.frames,
                    dropped: w.dropped,
                    filled: Duration::ZERO,
                };
                w.finish()?;
                written
            }
        };
        Ok(written)
    }
}

pub struct TrackFileWriter {
    muxer: Muxer,
    pending: Pending,
    /// The file; `None` while a write is in flight on the blocking pool (or after it failed).
    file: Option<File>,
    last_flush: Instant,
    /// The first error: the writer stops taking frames and `finish` reports it.
    error: Option<io::Error>,
}

impl TrackFileWriter {
    /// Creates `path` for the track whose first frame is `first` (its codec picks the container;
    /// an Opus TOC says mono or stereo, RFC 6716 §3.1).
    pub fn create(path: &Path, first: &Frame) -> io::Result<TrackFileWriter> {
        let file = File::create(path)?;
        let pending = Pending::default();
        let out = pending.clone();
        let muxer = match first.codec {
            TrackCodec::Opus => {
                let channels = if first.data.first().is_some_and(|toc| toc & 0x4 != 0) {
                    2
                } else {
                    1
                };
                Muxer::Ogg(OggOpusWriter::new(out, channels)?)
            }
            TrackCodec::Vp8 => Muxer::Webm(WebmWriter::new(out, WebmCodec::Vp8)),
            TrackCodec::Vp9 => Muxer::Webm(WebmWriter::new(out, WebmCodec::Vp9)),
            TrackCodec::Av1 => Muxer::Webm(WebmWriter::new(out, WebmCodec::Av1)),
            TrackCodec::H264 => Muxer::Mp4(Mp4VideoWriter::new(out, Mp4Codec::H264)),
            TrackCodec::H265 => Muxer::Mp4(Mp4VideoWriter::new(out, Mp4Codec::H265)),
        };
        Ok(TrackFileWriter {
            muxer,
            pending,
            file: Some(file),
            last_flush: Instant::now(),
            error: None,
        })
    }

    /// Muxes one frame, and writes what has collected when it is time. `false` once writing
    /// has failed (the error comes out of [`finish`](Self::finish)).
    pub async fn write(&mut self, frame: Frame) -> bool {
        if self.error.is_some() {
            return false;
        }
        if let Err(e) = self.muxer.push(&frame) {
            self.error = Some(e);
            return false;
        }
        if self.last_flush.elapsed() >= FLUSH_EVERY || self.pending.len() >= FLUSH_BYTES {
            self.last_flush = Instant::now();
            if let Err(e) = write_out(&mut self.file, &self.pending, false).await {
                self.error = Some(e);
                return false;
            }
        }
        true
    }

    /// Ends the container, writes the rest and syncs the file.
    pub async fn finish(self) -> io::Result<Written> {
        let TrackFileWriter {
            muxer,
            pending,
            mut file,
            error,
            ..
        } = self;
        if let Some(e) = error {
            // Keep what was muxed before the error: it is still a playable prefix.
            let _ = write_out(&mut file, &pending, true).await;
            return Err(e);
        }
        let written = muxer.finish();
        write_out(&mut file, &pending, true).await?;
        written
    }
}

/// Writes the collected bytes to the file (and syncs it when `sync`) on the blocking pool.
async fn write_out(file: &mut Option<File>, pending: &Pending, sync: bool) -> io::Result<()> {
    let bytes = pending.take();
    if bytes.is_empty() && !sync {
        return Ok(());
    }
    let mut f = file
        .take()
        .ok_or_else(|| io::Error::other("an earlier write to the track file failed"))?;
    let f = tokio::task::spawn_blocking(move || {
        f.write_all(&bytes)?;
        if sync {
            f.sync_all()?;
        }
        Ok::<_, io::Error>(f)
    })
    .await
    .map_err(io::Error::other)??;
    *file = Some(f);
    Ok(())
}

//! Track egress (`TrackEgressRequest`) to a file, without transcoding: the recorder joins the
//! room over WebRTC ([`crate::webrtc`]), subscribes to the one track, and writes its packets
//! into the codec's container: Opus → Ogg, VP8 → WebM, H.264 → fragmented MP4 (VP9 → WebM
//! is still to come). The file goes to storage exactly as a web recording's does: a
//! [`LiveUpload`] tails it while it grows, then the manifest.
//!
//! ```text
//! STARTING ──track found, first packet──▶ ACTIVE ──stop / track unpublished / publisher left / room closed──▶ ENDING ──file delivered──▶ COMPLETE
//!    │ track not published in 30 s ─▶ FAILED "track <id> not found"      │ kill ─▶ FAILED (partial file delivered)
//!    │ stop before the first packet ─▶ ABORTED                            │ session limit ─▶ LIMIT_REACHED
//! ```
//!
//! Modules: [`config`] (request → settings, file naming), [`ogg`] (Opus → Ogg pages),
//! [`webm`] (VP8 → WebM), [`mp4`] (H.264 → fragmented MP4), [`writer`] (the file-writing
//! thread).

pub mod config;
pub mod mp4;
pub mod ogg;
pub mod webm;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use egress_proto::livekit::{EgressInfo, EgressStatus};

use super::controller::{InfoExt, deprecated_file_result, now_nanos};
use super::file_output::FileOutput;
use super::manifest::{Manifest, ManifestFile};
use super::outputs::DeliveryPlan;
use super::{Job, PipelineError, StopRequest};
use crate::egress::errors;
use crate::rpc::{Code, RpcError};
use crate::storage;
use crate::webrtc::{self, EndReason, SourceEvent, SubscribeParams, TrackCodec};
use config::{TrackConfig, TrackContainer, codec_supported};
use writer::TrackFileWriter;

// Texts from LiveKit's protocol and the Go egress.
const MSG_STOPPED_BEFORE_STARTED: &str = "Stop called before pipeline could start";
const MSG_LIMIT_BEFORE_START: &str = "Session limit reached before start signal";
const END_REASON_SOURCE_CLOSED: &str = "Source closed";
const END_REASON_LIMIT: &str = "Session limit reached";

/// Frames buffered between the subscriber task and the recording loop.
const EVENT_QUEUE: usize = 256;

/// Runs a track egress to its end and returns the final info.
pub async fn run(job: Job, updates: mpsc::UnboundedSender<EgressInfo>, stop: watch::Receiver<Option<StopRequest>>) -> EgressInfo {
    let mut info = job.info;
    let cfg = match TrackConfig::new(&job.config, &job.request, &info.room_name, SystemTime::now()) {
        Ok(c) => c,
        Err(e) => {
            info.set_failed(&PipelineError::Request(e));
            return info;
        }
    };
    tracing::info!(egress_id = %cfg.egress_id, room = %cfg.room_name, track_id = %cfg.track_id, "starting track egress");
    let recording = TrackRecording {
        service: job.config,
        plugins: job.plugins,
        request: job.request,
        cfg,
        info,
        file: None,
        work_dir: job.work_dir,
        codec: None,
        updates,
        stop,
        seen_stop: None,
        started_at: 0,
    };
    recording.run().await
}

/// The open output: where it is written and by whom.
struct Output {
    writer: TrackFileWriter,
}

struct TrackRecording {
    service: Arc<crate::config::ServiceConfig>,
    plugins: Arc<crate::plugins::PluginRegistry>,
    request: egress_proto::rpc::StartEgressRequest,
    cfg: TrackConfig,
    info: EgressInfo,
    /// The file output, once the track (and so the codec and file name) is known.
    file: Option<FileOutput>,
    work_dir: PathBuf,
    /// The track's codec, once found.
    codec: Option<TrackCodec>,
    updates: mpsc::UnboundedSender<EgressInfo>,
    stop: watch::Receiver<Option<StopRequest>>,
    seen_stop: Option<StopRequest>,
    started_at: i64,
}

/// Something the recording reacts to.
enum Event {
    Stop(StopRequest),
    Source(Option<SourceEvent>),
    Limit,
}

/// How the recording loop ended.
enum Outcome {
    /// The source or a stop ended it; deliver what was written.
    Ended,
    /// It failed; deliver what was written, then report the error.
    Failed(PipelineError),
}

impl TrackRecording {
    fn local_path(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|f| f.local_path().to_path_buf())
    }

    fn send_update(&mut self) {
        self.sync_results();
        let _ = self.updates.send(self.info.clone());
    }

    fn sync_results(&mut self) {
        let Some(file) = &self.file else { return };
        self.info.file_results = vec![file.info.clone()];
        self.info.result = deprecated_file_result(&file.info);
    }

    fn write_plan(&self) {
        let Some(file) = &self.file else { return };
        let plan = DeliveryPlan { egress_id: self.cfg.egress_id.clone(), files: vec![file.planned()] };
        if let Err(e) = plan.write(&self.work_dir) {
            tracing::warn!(error = %e, "could not write the delivery plan; a crash would lose the partial file");
        }
    }

    async fn next_event(&mut self, source: &mut mpsc::Receiver<SourceEvent>, limit_at: Option<Instant>) -> Event {
        let seen = self.seen_stop.clone();
        tokio::select! {
            req = next_stop(&mut self.stop, &seen) => {
                self.seen_stop = Some(req.clone());
                Event::Stop(req)
            }
            ev = source.recv() => Event::Source(ev),
            _ = sleep_until(limit_at) => Event::Limit,
        }
    }

    async fn run(mut self) -> EgressInfo {
        let (tx, mut source) = mpsc::channel(EVENT_QUEUE);
        let (stop_source, stop_rx) = watch::channel(false);
        let params = SubscribeParams {
            ws_url: self.cfg.ws_url.clone(),
            token: self.cfg.token.clone(),
            track_sid: self.cfg.track_id.clone(),
            await_track: webrtc::subscriber::TRACK_AWAIT,
        };
        let subscriber = tokio::spawn(async move { webrtc::subscriber::run(params, tx, stop_rx).await });
        let limit_at = (!self.cfg.max_duration.is_zero()).then(|| Instant::now() + self.cfg.max_duration);
        let mut output = None;
        let outcome = self.record(&mut source, &mut output, limit_at).await;
        let _ = stop_source.send(true);
        drop(source);
        // The subscriber leaves the room; its join error (if it never joined) is the failure.
        let join_error = match subscriber.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("subscriber task: {e}")),
        };
        let outcome = match (outcome, join_error) {
            (Outcome::Ended, Some(e)) if self.started_at == 0 && !self.info.status_is(EgressStatus::EgressAborted) => {
                Outcome::Failed(PipelineError::Request(RpcError::new(Code::Unavailable, e)))
            }
            (o, _) => o,
        };
        let media = match output.take() {
            Some(o) => match o.writer.finish().await {
                Ok(w) => {
                    tracing::info!(duration = ?w.duration, frames = w.frames, dropped = w.dropped, filled = ?w.filled,
                        "track file written");
                    Some(w.duration)
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing the track file failed");
                    if !self.info.status_is(EgressStatus::EgressFailed) {
                        self.info.set_failed(&PipelineError::Gst(format!("writing the track file failed: {e}")));
                    }
                    None
                }
            },
            None => None,
        };
        if let Outcome::Failed(e) = outcome
            && !self.info.status_is(EgressStatus::EgressFailed)
        {
            self.info.set_failed(&e);
        }
        self.finish(media).await
    }

    /// Drives the recording until the source ends, a stop arrives or the limit is reached.
    async fn record(&mut self, source: &mut mpsc::Receiver<SourceEvent>, output: &mut Option<Output>, limit_at: Option<Instant>) -> Outcome {
        loop {
            let event = self.next_event(source, limit_at).await;
            let active = self.started_at > 0;
            match event {
                Event::Stop(StopRequest::Graceful { reason }) => {
                    if active {
                        self.end(&reason);
                    } else {
                        self.info.set_end_reason(&reason);
                        self.info.set_aborted(MSG_STOPPED_BEFORE_STARTED);
                    }
                    return Outcome::Ended;
                }
                Event::Stop(StopRequest::Kill { error }) => return Outcome::Failed(PipelineError::Killed(error)),
                Event::Limit => {
                    self.info.set_end_reason(END_REASON_LIMIT);
                    if active {
                        tracing::info!("session limit reached");
                        self.info.set_limit_reached();
                    } else {
                        self.info.set_aborted(MSG_LIMIT_BEFORE_START);
                    }
                    return Outcome::Ended;
                }
                Event::Source(None) => return Outcome::Ended,
                Event::Source(Some(SourceEvent::TrackFound { info, publisher_identity })) => {
                    if let Err(e) = self.open(&info, &publisher_identity) {
                        return Outcome::Failed(e);
                    }
                }
                Event::Source(Some(SourceEvent::Frame(frame))) => {
                    if Some(frame.codec) != self.codec {
                        continue;
                    }
                    if output.is_none() {
                        // Video starts at a keyframe (the subscriber asks for one); ACTIVE
                        // means the file has something playable.
                        if frame.codec != TrackCodec::Opus && !frame.keyframe {
                            continue;
                        }
                        match self.create_writer(&frame) {
                            Ok(Some(o)) => *output = Some(o),
                            Ok(None) => continue,
                            Err(e) => return Outcome::Failed(e),
                        }
                    }
                    let Some(out) = output.as_ref() else { continue };
                    if !active {
                        self.activate();
                    }
                    if !out.writer.write(frame).await {
                        // The writer's error comes out of `finish`.
                        return Outcome::Ended;
                    }
                }
                Event::Source(Some(SourceEvent::Ended(reason))) => {
                    return match reason {
                        EndReason::TrackNotFound if output.is_none() => Outcome::Failed(PipelineError::Request(RpcError::new(
                            Code::NotFound,
                            format!("track {} not found", self.cfg.track_id),
                        ))),
                        reason => {
                            tracing::info!(?reason, "track source ended");
                            if active {
                                self.end(END_REASON_SOURCE_CLOSED);
                            } else {
                                self.info.set_end_reason(END_REASON_SOURCE_CLOSED);
                                self.info.set_aborted(MSG_STOPPED_BEFORE_STARTED);
                            }
                            Outcome::Ended
                        }
                    };
                }
            }
        }
    }

    /// The track is known: name the file after it and its codec, and resolve the storage.
    fn open(&mut self, track: &egress_proto::livekit::TrackInfo, publisher: &str) -> Result<(), PipelineError> {
        let codec = TrackCodec::from_mime(&track.mime_type).filter(|c| codec_supported(*c)).ok_or_else(|| {
            PipelineError::Request(errors::not_supported(&format!("track egress of {}", track.mime_type)))
        })?;
        let container = TrackContainer::for_codec(codec);
        let kind = egress_proto::livekit::TrackType::try_from(track.r#type).map(|t| t.as_str_name()).unwrap_or("");
        let source = egress_proto::livekit::TrackSource::try_from(track.source).map(|s| s.as_str_name()).unwrap_or("");
        let storage_path = self.cfg.storage_path(container, kind, source, publisher);
        let targets = storage::target::for_file_output(&self.service, &self.request);
        let dests = storage::destinations(&targets, &self.plugins, &storage_path)
            .map_err(|e| PipelineError::Upload { location: targets.primary.provider.label(), reason: e.to_string() })?;
        tracing::info!(file = %storage_path, storage = dests.primary.label, key = %dests.primary.key, mime = %track.mime_type,
            "track found; recording to file");
        let local_name = storage_path.rsplit('/').next().unwrap_or(&storage_path).to_owned();
        self.codec = Some(codec);
        self.file = Some(FileOutput::new(self.work_dir.join(local_name), storage_path, dests));
        self.sync_results();
        Ok(())
    }

    /// Creates the file at the first frame (an Opus header needs the first packet's channel
    /// count). `None` before the track is known.
    fn create_writer(&self, first: &webrtc::Frame) -> Result<Option<Output>, PipelineError> {
        let Some(local) = self.local_path() else { return Ok(None) };
        let writer = TrackFileWriter::create(&local, first)
            .map_err(|e| PipelineError::Gst(format!("cannot create {}: {e}", local.display())))?;
        Ok(Some(Output { writer }))
    }

    /// The first packet: ACTIVE, and the upload starts following the file.
    fn activate(&mut self) {
        self.started_at = now_nanos();
        if let Some(file) = self.file.as_mut() {
            file.start(self.started_at);
        }
        self.info.set_status(EgressStatus::EgressActive);
        tracing::info!("recording active");
        self.send_update();
        self.write_plan();
    }

    /// A graceful end: ENDING is reported at once, as Go does.
    fn end(&mut self, reason: &str) {
        tracing::info!(reason, "stopping recording");
        self.info.set_end_reason(reason);
        self.info.set_status(EgressStatus::EgressEnding);
        self.send_update();
    }

    /// Delivers the file (also a partial one after a failure), writes the manifest and settles
    /// the final status.
    async fn finish(mut self, media: Option<Duration>) -> EgressInfo {
        DeliveryPlan::remove(&self.work_dir);
        if let Some(file) = self.file.as_mut() {
            if self.started_at > 0 {
                let ended_at = match media {
                    Some(d) => self.started_at + d.as_nanos() as i64,
                    None => now_nanos(),
                };
                if let Err(e) = file.deliver(ended_at).await {
                    tracing::error!(error = %e, "file delivery failed");
                    if !self.info.status_is(EgressStatus::EgressFailed) {
                        self.info.set_failed(&e);
                    }
                }
                self.info.backup_storage_used = file.backup_used;
            } else {
                file.discard();
            }
        }
        if self.info.status_is(EgressStatus::EgressActive) || self.info.status_is(EgressStatus::EgressEnding) {
            self.info.set_complete();
        }
        let location = self.file.as_ref().map(|f| f.info.location.clone()).unwrap_or_default();
        if !self.cfg.disable_manifest
            && !location.is_empty()
            && (self.info.status_is(EgressStatus::EgressComplete) || self.info.status_is(EgressStatus::EgressLimitReached))
        {
            self.write_manifest().await;
        }
        if self.info.ended_at == 0 {
            self.info.ended_at = now_nanos();
        }
        self.sync_results();
        tracing::info!(status = ?EgressStatus::try_from(self.info.status).ok(), error = %self.info.error,
            details = %self.info.details, location = %location, "egress finished");
        self.info
    }

    async fn write_manifest(&mut self) {
        let Some(file) = &self.file else { return };
        let manifest = Manifest {
            egress_id: self.cfg.egress_id.clone(),
            room_id: self.cfg.room_id.clone(),
            room_name: self.cfg.room_name.clone(),
            url: String::new(),
            started_at: self.info.started_at,
            ended_at: self.info.ended_at,
            files: vec![ManifestFile { filename: file.info.filename.clone(), location: file.info.location.clone() }],
        };
        if let Some(location) = file.store_manifest(&manifest, &self.work_dir).await {
            self.info.manifest_location = location;
        }
    }
}

/// The next stop request not yet handled.
async fn next_stop(rx: &mut watch::Receiver<Option<StopRequest>>, seen: &Option<StopRequest>) -> StopRequest {
    loop {
        if let Some(req) = rx.borrow_and_update().clone()
            && Some(&req) != seen.as_ref()
        {
            return req;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! Track egress (`TrackEgressRequest`) to a file, without transcoding: the recorder joins the
//! room over WebRTC ([`crate::webrtc`]), subscribes to the one track, and writes its packets
//! into the codec's container: Opus → Ogg, VP8 → WebM, H.264 → fragmented MP4 (VP9 → WebM
//! is still to come). The file goes to storage exactly as a web recording's does: a
//! [`LiveUpload`] tails it while it grows, then the manifest.
//!
//! With a `websocket_url` instead of a file, an audio track is decoded to PCM and sent to that
//! websocket ([`websocket`]); the output is reported as a `stream_results` entry, as Go does
//! (ACTIVE from the start, FINISHED or FAILED at the end), and a video track fails with Go's
//! `format websocket incompatible with codec video/…` once the track is found.
//!
//! ```text
//! STARTING ──track found, first packet──▶ ACTIVE ──stop / track unpublished / publisher left / room closed──▶ ENDING ──file delivered──▶ COMPLETE
//!    │ track not published in 30 s ─▶ FAILED "track <id> not found"      │ kill ─▶ FAILED (partial file delivered)
//!    │ stop before the first packet ─▶ ABORTED                            │ session limit ─▶ LIMIT_REACHED
//! ```
//!
//! Modules: [`config`] (request → settings, file naming), [`ogg`] (Opus → Ogg pages),
//! [`webm`] (VP8, VP9, AV1 → WebM; [`av1`] reads the sequence header), [`mp4`] (H.264, H.265 →
//! fragmented MP4; [`hevc`] reads the SPS), [`bits`] (their bit reader), [`layer`] (which
//! keyframe starts the file: a simulcast track's top layer), [`writer`] (muxed bytes to the
//! file once a second), [`pcm`] (Opus → PCM) and [`websocket`] (the websocket output).

pub mod av1;
pub mod bits;
pub mod config;
pub mod hevc;
pub mod layer;
pub mod mp4;
pub mod ogg;
pub mod pcm;
pub mod webm;
pub mod websocket;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use egress_proto::livekit::{EgressInfo, EgressStatus, StreamInfo, StreamInfoList, egress_info, stream_info};

use crate::core::status::{
    END_REASON_LIMIT, END_REASON_SOURCE_CLOSED, InfoExt, MSG_LIMIT_BEFORE_START, MSG_STOPPED_BEFORE_STARTED,
    deprecated_file_result, now_nanos,
};
use crate::pipeline::file_output::FileOutput;
use crate::pipeline::lifecycle::{self, ManifestSource, StopRequests, sleep_until};
use crate::storage::local::DeliveryPlan;
use crate::core::PipelineError;
use crate::pipeline::job::{Job, StopRequest};
use crate::core::errors;
use crate::rpc::{Code, RpcError};
use crate::storage;
use crate::webrtc::{self, EndReason, SourceEvent, SubscribeParams, TrackCodec};
use config::{TrackConfig, TrackContainer, codec_supported};
use websocket::WebsocketOutput;
use writer::TrackFileWriter;

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
    tracing::info!(egress_id = %cfg.egress_id, room = %cfg.room_name, track_id = %cfg.track_id,
        websocket = cfg.websocket_url().is_some(), "starting track egress");
    // Go lists a websocket output as an ACTIVE stream from the start (`AddStream`).
    let stream = cfg.websocket_url().map(|url| StreamInfo {
        url: url.to_owned(),
        started_at: now_nanos(),
        status: stream_info::Status::Active as i32,
        ..Default::default()
    });
    let recording = TrackRecording {
        service: job.config,
        plugins: job.plugins,
        request: job.request,
        cfg,
        info,
        file: None,
        stream,
        work_dir: job.work_dir,
        codec: None,
        first_keyframe: layer::FirstKeyframe::default(),
        updates,
        stops: StopRequests::new(stop),
        started_at: 0,
    };
    recording.run().await
}

/// The open output: a file being written, or a websocket receiving PCM.
enum Output {
    File(TrackFileWriter),
    Websocket(WebsocketOutput),
}

impl Output {
    /// Queues one frame; `false` once the output has stopped (its error comes at the end).
    async fn write(&mut self, frame: webrtc::Frame) -> bool {
        match self {
            Output::File(w) => w.write(frame).await,
            Output::Websocket(ws) => ws.write(frame).await,
        }
    }
}

struct TrackRecording {
    service: Arc<crate::config::ServiceConfig>,
    plugins: Arc<crate::plugins::PluginRegistry>,
    request: egress_proto::rpc::StartEgressRequest,
    cfg: TrackConfig,
    info: EgressInfo,
    /// The file output, once the track (and so the codec and file name) is known.
    file: Option<FileOutput>,
    /// The websocket output's entry in `stream_results`.
    stream: Option<StreamInfo>,
    work_dir: PathBuf,
    /// The track's codec, once found.
    codec: Option<TrackCodec>,
    /// Which keyframe starts the file (a simulcast track's top layer).
    first_keyframe: layer::FirstKeyframe,
    updates: mpsc::UnboundedSender<EgressInfo>,
    stops: StopRequests,
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

    #[allow(deprecated)]
    fn sync_results(&mut self) {
        if let Some(stream) = &self.stream {
            self.info.stream_results = vec![stream.clone()];
            // The deprecated single result, still filled for older clients, as Go does.
            self.info.result = Some(egress_info::Result::Stream(StreamInfoList { info: vec![stream.clone()] }));
        }
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
        tokio::select! {
            req = self.stops.next() => Event::Stop(req),
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
        let join_error = lifecycle::subscriber_error(subscriber).await;
        let outcome = match (outcome, join_error) {
            (Outcome::Ended, Some(e)) if self.started_at == 0 && !self.info.status_is(EgressStatus::EgressAborted) => {
                Outcome::Failed(PipelineError::Request(RpcError::new(Code::Unavailable, e)))
            }
            (o, _) => o,
        };
        let media = match output.take() {
            Some(Output::Websocket(ws)) => {
                let sent = ws.finish().await;
                tracing::info!(bytes = sent.bytes, messages = sent.messages, packets = sent.pcm.packets, late = sent.pcm.late,
                    filled = ?std::time::Duration::from_nanos(sent.pcm.filled * 1_000_000_000 / pcm::SAMPLE_RATE),
                    duration = ?sent.pcm.duration(), "websocket output finished");
                if let Some(e) = sent.error {
                    self.stream_failed(&e.to_string());
                    if !self.info.status_is(EgressStatus::EgressFailed) {
                        // Go: a failed write is a destination error, Unavailable.
                        let code = if matches!(e, websocket::WebsocketError::Decode(_)) { Code::Internal } else { Code::Unavailable };
                        self.info.set_failed(&PipelineError::Request(RpcError::new(code, e.to_string())));
                    }
                }
                Some(sent.pcm.duration())
            }
            Some(Output::File(writer)) => match writer.finish().await {
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
                    self.first_keyframe = layer::FirstKeyframe::new(&info);
                    let opened = match self.cfg.websocket_url().map(str::to_owned) {
                        Some(url) => self.open_websocket(&info, &url).await.map(|ws| *output = Some(Output::Websocket(ws))),
                        None => self.open(&info, &publisher_identity),
                    };
                    if let Err(e) = opened {
                        self.stream_failed(&e.to_string());
                        return Outcome::Failed(e);
                    }
                }
                Event::Source(Some(SourceEvent::Muted(muted))) => {
                    tracing::info!(muted, "track mute changed");
                    if let Some(Output::Websocket(ws)) = output.as_ref() {
                        ws.muted(muted).await;
                    }
                }
                Event::Source(Some(SourceEvent::Frame(frame))) => {
                    if Some(frame.codec) != self.codec {
                        continue;
                    }
                    if output.is_none() {
                        // Video starts at a keyframe (the subscriber asks for one); ACTIVE
                        // means the file has something playable.
                        if frame.codec != TrackCodec::Opus
                            && (!frame.keyframe || !self.first_keyframe.accept(frame.codec, &frame.data, Instant::now()))
                        {
                            continue;
                        }
                        match self.create_writer(&frame) {
                            Ok(Some(o)) => *output = Some(o),
                            Ok(None) => continue,
                            Err(e) => return Outcome::Failed(e),
                        }
                    }
                    let Some(out) = output.as_mut() else { continue };
                    if !active {
                        self.activate();
                    }
                    if !out.write(frame).await {
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
        Ok(Some(Output::File(writer)))
    }

    /// The track is known and goes to a websocket: only audio can (Go's `validateSubscription`),
    /// and the receiver is dialled now, as Go builds its websocket sink once the track is in.
    async fn open_websocket(&mut self, track: &egress_proto::livekit::TrackInfo, url: &str) -> Result<WebsocketOutput, PipelineError> {
        let mime = track.mime_type.to_ascii_lowercase();
        let is_video = track.r#type == egress_proto::livekit::TrackType::Video as i32 || mime.starts_with("video/");
        if is_video {
            return Err(PipelineError::Request(RpcError::new(Code::InvalidArgument, format!("format websocket incompatible with codec {mime}"))));
        }
        let codec = TrackCodec::from_mime(&track.mime_type).filter(|c| *c == TrackCodec::Opus).ok_or_else(|| {
            PipelineError::Request(errors::not_supported(&format!("track egress of {}", track.mime_type)))
        })?;
        tracing::info!(mime = %track.mime_type, "track found; sending PCM to the websocket");
        let ws = WebsocketOutput::connect(url)
            .await
            // Go: a dial error is `psrpc.InvalidArgument` with the dialer's text.
            .map_err(|e| PipelineError::Request(RpcError::new(Code::InvalidArgument, e.to_string())))?;
        self.codec = Some(codec);
        Ok(ws)
    }

    /// Marks the websocket stream FAILED with `error` (a no-op for a file output).
    fn stream_failed(&mut self, error: &str) {
        if let Some(stream) = self.stream.as_mut() {
            stream.status = stream_info::Status::Failed as i32;
            stream.error = error.to_owned();
        }
    }

    /// The first packet: ACTIVE, and the upload starts following the file.
    fn activate(&mut self) {
        self.started_at = now_nanos();
        if let Some(file) = self.file.as_mut() {
            file.start(self.started_at);
        }
        // Go's `updateStartTime`: the stream starts with the media.
        if let Some(stream) = self.stream.as_mut() {
            stream.started_at = self.started_at;
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
            lifecycle::deliver_file(&mut self.info, file, self.started_at, media).await;
        }
        if let Some(stream) = self.stream.as_mut() {
            // Go's `UpdateEndTime`: FINISHED unless it failed; the span is the media sent.
            let ended_at = lifecycle::media_ended_at(self.started_at, media);
            if stream.status != stream_info::Status::Failed as i32 {
                stream.status = stream_info::Status::Finished as i32;
            }
            stream.ended_at = ended_at;
            if self.started_at > 0 {
                stream.duration = ended_at - stream.started_at;
            } else {
                stream.started_at = ended_at;
            }
        }
        let manifest = ManifestSource {
            egress_id: &self.cfg.egress_id,
            room_id: &self.cfg.room_id,
            room_name: &self.cfg.room_name,
            url: "",
            disabled: self.cfg.disable_manifest,
        };
        lifecycle::settle(&mut self.info, self.file.as_ref(), manifest, &self.work_dir).await;
        self.sync_results();
        self.info
    }
}


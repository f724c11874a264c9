//! Track egress (`TrackEgressRequest`) to a file, without transcoding: the recorder joins the
//! room over WebRTC ([`crate::webrtc`]), subscribes to the one track, and writes its packets
//! into the codec's container: Opus → Ogg, VP8 → WebM, H.264 → fragmented MP4 (VP9 → WebM
//! is still to come). The file goes to storage exactly as a web recording's does: a
//! [`LiveUpload`] tails it while it grows, then the manifest.
//!
//! With a `websocket_url` instead of a file, an audio track is decoded to PCM and sent to that
//! websocket (`crate::outputs::websocket`); the output is reported as a `stream_results` entry, as Go does
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
//! file once a second). The recording loop is the one every WebRTC recorder shares
//! (`super::lifecycle::record`); the outputs (file, websocket) are `crate::outputs`'s.

pub mod av1;
pub mod bits;
pub mod config;
pub mod hevc;
pub mod layer;
pub mod mp4;
pub mod ogg;
pub mod webm;
pub mod writer;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use egress_proto::livekit::{EgressInfo, StreamInfo, stream_info};
use egress_proto::rpc::StartEgressRequest;

use crate::config::ServiceConfig;
use crate::core::PipelineError;
use crate::core::errors;
use crate::core::status::{END_REASON_SOURCE_CLOSED, InfoExt, now_nanos};
use crate::outputs::websocket::{self, WebsocketOutput};
use crate::outputs::{FileOutput, OutputSet, pcm};
use crate::pipeline::job::{Job, StopRequest};
use crate::pipeline::lifecycle::{self, Flow, ManifestSource, Recorder, Session, Subscription};
use crate::plugins::PluginRegistry;
use crate::rpc::{Code, RpcError};
use crate::webrtc::{self, EndReason, SourceEvent, SubscribeParams, TrackCodec, WebrtcError};
use config::{TrackConfig, TrackContainer, codec_supported};
use writer::TrackFileWriter;

/// Frames buffered between the subscriber task and the recording loop.
const EVENT_QUEUE: usize = 256;

/// Runs a track egress to its end and returns the final info.
pub async fn run(
    job: Job,
    updates: mpsc::UnboundedSender<EgressInfo>,
    stop: watch::Receiver<Option<StopRequest>>,
) -> EgressInfo {
    let mut info = job.info;
    let cfg = match TrackConfig::new(
        &job.config,
        &job.request,
        &info.room_name,
        SystemTime::now(),
    ) {
        Ok(c) => c,
        Err(e) => {
            info.set_failed(&PipelineError::Request(e));
            return info;
        }
    };
    tracing::info!(egress_id = %cfg.egress_id, room = %cfg.room_name, track_id = %cfg.track_id,
        websocket = cfg.websocket_url().is_some(), "starting track egress");
    let mut outputs = OutputSet::default();
    // Go lists a websocket output as an ACTIVE stream from the start (`AddStream`).
    if let Some(url) = cfg.websocket_url() {
        outputs.streams.push(StreamInfo {
            url: url.to_owned(),
            started_at: now_nanos(),
            status: stream_info::Status::Active as i32,
            ..Default::default()
        });
    }
    let manifest = ManifestSource {
        egress_id: cfg.egress_id.clone(),
        room_id: cfg.room_id.clone(),
        room_name: cfg.room_name.clone(),
        url: String::new(),
        disabled: cfg.disable_manifest,
    };
    let session = Session::new(
        info,
        outputs,
        manifest,
        job.work_dir,
        updates,
        stop,
        cfg.max_duration,
    );
    let params = SubscribeParams {
        ws_url: cfg.ws_url.clone(),
        token: cfg.token.clone(),
        track_sid: cfg.track_id.clone(),
        await_track: webrtc::subscriber::TRACK_AWAIT,
    };
    let source = Subscription::spawn(EVENT_QUEUE, |tx, stop| {
        webrtc::subscriber::run(params, tx, stop)
    });
    let recorder = TrackRecorder {
        service: job.config,
        plugins: job.plugins,
        request: job.request,
        cfg,
        source,
        output: None,
        codec: None,
        first_keyframe: layer::FirstKeyframe::default(),
    };
    lifecycle::record(session, recorder).await
}

/// The open output: a file being written, or a websocket receiving PCM.
enum MediaOut {
    File(TrackFileWriter),
    Websocket(WebsocketOutput),
}

impl MediaOut {
    /// Queues one frame; `false` once the output has stopped (its error comes at the end).
    async fn write(&mut self, frame: webrtc::Frame) -> bool {
        match self {
            MediaOut::File(w) => w.write(frame).await,
            MediaOut::Websocket(ws) => ws.write(frame).await,
        }
    }
}

struct TrackRecorder {
    service: Arc<ServiceConfig>,
    plugins: Arc<PluginRegistry>,
    request: StartEgressRequest,
    cfg: TrackConfig,
    /// The track's subscriber and its events.
    source: Subscription<SourceEvent, WebrtcError>,
    /// The media's way out, once the track (and its first frame) is in.
    output: Option<MediaOut>,
    /// The track's codec, once found.
    codec: Option<TrackCodec>,
    /// Which keyframe starts the file (a simulcast track's top layer).
    first_keyframe: layer::FirstKeyframe,
}

impl Recorder for TrackRecorder {
    type Event = Option<SourceEvent>;

    async fn next_event(&mut self) -> Option<SourceEvent> {
        self.source.recv().await
    }

    async fn on_event(&mut self, session: &mut Session, event: Option<SourceEvent>) -> Flow {
        let active = session.is_active();
        match event {
            None => Flow::Ended,
            Some(SourceEvent::TrackFound {
                info,
                publisher_identity,
            }) => {
                self.first_keyframe = layer::FirstKeyframe::new(&info);
                let opened = match self.cfg.websocket_url().map(str::to_owned) {
                    Some(url) => self
                        .open_websocket(&info, &url)
                        .await
                        .map(|ws| self.output = Some(MediaOut::Websocket(ws))),
                    None => self.open(session, &info, &publisher_identity),
                };
                match opened {
                    Ok(()) => Flow::Continue,
                    Err(e) => {
                        session.outputs.streams_failed(&e.to_string());
                        Flow::Failed(e)
                    }
                }
            }
            Some(SourceEvent::Muted(muted)) => {
                tracing::info!(muted, "track mute changed");
                if let Some(MediaOut::Websocket(ws)) = self.output.as_ref() {
                    ws.muted(muted).await;
                }
                Flow::Continue
            }
            Some(SourceEvent::Frame(frame)) => {
                if Some(frame.codec) != self.codec {
                    return Flow::Continue;
                }
                if self.output.is_none() {
                    // Video starts at a keyframe (the subscriber asks for one); ACTIVE means the
                    // file has something playable.
                    if frame.codec != TrackCodec::Opus
                        && (!frame.keyframe
                            || !self.first_keyframe.accept(
                                frame.codec,
                                &frame.data,
                                Instant::now(),
                            ))
                    {
                        return Flow::Continue;
                    }
                    match create_writer(session, &frame) {
                        Ok(Some(o)) => self.output = Some(o),
                        Ok(None) => return Flow::Continue,
                        Err(e) => return Flow::Failed(e),
                    }
                }
                let Some(out) = self.output.as_mut() else {
                    return Flow::Continue;
                };
                if !active {
                    // The first packet: ACTIVE, and the upload starts following the file.
                    session.activate(now_nanos());
                }
                if !out.write(frame).await {
                    // The writer's error comes out of `close`.
                    return Flow::Ended;
                }
                Flow::Continue
            }
            Some(SourceEvent::Ended(reason)) => match reason {
                EndReason::TrackNotFound if self.output.is_none() => {
                    Flow::Failed(PipelineError::Request(RpcError::new(
                        Code::NotFound,
                        format!("track {} not found", self.cfg.track_id),
                    )))
                }
                reason => {
                    tracing::info!(?reason, "track source ended");
                    session.stop(END_REASON_SOURCE_CLOSED);
                    Flow::Ended
                }
            },
        }
    }

    async fn leave(&mut self) -> Option<String> {
        self.source.leave().await
    }

    async fn close(&mut self, session: &mut Session) -> Option<Duration> {
        match self.output.take() {
            Some(MediaOut::Websocket(ws)) => {
                let sent = ws.finish().await;
                tracing::info!(bytes = sent.bytes, messages = sent.messages, packets = sent.pcm.packets, late = sent.pcm.late,
                    filled = ?std::time::Duration::from_nanos(sent.pcm.filled * 1_000_000_000 / pcm::SAMPLE_RATE),
                    duration = ?sent.pcm.duration(), "websocket output finished");
                if let Some(e) = sent.error {
                    session.outputs.streams_failed(&e.to_string());
                    // Go: a failed write is a destination error, Unavailable.
                    let code = if matches!(e, websocket::WebsocketError::Decode(_)) {
                        Code::Internal
                    } else {
                        Code::Unavailable
                    };
                    session.fail(&PipelineError::Request(RpcError::new(code, e.to_string())));
                }
                Some(sent.pcm.duration())
            }
            Some(MediaOut::File(writer)) => match writer.finish().await {
                Ok(w) => {
                    tracing::info!(duration = ?w.duration, frames = w.frames, dropped = w.dropped, filled = ?w.filled,
                        "track file written");
                    Some(w.duration)
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing the track file failed");
                    session.fail(&PipelineError::Gst(format!(
                        "writing the track file failed: {e}"
                    )));
                    None
                }
            },
            None => None,
        }
    }
}

impl TrackRecorder {
    /// The track is known: name the file after it and its codec, and open its storage.
    fn open(
        &mut self,
        session: &mut Session,
        track: &egress_proto::livekit::TrackInfo,
        publisher: &str,
    ) -> Result<(), PipelineError> {
        let codec = TrackCodec::from_mime(&track.mime_type)
            .filter(|c| codec_supported(*c))
            .ok_or_else(|| {
                PipelineError::Request(errors::not_supported(&format!(
                    "track egress of {}",
                    track.mime_type
                )))
            })?;
        let container = TrackContainer::for_codec(codec);
        let kind = egress_proto::livekit::TrackType::try_from(track.r#type)
            .map(|t| t.as_str_name())
            .unwrap_or("");
        let source = egress_proto::livekit::TrackSource::try_from(track.source)
            .map(|s| s.as_str_name())
            .unwrap_or("");
        let storage_path = self.cfg.storage_path(container, kind, source, publisher);
        let file = FileOutput::open(
            &self.service,
            &self.request,
            &self.plugins,
            session.work_dir(),
            storage_path,
        )?;
        let (storage, key) = file.destination();
        tracing::info!(file = %file.info.filename, storage, key = %key, mime = %track.mime_type, "track found; recording to file");
        self.codec = Some(codec);
        session.outputs.files.push(file);
        session.sync_results();
        Ok(())
    }

    /// The track is known and goes to a websocket: only audio can (Go's `validateSubscription`),
    /// and the receiver is dialled now, as Go builds its websocket sink once the track is in.
    async fn open_websocket(
        &mut self,
        track: &egress_proto::livekit::TrackInfo,
        url: &str,
    ) -> Result<WebsocketOutput, PipelineError> {
        let mime = track.mime_type.to_ascii_lowercase();
        let is_video = track.r#type == egress_proto::livekit::TrackType::Video as i32
            || mime.starts_with("video/");
        if is_video {
            return Err(PipelineError::Request(RpcError::new(
                Code::InvalidArgument,
                format!("format websocket incompatible with codec {mime}"),
            )));
        }
        let codec = TrackCodec::from_mime(&track.mime_type)
            .filter(|c| *c == TrackCodec::Opus)
            .ok_or_else(|| {
                PipelineError::Request(errors::not_supported(&format!(
                    "track egress of {}",
                    track.mime_type
                )))
            })?;
        tracing::info!(mime = %track.mime_type, "track found; sending PCM to the websocket");
        let ws = WebsocketOutput::connect(url)
            .await
            // Go: a dial error is `psrpc.InvalidArgument` with the dialer's text.
            .map_err(|e| {
                PipelineError::Request(RpcError::new(Code::InvalidArgument, e.to_string()))
            })?;
        self.codec = Some(codec);
        Ok(ws)
    }
}

/// Creates the file at the first frame (an Opus header needs the first packet's channel count).
/// `None` before the track is known.
fn create_writer(
    session: &Session,
    first: &webrtc::Frame,
) -> Result<Option<MediaOut>, PipelineError> {
    let Some(local) = session
        .outputs
        .files
        .first()
        .map(|f| f.local_path().to_path_buf())
    else {
        return Ok(None);
    };
    let writer = TrackFileWriter::create(&local, first)
        .map_err(|e| PipelineError::Gst(format!("cannot create {}: {e}", local.display())))?;
    Ok(Some(MediaOut::File(writer)))
}

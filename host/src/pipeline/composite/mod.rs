//! Composite recordings over WebRTC, without Chrome: `TrackCompositeEgressRequest` (one audio
//! and one video track), `ParticipantEgressRequest` (a participant's camera + microphone or
//! screen share, republished tracks included) and the v2 `MediaSource` (a video track or a
//! participant's video, audio routes to the left, right or both channels, `capture_all`). The
//! recorder subscribes to the tracks ([`crate::webrtc::room`]), decodes and mixes them onto one
//! time line and encodes the file ([`mixer`]); the file goes to storage as every other
//! recording's does (`crate::outputs`, manifest). A v2 media request with the PASSTHROUGH preset
//! and one track is a track egress: `super::run` sends it to [`super::track`].
//!
//! ```text
//! STARTING ──first media + hold──▶ ACTIVE ──stop / participant left / every track unpublished / room closed──▶ ENDING ──file delivered──▶ COMPLETE
//!    │ participant or track not there in 30 s ─▶ FAILED "participant <id> not found" / "track <id> not found"
//!    │ a track of the wrong kind ─▶ FAILED "invalid field: audio_track_id" │ kill ─▶ FAILED (partial file delivered)
//!    │ stop before the first media ─▶ ABORTED                             │ session limit ─▶ LIMIT_REACHED
//! ```
//!
//! Timing: each frame carries its capture time on the recording's common clock (RTCP sender
//! reports, `crate::webrtc::clock`). The file starts at the first media. The pipeline starts a
//! hold after it ([`HOLD_MIN`] and until every track seen has a sender report, at most
//! [`HOLD_MAX`]), so the first frames are already timed by sender reports and every frame
//! reaches the mixers that much ahead of time (the jitter buffer). Gaps are filled by the
//! mixers (silence, last frame), so nothing is sped up and the file's time is wall-clock time.
//!
//! Modules: [`config`] (request → settings, Go's validation), [`mixer`] (the GStreamer
//! pipeline). The recording loop is the one every WebRTC recorder shares
//! (`super::lifecycle::record`).

pub mod config;
pub mod mixer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use egress_proto::livekit::{self, EgressInfo, StreamInfo, stream_info};
use egress_proto::rpc::StartEgressRequest;
use egress_proto::rpc::start_egress_request::Request;

use crate::config::ServiceConfig;
use crate::core::PipelineError;
use crate::core::errors;
use crate::core::status::{END_REASON_SOURCE_CLOSED, now_nanos};
use crate::outputs::context::OutputContext;
use crate::outputs::live;
use crate::outputs::tap::EncodedStreams;
use crate::outputs::websocket::{self, WebsocketOutput};
use crate::outputs::{FileOutput, OutputSet};
use crate::pipeline::job::{Job, StopRequest, UpdateStreamCall};
use crate::pipeline::lifecycle::{
    self, Flow, ManifestSource, Recorder, Session, Subscription, sleep_until,
};
use crate::plugins::PluginRegistry;
use crate::rpc::{Code, RpcError};
use crate::webrtc::WebrtcError;
use crate::webrtc::room::{self, Channel, RoomEnd, RoomEvent, RoomParams};
use crate::webrtc::{Frame, TrackCodec};
use config::CompositeConfig;
use mixer::{Mixer, MixerEvent, MixerSettings};

/// How long required participants and tracks may take to appear (Go's `subscriptionTimeout`).
pub const AWAIT_TRACKS: Duration = Duration::from_secs(30);
/// The pipeline starts at least this long after the first media: the jitter allowance.
pub const HOLD_MIN: Duration = Duration::from_millis(500);
/// ... and at most this long, even when a track has no sender report yet.
pub const HOLD_MAX: Duration = Duration::from_secs(4);
/// How long the pipeline may take to drain after EOS (the hold's frames, the encoders).
const EOS_TIMEOUT: Duration = Duration::from_secs(30);
/// Events buffered between the subscriber task and the recording loop.
const EVENT_QUEUE: usize = 512;

/// Runs a participant, track composite or media egress to its end and returns the final info.
pub async fn run(
    job: Job,
    cfg: CompositeConfig,
    updates: mpsc::UnboundedSender<EgressInfo>,
    stop: watch::Receiver<Option<StopRequest>>,
    update_stream: mpsc::Receiver<UpdateStreamCall>,
) -> EgressInfo {
    if let Some(Request::Egress(r)) = &job.request.request {
        tracing::debug!(encoding = ?r.encoding, "v2 media request encoding");
    }
    tracing::info!(egress_id = %cfg.egress_id, room = %cfg.room_name, request_type = cfg.request_type.label(),
        selection = ?cfg.selection, container = ?cfg.container, "starting composite recording");
    let manifest = ManifestSource {
        egress_id: cfg.egress_id.clone(),
        room_id: cfg.room_id.clone(),
        room_name: cfg.room_name.clone(),
        url: String::new(),
        disabled: cfg.disable_manifest,
    };
    let mut outputs = OutputSet::default();
    // Go lists a websocket output as an ACTIVE stream from the start (`AddStream`).
    if let Some(url) = &cfg.live.websocket {
        outputs.streams.push(StreamInfo {
            url: url.redacted.clone(),
            started_at: now_nanos(),
            status: stream_info::Status::Active as i32,
            ..Default::default()
        });
    }
    let session = Session::new(
        job.info,
        outputs,
        manifest,
        job.work_dir,
        updates,
        stop,
        cfg.max_duration,
    )
    .with_update_stream(update_stream);
    let params = RoomParams {
        ws_url: cfg.ws_url.clone(),
        token: cfg.token.clone(),
        selection: cfg.selection.clone(),
        await_tracks: AWAIT_TRACKS,
    };
    let source = Subscription::spawn(EVENT_QUEUE, |tx, stop| room::run(params, tx, stop));
    let recorder = CompositeRecorder {
        service: job.config,
        plugins: job.plugins,
        request: job.request,
        cfg,
        source,
        mixer: None,
        websocket: None,
        opened: false,
        tracks: HashMap::new(),
        publisher: None,
        pending: Vec::new(),
        first_media: None,
        t0: None,
        hold_logged: false,
    };
    lifecycle::record(session, recorder).await
}

/// A subscribed track, as the recording sees it.
struct TrackState {
    /// `None`: a codec this build cannot decode (the track is ignored).
    codec: Option<TrackCodec>,
    channel: Channel,
    /// A decoder can only start at a keyframe.
    keyframe_seen: bool,
    /// A frame of it reached the recording.
    seen: bool,
    /// A frame of it was timed by a sender report.
    synced: bool,
}

struct CompositeRecorder {
    service: Arc<ServiceConfig>,
    plugins: Arc<PluginRegistry>,
    request: StartEgressRequest,
    cfg: CompositeConfig,
    /// The room's subscriber and its events.
    source: Subscription<RoomEvent, WebrtcError>,
    /// The GStreamer pipeline, once started (after the hold).
    mixer: Option<Mixer>,
    /// The websocket receiving the mixed audio as PCM (a `ws://` stream output), connected
    /// when the pipeline starts.
    websocket: Option<WebsocketOutput>,
    /// The file is named and its storage open (every required track is there).
    opened: bool,
    tracks: HashMap<String, TrackState>,
    /// The identity that names the file (`{publisher_identity}`): the video track's publisher.
    publisher: Option<String>,
    /// Frames received before the pipeline starts (the hold).
    pending: Vec<Frame>,
    first_media: Option<Instant>,
    /// Capture time of the first media (Unix ns): the file's zero.
    t0: Option<i64>,
    hold_logged: bool,
}

enum Event {
    Source(Option<RoomEvent>),
    HoldOver,
    Mixer(Option<MixerEvent>),
}

impl Recorder for CompositeRecorder {
    type Event = Event;

    async fn next_event(&mut self) -> Event {
        // The hold ends only once the file is named (every required track is there).
        let hold_until = match (&self.mixer, self.first_media) {
            (None, Some(at)) if self.opened => Some(
                at + HOLD_MAX.min(if self.all_synced() {
                    HOLD_MIN
                } else {
                    HOLD_MAX
                }),
            ),
            _ => None,
        };
        tokio::select! {
            ev = self.source.recv() => Event::Source(ev),
            ev = next_mixer_event(&mut self.mixer) => Event::Mixer(ev),
            _ = sleep_until(hold_until) => Event::HoldOver,
        }
    }

    async fn on_event(&mut self, session: &mut Session, event: Event) -> Flow {
        let active = session.is_active();
        let result = match event {
            Event::HoldOver => self.start(session).await,
            Event::Mixer(Some(MixerEvent::Error(e))) => Err(PipelineError::Gst(e)),
            Event::Mixer(_) => Ok(()),
            Event::Source(None) => return Flow::Ended,
            Event::Source(Some(RoomEvent::Ready)) => self.open(session),
            Event::Source(Some(RoomEvent::TrackAdded(t))) => self.add_track(*t),
            Event::Source(Some(RoomEvent::TrackRemoved { track_sid })) => {
                self.tracks.remove(&track_sid);
                self.pending.retain(|f| *f.track_sid != *track_sid);
                if let Some(m) = self.mixer.as_mut() {
                    m.end_track(&track_sid);
                }
                Ok(())
            }
            Event::Source(Some(RoomEvent::Frame(frame))) => self.frame(session, frame).await,
            Event::Source(Some(RoomEvent::Ended(reason))) => {
                let not_found = |text: String| {
                    Flow::Failed(PipelineError::Request(RpcError::new(Code::NotFound, text)))
                };
                return match reason {
                    RoomEnd::TrackNotFound(id) => not_found(format!("track {id} not found")),
                    RoomEnd::ParticipantNotFound(id) => {
                        not_found(format!("participant {id} not found"))
                    }
                    RoomEnd::InvalidField(field) => {
                        Flow::Failed(PipelineError::Request(errors::invalid_input(field)))
                    }
                    reason => {
                        tracing::info!(?reason, "composite source ended");
                        if !active
                            && !self.pending.is_empty()
                            && let Err(e) = self.start(session).await
                        {
                            return Flow::Failed(e);
                        }
                        session.stop(END_REASON_SOURCE_CLOSED);
                        Flow::Ended
                    }
                };
            }
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(e) => Flow::Failed(e),
        }
    }

    async fn on_stop(&mut self, session: &mut Session) -> Result<(), PipelineError> {
        if !session.is_active() && !self.pending.is_empty() {
            // Media arrived during the hold: record it rather than drop it.
            self.start(session).await?;
        }
        Ok(())
    }

    async fn leave(&mut self) -> Option<String> {
        self.source.leave().await
    }

    async fn close(&mut self, session: &mut Session) -> Option<Duration> {
        let duration = match self.mixer.take() {
            Some(m) => drain(session, m).await,
            None => None,
        };
        // After the EOS: every sample is queued to the connection task, which sends the rest
        // and closes.
        if let Some(ws) = self.websocket.take() {
            finish_websocket(session, ws).await;
        }
        duration
    }
}

impl CompositeRecorder {
    /// Every track with frames so far has been timed by a sender report.
    fn all_synced(&self) -> bool {
        self.tracks.values().filter(|t| t.seen).all(|t| t.synced)
    }

    fn add_track(&mut self, t: room::TrackAdded) -> Result<(), PipelineError> {
        let video = t.info.r#type == livekit::TrackType::Video as i32;
        if video || self.publisher.is_none() {
            self.publisher = Some(t.publisher_identity.clone());
        }
        let codec = t.codec.filter(|c| match c {
            TrackCodec::Opus => self.cfg.audio,
            _ => self.cfg.video,
        });
        if t.codec.is_none() {
            tracing::warn!(track_sid = %t.info.sid, mime = %t.info.mime_type, "cannot decode this track's codec; it is not recorded");
        }
        if let (Some(c), Some(m)) = (codec, self.mixer.as_mut()) {
            m.add_track(&t.info.sid, c, t.channel)?;
        }
        self.tracks.insert(
            t.info.sid.clone(),
            TrackState {
                codec,
                channel: t.channel,
                keyframe_seen: false,
                seen: false,
                synced: false,
            },
        );
        Ok(())
    }

    /// Every required participant and track is there: name the file and open its storage.
    fn open(&mut self, session: &mut Session) -> Result<(), PipelineError> {
        if self.opened {
            return Ok(());
        }
        if self.cfg.has_file {
            let publisher = self.publisher.clone().unwrap_or_default();
            let storage_path = self.cfg.storage_path(&publisher);
            let file = FileOutput::open(
                &self.service,
                &self.request,
                &self.plugins,
                session.work_dir(),
                storage_path,
            )?;
            let (storage, key) = file.destination();
            tracing::info!(file = %file.info.filename, storage, key = %key, "recording to file");
            session.outputs.files.push(file);
        }
        session.sync_results();
        self.opened = true;
        Ok(())
    }

    async fn frame(&mut self, session: &mut Session, frame: Frame) -> Result<(), PipelineError> {
        let Some(track) = self.tracks.get_mut(&*frame.track_sid) else {
            return Ok(());
        };
        let Some(codec) = track.codec else {
            return Ok(());
        };
        if codec != frame.codec {
            return Ok(());
        }
        if codec != TrackCodec::Opus && !track.keyframe_seen {
            if !frame.keyframe {
                return Ok(());
            }
            track.keyframe_seen = true;
        }
        track.seen = true;
        track.synced |= frame.capture.sender_synced;
        match self.mixer.as_mut() {
            Some(m) => {
                let Some(t0) = self.t0 else { return Ok(()) };
                push(m, &frame, t0)?;
            }
            None => {
                if self.first_media.is_none() {
                    tracing::info!(track_sid = %frame.track_sid, "first media; the pipeline starts after the hold");
                    self.first_media = Some(Instant::now());
                }
                self.pending.push(frame);
                if self.all_synced()
                    && self.first_media.is_some_and(|at| at.elapsed() >= HOLD_MIN)
                    && self.opened
                {
                    self.start(session).await?;
                }
            }
        }
        Ok(())
    }

    /// The stream, segments and images outputs, on the encoders' tees.
    fn attach_outputs(
        &mut self,
        session: &mut Session,
        streams: &EncodedStreams,
    ) -> Result<(), PipelineError> {
        let ctx = self.output_context(session);
        live::attach(
            &mut session.outputs,
            &self.cfg.live,
            &self.cfg.outputs,
            streams,
            &ctx,
        )
    }

    /// What the segments and images outputs need to name and store what they write.
    fn output_context(&self, session: &Session) -> OutputContext {
        self.cfg.output_context(
            self.service.clone(),
            self.request.clone(),
            self.plugins.clone(),
            session.work_dir().to_path_buf(),
        )
    }

    /// Builds and starts the pipeline with the tracks known so far, pushes the held frames and
    /// turns ACTIVE.
    async fn start(&mut self, session: &mut Session) -> Result<(), PipelineError> {
        if self.mixer.is_some() {
            return Ok(());
        }
        if !self.opened {
            // Media before every required track is there: keep holding.
            if !self.hold_logged {
                self.hold_logged = true;
                tracing::info!("media arrived before every required track; waiting for them");
            }
            return Ok(());
        }
        let local = session
            .outputs
            .files
            .first()
            .map(|f| f.local_path().to_path_buf());
        let settings = MixerSettings {
            container: self.cfg.container,
            audio: self.cfg.audio_codec.filter(|_| self.cfg.audio),
            video: self.cfg.video_codec.filter(|_| self.cfg.video),
            encoding: self.cfg.encoding.clone(),
            encoder_threads: self.cfg.encoder_threads,
        };
        let tracks: Vec<(String, TrackCodec, Channel)> = self
            .tracks
            .iter()
            .filter_map(|(sid, t)| t.codec.map(|c| (sid.clone(), c, t.channel)))
            .collect();
        let m = tokio::task::spawn_blocking(move || -> Result<Mixer, PipelineError> {
            let mut m = Mixer::build(settings, local.as_deref())?;
            for (sid, codec, channel) in &tracks {
                m.add_track(sid, *codec, *channel)?;
            }
            Ok(m)
        })
        .await
        .map_err(|e| PipelineError::Gst(format!("pipeline build: {e}")))??;
        // The outputs beside the file attach to the encoders before the pipeline plays.
        self.attach_outputs(session, m.streams())?;
        if let Some(url) = self.cfg.live.websocket.as_ref().map(|u| u.url.clone()) {
            // Go dials when its websocket sink starts, with the pipeline.
            let ws = match WebsocketOutput::connect_pcm(&url).await {
                Ok(ws) => ws,
                Err(e) => {
                    // Go: a dial error is `psrpc.InvalidArgument` with the dialer's text.
                    session.outputs.streams_failed(&e.to_string());
                    return Err(PipelineError::Request(RpcError::new(
                        Code::InvalidArgument,
                        e.to_string(),
                    )));
                }
            };
            websocket::attach_pcm_branch(m.streams(), &ws)
                .map_err(|e| PipelineError::Gst(e.to_string()))?;
            self.websocket = Some(ws);
        }
        let m = tokio::task::spawn_blocking(move || -> Result<Mixer, PipelineError> {
            m.start()?;
            Ok(m)
        })
        .await
        .map_err(|e| PipelineError::Gst(format!("pipeline start: {e}")))??;
        let mut pending = std::mem::take(&mut self.pending);
        retime(&mut pending);
        // The file's zero: the earliest capture among the held frames.
        let t0 = pending
            .iter()
            .map(|f| f.capture.nanos)
            .min()
            .unwrap_or_else(now_nanos);
        self.t0 = Some(t0);
        pending.sort_by_key(|f| f.capture.nanos);
        let held = pending.len();
        let mut m = m;
        for frame in &pending {
            push(&mut m, frame, t0)?;
        }
        tracing::info!(held, hold = ?self.first_media.map(|at| at.elapsed()), synced = self.all_synced(), "composite pipeline started");
        self.mixer = Some(m);
        // The first media is in the pipeline: ACTIVE, and the upload starts following the file.
        session.activate(t0);
        Ok(())
    }
}

/// Ends the pipeline's inputs and waits for the file to be complete; returns the media
/// duration written.
async fn drain(session: &mut Session, mut mixer: Mixer) -> Option<Duration> {
    mixer.send_eos();
    let result = tokio::time::timeout(EOS_TIMEOUT, async {
        match mixer.next_event().await {
            Some(MixerEvent::Eos) => Ok(()),
            Some(MixerEvent::Error(e)) => Err(PipelineError::Gst(e)),
            None => Err(PipelineError::Gst("pipeline bus closed".into())),
        }
    })
    .await
    .unwrap_or(Err(PipelineError::Frozen));
    let duration = mixer.media_duration();
    mixer.shutdown().await;
    match result {
        Ok(()) => {
            tracing::info!(duration = ?duration, "composite file written");
            Some(duration)
        }
        Err(e) => {
            tracing::error!(error = %e, "finishing the composite file failed");
            session.fail(&e);
            Some(duration)
        }
    }
}

/// Closes the websocket output; a connection that ended early fails the stream and the egress
/// (Go: a failed write is a destination error, Unavailable).
async fn finish_websocket(session: &mut Session, ws: WebsocketOutput) {
    let sent = ws.finish().await;
    tracing::info!(bytes = sent.bytes, messages = sent.messages, duration = ?sent.pcm.duration(),
        "websocket output finished");
    if let Some(e) = sent.error {
        session.outputs.streams_failed(&e.to_string());
        session.fail(&PipelineError::Request(RpcError::new(
            Code::Unavailable,
            e.to_string(),
        )));
    }
}

/// Times the held frames of each track from its latest one (by RTP time, exact within a
/// track): by the end of the hold a track is usually timed by sender reports, and its first
/// frames, timed by arrival when they came, get the same (better) clock.
fn retime(frames: &mut [Frame]) {
    let mut latest: HashMap<Arc<str>, (u64, u32, i64)> = HashMap::new();
    for f in frames.iter() {
        let entry = latest.entry(f.track_sid.clone()).or_insert((
            f.rtp_time,
            f.clock_rate,
            f.capture.nanos,
        ));
        if f.rtp_time >= entry.0 {
            *entry = (f.rtp_time, f.clock_rate, f.capture.nanos);
        }
    }
    for f in frames.iter_mut() {
        let Some(&(rtp, rate, nanos)) = latest.get(&f.track_sid) else {
            continue;
        };
        if rate == 0 || rate != f.clock_rate {
            continue;
        }
        let behind = i128::from(rtp) - i128::from(f.rtp_time);
        f.capture.nanos = nanos - (behind * 1_000_000_000 / i128::from(rate)) as i64;
    }
}

/// Pushes a frame at its time since the first media; frames from before it are dropped.
fn push(m: &mut Mixer, frame: &Frame, t0: i64) -> Result<(), PipelineError> {
    let since = frame.capture.nanos - t0;
    if since < 0 {
        return Ok(());
    }
    m.push(
        &frame.track_sid,
        frame.data.clone(),
        Duration::from_nanos(since as u64),
        !frame.contiguous,
    )
}

async fn next_mixer_event(mixer: &mut Option<Mixer>) -> Option<MixerEvent> {
    match mixer {
        Some(m) => match m.next_event().await {
            Some(e) => Some(e),
            // The bus watch is gone (shutdown): nothing more will come.
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webrtc::clock::CaptureTime;

    fn frame(track: &str, rtp: u64, nanos: i64, synced: bool) -> Frame {
        Frame {
            codec: TrackCodec::Opus,
            rtp_time: rtp,
            clock_rate: 48_000,
            data: Arc::from(&[][..]),
            contiguous: true,
            keyframe: false,
            received_at: std::time::Instant::now(),
            track_sid: Arc::from(track),
            capture: CaptureTime {
                nanos,
                sender_synced: synced,
            },
        }
    }

    #[test]
    fn held_frames_take_the_clock_of_their_tracks_latest_frame() {
        const MS: i64 = 1_000_000;
        // Track a: its first frames were timed by a late arrival (+72 ms), its latest by a
        // sender report. Track b: one frame, left alone.
        let mut frames = vec![
            frame("a", 0, 1000 * MS + 72 * MS, false),
            frame("b", 500, 1500 * MS, false),
            frame("a", 960, 1020 * MS + 72 * MS, false),
            frame("a", 48_000, 2000 * MS, true),
        ];
        retime(&mut frames);
        let times: Vec<i64> = frames.iter().map(|f| f.capture.nanos / MS).collect();
        assert_eq!(times, [1000, 1500, 1020, 2000]);
    }
}

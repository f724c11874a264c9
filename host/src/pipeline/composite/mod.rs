//! Composite recordings over WebRTC, without Chrome: `TrackCompositeEgressRequest` (one audio
//! and one video track), `ParticipantEgressRequest` (a participant's camera + microphone or
//! screen share, republished tracks included) and the v2 `MediaSource` (a video track or a
//! participant's video, audio routes to the left, right or both channels, `capture_all`). The
//! recorder subscribes to the tracks ([`crate::webrtc::room`]), decodes and mixes them onto one
//! time line and encodes the file ([`mixer`]); the file goes to storage as every other
//! recording's does ([`FileOutput`], manifest). A v2 media request with the PASSTHROUGH preset
//! and one track is a track egress and runs there ([`super::track`]).
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
//! pipeline).

pub mod config;
pub mod mixer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use egress_proto::livekit::{self, EgressInfo, EgressStatus};
use egress_proto::rpc::start_egress_request::Request;

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
use crate::webrtc::room::{self, Channel, RoomEnd, RoomEvent, RoomParams};
use crate::webrtc::{Frame, TrackCodec};
use config::{CompositeConfig, Parsed};
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
) -> EgressInfo {
    if let Some(Request::Egress(r)) = &job.request.request {
        tracing::debug!(encoding = ?r.encoding, "v2 media request encoding");
    }
    tracing::info!(egress_id = %cfg.egress_id, room = %cfg.room_name, request_type = cfg.request_type.label(),
        selection = ?cfg.selection, container = ?cfg.container, "starting composite recording");
    let recording = Recording {
        service: job.config,
        plugins: job.plugins,
        request: job.request,
        cfg,
        info: job.info,
        file: None,
        work_dir: job.work_dir,
        updates,
        stops: StopRequests::new(stop),
        started_at: 0,
        tracks: HashMap::new(),
        publisher: None,
        pending: Vec::new(),
        first_media: None,
        t0: None,
        hold_logged: false,
    };
    recording.run().await
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

struct Recording {
    service: Arc<crate::config::ServiceConfig>,
    plugins: Arc<crate::plugins::PluginRegistry>,
    request: egress_proto::rpc::StartEgressRequest,
    cfg: CompositeConfig,
    info: EgressInfo,
    file: Option<FileOutput>,
    work_dir: PathBuf,
    updates: mpsc::UnboundedSender<EgressInfo>,
    stops: StopRequests,
    started_at: i64,
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
    Stop(StopRequest),
    Source(Option<RoomEvent>),
    Limit,
    HoldOver,
    Mixer(Option<MixerEvent>),
}

enum Outcome {
    Ended,
    Failed(PipelineError),
}

impl Recording {
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

    async fn next_event(&mut self, source: &mut mpsc::Receiver<RoomEvent>, mixer: &mut Option<Mixer>, limit_at: Option<Instant>) -> Event {
        // The hold ends only once the file is named (every required track is there).
        let hold_until = match (&mixer, self.first_media) {
            (None, Some(at)) if self.file.is_some() => Some(at + HOLD_MAX.min(if self.all_synced() { HOLD_MIN } else { HOLD_MAX })),
            _ => None,
        };
        tokio::select! {
            req = self.stops.next() => Event::Stop(req),
            ev = source.recv() => Event::Source(ev),
            ev = next_mixer_event(mixer) => Event::Mixer(ev),
            _ = sleep_until(limit_at) => Event::Limit,
            _ = sleep_until(hold_until) => Event::HoldOver,
        }
    }

    /// Every track with frames so far has been timed by a sender report.
    fn all_synced(&self) -> bool {
        self.tracks.values().filter(|t| t.seen).all(|t| t.synced)
    }

    async fn run(mut self) -> EgressInfo {
        let (tx, mut source) = mpsc::channel(EVENT_QUEUE);
        let (stop_source, stop_rx) = watch::channel(false);
        let params = RoomParams {
            ws_url: self.cfg.ws_url.clone(),
            token: self.cfg.token.clone(),
            selection: self.cfg.selection.clone(),
            await_tracks: AWAIT_TRACKS,
        };
        let subscriber = tokio::spawn(async move { room::run(params, tx, stop_rx).await });
        let limit_at = (!self.cfg.max_duration.is_zero()).then(|| Instant::now() + self.cfg.max_duration);
        let mut mixer = None;
        let outcome = self.record(&mut source, &mut mixer, limit_at).await;
        let _ = stop_source.send(true);
        drop(source);
        let join_error = lifecycle::subscriber_error(subscriber).await;
        let outcome = match (outcome, join_error) {
            (Outcome::Ended, Some(e)) if self.started_at == 0 && !self.info.status_is(EgressStatus::EgressAborted) => {
                Outcome::Failed(PipelineError::Request(RpcError::new(Code::Unavailable, e)))
            }
            (o, _) => o,
        };
        let media = match mixer.take() {
            Some(m) => self.drain(m).await,
            None => None,
        };
        if let Outcome::Failed(e) = outcome
            && !self.info.status_is(EgressStatus::EgressFailed)
        {
            self.info.set_failed(&e);
        }
        self.finish(media).await
    }

    /// Ends the pipeline's inputs and waits for the file to be complete; returns the media
    /// duration written.
    async fn drain(&mut self, mut mixer: Mixer) -> Option<Duration> {
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
                if !self.info.status_is(EgressStatus::EgressFailed) {
                    self.info.set_failed(&e);
                }
                Some(duration)
            }
        }
    }

    async fn record(&mut self, source: &mut mpsc::Receiver<RoomEvent>, mixer: &mut Option<Mixer>, limit_at: Option<Instant>) -> Outcome {
        loop {
            let event = self.next_event(source, mixer, limit_at).await;
            let active = self.started_at > 0;
            match event {
                Event::Stop(StopRequest::Graceful { reason }) => {
                    if !active && !self.pending.is_empty() {
                        // Media arrived during the hold: record it rather than drop it.
                        if let Err(e) = self.start(mixer).await {
                            return Outcome::Failed(e);
                        }
                    }
                    if self.started_at > 0 {
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
                Event::HoldOver => {
                    if let Err(e) = self.start(mixer).await {
                        return Outcome::Failed(e);
                    }
                }
                Event::Mixer(Some(MixerEvent::Error(e))) => return Outcome::Failed(PipelineError::Gst(e)),
                Event::Mixer(_) => {}
                Event::Source(None) => return Outcome::Ended,
                Event::Source(Some(RoomEvent::Ready)) => {
                    if let Err(e) = self.open() {
                        return Outcome::Failed(e);
                    }
                }
                Event::Source(Some(RoomEvent::TrackAdded(t))) => {
                    if let Err(e) = self.add_track(*t, mixer) {
                        return Outcome::Failed(e);
                    }
                }
                Event::Source(Some(RoomEvent::TrackRemoved { track_sid })) => {
                    self.tracks.remove(&track_sid);
                    self.pending.retain(|f| *f.track_sid != *track_sid);
                    if let Some(m) = mixer.as_mut() {
                        m.end_track(&track_sid);
                    }
                }
                Event::Source(Some(RoomEvent::Frame(frame))) => {
                    if let Err(e) = self.frame(frame, mixer).await {
                        return Outcome::Failed(e);
                    }
                }
                Event::Source(Some(RoomEvent::Ended(reason))) => {
                    let not_found = |text: String| Outcome::Failed(PipelineError::Request(RpcError::new(Code::NotFound, text)));
                    return match reason {
                        RoomEnd::TrackNotFound(id) => not_found(format!("track {id} not found")),
                        RoomEnd::ParticipantNotFound(id) => not_found(format!("participant {id} not found")),
                        RoomEnd::InvalidField(field) => Outcome::Failed(PipelineError::Request(errors::invalid_input(field))),
                        reason => {
                            tracing::info!(?reason, "composite source ended");
                            if !active && !self.pending.is_empty()
                                && let Err(e) = self.start(mixer).await
                            {
                                return Outcome::Failed(e);
                            }
                            if self.started_at > 0 {
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

    fn add_track(&mut self, t: room::TrackAdded, mixer: &mut Option<Mixer>) -> Result<(), PipelineError> {
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
        if let (Some(c), Some(m)) = (codec, mixer.as_mut()) {
            m.add_track(&t.info.sid, c, t.channel)?;
        }
        self.tracks.insert(t.info.sid.clone(), TrackState { codec, channel: t.channel, keyframe_seen: false, seen: false, synced: false });
        Ok(())
    }

    /// Every required participant and track is there: name the file and resolve its storage.
    fn open(&mut self) -> Result<(), PipelineError> {
        if self.file.is_some() {
            return Ok(());
        }
        let publisher = self.publisher.clone().unwrap_or_default();
        let storage_path = self.cfg.storage_path(&publisher);
        let targets = storage::target::for_file_output(&self.service, &self.request);
        let dests = storage::destinations(&targets, &self.plugins, &storage_path)
            .map_err(|e| PipelineError::Upload { location: targets.primary.provider.label(), reason: e.to_string() })?;
        tracing::info!(file = %storage_path, storage = dests.primary.label, key = %dests.primary.key, "recording to file");
        let local_name = storage_path.rsplit('/').next().unwrap_or(&storage_path).to_owned();
        self.file = Some(FileOutput::new(self.work_dir.join(local_name), storage_path, dests));
        self.sync_results();
        Ok(())
    }

    async fn frame(&mut self, frame: Frame, mixer: &mut Option<Mixer>) -> Result<(), PipelineError> {
        let Some(track) = self.tracks.get_mut(&*frame.track_sid) else { return Ok(()) };
        let Some(codec) = track.codec else { return Ok(()) };
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
        match mixer.as_mut() {
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
                    && self.file.is_some()
                {
                    self.start(mixer).await?;
                }
            }
        }
        Ok(())
    }

    /// Builds and starts the pipeline with the tracks known so far, pushes the held frames and
    /// turns ACTIVE.
    async fn start(&mut self, mixer: &mut Option<Mixer>) -> Result<(), PipelineError> {
        if mixer.is_some() {
            return Ok(());
        }
        if self.file.is_none() {
            // Media before every required track is there: keep holding.
            if !self.hold_logged {
                self.hold_logged = true;
                tracing::info!("media arrived before every required track; waiting for them");
            }
            return Ok(());
        }
        let Some(local) = self.file.as_ref().map(|f| f.local_path().to_path_buf()) else { return Ok(()) };
        let settings = MixerSettings {
            container: self.cfg.container,
            audio: self.cfg.audio_codec.filter(|_| self.cfg.audio),
            video: self.cfg.video_codec.filter(|_| self.cfg.video),
            encoding: self.cfg.encoding.clone(),
            encoder_threads: self.cfg.encoder_threads,
        };
        let tracks: Vec<(String, TrackCodec, Channel)> =
            self.tracks.iter().filter_map(|(sid, t)| t.codec.map(|c| (sid.clone(), c, t.channel))).collect();
        let m = tokio::task::spawn_blocking(move || -> Result<Mixer, PipelineError> {
            let mut m = Mixer::build(settings, &local)?;
            for (sid, codec, channel) in &tracks {
                m.add_track(sid, *codec, *channel)?;
            }
            m.start()?;
            Ok(m)
        })
        .await
        .map_err(|e| PipelineError::Gst(format!("pipeline start: {e}")))??;
        let mut pending = std::mem::take(&mut self.pending);
        retime(&mut pending);
        // The file's zero: the earliest capture among the held frames.
        let t0 = pending.iter().map(|f| f.capture.nanos).min().unwrap_or_else(now_nanos);
        self.t0 = Some(t0);
        pending.sort_by_key(|f| f.capture.nanos);
        let held = pending.len();
        let mut m = m;
        for frame in &pending {
            push(&mut m, frame, t0)?;
        }
        tracing::info!(held, hold = ?self.first_media.map(|at| at.elapsed()), synced = self.all_synced(), "composite pipeline started");
        *mixer = Some(m);
        self.activate(t0);
        Ok(())
    }

    /// The first media is in the pipeline: ACTIVE, and the upload starts following the file.
    fn activate(&mut self, started_at: i64) {
        self.started_at = started_at;
        if let Some(file) = self.file.as_mut() {
            file.start(started_at);
        }
        self.info.set_status(EgressStatus::EgressActive);
        tracing::info!("recording active");
        self.send_update();
        self.write_plan();
    }

    fn end(&mut self, reason: &str) {
        tracing::info!(reason, "stopping recording");
        self.info.set_end_reason(reason);
        self.info.set_status(EgressStatus::EgressEnding);
        self.send_update();
    }

    async fn finish(mut self, media: Option<Duration>) -> EgressInfo {
        DeliveryPlan::remove(&self.work_dir);
        if let Some(file) = self.file.as_mut() {
            lifecycle::deliver_file(&mut self.info, file, self.started_at, media).await;
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

/// Times the held frames of each track from its latest one (by RTP time, exact within a
/// track): by the end of the hold a track is usually timed by sender reports, and its first
/// frames, timed by arrival when they came, get the same (better) clock.
fn retime(frames: &mut [Frame]) {
    let mut latest: HashMap<Arc<str>, (u64, u32, i64)> = HashMap::new();
    for f in frames.iter() {
        let entry = latest.entry(f.track_sid.clone()).or_insert((f.rtp_time, f.clock_rate, f.capture.nanos));
        if f.rtp_time >= entry.0 {
            *entry = (f.rtp_time, f.clock_rate, f.capture.nanos);
        }
    }
    for f in frames.iter_mut() {
        let Some(&(rtp, rate, nanos)) = latest.get(&f.track_sid) else { continue };
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
    m.push(&frame.track_sid, frame.data.clone(), Duration::from_nanos(since as u64), !frame.contiguous)
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
            capture: CaptureTime { nanos, sender_synced: synced },
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

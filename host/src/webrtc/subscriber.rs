//! Joins a room as the hidden recorder, waits for one track (Go: 30 s, then `track … not found`),
//! subscribes to it, and reports its depacketized frames and the end of the source: track
//! unpublished, publisher left, room closed, or the signalling connection lost.
//!
//! One task owns the signalling events and the [`Peer`]; the pipeline only sees
//! [`SourceEvent`]s, so it does not know about WebRTC.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egress_proto::livekit as proto;
use proto::signal_response::Message as Res;
use str0m::Event;
use str0m::format::{Codec, CodecExtra};
use str0m::media::Mid;
use tokio::sync::{mpsc, watch};

use super::WebrtcError;
use super::clock::{CaptureClock, CaptureTime, wall_at};
use super::peer::Peer;
use super::signal::{self, Signal, SignalEvent};

/// How long a track may take to be published (Go's `awaitTracks`).
pub const TRACK_AWAIT: Duration = Duration::from_secs(30);
/// Keyframe requests while waiting for the first keyframe (Go's keyframe probe: 200 ms) and
/// after a loss (Go: 1 s).
const PLI_BEFORE_KEYFRAME: Duration = Duration::from_millis(200);
const PLI_AFTER_LOSS: Duration = Duration::from_secs(1);

pub struct SubscribeParams {
    pub ws_url: String,
    pub token: String,
    pub track_sid: String,
    /// How long to wait for the track to appear.
    pub await_track: Duration,
}

/// The codecs a track egress can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackCodec {
    Opus,
    Vp8,
    Vp9,
    H264,
    H265,
    Av1,
}

impl TrackCodec {
    /// From a `TrackInfo.mime_type` (`audio/opus`, `video/VP8`, …).
    pub fn from_mime(mime: &str) -> Option<TrackCodec> {
        match mime.to_ascii_lowercase().as_str() {
            "audio/opus" | "audio/red" => Some(TrackCodec::Opus),
            "video/vp8" => Some(TrackCodec::Vp8),
            "video/vp9" => Some(TrackCodec::Vp9),
            "video/h264" => Some(TrackCodec::H264),
            "video/h265" => Some(TrackCodec::H265),
            "video/av1" => Some(TrackCodec::Av1),
            _ => None,
        }
    }

    fn from_str0m(c: Codec) -> Option<TrackCodec> {
        match c {
            Codec::Opus => Some(TrackCodec::Opus),
            Codec::Vp8 => Some(TrackCodec::Vp8),
            Codec::Vp9 => Some(TrackCodec::Vp9),
            Codec::H264 => Some(TrackCodec::H264),
            Codec::H265 => Some(TrackCodec::H265),
            Codec::Av1 => Some(TrackCodec::Av1),
            _ => None,
        }
    }
}

/// One depacketized frame (audio packet or video access unit).
#[derive(Debug, Clone)]
pub struct Frame {
    pub codec: TrackCodec,
    /// RTP time extended to 64 bits, in `clock_rate` units.
    pub rtp_time: u64,
    pub clock_rate: u32,
    pub data: Arc<[u8]>,
    /// False when packets were lost just before this frame.
    pub contiguous: bool,
    /// A video frame a decoder can start from (always false for audio).
    pub keyframe: bool,
    pub received_at: Instant,
    /// The track it belongs to.
    pub track_sid: Arc<str>,
    /// When it was captured, on the clock common to all tracks of the recording
    /// ([`super::clock`]).
    pub capture: CaptureTime,
}

/// Why the source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    TrackUnpublished,
    ParticipantLeft,
    /// The server sent Leave (room deleted, recorder removed, server shutting down).
    RoomClosed(String),
    /// The track did not appear within the await time.
    TrackNotFound,
    /// The signalling connection or the PeerConnection broke.
    Disconnected(String),
}

#[derive(Debug)]
pub enum SourceEvent {
    /// The track was found and a subscription requested.
    TrackFound {
        info: Box<proto::TrackInfo>,
        publisher_identity: String,
    },
    Frame(Frame),
    /// The publisher muted (true) or unmuted the track (`TrackInfo.muted` in participant updates).
    Muted(bool),
    Ended(EndReason),
}

/// Joins the room and runs until the source ends or `stop` turns true. Events go to `events`;
/// the last one is always [`SourceEvent::Ended`] unless the stop came first or the join failed.
pub async fn run(
    params: SubscribeParams,
    events: mpsc::Sender<SourceEvent>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WebrtcError> {
    let (signal, join, mut signal_events) = signal::connect(&params.ws_url, &params.token).await?;
    tracing::info!(
        room = join.room.as_ref().map(|r| r.name.as_str()).unwrap_or(""),
        participant = join
            .participant
            .as_ref()
            .map(|p| p.sid.as_str())
            .unwrap_or(""),
        subscriber_primary = join.subscriber_primary,
        "joined the room"
    );
    let server_ip = server_ip(&params.ws_url).await;
    let mut peer = Peer::new(server_ip).await?;
    let mut state = State::new(params.track_sid.clone(), params.await_track);
    state.participants(&join.other_participants);
    let result = drive(
        &mut state,
        &signal,
        &mut signal_events,
        &mut peer,
        &events,
        &mut stop,
    )
    .await;
    peer.disconnect();
    signal.close().await;
    result
}

/// What the subscriber knows about its track.
struct State {
    track_sid: String,
    deadline: Instant,
    /// Set once the track is seen: (publisher sid, publisher identity, track info).
    found: Option<(String, String, proto::TrackInfo)>,
    subscribed: bool,
    announced: bool,
    /// The offer's `mid_to_track_id`: which m-line carries which track.
    mids: HashMap<String, String>,
    ended: Option<EndReason>,
    /// The track's mute state as last seen, and a change not yet reported.
    muted: bool,
    mute_changed: Option<bool>,
    /// Video: whether a keyframe has arrived, and when one was last asked for.
    keyframe_seen: bool,
    last_pli: Option<Instant>,
    /// Capture times of the frames (RTCP sender reports, else arrival).
    clock: CaptureClock,
    track_sid_shared: Arc<str>,
}

impl State {
    fn new(track_sid: String, await_track: Duration) -> State {
        State {
            track_sid_shared: Arc::from(track_sid.as_str()),
            track_sid,
            deadline: Instant::now() + await_track,
            found: None,
            subscribed: false,
            announced: false,
            mids: HashMap::new(),
            ended: None,
            muted: false,
            mute_changed: None,
            keyframe_seen: false,
            last_pli: None,
            clock: CaptureClock::new(),
        }
    }

    /// Applies a participant list (join or update): finds the track, notices it going away.
    fn participants(&mut self, list: &[proto::ParticipantInfo]) {
        for p in list {
            let has_track = p.tracks.iter().find(|t| t.sid == self.track_sid);
            match (&self.found, has_track) {
                (None, Some(t))
                    if p.state != proto::participant_info::State::Disconnected as i32 =>
                {
                    tracing::info!(track_sid = %t.sid, publisher = %p.identity, mime = %t.mime_type, "track found");
                    self.found = Some((p.sid.clone(), p.identity.clone(), t.clone()));
                    self.mute(t.muted);
                }
                (Some((sid, _, _)), _) if *sid == p.sid => {
                    if p.state == proto::participant_info::State::Disconnected as i32 {
                        self.ended.get_or_insert(EndReason::ParticipantLeft);
                    } else if let Some(t) = has_track {
                        self.mute(t.muted);
                    } else {
                        self.ended.get_or_insert(EndReason::TrackUnpublished);
                    }
                }
                _ => {}
            }
        }
    }

    fn mute(&mut self, muted: bool) {
        if muted != self.muted {
            self.muted = muted;
            self.mute_changed = Some(muted);
        }
    }

    /// Whether media on `mid` belongs to the track (an offer without a mid map: only our
    /// track is subscribed, so everything is ours).
    fn is_ours(&self, mid: &str) -> bool {
        self.mids.is_empty() || self.mids.get(mid).is_some_and(|t| *t == self.track_sid)
    }
}

async fn drive(
    state: &mut State,
    signal: &Signal,
    signal_events: &mut livekit_signaling::SignalEvents,
    peer: &mut Peer,
    events: &mpsc::Sender<SourceEvent>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WebrtcError> {
    let mut rtc_events = Vec::new();
    // A resume of the signalling session in progress (the media keeps flowing meanwhile).
    let mut resuming: Option<futures_util::future::BoxFuture<'_, Result<(), String>>> = None;
    loop {
        if let Some((participant_sid, identity, info)) = &state.found
            && !state.subscribed
        {
            signal
                .subscribe(participant_sid, &state.track_sid, true)
                .await;
            state.subscribed = true;
            let _ = events
                .send(SourceEvent::TrackFound {
                    info: Box::new(info.clone()),
                    publisher_identity: identity.clone(),
                })
                .await;
        }
        if let Some(muted) = state.mute_changed.take().filter(|_| state.subscribed) {
            let _ = events.send(SourceEvent::Muted(muted)).await;
        }
        if state.found.is_none() && Instant::now() >= state.deadline {
            state.ended.get_or_insert(EndReason::TrackNotFound);
        }
        if let Some(reason) = state.ended.take() {
            tracing::info!(?reason, "source ended");
            let _ = events.send(SourceEvent::Ended(reason)).await;
            return Ok(());
        }
        for c in peer.take_unsent_candidates() {
            signal.trickle(c).await;
        }
        let next_timeout = peer.drain(&mut rtc_events)?;
        let mut keyframe_for = None;
        for e in rtc_events.drain(..) {
            keyframe_for = handle_rtc_event(state, e, events).await.or(keyframe_for);
        }
        if let Some(mid) = keyframe_for {
            // A mutation of the Rtc: drain again before waiting.
            peer.request_keyframe(mid);
            continue;
        }
        if !peer.is_alive() {
            state
                .ended
                .get_or_insert(EndReason::Disconnected("peer connection closed".into()));
            continue;
        }
        let wake = if state.found.is_none() {
            next_timeout.min(state.deadline)
        } else {
            next_timeout
        };
        tokio::select! {
            r = peer.wait(wake) => r?,
            resumed = until_done(&mut resuming), if resuming.is_some() => {
                resuming = None;
                match resumed {
                    Ok(()) => tracing::info!("signalling session resumed"),
                    Err(e) => {
                        state.ended.get_or_insert(EndReason::Disconnected(e));
                    }
                }
            }
            ev = signal_events.recv(), if resuming.is_none() => match ev {
                Some(SignalEvent::Message(msg)) => handle_signal(state, signal, peer, *msg).await?,
                // The WebSocket dropped (not a Leave from the server): resume the session while
                // the PeerConnection goes on receiving.
                Some(SignalEvent::Close(reason)) => {
                    tracing::warn!(%reason, "signalling connection lost; resuming");
                    resuming = Some(Box::pin(signal.resume()));
                }
                None => {
                    state.ended.get_or_insert(EndReason::Disconnected("signal connection closed".into()));
                }
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

/// The result of an optional future (never, when there is none).
pub(super) async fn until_done<T>(
    f: &mut Option<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + '_>>>,
) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn handle_signal(
    state: &mut State,
    signal: &Signal,
    peer: &mut Peer,
    msg: Res,
) -> Result<(), WebrtcError> {
    match msg {
        Res::Offer(offer) => {
            state.mids.extend(offer.mid_to_track_id.clone());
            let answer = peer.accept_offer(&offer.sdp)?;
            // str0m's answer carries the host candidates; the trickle repeats them harmlessly.
            peer.take_unsent_candidates();
            signal.answer(answer, offer.id).await;
            tracing::debug!(offer_id = offer.id, "answered the subscriber offer");
        }
        Res::Trickle(t) if t.target == proto::SignalTarget::Subscriber as i32 => {
            if let Err(e) = peer.add_remote_candidate(&t.candidate_init) {
                tracing::warn!(error = %e, "ignoring a server candidate");
            }
        }
        Res::Update(update) => state.participants(&update.participants),
        Res::TrackUnpublished(u) if u.track_sid == state.track_sid => {
            state.ended.get_or_insert(EndReason::TrackUnpublished);
        }
        Res::Leave(leave) => {
            let reason = proto::DisconnectReason::try_from(leave.reason)
                .map(|r| r.as_str_name().to_owned())
                .unwrap_or_else(|_| leave.reason.to_string());
            state.ended.get_or_insert(EndReason::RoomClosed(reason));
        }
        Res::SubscriptionResponse(r) if r.track_sid == state.track_sid && r.err != 0 => {
            tracing::warn!(track_sid = %r.track_sid, err = r.err, "subscription refused");
            state.ended.get_or_insert(EndReason::Disconnected(format!(
                "subscription to {} refused ({})",
                r.track_sid, r.err
            )));
        }
        _ => {}
    }
    Ok(())
}

/// Handles one str0m event; returns the m-line to ask a keyframe for, if one is needed.
async fn handle_rtc_event(
    state: &mut State,
    e: Event,
    events: &mpsc::Sender<SourceEvent>,
) -> Option<Mid> {
    match e {
        Event::MediaData(m) => {
            if !state.is_ours(&m.mid.to_string()) {
                return None;
            }
            let spec = m.params.spec();
            let codec = TrackCodec::from_str0m(spec.codec)?;
            let keyframe = match m.codec_extra {
                CodecExtra::Vp8(e) => e.is_keyframe,
                CodecExtra::Vp9(e) => e.is_keyframe,
                CodecExtra::H264(e) => e.is_keyframe,
                CodecExtra::H265(e) => e.is_keyframe,
                CodecExtra::Av1(e) => e.is_keyframe,
                _ => false,
            };
            let mut pli = None;
            if codec != TrackCodec::Opus {
                state.keyframe_seen |= keyframe;
                let every = if !state.keyframe_seen {
                    Some(PLI_BEFORE_KEYFRAME)
                } else if !m.contiguous {
                    Some(PLI_AFTER_LOSS)
                } else {
                    None
                };
                if let Some(every) = every
                    && !keyframe
                    && state.last_pli.is_none_or(|at| at.elapsed() >= every)
                {
                    state.last_pli = Some(Instant::now());
                    pli = Some(m.mid);
                }
            }
            if !state.announced {
                state.announced = true;
                tracing::info!(?codec, "first media frame");
            }
            let publisher = state
                .found
                .as_ref()
                .map(|(sid, _, _)| sid.as_str())
                .unwrap_or("");
            let capture = state.clock.capture_time(
                publisher,
                &state.track_sid,
                m.time.numer(),
                m.time.denom(),
                wall_at(m.network_time),
                m.last_sender_info.as_ref(),
            );
            let frame = Frame {
                codec,
                rtp_time: m.time.numer(),
                clock_rate: m.time.denom(),
                data: m.data,
                contiguous: m.contiguous,
                keyframe,
                received_at: m.network_time,
                track_sid: state.track_sid_shared.clone(),
                capture,
            };
            // A slow writer applies backpressure here rather than growing memory.
            let _ = events.send(SourceEvent::Frame(frame)).await;
            return pli;
        }
        Event::IceConnectionStateChange(s) => tracing::info!(state = ?s, "ice connection state"),
        Event::Connected => tracing::info!("peer connection established"),
        Event::MediaAdded(m) => tracing::debug!(mid = %m.mid, kind = ?m.kind, "media added"),
        _ => {}
    }
    None
}

/// The livekit-server host's IP, to pick the local address announced before any candidate
/// arrives.
async fn server_ip(ws_url: &str) -> Option<IpAddr> {
    let url = url::Url::parse(ws_url).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let mut addrs = tokio::net::lookup_host((host.as_str(), port)).await.ok()?;
    addrs.next().map(|a| a.ip())
}

//! Joins a room as the hidden recorder and subscribes to the *set* of tracks a composite
//! recording asks for ([`Selection`]): two track IDs (track composite), a participant's camera
//! and microphone or screen share (participant egress, including tracks published later), or
//! the v2 media source's video and audio routes. Reports [`RoomEvent`]s: tracks added and
//! removed, frames (each carrying its track and its capture time on the recording's common
//! clock, [`super::clock`]), and the end of the source.
//!
//! One task owns the signalling events and the [`Peer`], as in [`super::subscriber`] (which
//! stays the single-track path of the track egress).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egress_proto::livekit as proto;
use proto::signal_response::Message as Res;
use str0m::Event;
use str0m::format::CodecExtra;
use str0m::media::Mid;
use tokio::sync::{mpsc, watch};

use super::WebrtcError;
use super::clock::{CaptureClock, wall_at};
use super::peer::Peer;
use super::signal::{self, Signal, SignalEvent};
use super::subscriber::{Frame, TrackCodec};

/// Keyframe requests while waiting for a track's first keyframe (Go: 200 ms) and after a loss
/// (Go: 1 s).
const PLI_BEFORE_KEYFRAME: Duration = Duration::from_millis(200);
const PLI_AFTER_LOSS: Duration = Duration::from_secs(1);

/// Where a track's audio goes in a stereo recording (`livekit.AudioChannel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channel {
    #[default]
    Both,
    Left,
    Right,
}

impl Channel {
    pub fn from_proto(v: i32) -> Channel {
        match proto::AudioChannel::try_from(v) {
            Ok(proto::AudioChannel::Left) => Channel::Left,
            Ok(proto::AudioChannel::Right) => Channel::Right,
            _ => Channel::Both,
        }
    }
}

/// Which audio an audio route takes (`livekit.AudioRoute.match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioMatch {
    TrackId(String),
    Identity(String),
    /// A `ParticipantInfo.Kind` value.
    ParticipantKind(i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioRoute {
    pub matcher: AudioMatch,
    pub channel: Channel,
}

/// The v2 `MediaSource`, reduced to what the subscriber matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaSelection {
    pub video_track_id: Option<String>,
    /// (identity, prefer screen share).
    pub participant_video: Option<(String, bool)>,
    pub audio_routes: Vec<AudioRoute>,
    /// Unmatched audio is recorded too (both channels).
    pub capture_all: bool,
}

/// What to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `TrackCompositeEgressRequest`: these tracks, which must be of these kinds.
    Tracks {
        audio: Option<String>,
        video: Option<String>,
    },
    /// `ParticipantEgressRequest`: camera + microphone, or screen share + its audio.
    Participant {
        identity: String,
        screen_share: bool,
    },
    Media(MediaSelection),
}

fn is_video(t: &proto::TrackInfo) -> bool {
    t.r#type == proto::TrackType::Video as i32
}

fn is_audio(t: &proto::TrackInfo) -> bool {
    t.r#type == proto::TrackType::Audio as i32
}

impl Selection {
    /// Whether to record `t` of `p`, and to which channel (Go's `shouldSubscribe`,
    /// `shouldSubscribeMedia`).
    pub fn wants(&self, p: &proto::ParticipantInfo, t: &proto::TrackInfo) -> Option<Channel> {
        use proto::TrackSource as S;
        match self {
            Selection::Tracks { audio, video } => (audio.as_deref() == Some(t.sid.as_str())
                || video.as_deref() == Some(t.sid.as_str()))
            .then_some(Channel::Both),
            Selection::Participant {
                identity,
                screen_share,
            } => {
                if p.identity != *identity {
                    return None;
                }
                let camera_or_mic =
                    t.source == S::Camera as i32 || t.source == S::Microphone as i32;
                (camera_or_mic != *screen_share).then_some(Channel::Both)
            }
            Selection::Media(m) => {
                if is_audio(t) {
                    let route = m.audio_routes.iter().find(|r| match &r.matcher {
                        AudioMatch::TrackId(id) => *id == t.sid,
                        AudioMatch::Identity(id) => *id == p.identity,
                        AudioMatch::ParticipantKind(k) => *k == p.kind,
                    });
                    match route {
                        Some(r) => Some(r.channel),
                        None => m.capture_all.then_some(Channel::Both),
                    }
                } else if is_video(t) {
                    let wanted = match (&m.video_track_id, &m.participant_video) {
                        (Some(id), _) => *id == t.sid,
                        (None, Some((identity, screen))) => {
                            let source = if *screen { S::ScreenShare } else { S::Camera };
                            p.identity == *identity && t.source == source as i32
                        }
                        (None, None) => false,
                    };
                    wanted.then_some(Channel::Both)
                } else {
                    None
                }
            }
        }
    }

    /// Identities that must be in the room within the await time.
    fn required_identities(&self) -> Vec<&str> {
        match self {
            Selection::Tracks { .. } => Vec::new(),
            Selection::Participant { identity, .. } => vec![identity],
            Selection::Media(m) => m
                .participant_video
                .iter()
                .map(|(i, _)| i.as_str())
                .chain(m.audio_routes.iter().filter_map(|r| match &r.matcher {
                    AudioMatch::Identity(i) => Some(i.as_str()),
                    _ => None,
                }))
                .collect(),
        }
    }

    /// Track IDs that must be published within the await time.
    fn required_tracks(&self) -> Vec<&str> {
        match self {
            Selection::Tracks { audio, video } => audio
                .iter()
                .chain(video.iter())
                .map(String::as_str)
                .collect(),
            Selection::Participant { .. } => Vec::new(),
            Selection::Media(m) => m
                .video_track_id
                .iter()
                .map(String::as_str)
                .chain(m.audio_routes.iter().filter_map(|r| match &r.matcher {
                    AudioMatch::TrackId(i) => Some(i.as_str()),
                    _ => None,
                }))
                .collect(),
        }
    }
}

pub struct RoomParams {
    pub ws_url: String,
    pub token: String,
    pub selection: Selection,
    /// How long required participants and tracks may take to appear (Go: 30 s).
    pub await_tracks: Duration,
}

/// A track the recorder subscribed to.
#[derive(Debug, Clone)]
pub struct TrackAdded {
    pub info: proto::TrackInfo,
    /// `None` when this build cannot decode the track's codec (it is subscribed but ignored).
    pub codec: Option<TrackCodec>,
    pub publisher_identity: String,
    pub channel: Channel,
}

/// Why the source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEnd {
    /// The recorded participant left (participant egress).
    ParticipantLeft,
    /// Every recorded track was unpublished (track composite).
    AllTracksEnded,
    /// The server sent Leave (room deleted, recorder removed, server shutting down).
    RoomClosed(String),
    /// The signalling connection or the PeerConnection broke.
    Disconnected(String),
    /// Go's `track %s not found`.
    TrackNotFound(String),
    /// Go's `participant %s not found`.
    ParticipantNotFound(String),
    /// A track of the wrong kind (`audio_track_id` / `video_track_id`).
    InvalidField(&'static str),
}

#[derive(Debug)]
pub enum RoomEvent {
    /// Every required participant and track is there (Go's init is complete).
    Ready,
    TrackAdded(Box<TrackAdded>),
    /// The track was unpublished (or its publisher left).
    TrackRemoved {
        track_sid: String,
    },
    Frame(Frame),
    /// The last event, unless a stop came first or the join failed.
    Ended(RoomEnd),
}

/// Joins the room and runs until the source ends or `stop` turns true.
pub async fn run(
    params: RoomParams,
    events: mpsc::Sender<RoomEvent>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WebrtcError> {
    let server_ip = server_ip(&params.ws_url).await;
    let mut state = State::new(params.selection, params.await_tracks);
    loop {
        let (signal, join, mut signal_events) =
            signal::connect(&params.ws_url, &params.token).await?;
        tracing::info!(
            room = join.room.as_ref().map(|r| r.name.as_str()).unwrap_or(""),
            participant = join
                .participant
                .as_ref()
                .map(|p| p.sid.as_str())
                .unwrap_or(""),
            "recorder joined the room"
        );
        let mut peer = Peer::new(server_ip).await?;
        state.new_session();
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
        match result {
            Ok(Session::Rejoin) => {
                tracing::info!("rejoining the room for a fresh subscriber connection")
            }
            Ok(Session::Done) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// How a signalling session ended.
enum Session {
    /// The source ended or a stop came.
    Done,
    /// The server moved another track onto an m-line that carried one before. str0m keeps one
    /// depacketizer per m-line and payload type, which drops the new stream's packets while
    /// their sequence numbers are below the old stream's (for up to as long as the old track
    /// ran), so the recorder leaves and joins again: a new PeerConnection, every recorded
    /// track subscribed afresh (a gap of about a second, filled by the mixers).
    Rejoin,
}

/// A subscribed track.
struct Sub {
    participant_sid: String,
    video: bool,
    arc_sid: Arc<str>,
    keyframe_seen: bool,
    last_pli: Option<Instant>,
}

/// Something the task has to tell the server or the pipeline.
enum Action {
    Subscribe {
        participant_sid: String,
        track_sid: String,
        video: bool,
    },
    Event(RoomEvent),
}

struct State {
    selection: Selection,
    deadline: Instant,
    ready: bool,
    /// The latest info of every participant in the room, by SID.
    participants: HashMap<String, proto::ParticipantInfo>,
    subs: HashMap<String, Sub>,
    /// Tracks once subscribed and since removed: never subscribed again.
    gone: HashSet<String>,
    /// The offers' `mid_to_track_id`.
    mids: HashMap<String, String>,
    actions: Vec<Action>,
    ended: Option<RoomEnd>,
    clock: CaptureClock,
    first_frame_logged: HashSet<String>,
    first_sr_logged: HashSet<String>,
    /// M-lines whose media was dropped (logged once each).
    unknown_mids: HashSet<String>,
    /// The session must be replaced (see [`Session::Rejoin`]).
    rejoin: bool,
}

impl State {
    fn new(selection: Selection, await_tracks: Duration) -> State {
        State {
            selection,
            deadline: Instant::now() + await_tracks,
            ready: false,
            participants: HashMap::new(),
            subs: HashMap::new(),
            gone: HashSet::new(),
            mids: HashMap::new(),
            actions: Vec::new(),
            ended: None,
            clock: CaptureClock::new(),
            first_frame_logged: HashSet::new(),
            first_sr_logged: HashSet::new(),
            unknown_mids: HashSet::new(),
            rejoin: false,
        }
    }

    /// A new signalling session and PeerConnection: m-lines start afresh, and every recorded
    /// track is subscribed again (its stream restarts with new RTP times and a keyframe).
    fn new_session(&mut self) {
        self.rejoin = false;
        self.mids.clear();
        self.unknown_mids.clear();
        for (sid, sub) in &mut self.subs {
            sub.keyframe_seen = false;
            sub.last_pli = None;
            self.clock.remove_track(sid);
            self.actions.push(Action::Subscribe {
                participant_sid: sub.participant_sid.clone(),
                track_sid: sid.clone(),
                video: sub.video,
            });
        }
    }

    fn end(&mut self, reason: RoomEnd) {
        self.ended.get_or_insert(reason);
    }

    /// Applies a participant list (join or update; an update carries the full info of each
    /// participant it names).
    fn participants(&mut self, list: &[proto::ParticipantInfo]) {
        for p in list {
            let left = p.state == proto::participant_info::State::Disconnected as i32;
            if left {
                self.participants.remove(&p.sid);
                // A session replaced by a new one with the same identity (a publisher that
                // reconnected) has not left: its new tracks are picked up as republished.
                let replaced =
                    p.disconnect_reason == proto::DisconnectReason::DuplicateIdentity as i32;
                if let Selection::Participant { identity, .. } = &self.selection
                    && *identity == p.identity
                    && self.ready
                    && !replaced
                    && !self
                        .participants
                        .values()
                        .any(|other| other.identity == p.identity)
                {
                    tracing::info!(identity = %p.identity, "recorded participant left");
                    self.end(RoomEnd::ParticipantLeft);
                }
            } else {
                // One session per identity: a new one replaces the old (whose disconnect the
                // server may never announce), and the old session's tracks are gone.
                let replaced: Vec<String> = self
                    .participants
                    .values()
                    .filter(|o| o.identity == p.identity && o.sid != p.sid)
                    .map(|o| o.sid.clone())
                    .collect();
                for sid in replaced {
                    self.participants.remove(&sid);
                    let tracks: Vec<String> = self
                        .subs
                        .iter()
                        .filter(|(_, s)| s.participant_sid == sid)
                        .map(|(t, _)| t.clone())
                        .collect();
                    for t in tracks {
                        self.remove_track(&t);
                    }
                }
                self.participants.insert(p.sid.clone(), p.clone());
            }
            // Tracks of this participant that are no longer published.
            let current: HashSet<&str> = if left {
                HashSet::new()
            } else {
                p.tracks.iter().map(|t| t.sid.as_str()).collect()
            };
            let removed: Vec<String> = self
                .subs
                .iter()
                .filter(|(sid, s)| s.participant_sid == p.sid && !current.contains(sid.as_str()))
                .map(|(sid, _)| sid.clone())
                .collect();
            for sid in removed {
                self.remove_track(&sid);
            }
            if !left {
                for t in &p.tracks {
                    self.consider(p, t);
                }
            }
        }
        self.check_ready();
    }

    /// Subscribes to `t` if the selection wants it.
    fn consider(&mut self, p: &proto::ParticipantInfo, t: &proto::TrackInfo) {
        if self.subs.contains_key(&t.sid) || self.gone.contains(&t.sid) {
            return;
        }
        // After init, only participant and media requests take new tracks (Go).
        if self.ready && matches!(self.selection, Selection::Tracks { .. }) {
            return;
        }
        let Some(channel) = self.selection.wants(p, t) else {
            return;
        };
        if let Selection::Tracks { audio, video } = &self.selection {
            if audio.as_deref() == Some(t.sid.as_str()) && !is_audio(t) {
                self.end(RoomEnd::InvalidField("audio_track_id"));
                return;
            }
            if video.as_deref() == Some(t.sid.as_str()) && !is_video(t) {
                self.end(RoomEnd::InvalidField("video_track_id"));
                return;
            }
        }
        let codec = TrackCodec::from_mime(&t.mime_type);
        tracing::info!(track_sid = %t.sid, publisher = %p.identity, mime = %t.mime_type, source = t.source, ?channel, "subscribing to track");
        self.subs.insert(
            t.sid.clone(),
            Sub {
                participant_sid: p.sid.clone(),
                video: is_video(t),
                arc_sid: Arc::from(t.sid.as_str()),
                keyframe_seen: false,
                last_pli: None,
            },
        );
        self.actions.push(Action::Subscribe {
            participant_sid: p.sid.clone(),
            track_sid: t.sid.clone(),
            video: is_video(t),
        });
        self.actions
            .push(Action::Event(RoomEvent::TrackAdded(Box::new(TrackAdded {
                info: t.clone(),
                codec,
                publisher_identity: p.identity.clone(),
                channel,
            }))));
    }

    fn remove_track(&mut self, sid: &str) {
        if self.subs.remove(sid).is_none() {
            return;
        }
        tracing::info!(track_sid = %sid, "recorded track unpublished");
        self.gone.insert(sid.to_owned());
        self.clock.remove_track(sid);
        self.actions.push(Action::Event(RoomEvent::TrackRemoved {
            track_sid: sid.to_owned(),
        }));
        if self.ready && self.subs.is_empty() && matches!(self.selection, Selection::Tracks { .. })
        {
            self.end(RoomEnd::AllTracksEnded);
        }
    }

    fn check_ready(&mut self) {
        if self.ready || self.ended.is_some() {
            return;
        }
        let identities = self.selection.required_identities();
        let has_identity = |i: &str| self.participants.values().any(|p| p.identity == i);
        let missing_identity = identities
            .iter()
            .find(|i| !has_identity(i))
            .map(|i| i.to_string());
        let missing_track = self
            .selection
            .required_tracks()
            .into_iter()
            .find(|sid| !self.subs.contains_key(*sid) && !self.gone.contains(*sid))
            .map(str::to_owned);
        match (missing_identity, missing_track) {
            (None, None) => {
                tracing::info!("every required participant and track is in the room");
                self.ready = true;
                self.actions.push(Action::Event(RoomEvent::Ready));
            }
            (identity, track) if Instant::now() >= self.deadline => {
                self.end(match (identity, track) {
                    (Some(i), _) => RoomEnd::ParticipantNotFound(i),
                    (None, Some(t)) => RoomEnd::TrackNotFound(t),
                    (None, None) => return,
                });
            }
            _ => {}
        }
    }

    /// The track an m-line carries.
    fn track_of(&self, mid: &str, video: bool) -> Option<&str> {
        if let Some(sid) = self.mids.get(mid) {
            return self.subs.contains_key(sid).then_some(sid.as_str());
        }
        // A server without a mid map: only unambiguous when one track of the kind is subscribed.
        let mut of_kind = self.subs.iter().filter(|(_, s)| s.video == video);
        match (of_kind.next(), of_kind.next()) {
            (Some((sid, _)), None) => Some(sid.as_str()),
            _ => None,
        }
    }
}

async fn drive(
    state: &mut State,
    signal: &Signal,
    signal_events: &mut livekit_signaling::SignalEvents,
    peer: &mut Peer,
    events: &mpsc::Sender<RoomEvent>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Session, WebrtcError> {
    let mut rtc_events = Vec::new();
    // A resume of the signalling session in progress (the media keeps flowing meanwhile).
    let mut resuming: Option<futures_util::future::BoxFuture<'_, Result<(), String>>> = None;
    loop {
        for action in std::mem::take(&mut state.actions) {
            match action {
                Action::Subscribe {
                    participant_sid,
                    track_sid,
                    video,
                } => {
                    signal.subscribe(&participant_sid, &track_sid, true).await;
                    if video {
                        signal.highest_quality(&track_sid).await;
                    }
                }
                Action::Event(e) => {
                    let _ = events.send(e).await;
                }
            }
        }
        state.check_ready();
        if let Some(reason) = state.ended.take() {
            tracing::info!(?reason, "room source ended");
            let _ = events.send(RoomEvent::Ended(reason)).await;
            return Ok(Session::Done);
        }
        if state.rejoin {
            return Ok(Session::Rejoin);
        }
        for c in peer.take_unsent_candidates() {
            signal.trickle(c).await;
        }
        let next_timeout = peer.drain(&mut rtc_events)?;
        let mut keyframes = Vec::new();
        for e in rtc_events.drain(..) {
            if let Some(mid) = handle_rtc_event(state, e, events).await {
                keyframes.push(mid);
            }
        }
        if !keyframes.is_empty() {
            for mid in keyframes {
                peer.request_keyframe(mid);
            }
            // A mutation of the Rtc: drain again before waiting.
            continue;
        }
        if !peer.is_alive() {
            state.end(RoomEnd::Disconnected("peer connection closed".into()));
            continue;
        }
        let wake = if state.ready {
            next_timeout
        } else {
            next_timeout.min(state.deadline)
        };
        tokio::select! {
            r = peer.wait(wake) => r?,
            resumed = super::subscriber::until_done(&mut resuming), if resuming.is_some() => {
                resuming = None;
                match resumed {
                    Ok(()) => tracing::info!("signalling session resumed"),
                    Err(e) => state.end(RoomEnd::Disconnected(e)),
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
                None => state.end(RoomEnd::Disconnected("signal connection closed".into())),
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return Ok(Session::Done);
                }
            }
        }
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
            let reused = offer.mid_to_track_id.iter().find(|(mid, sid)| {
                state
                    .mids
                    .get(*mid)
                    .is_some_and(|old| !old.is_empty() && old != *sid && !sid.is_empty())
            });
            if let Some((mid, sid)) = reused {
                tracing::info!(%mid, track_sid = %sid, previous = ?state.mids.get(mid), "the server reuses an m-line for another track");
                state.rejoin = true;
                return Ok(());
            }
            state.mids.extend(offer.mid_to_track_id.clone());
            let answer = peer.accept_offer(&offer.sdp)?;
            peer.take_unsent_candidates();
            signal.answer(answer, offer.id).await;
            tracing::debug!(offer_id = offer.id, mids = ?offer.mid_to_track_id, "answered the subscriber offer");
        }
        Res::Trickle(t) if t.target == proto::SignalTarget::Subscriber as i32 => {
            if let Err(e) = peer.add_remote_candidate(&t.candidate_init) {
                tracing::warn!(error = %e, "ignoring a server candidate");
            }
        }
        Res::Update(update) => state.participants(&update.participants),
        Res::TrackUnpublished(u) => state.remove_track(&u.track_sid),
        Res::Leave(leave) => {
            let reason = proto::DisconnectReason::try_from(leave.reason)
                .map(|r| r.as_str_name().to_owned())
                .unwrap_or_else(|_| leave.reason.to_string());
            state.end(RoomEnd::RoomClosed(reason));
        }
        Res::SubscriptionResponse(r) if r.err != 0 && state.subs.contains_key(&r.track_sid) => {
            tracing::warn!(track_sid = %r.track_sid, err = r.err, "subscription refused");
            state.remove_track(&r.track_sid);
        }
        _ => {}
    }
    Ok(())
}

/// Handles one str0m event; returns the m-line to ask a keyframe for, if one is needed.
async fn handle_rtc_event(
    state: &mut State,
    e: Event,
    events: &mpsc::Sender<RoomEvent>,
) -> Option<Mid> {
    match e {
        Event::MediaData(m) => {
            let codec = match m.params.spec().codec {
                str0m::format::Codec::Opus => TrackCodec::Opus,
                str0m::format::Codec::Vp8 => TrackCodec::Vp8,
                str0m::format::Codec::Vp9 => TrackCodec::Vp9,
                str0m::format::Codec::H264 => TrackCodec::H264,
                str0m::format::Codec::H265 => TrackCodec::H265,
                str0m::format::Codec::Av1 => TrackCodec::Av1,
                _ => return None,
            };
            let video = codec != TrackCodec::Opus;
            let Some(sid) = state.track_of(&m.mid.to_string(), video).map(str::to_owned) else {
                if state.unknown_mids.insert(m.mid.to_string()) {
                    tracing::debug!(mid = %m.mid, mapped = ?state.mids.get(&m.mid.to_string()), "media on an m-line of no recorded track");
                }
                return None;
            };
            state.unknown_mids.remove(&m.mid.to_string());
            let keyframe = match m.codec_extra {
                CodecExtra::Vp8(e) => e.is_keyframe,
                CodecExtra::H264(e) => e.is_keyframe,
                CodecExtra::Vp9(e) => e.is_keyframe,
                CodecExtra::H265(e) => e.is_keyframe,
                CodecExtra::Av1(e) => e.is_keyframe,
                _ => false,
            };
            let sub = state.subs.get_mut(&sid)?;
            let mut pli = None;
            if video {
                sub.keyframe_seen |= keyframe;
                let every = if !sub.keyframe_seen {
                    Some(PLI_BEFORE_KEYFRAME)
                } else if !m.contiguous {
                    Some(PLI_AFTER_LOSS)
                } else {
                    None
                };
                if let Some(every) = every
                    && !keyframe
                    && sub.last_pli.is_none_or(|at| at.elapsed() >= every)
                {
                    sub.last_pli = Some(Instant::now());
                    pli = Some(m.mid);
                }
            }
            let track_sid = sub.arc_sid.clone();
            let publisher = sub.participant_sid.clone();
            if state.first_frame_logged.insert(sid.clone()) {
                tracing::info!(track_sid = %sid, ?codec, sender_report = m.last_sender_info.is_some(), "first media frame of track");
            }
            let capture = state.clock.capture_time(
                &publisher,
                &sid,
                m.time.numer(),
                m.time.denom(),
                wall_at(m.network_time),
                m.last_sender_info.as_ref(),
            );
            if capture.sender_synced && state.first_sr_logged.insert(sid.clone()) {
                tracing::info!(track_sid = %sid, "track timed by RTCP sender reports from now on");
            }
            let frame = Frame {
                codec,
                rtp_time: m.time.numer(),
                clock_rate: m.time.denom(),
                data: m.data,
                contiguous: m.contiguous,
                keyframe,
                received_at: m.network_time,
                track_sid,
                capture,
            };
            // A slow pipeline applies backpressure here rather than growing memory.
            let _ = events.send(RoomEvent::Frame(frame)).await;
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
async fn server_ip(ws_url: &str) -> Option<std::net::IpAddr> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn participant(
        sid: &str,
        identity: &str,
        tracks: Vec<proto::TrackInfo>,
    ) -> proto::ParticipantInfo {
        proto::ParticipantInfo {
            sid: sid.into(),
            identity: identity.into(),
            tracks,
            ..Default::default()
        }
    }

    fn track(sid: &str, kind: proto::TrackType, source: proto::TrackSource) -> proto::TrackInfo {
        proto::TrackInfo {
            sid: sid.into(),
            r#type: kind as i32,
            source: source as i32,
            mime_type: if kind == proto::TrackType::Audio {
                "audio/opus".into()
            } else {
                "video/H264".into()
            },
            ..Default::default()
        }
    }

    fn added(state: &mut State) -> Vec<String> {
        state
            .actions
            .drain(..)
            .filter_map(|a| match a {
                Action::Event(RoomEvent::TrackAdded(t)) => Some(t.info.sid),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn participant_selection_takes_camera_and_microphone_and_later_republished_tracks() {
        use proto::{TrackSource as S, TrackType as T};
        let sel = Selection::Participant {
            identity: "alice".into(),
            screen_share: false,
        };
        let mut state = State::new(sel, Duration::from_secs(30));
        let alice = |tracks| participant("PA_1", "alice", tracks);
        state.participants(&[alice(vec![
            track("TR_cam", T::Video, S::Camera),
            track("TR_mic", T::Audio, S::Microphone),
            track("TR_screen", T::Video, S::ScreenShare),
        ])]);
        assert!(state.ready);
        let mut got = added(&mut state);
        got.sort();
        assert_eq!(got, ["TR_cam", "TR_mic"]);
        // Unpublished, then published again with a new SID.
        state.participants(&[alice(vec![track("TR_mic", T::Audio, S::Microphone)])]);
        assert!(state.actions.iter().any(|a| matches!(a, Action::Event(RoomEvent::TrackRemoved { track_sid }) if track_sid == "TR_cam")));
        state.actions.clear();
        state.participants(&[alice(vec![
            track("TR_mic", T::Audio, S::Microphone),
            track("TR_cam2", T::Video, S::Camera),
        ])]);
        assert_eq!(added(&mut state), ["TR_cam2"]);
        let mut left = alice(vec![]);
        left.state = proto::participant_info::State::Disconnected as i32;
        state.participants(&[left]);
        assert_eq!(state.ended, Some(RoomEnd::ParticipantLeft));
    }

    #[test]
    fn a_new_session_of_the_same_identity_replaces_the_old_one() {
        use proto::{TrackSource as S, TrackType as T};
        let sel = Selection::Participant {
            identity: "bob".into(),
            screen_share: false,
        };
        let mut state = State::new(sel, Duration::from_secs(30));
        state.participants(&[participant(
            "PA_1",
            "bob",
            vec![track("TR_mic1", T::Audio, S::Microphone)],
        )]);
        state.actions.clear();
        state.participants(&[participant(
            "PA_2",
            "bob",
            vec![track("TR_mic2", T::Audio, S::Microphone)],
        )]);
        assert!(state.actions.iter().any(|a| matches!(a, Action::Event(RoomEvent::TrackRemoved { track_sid }) if track_sid == "TR_mic1")));
        assert_eq!(added(&mut state), ["TR_mic2"]);
        // The old session's disconnect (duplicate identity) does not end the recording ...
        let mut old = participant("PA_1", "bob", vec![]);
        old.state = proto::participant_info::State::Disconnected as i32;
        old.disconnect_reason = proto::DisconnectReason::DuplicateIdentity as i32;
        state.participants(&[old]);
        assert_eq!(state.ended, None);
        // ... the new one leaving does.
        let mut new = participant("PA_2", "bob", vec![]);
        new.state = proto::participant_info::State::Disconnected as i32;
        state.participants(&[new]);
        assert_eq!(state.ended, Some(RoomEnd::ParticipantLeft));
    }

    #[test]
    fn track_composite_refuses_a_track_of_the_wrong_kind() {
        use proto::{TrackSource as S, TrackType as T};
        let sel = Selection::Tracks {
            audio: Some("TR_v".into()),
            video: None,
        };
        let mut state = State::new(sel, Duration::from_secs(30));
        state.participants(&[participant(
            "PA_1",
            "bob",
            vec![track("TR_v", T::Video, S::Camera)],
        )]);
        assert_eq!(state.ended, Some(RoomEnd::InvalidField("audio_track_id")));
    }

    #[test]
    fn missing_participants_and_tracks_are_reported_after_the_deadline() {
        let mut state = State::new(
            Selection::Participant {
                identity: "carol".into(),
                screen_share: false,
            },
            Duration::ZERO,
        );
        state.participants(&[]);
        assert_eq!(
            state.ended,
            Some(RoomEnd::ParticipantNotFound("carol".into()))
        );
        let mut state = State::new(
            Selection::Tracks {
                audio: Some("TR_a".into()),
                video: None,
            },
            Duration::ZERO,
        );
        state.participants(&[]);
        assert_eq!(state.ended, Some(RoomEnd::TrackNotFound("TR_a".into())));
    }

    #[test]
    fn media_audio_routes_pick_channels_and_capture_all_takes_the_rest() {
        use proto::{TrackSource as S, TrackType as T};
        let sel = Selection::Media(MediaSelection {
            video_track_id: None,
            participant_video: Some(("alice".into(), true)),
            audio_routes: vec![
                AudioRoute {
                    matcher: AudioMatch::TrackId("TR_a1".into()),
                    channel: Channel::Left,
                },
                AudioRoute {
                    matcher: AudioMatch::Identity("bob".into()),
                    channel: Channel::Right,
                },
            ],
            capture_all: false,
        });
        let alice = participant("PA_1", "alice", vec![]);
        let bob = participant("PA_2", "bob", vec![]);
        assert_eq!(
            sel.wants(&alice, &track("TR_a1", T::Audio, S::Microphone)),
            Some(Channel::Left)
        );
        assert_eq!(
            sel.wants(&bob, &track("TR_b", T::Audio, S::Microphone)),
            Some(Channel::Right)
        );
        assert_eq!(
            sel.wants(&alice, &track("TR_a2", T::Audio, S::Microphone)),
            None
        );
        assert_eq!(
            sel.wants(&alice, &track("TR_s", T::Video, S::ScreenShare)),
            Some(Channel::Both)
        );
        assert_eq!(sel.wants(&alice, &track("TR_c", T::Video, S::Camera)), None);
        let Selection::Media(mut m) = sel else {
            unreachable!()
        };
        m.capture_all = true;
        assert_eq!(
            Selection::Media(m).wants(&alice, &track("TR_a2", T::Audio, S::Microphone)),
            Some(Channel::Both)
        );
    }
}

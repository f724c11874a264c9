//! A LiveKit room subscriber without Chrome and without libwebrtc: LiveKit's own signalling
//! client (`livekit-signaling`, WebSocket + protobuf) and str0m, a sans-IO WebRTC stack that this
//! module drives on tokio (one UDP socket, its timers).
//!
//! Modules, one job each: [`signal`] (the WebSocket session: join, answer, trickle, subscribe),
//! [`peer`] (the subscriber PeerConnection: offer → answer, ICE candidates, UDP, depacketized
//! frames), [`subscriber`] (joins as the hidden recorder, waits for one track, subscribes, and
//! reports its frames and the end of the source), [`room`] (the same for a set of tracks: track
//! composite, participant and media egress), [`clock`] (capture times on one clock for all
//! tracks, from RTCP sender reports).

pub mod clock;
pub mod error;
pub mod peer;
pub mod room;
pub mod signal;
pub mod subscriber;

pub use error::WebrtcError;
pub use subscriber::{EndReason, Frame, SourceEvent, SubscribeParams, TrackCodec};

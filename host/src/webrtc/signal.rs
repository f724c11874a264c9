//! The signalling session with livekit-server: `livekit-signaling` owns the WebSocket (join,
//! pings, protobuf framing); this wraps the few requests a subscriber-only recorder sends.

use egress_proto::livekit as proto;
use livekit_signaling::{SignalClient, SignalEvents, SignalOptions};
use proto::signal_request::Message as Req;

use super::WebrtcError;

pub use livekit_signaling::SignalEvent;

/// An open signalling session.
pub struct Signal {
    client: SignalClient,
}

/// Joins the room at `ws_url` with `token`. Returns the session, the server's `JoinResponse`
/// and the stream of server messages.
pub async fn connect(ws_url: &str, token: &str) -> Result<(Signal, proto::JoinResponse, SignalEvents), WebrtcError> {
    let mut options = SignalOptions::default();
    // The recorder subscribes to exactly the tracks its request names.
    options.auto_subscribe = false;
    // Region failover is for LiveKit Cloud URLs; the egress is told its server.
    options.region_failover = false;
    // No packet trailers: str0m hands the payload to the muxer as is, and a trailer would end
    // up inside the recorded frames.
    options.client_capabilities = Vec::new();
    options.sdk_options.sdk = "egress-rs".to_owned();
    options.sdk_options.sdk_version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let (client, join, events) =
        SignalClient::connect(ws_url, token, options, None).await.map_err(|e| WebrtcError::Signal(e.to_string()))?;
    Ok((Signal { client }, join, events))
}

impl Signal {
    /// Answers a subscriber offer; `id` echoes the offer's id (protocol ≥ 16).
    pub async fn answer(&self, sdp: String, id: u32) {
        self.client
            .send(Req::Answer(proto::SessionDescription { r#type: "answer".into(), sdp, id, ..Default::default() }))
            .await;
    }

    /// Sends one local ICE candidate of the subscriber PeerConnection (`candidate_init` JSON).
    pub async fn trickle(&self, candidate_init: String) {
        self.client
            .send(Req::Trickle(proto::TrickleRequest {
                candidate_init,
                target: proto::SignalTarget::Subscriber as i32,
                r#final: false,
            }))
            .await;
    }

    /// Subscribes to (or unsubscribes from) `track_sid` of `participant_sid`.
    pub async fn subscribe(&self, participant_sid: &str, track_sid: &str, subscribe: bool) {
        self.client
            .send(Req::Subscription(proto::UpdateSubscription {
                track_sids: vec![track_sid.to_owned()],
                subscribe,
                participant_tracks: vec![proto::ParticipantTracks {
                    participant_sid: participant_sid.to_owned(),
                    track_sids: vec![track_sid.to_owned()],
                }],
            }))
            .await;
    }

    /// Leaves the room and closes the WebSocket.
    pub async fn close(&self) {
        self.client.close().await;
    }
}

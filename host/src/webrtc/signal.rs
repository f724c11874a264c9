//! The signalling session with livekit-server: `livekit-signaling` owns the WebSocket (join,
//! pings, protobuf framing); this wraps the few requests a subscriber-only recorder sends.

use std::time::Duration;

use egress_proto::livekit as proto;
use livekit_signaling::{SignalClient, SignalError, SignalEvents, SignalOptions};
use proto::signal_request::Message as Req;

use super::WebrtcError;

pub use livekit_signaling::SignalEvent;

/// An open signalling session.
pub struct Signal {
    client: SignalClient,
}

/// Per attempt: livekit-signaling's 5 s default is too short for a server working through a
/// burst of joins (bench/tracks: 57 of 300 egresses started at once timed out at 5 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts, and the pause before each retry. A join that failed for a transient reason (a
/// timeout, a dropped connection, a 5xx) is retried; a refused token or a bad URL is not.
const CONNECT_ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long a dropped signalling session is tried again before the source counts as gone.
const RESUME_WINDOW: Duration = Duration::from_secs(15);

/// Joins the room at `ws_url` with `token`, retrying transient failures. Returns the session,
/// the server's `JoinResponse` and the stream of server messages.
pub async fn connect(
    ws_url: &str,
    token: &str,
) -> Result<(Signal, proto::JoinResponse, SignalEvents), WebrtcError> {
    let mut attempt = 1;
    loop {
        match connect_once(ws_url, token).await {
            Ok(joined) => return Ok(joined),
            Err(e) if attempt < CONNECT_ATTEMPTS && is_transient(&e) => {
                tracing::warn!(attempt, error = %e, "joining the room failed; retrying");
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
                attempt += 1;
            }
            Err(e) => return Err(WebrtcError::Signal(e.to_string())),
        }
    }
}

/// Whether a failed join may succeed when tried again.
fn is_transient(e: &SignalError) -> bool {
    match e {
        SignalError::Timeout(_) | SignalError::Connection(_) | SignalError::Closed => true,
        SignalError::Server(status, _) | SignalError::Handshake { status } => {
            status.is_server_error() || status.as_u16() == 429
        }
        _ => false,
    }
}

async fn connect_once(
    ws_url: &str,
    token: &str,
) -> Result<(Signal, proto::JoinResponse, SignalEvents), SignalError> {
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
    options.connect_timeout = CONNECT_TIMEOUT;
    let (client, join, events) = SignalClient::connect(ws_url, token, options, None).await?;
    Ok((Signal { client }, join, events))
}

impl Signal {
    /// Answers a subscriber offer; `id` echoes the offer's id (protocol ≥ 16).
    pub async fn answer(&self, sdp: String, id: u32) {
        self.client
            .send(Req::Answer(proto::SessionDescription {
                r#type: "answer".into(),
                sdp,
                id,
                ..Default::default()
            }))
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

    /// Asks for the highest simulcast layer of a video track (the server picks a layer by the
    /// subscriber's settings; a recorder wants full quality).
    pub async fn highest_quality(&self, track_sid: &str) {
        self.client
            .send(Req::TrackSetting(proto::UpdateTrackSettings {
                track_sids: vec![track_sid.to_owned()],
                quality: proto::VideoQuality::High as i32,
                ..Default::default()
            }))
            .await;
    }

    /// Resumes the session after the WebSocket dropped: reconnects with the same participant
    /// (`reconnect=1`), so livekit-server keeps the subscription and the PeerConnection, whose
    /// media never stopped flowing over UDP. Retries transient failures for
    /// [`RESUME_WINDOW`] (livekit-server holds a vanished participant about 20 s).
    pub async fn resume(&self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + RESUME_WINDOW;
        let mut attempt = 1;
        loop {
            match self
                .client
                .restart(proto::ReconnectReason::RrSignalDisconnected)
                .await
            {
                Ok(_) => {
                    // Only the signalling dropped; the media path is up, so the session is whole.
                    self.client.set_reconnected().await;
                    return Ok(());
                }
                Err(e)
                    if is_transient(&e) && tokio::time::Instant::now() + RETRY_PAUSE < deadline =>
                {
                    tracing::warn!(attempt, error = %e, "resuming the signalling session failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    attempt += 1;
                }
                Err(e) => return Err(format!("signalling could not be resumed: {e}")),
            }
        }
    }

    /// Leaves the room and closes the WebSocket.
    pub async fn close(&self) {
        self.client.close().await;
    }
}

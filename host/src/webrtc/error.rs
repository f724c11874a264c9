//! What can go wrong while subscribing.

#[derive(Debug, thiserror::Error)]
pub enum WebrtcError {
    /// The signalling WebSocket could not be opened or joined (bad URL, token, server down).
    #[error("connection to room failed: {0}")]
    Signal(String),
    /// str0m refused an input or an SDP (a bug on one side, or an unsupported offer).
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// The server's offer or candidate did not parse.
    #[error("invalid {field} from the server: {reason}")]
    Remote { field: &'static str, reason: String },
    /// The UDP socket failed.
    #[error("udp socket: {0}")]
    Io(#[from] std::io::Error),
}

//! Wire types for the egress.
//!
//! * [`psrpc`]: psrpc's envelope (`internal.Msg`, `Request`, `Response`, claims), generated
//!   from `protos/psrpc_internal.proto` at build time.
//! * [`rpc`]: the handful of LiveKit `rpc` package messages the egress speaks, written out by
//!   hand with prost derives because they embed `livekit.*` messages that the
//!   `livekit-protocol` crate already provides (re-exported as [`livekit`]).
//!
//! All types tolerate unknown fields from newer peers (prost skips them on decode).

pub use livekit_protocol as livekit;

/// psrpc's `internal` package.
pub mod psrpc {
    include!(concat!(env!("OUT_DIR"), "/internal.rs"));

    /// Type URLs exactly as Go's `anypb` writes them.
    pub mod type_url {
        pub const REQUEST: &str = "type.googleapis.com/internal.Request";
        pub const RESPONSE: &str = "type.googleapis.com/internal.Response";
        pub const CLAIM_REQUEST: &str = "type.googleapis.com/internal.ClaimRequest";
        pub const CLAIM_RESPONSE: &str = "type.googleapis.com/internal.ClaimResponse";
    }
}

/// LiveKit's `rpc` package (protocol `protobufs/rpc/egress.proto`, `io.proto`), the messages
/// the egress needs. Field numbers follow psrpc-redis.md §3.5.
pub mod rpc {
    use crate::livekit;

    /// `rpc.StartEgressRequest`: what livekit-server sends to `EgressInternal.StartEgress`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StartEgressRequest {
        #[prost(string, tag = "1")]
        pub egress_id: String,
        #[prost(
            oneof = "start_egress_request::Request",
            tags = "16, 17, 5, 11, 13, 6, 7"
        )]
        pub request: Option<start_egress_request::Request>,
        #[prost(string, tag = "3")]
        pub room_id: String,
        #[prost(string, tag = "18")]
        pub room_name: String,
        /// Secret: a join token minted by a cloud deployment; empty from OSS livekit-server.
        #[prost(string, tag = "8")]
        pub token: String,
        #[prost(string, tag = "9")]
        pub ws_url: String,
        #[prost(bool, tag = "10")]
        pub cloud_backup_enabled: bool,
        #[prost(double, tag = "14")]
        pub estimated_cpu: f64,
        #[prost(int32, tag = "15")]
        pub retry_count: i32,
    }

    pub mod start_egress_request {
        use super::livekit;

        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Request {
            #[prost(message, tag = "16")]
            Egress(livekit::StartEgressRequest),
            #[prost(message, tag = "17")]
            Replay(livekit::ExportReplayRequest),
            #[prost(message, tag = "5")]
            RoomComposite(livekit::RoomCompositeEgressRequest),
            #[prost(message, tag = "11")]
            Web(livekit::WebEgressRequest),
            #[prost(message, tag = "13")]
            Participant(livekit::ParticipantEgressRequest),
            #[prost(message, tag = "6")]
            TrackComposite(livekit::TrackCompositeEgressRequest),
            #[prost(message, tag = "7")]
            Track(livekit::TrackEgressRequest),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListActiveEgressRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListActiveEgressResponse {
        #[prost(string, repeated, tag = "1")]
        pub egress_ids: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetEgressRequest {
        #[prost(string, tag = "1")]
        pub egress_id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UpdateMetricsRequest {
        #[prost(message, optional, tag = "1")]
        pub info: Option<livekit::EgressInfo>,
        #[prost(float, tag = "3")]
        pub avg_cpu_usage: f32,
        #[prost(float, tag = "4")]
        pub max_cpu_usage: f32,
    }
}

//! Live stream outputs (RTMP, RTMPS, SRT): the request's URLs checked as Go checks them
//! ([`url`]), the muxers in the recorder's pipeline ([`mux`]), one task per URL that connects
//! through the live-destination plugin and reconnects by policy ([`destination`], [`backoff`]),
//! and the set of URLs of one egress with their `StreamInfo`s and `UpdateStream`
//! ([`output`]). Secrets never leave the URL type: `StreamInfo.url`, logs and the request copy
//! carry the redacted form ([`redaction`]).
//!
//! What every destination shares lives here (policy, keyframe gate, status, redaction); the
//! plugins (`plugins/rtmp`, `plugins/srt`, third-party ones) own only the transport. Each
//! destination's bytes, reconnects and state reach the service's Prometheus metrics
//! ([`metrics`]).

pub mod backoff;
pub mod destination;
pub mod metrics;
pub mod mux;
pub mod output;
pub mod redaction;
pub mod url;

pub use backoff::ReconnectPolicy;
pub use output::{StreamOutput, UpdateError};
pub use url::{StreamKind, StreamUrl, StreamUrlRules};

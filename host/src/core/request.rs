//! What kind of egress a request asks for, and what it costs (reference §4.2).

use egress_proto::livekit;
use egress_proto::rpc::{StartEgressRequest, start_egress_request::Request};

use crate::config::CpuCostConfig;

/// The request types as the Go egress labels them (`livekit_egress_requests{type}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    RoomComposite,
    Web,
    Participant,
    TrackComposite,
    Track,
    Template,
    Media,
    Replay,
}

impl RequestType {
    pub const ALL: [RequestType; 8] = [
        RequestType::RoomComposite,
        RequestType::Web,
        RequestType::Participant,
        RequestType::TrackComposite,
        RequestType::Track,
        RequestType::Template,
        RequestType::Media,
        RequestType::Replay,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RequestType::RoomComposite => "room_composite",
            RequestType::Web => "web",
            RequestType::Participant => "participant",
            RequestType::TrackComposite => "track_composite",
            RequestType::Track => "track",
            RequestType::Template => "template",
            RequestType::Media => "media",
            RequestType::Replay => "replay",
        }
    }
}

/// A request reduced to what admission needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Classified {
    pub request_type: RequestType,
    /// Runs Chrome (web source) rather than subscribing over WebRTC.
    pub uses_chrome: bool,
    pub audio_only: bool,
    pub passthrough: bool,
}

/// Classifies a request; `None` when the request oneof is missing.
pub fn classify(req: &StartEgressRequest) -> Option<Classified> {
    let chrome =
        |audio_only, layout: &str, base: &str| audio_only && layout.is_empty() && base.is_empty();
    let c = match req.request.as_ref()? {
        Request::RoomComposite(r) => Classified {
            request_type: RequestType::RoomComposite,
            uses_chrome: !chrome(r.audio_only, &r.layout, &r.custom_base_url),
            audio_only: r.audio_only,
            passthrough: false,
        },
        Request::Web(r) => Classified {
            request_type: RequestType::Web,
            uses_chrome: true,
            audio_only: r.audio_only,
            passthrough: false,
        },
        Request::Participant(_) => plain(RequestType::Participant),
        Request::TrackComposite(_) => plain(RequestType::TrackComposite),
        // Go marks every track request passthrough (no video transcoding), whatever the output:
        // a file gets the packets as received, a websocket the audio decoded to PCM.
        Request::Track(_) => Classified {
            passthrough: true,
            ..plain(RequestType::Track)
        },
        Request::Replay(_) => plain(RequestType::Replay),
        Request::Egress(v2) => classify_v2(v2),
    };
    Some(c)
}

fn plain(request_type: RequestType) -> Classified {
    Classified {
        request_type,
        uses_chrome: false,
        audio_only: false,
        passthrough: false,
    }
}

fn classify_v2(v2: &livekit::StartEgressRequest) -> Classified {
    use livekit::start_egress_request::{Encoding, Source};
    let passthrough = matches!(
        v2.encoding,
        Some(Encoding::Preset(p)) if p == livekit::EncodingOptionsPreset::Passthrough as i32
    );
    match &v2.source {
        Some(Source::Template(t)) => Classified {
            request_type: RequestType::Template,
            uses_chrome: !(t.audio_only && t.layout.is_empty() && t.custom_base_url.is_empty()),
            audio_only: t.audio_only,
            passthrough: false,
        },
        Some(Source::Web(w)) => Classified {
            request_type: RequestType::Web,
            uses_chrome: true,
            audio_only: w.audio_only,
            passthrough: false,
        },
        Some(Source::Media(_)) | None => Classified {
            request_type: RequestType::Media,
            uses_chrome: false,
            audio_only: false,
            passthrough,
        },
    }
}

/// CPU cores a request reserves (`costsForRequest` in the Go egress).
pub fn cpu_cost(c: &Classified, costs: &CpuCostConfig, estimated_cpu: f64) -> f64 {
    if estimated_cpu > 0.0 {
        return estimated_cpu;
    }
    match c.request_type {
        RequestType::RoomComposite | RequestType::Template => match (c.audio_only, c.uses_chrome) {
            (false, _) => costs.room_composite_cpu_cost,
            (true, true) => costs.audio_room_composite_cpu_cost,
            (true, false) => costs.sdk_audio_room_composite_cpu_cost,
        },
        RequestType::Web if c.audio_only => costs.audio_web_cpu_cost,
        RequestType::Web => costs.web_cpu_cost,
        RequestType::Media if c.passthrough => costs.track_cpu_cost,
        RequestType::Participant | RequestType::Media => costs.participant_cpu_cost,
        RequestType::TrackComposite => costs.track_composite_cpu_cost,
        RequestType::Track => costs.track_cpu_cost,
        RequestType::Replay => costs.room_composite_cpu_cost,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use egress_proto::rpc::start_egress_request::Request;

    pub(crate) fn costs() -> CpuCostConfig {
        CpuCostConfig {
            room_composite_cpu_cost: 4.0,
            audio_room_composite_cpu_cost: 1.0,
            sdk_audio_room_composite_cpu_cost: 0.5,
            web_cpu_cost: 4.0,
            audio_web_cpu_cost: 1.0,
            participant_cpu_cost: 2.0,
            track_composite_cpu_cost: 1.0,
            track_cpu_cost: 0.5,
            ..Default::default()
        }
    }

    #[test]
    fn costs_follow_the_go_table() {
        let rc = |audio_only, layout: &str| StartEgressRequest {
            request: Some(Request::RoomComposite(
                livekit::RoomCompositeEgressRequest {
                    audio_only,
                    layout: layout.into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let cost =
            |r: &StartEgressRequest| cpu_cost(&classify(r).unwrap(), &costs(), r.estimated_cpu);
        assert_eq!(cost(&rc(false, "grid")), 4.0);
        assert_eq!(cost(&rc(true, "grid")), 1.0);
        assert_eq!(
            cost(&rc(true, "")),
            0.5,
            "audio-only without layout uses the SDK source"
        );
        let track = StartEgressRequest {
            request: Some(Request::Track(Default::default())),
            ..Default::default()
        };
        assert_eq!(cost(&track), 0.5);
        let estimated = StartEgressRequest {
            estimated_cpu: 3.0,
            ..track
        };
        assert_eq!(cost(&estimated), 3.0);
        assert!(classify(&StartEgressRequest::default()).is_none());
    }
}

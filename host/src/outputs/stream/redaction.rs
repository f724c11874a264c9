//! Stream URLs in the request copy that `EgressInfo.request` carries to livekit-server (and so
//! to its store, webhooks and `lk egress list`): every URL replaced by its redacted form.
//!
//! protocol's `egress/redact.go` does this with `utils.RedactStreamKey`, but only when a v1
//! request has exactly one stream output (`len(streams) == 1`), and for websockets only the
//! query. We redact every stream URL of every request shape with [`redact_stream_url`] (which
//! also covers userinfo passwords and Facebook-style keys). Storage credentials are redacted
//! elsewhere (`egress/info.rs`).

use egress_proto::livekit::{
    StreamOutput, egress_info, output, room_composite_egress_request as rc,
    track_composite_egress_request as tc, track_egress_request as track, web_egress_request as web,
};

use super::url::redact_stream_url;

fn redact_output(stream: &mut StreamOutput) {
    for url in &mut stream.urls {
        *url = redact_stream_url(url);
    }
}

fn redact_v2_outputs(outputs: &mut [egress_proto::livekit::Output]) {
    for o in outputs {
        if let Some(output::Config::Stream(s)) = &mut o.config {
            redact_output(s);
        }
    }
}

/// Redacts every stream URL in a request copy, in place.
// The deprecated single `output` still carries a stream when an old client uses it.
#[allow(deprecated)]
pub fn redact_stream_urls(request: &mut egress_info::Request) {
    match request {
        egress_info::Request::RoomComposite(r) => {
            r.stream_outputs.iter_mut().for_each(redact_output);
            if let Some(rc::Output::Stream(s)) = &mut r.output {
                redact_output(s);
            }
        }
        egress_info::Request::Web(r) => {
            r.stream_outputs.iter_mut().for_each(redact_output);
            if let Some(web::Output::Stream(s)) = &mut r.output {
                redact_output(s);
            }
        }
        egress_info::Request::Participant(r) => r.stream_outputs.iter_mut().for_each(redact_output),
        egress_info::Request::TrackComposite(r) => {
            r.stream_outputs.iter_mut().for_each(redact_output);
            if let Some(tc::Output::Stream(s)) = &mut r.output {
                redact_output(s);
            }
        }
        egress_info::Request::Track(r) => {
            if let Some(track::Output::WebsocketUrl(url)) = &mut r.output {
                *url = redact_stream_url(url);
            }
        }
        egress_info::Request::Egress(r) => redact_v2_outputs(&mut r.outputs),
        egress_info::Request::Replay(r) => redact_v2_outputs(&mut r.outputs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_proto::livekit::{self, Output, StreamProtocol};
    use prost::Message;

    const SECRETS: [&str; 4] = [
        "rtmpsecretkey",
        "srtpassphrase0",
        "wstoken123",
        "muxstreamkey",
    ];

    fn outputs() -> Vec<StreamOutput> {
        vec![
            StreamOutput {
                protocol: StreamProtocol::Rtmp as i32,
                urls: vec![
                    format!("rtmp://h/live/{}", SECRETS[0]),
                    format!("mux://{}", SECRETS[3]),
                ],
            },
            StreamOutput {
                protocol: StreamProtocol::Srt as i32,
                urls: vec![format!("srt://h:1?passphrase={}", SECRETS[1])],
            },
        ]
    }

    fn assert_clean(request: &egress_info::Request) {
        let info = livekit::EgressInfo {
            request: Some(request.clone()),
            ..Default::default()
        };
        let text = format!("{info:?}");
        let bytes = info.encode_to_vec();
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in {text}");
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} on the wire"
            );
        }
    }

    #[test]
    #[allow(deprecated)]
    fn every_request_shape_is_redacted() {
        let v2 = || {
            let mut o: Vec<Output> = outputs()
                .into_iter()
                .map(|s| Output {
                    config: Some(output::Config::Stream(s)),
                    storage: None,
                })
                .collect();
            o.push(Output {
                config: None,
                storage: None,
            });
            o
        };
        let mut requests = vec![
            egress_info::Request::RoomComposite(livekit::RoomCompositeEgressRequest {
                stream_outputs: outputs(),
                output: Some(rc::Output::Stream(outputs().remove(0))),
                ..Default::default()
            }),
            egress_info::Request::Web(livekit::WebEgressRequest {
                stream_outputs: outputs(),
                output: Some(web::Output::Stream(outputs().remove(1))),
                ..Default::default()
            }),
            egress_info::Request::Participant(livekit::ParticipantEgressRequest {
                stream_outputs: outputs(),
                ..Default::default()
            }),
            egress_info::Request::TrackComposite(livekit::TrackCompositeEgressRequest {
                stream_outputs: outputs(),
                output: Some(tc::Output::Stream(outputs().remove(0))),
                ..Default::default()
            }),
            egress_info::Request::Track(livekit::TrackEgressRequest {
                output: Some(track::Output::WebsocketUrl(format!(
                    "wss://h/ws?token={}",
                    SECRETS[2]
                ))),
                ..Default::default()
            }),
            egress_info::Request::Egress(livekit::StartEgressRequest {
                outputs: v2(),
                ..Default::default()
            }),
            egress_info::Request::Replay(livekit::ExportReplayRequest {
                outputs: v2(),
                ..Default::default()
            }),
        ];
        for r in &mut requests {
            redact_stream_urls(r);
            assert_clean(r);
        }
        let egress_info::Request::RoomComposite(rc) = &requests[0] else {
            unreachable!()
        };
        assert_eq!(
            rc.stream_outputs[0].urls,
            ["rtmp://h/live/{rtm...key}", "mux://{mux...key}"]
        );
        assert_eq!(rc.stream_outputs[1].urls, ["srt://h:1?passphrase={...}"]);
        let egress_info::Request::Track(t) = &requests[4] else {
            unreachable!()
        };
        assert_eq!(
            t.output,
            Some(track::Output::WebsocketUrl("wss://h/ws?token={...}".into()))
        );
    }
}

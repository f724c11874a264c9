//! Building the `EgressInfo` the service returns from StartEgress and keeps updating.

use egress_proto::livekit::{self, EgressInfo, EgressSourceType, EgressStatus, egress_info};
use egress_proto::rpc::{StartEgressRequest, start_egress_request::Request};

use super::request::Classified;
use crate::rpc::server::now_unix_nanos;

/// The STARTING info for an admitted request, with the request copied in (secrets redacted).
pub fn starting_info(req: &StartEgressRequest, classified: &Classified) -> EgressInfo {
    let now = now_unix_nanos();
    let (room_name, request) = match req.request.clone() {
        Some(Request::RoomComposite(r)) => (
            r.room_name.clone(),
            Some(egress_info::Request::RoomComposite(r)),
        ),
        Some(Request::Web(r)) => (String::new(), Some(egress_info::Request::Web(r))),
        Some(Request::Participant(r)) => (
            r.room_name.clone(),
            Some(egress_info::Request::Participant(r)),
        ),
        Some(Request::TrackComposite(r)) => (
            r.room_name.clone(),
            Some(egress_info::Request::TrackComposite(r)),
        ),
        Some(Request::Track(r)) => (r.room_name.clone(), Some(egress_info::Request::Track(r))),
        Some(Request::Egress(r)) => (r.room_name.clone(), Some(egress_info::Request::Egress(r))),
        Some(Request::Replay(r)) => (String::new(), Some(egress_info::Request::Replay(r))),
        None => (String::new(), None),
    };
    let room_name = if req.room_name.is_empty() {
        room_name
    } else {
        req.room_name.clone()
    };
    let source_type = if classified.uses_chrome {
        EgressSourceType::Web
    } else {
        EgressSourceType::Sdk
    };
    let mut info = EgressInfo {
        egress_id: req.egress_id.clone(),
        room_id: req.room_id.clone(),
        room_name,
        source_type: source_type as i32,
        status: EgressStatus::EgressStarting as i32,
        started_at: now,
        updated_at: now,
        retry_count: req.retry_count,
        request,
        ..Default::default()
    };
    redact_request(&mut info);
    list_websocket_stream(&mut info, now);
    info
}

/// A track egress to a websocket lists its URL as an ACTIVE stream from the start, as Go's
/// config does (`AddStream`: status ACTIVE, `started_at` now for every output but RTMP), in
/// `stream_results` and in the deprecated single `result` that older clients read.
#[allow(deprecated)]
fn list_websocket_stream(info: &mut EgressInfo, now: i64) {
    let Some(egress_info::Request::Track(livekit::TrackEgressRequest {
        output: Some(livekit::track_egress_request::Output::WebsocketUrl(url)),
        ..
    })) = &info.request
    else {
        return;
    };
    let stream = livekit::StreamInfo {
        url: url.clone(),
        started_at: now,
        status: livekit::stream_info::Status::Active as i32,
        ..Default::default()
    };
    info.stream_results = vec![stream.clone()];
    info.result = Some(egress_info::Result::Stream(livekit::StreamInfoList {
        info: vec![stream],
    }));
}

const REDACTED_KEY: &str = "{access_key}";
const REDACTED_SECRET: &str = "{secret}";

fn redact_proxy(p: &mut Option<livekit::ProxyConfig>) {
    if let Some(p) = p
        && !p.password.is_empty()
    {
        p.password = REDACTED_SECRET.into();
    }
}

fn redact_s3(s3: &mut livekit::S3Upload) {
    if !s3.access_key.is_empty() {
        s3.access_key = REDACTED_KEY.into();
    }
    if !s3.secret.is_empty() {
        s3.secret = REDACTED_SECRET.into();
    }
    if !s3.session_token.is_empty() {
        s3.session_token = REDACTED_SECRET.into();
    }
    redact_proxy(&mut s3.proxy);
}

fn redact_gcp(g: &mut livekit::GcpUpload) {
    if !g.credentials.is_empty() {
        g.credentials = REDACTED_SECRET.into();
    }
    redact_proxy(&mut g.proxy);
}

fn redact_azure(a: &mut livekit::AzureBlobUpload) {
    if !a.account_key.is_empty() {
        a.account_key = REDACTED_SECRET.into();
    }
}

fn redact_alioss(a: &mut livekit::AliOssUpload) {
    if !a.access_key.is_empty() {
        a.access_key = REDACTED_KEY.into();
    }
    if !a.secret.is_empty() {
        a.secret = REDACTED_SECRET.into();
    }
}

/// Every upload oneof in the protocol has the same four variants under its own type.
macro_rules! redact_upload {
    ($out:expr, $ty:path) => {{
        use $ty as U;
        match $out {
            Some(U::S3(x)) => redact_s3(x),
            Some(U::Gcp(x)) => redact_gcp(x),
            Some(U::Azure(x)) => redact_azure(x),
            Some(U::AliOss(x)) => redact_alioss(x),
            None => {}
        }
    }};
}

fn redact_file(f: &mut livekit::EncodedFileOutput) {
    redact_upload!(&mut f.output, livekit::encoded_file_output::Output);
}

fn redact_segments(f: &mut livekit::SegmentedFileOutput) {
    redact_upload!(&mut f.output, livekit::segmented_file_output::Output);
}

fn redact_images(f: &mut livekit::ImageOutput) {
    redact_upload!(&mut f.output, livekit::image_output::Output);
}

fn redact_storage(s: &mut Option<livekit::StorageConfig>) {
    if let Some(s) = s {
        redact_upload!(&mut s.provider, livekit::storage_config::Provider);
    }
}

/// Replaces upload credentials (and proxy passwords) everywhere in the copied request, as
/// protocol's `egress/redact.go` does, so they never reach livekit-server's store, webhooks or
/// logs: v1 file, segment and image outputs (and the deprecated single output), track file
/// outputs, and v2 request-level and per-output storage.
// The deprecated single `output` still carries credentials when a client uses it.
#[allow(deprecated)]
fn redact_request(info: &mut EgressInfo) {
    use livekit::{
        room_composite_egress_request as rc, track_composite_egress_request as tc,
        web_egress_request as web,
    };
    let Some(request) = info.request.as_mut() else {
        return;
    };
    match request {
        egress_info::Request::RoomComposite(r) => {
            r.file_outputs.iter_mut().for_each(redact_file);
            r.segment_outputs.iter_mut().for_each(redact_segments);
            r.image_outputs.iter_mut().for_each(redact_images);
            match &mut r.output {
                Some(rc::Output::File(f)) => redact_file(f),
                Some(rc::Output::Segments(f)) => redact_segments(f),
                _ => {}
            }
        }
        egress_info::Request::Web(r) => {
            r.file_outputs.iter_mut().for_each(redact_file);
            r.segment_outputs.iter_mut().for_each(redact_segments);
            r.image_outputs.iter_mut().for_each(redact_images);
            match &mut r.output {
                Some(web::Output::File(f)) => redact_file(f),
                Some(web::Output::Segments(f)) => redact_segments(f),
                _ => {}
            }
        }
        egress_info::Request::Participant(r) => {
            r.file_outputs.iter_mut().for_each(redact_file);
            r.segment_outputs.iter_mut().for_each(redact_segments);
            r.image_outputs.iter_mut().for_each(redact_images);
        }
        egress_info::Request::TrackComposite(r) => {
            r.file_outputs.iter_mut().for_each(redact_file);
            r.segment_outputs.iter_mut().for_each(redact_segments);
            r.image_outputs.iter_mut().for_each(redact_images);
            match &mut r.output {
                Some(tc::Output::File(f)) => redact_file(f),
                Some(tc::Output::Segments(f)) => redact_segments(f),
                _ => {}
            }
        }
        egress_info::Request::Track(r) => {
            if let Some(livekit::track_egress_request::Output::File(f)) = &mut r.output {
                redact_upload!(&mut f.output, livekit::direct_file_output::Output);
            }
        }
        egress_info::Request::Egress(r) => {
            redact_storage(&mut r.storage);
            for o in &mut r.outputs {
                redact_storage(&mut o.storage);
            }
        }
        egress_info::Request::Replay(r) => {
            redact_storage(&mut r.storage);
            for o in &mut r.outputs {
                redact_storage(&mut o.storage);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::request::classify;
    use prost::Message;

    const SECRETS: [&str; 6] = [
        "AKIA-SECRET-KEY",
        "s3-secret",
        "sess-token",
        "gcp-json",
        "azure-key",
        "proxy-pass",
    ];

    fn s3() -> livekit::S3Upload {
        livekit::S3Upload {
            access_key: SECRETS[0].into(),
            secret: SECRETS[1].into(),
            session_token: SECRETS[2].into(),
            bucket: "b".into(),
            proxy: Some(livekit::ProxyConfig {
                url: "http://p".into(),
                username: "u".into(),
                password: SECRETS[5].into(),
            }),
            ..Default::default()
        }
    }

    fn assert_no_secrets(req: StartEgressRequest) {
        let classified = classify(&req).expect("classified");
        let info = starting_info(&req, &classified);
        let bytes = info.encode_to_vec();
        let text = String::from_utf8_lossy(&bytes);
        for s in SECRETS {
            assert!(
                !text.contains(s),
                "{s} leaked into the EgressInfo: {info:?}"
            );
        }
        assert!(text.contains("{secret}"), "redaction markers are there");
    }

    #[test]
    #[allow(deprecated)]
    fn a_websocket_track_egress_starts_with_its_stream_listed() {
        let track = |output| StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(Request::Track(livekit::TrackEgressRequest {
                room_name: "r".into(),
                track_id: "TR_1".into(),
                output: Some(output),
                ..Default::default()
            })),
            ..Default::default()
        };
        let url = "ws://127.0.0.1:9/pcm";
        let req = track(livekit::track_egress_request::Output::WebsocketUrl(
            url.into(),
        ));
        let info = starting_info(&req, &classify(&req).expect("classified"));
        assert_eq!(info.stream_results.len(), 1, "{info:?}");
        let stream = &info.stream_results[0];
        assert_eq!(
            (stream.url.as_str(), stream.status),
            (url, livekit::stream_info::Status::Active as i32)
        );
        assert_eq!(stream.started_at, info.started_at);
        assert_eq!(
            info.result,
            Some(egress_info::Result::Stream(livekit::StreamInfoList {
                info: vec![stream.clone()]
            }))
        );

        let file = track(livekit::track_egress_request::Output::File(
            livekit::DirectFileOutput::default(),
        ));
        let info = starting_info(&file, &classify(&file).expect("classified"));
        assert!(
            info.stream_results.is_empty() && info.result.is_none(),
            "{info:?}"
        );
    }

    #[test]
    #[allow(deprecated)]
    fn every_upload_credential_is_redacted() {
        use livekit::{encoded_file_output, storage_config};
        // v1: file outputs, the deprecated single output, segment and image outputs.
        let web = livekit::WebEgressRequest {
            url: "https://x".into(),
            file_outputs: vec![livekit::EncodedFileOutput {
                output: Some(encoded_file_output::Output::S3(s3())),
                ..Default::default()
            }],
            segment_outputs: vec![livekit::SegmentedFileOutput {
                output: Some(livekit::segmented_file_output::Output::Gcp(
                    livekit::GcpUpload {
                        credentials: SECRETS[3].into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            image_outputs: vec![livekit::ImageOutput {
                output: Some(livekit::image_output::Output::Azure(
                    livekit::AzureBlobUpload {
                        account_key: SECRETS[4].into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_no_secrets(StartEgressRequest {
            egress_id: "EG_1".into(),
            request: Some(Request::Web(web)),
            ..Default::default()
        });
        let rc = livekit::RoomCompositeEgressRequest {
            room_name: "r".into(),
            output: Some(livekit::room_composite_egress_request::Output::File(
                livekit::EncodedFileOutput {
                    output: Some(encoded_file_output::Output::S3(s3())),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        assert_no_secrets(StartEgressRequest {
            egress_id: "EG_2".into(),
            request: Some(Request::RoomComposite(rc)),
            ..Default::default()
        });
        // v2: request-level and per-output storage.
        let v2 = livekit::StartEgressRequest {
            room_name: "r".into(),
            storage: Some(livekit::StorageConfig {
                provider: Some(storage_config::Provider::S3(s3())),
            }),
            outputs: vec![livekit::Output {
                storage: Some(livekit::StorageConfig {
                    provider: Some(storage_config::Provider::Gcp(livekit::GcpUpload {
                        credentials: SECRETS[3].into(),
                        ..Default::default()
                    })),
                }),
                config: Some(livekit::output::Config::File(livekit::FileOutput::default())),
            }],
            source: Some(livekit::start_egress_request::Source::Web(
                livekit::WebSource {
                    url: "https://x".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        assert_no_secrets(StartEgressRequest {
            egress_id: "EG_3".into(),
            request: Some(Request::Egress(v2)),
            ..Default::default()
        });
    }
}

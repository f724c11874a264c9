//! Building the `EgressInfo` the service returns from StartEgress and keeps updating.

use egress_proto::livekit::{self, EgressInfo, EgressSourceType, EgressStatus, egress_info};
use egress_proto::rpc::{StartEgressRequest, start_egress_request::Request};

use super::request::Classified;
use crate::rpc::server::now_unix_nanos;

/// The STARTING info for an admitted request, with the request copied in (secrets redacted).
pub fn starting_info(req: &StartEgressRequest, classified: &Classified) -> EgressInfo {
    let now = now_unix_nanos();
    let (room_name, request) = match req.request.clone() {
        Some(Request::RoomComposite(r)) => (r.room_name.clone(), Some(egress_info::Request::RoomComposite(r))),
        Some(Request::Web(r)) => (String::new(), Some(egress_info::Request::Web(r))),
        Some(Request::Participant(r)) => (r.room_name.clone(), Some(egress_info::Request::Participant(r))),
        Some(Request::TrackComposite(r)) => (r.room_name.clone(), Some(egress_info::Request::TrackComposite(r))),
        Some(Request::Track(r)) => (r.room_name.clone(), Some(egress_info::Request::Track(r))),
        Some(Request::Egress(r)) => (r.room_name.clone(), Some(egress_info::Request::Egress(r))),
        Some(Request::Replay(r)) => (String::new(), Some(egress_info::Request::Replay(r))),
        None => (String::new(), None),
    };
    let room_name = if req.room_name.is_empty() { room_name } else { req.room_name.clone() };
    let source_type = if classified.uses_chrome { EgressSourceType::Web } else { EgressSourceType::Sdk };
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
    info
}

const REDACTED_KEY: &str = "{access_key}";
const REDACTED_SECRET: &str = "{secret}";

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
}

/// Replaces upload credentials in the copied request, as protocol's `egress/redact.go` does,
/// so they never reach livekit-server's store, webhooks or logs.
fn redact_request(info: &mut EgressInfo) {
    use livekit::encoded_file_output::Output as FileOut;
    let redact_file = |out: &mut Option<FileOut>| match out {
        Some(FileOut::S3(s3)) => redact_s3(s3),
        Some(FileOut::Azure(a)) => a.account_key = REDACTED_SECRET.into(),
        Some(FileOut::Gcp(g)) => g.credentials = REDACTED_SECRET.into(),
        Some(FileOut::AliOss(a)) => {
            a.access_key = REDACTED_KEY.into();
            a.secret = REDACTED_SECRET.into();
        }
        None => {}
    };
    if let Some(egress_info::Request::RoomComposite(r)) = info.request.as_mut() {
        for f in &mut r.file_outputs {
            redact_file(&mut f.output);
        }
    }
    if let Some(egress_info::Request::Web(r)) = info.request.as_mut() {
        for f in &mut r.file_outputs {
            redact_file(&mut f.output);
        }
    }
}

//! The status vocabulary every recorder and the handler share: `EgressInfo`'s `Set*` helpers as
//! LiveKit's protocol has them, the Go texts a status carries (declared once here), and the
//! deprecated single `result`.

use std::time::{SystemTime, UNIX_EPOCH};

use egress_proto::livekit::{EgressInfo, EgressStatus, FileInfo, egress_info};

use super::pipeline_error::PipelineError;

// Texts from LiveKit's protocol (`livekit/livekit_egress.go`) and the Go egress.
pub const MSG_START_NOT_RECEIVED: &str = "Start signal not received";
pub const MSG_STOPPED_BEFORE_STARTED: &str = "Stop called before pipeline could start";
pub const MSG_LIMIT_REACHED: &str = "Session limit reached";
pub const MSG_LIMIT_BEFORE_START: &str = "Session limit reached before start signal";
pub const END_REASON_SOURCE_CLOSED: &str = "Source closed";
pub const END_REASON_LIMIT: &str = "Session limit reached";
pub const END_REASON_FAILURE: &str = "Failure";

pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Status helpers mirroring `EgressInfo.Set*` in LiveKit's protocol.
pub trait InfoExt {
    fn set_status(&mut self, status: EgressStatus);
    fn set_end_reason(&mut self, reason: &str);
    fn set_failed(&mut self, err: &PipelineError);
    fn set_aborted(&mut self, msg: &str);
    fn set_limit_reached(&mut self);
    fn set_complete(&mut self);
    fn status_is(&self, status: EgressStatus) -> bool;
}

impl InfoExt for EgressInfo {
    fn set_status(&mut self, status: EgressStatus) {
        self.status = status as i32;
        self.updated_at = now_nanos();
    }

    fn set_end_reason(&mut self, reason: &str) {
        self.details = format!("End reason: {reason}");
    }

    fn set_failed(&mut self, err: &PipelineError) {
        let now = now_nanos();
        self.status = EgressStatus::EgressFailed as i32;
        self.updated_at = now;
        self.ended_at = now;
        self.error = err.to_string();
        self.error_code = err.http_status();
        if self.details.is_empty() {
            self.set_end_reason(END_REASON_FAILURE);
        }
    }

    fn set_aborted(&mut self, msg: &str) {
        let now = now_nanos();
        self.status = EgressStatus::EgressAborted as i32;
        self.error = msg.to_owned();
        self.error_code = 412;
        self.updated_at = now;
        self.ended_at = now;
    }

    fn set_limit_reached(&mut self) {
        let now = now_nanos();
        self.status = EgressStatus::EgressLimitReached as i32;
        self.error = MSG_LIMIT_REACHED.to_owned();
        self.error_code = 413;
        self.updated_at = now;
        self.ended_at = now;
    }

    fn set_complete(&mut self) {
        let now = now_nanos();
        self.status = EgressStatus::EgressComplete as i32;
        self.updated_at = now;
        self.ended_at = now;
    }

    fn status_is(&self, status: EgressStatus) -> bool {
        self.status == status as i32
    }
}

/// The deprecated single `result`, still filled when a file is the only output, for older
/// clients (as the Go egress does).
#[allow(deprecated)]
pub fn deprecated_file_result(file: &FileInfo) -> Option<egress_info::Result> {
    Some(egress_info::Result::File(file.clone()))
}

//! Capture pipelines: what actually records. Runs inside the `egress run-handler` child process
//! (see [`crate::handler`]), never in the service process.
//!
//! The contract with the rest of the host:
//! * [`supports`]: which request types this build can run. The service bids on and accepts only
//!   those; everything else is refused with the Go egress's "not yet supported" error.
//! * [`validate`]: request validation with the Go egress's errors, run in the service before
//!   anything is launched (so bad input is answered synchronously, as in Go).
//! * [`run`]: records until the source ends or a stop arrives, reporting every status change on
//!   [`Control::updates`], and returns the final [`EgressInfo`].

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use egress_proto::livekit::{EgressInfo, UpdateStreamRequest};
use egress_proto::rpc::StartEgressRequest;

use crate::config::ServiceConfig;
use crate::egress::errors;
use crate::egress::request::Classified;
use crate::rpc::RpcError;

/// Everything a pipeline needs to run one egress.
pub struct Job {
    pub config: Arc<ServiceConfig>,
    pub request: StartEgressRequest,
    /// The STARTING info the service created (and stored at livekit-server).
    pub info: EgressInfo,
    /// A private directory for temporary files; removed by the service after the handler exits.
    pub work_dir: PathBuf,
}

/// Why a pipeline is asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopRequest {
    /// Finish cleanly; `reason` becomes the end reason in `details` ("StopEgress API", …).
    Graceful { reason: String },
    /// Finish and mark FAILED with this error (CPU/OOM kill, shutdown).
    Kill { error: String },
}

pub type UpdateStreamCall = (UpdateStreamRequest, oneshot::Sender<Result<EgressInfo, RpcError>>);

/// The pipeline's line back to the service.
pub struct Control {
    pub updates: mpsc::UnboundedSender<EgressInfo>,
    pub stop: watch::Receiver<Option<StopRequest>>,
    pub update_stream: mpsc::Receiver<UpdateStreamCall>,
}

/// Request types that have a pipeline in this build.
pub fn supports(_request: &Classified) -> bool {
    false
}

/// Validates a request the way the Go egress's `GetValidatedPipelineConfig` does.
pub fn validate(_config: &ServiceConfig, request: &StartEgressRequest) -> Result<(), RpcError> {
    match crate::egress::request::classify(request) {
        None => Err(errors::invalid_input("request")),
        Some(c) => Err(errors::not_supported(&format!("{} egress", c.request_type.label()))),
    }
}

/// Runs the pipeline for `job` to its end and returns the final info.
pub async fn run(job: Job, _control: Control) -> EgressInfo {
    let mut info = job.info;
    let now = crate::rpc::server::now_unix_nanos();
    info.status = egress_proto::livekit::EgressStatus::EgressFailed as i32;
    info.error = validate(&job.config, &job.request).err().map(|e| e.message).unwrap_or_default();
    info.error_code = 400;
    info.updated_at = now;
    info.ended_at = now;
    info
}

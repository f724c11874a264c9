//! The contract between the handler process and a recorder: what a recorder is given to run one
//! egress ([`Job`]) and its line back to the service ([`Control`]: status updates out, stop
//! requests and UpdateStream calls in).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use egress_proto::livekit::{EgressInfo, UpdateStreamRequest};
use egress_proto::rpc::StartEgressRequest;

use crate::config::ServiceConfig;
use crate::core::Classified;
use crate::plugins::PluginRegistry;
use crate::rpc::RpcError;

/// Everything a pipeline needs to run one egress.
pub struct Job {
    pub config: Arc<ServiceConfig>,
    pub request: StartEgressRequest,
    /// What kind of egress the request is, classified once per process (`crate::process::handler`).
    pub classified: Classified,
    /// The STARTING info the service created (and stored at livekit-server).
    pub info: EgressInfo,
    /// A private directory for temporary files; removed by the service after the handler exits.
    pub work_dir: PathBuf,
    /// The active sink plugins: where the recording goes.
    pub plugins: Arc<PluginRegistry>,
}

/// Why a pipeline is asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopRequest {
    /// Finish cleanly; `reason` becomes the end reason in `details` ("StopEgress API", …).
    Graceful { reason: String },
    /// Finish and mark FAILED with this error (CPU/OOM kill, shutdown).
    Kill { error: String },
}

pub type UpdateStreamCall = (
    UpdateStreamRequest,
    oneshot::Sender<Result<EgressInfo, RpcError>>,
);

/// The pipeline's line back to the service.
pub struct Control {
    pub updates: mpsc::UnboundedSender<EgressInfo>,
    pub stop: watch::Receiver<Option<StopRequest>>,
    pub update_stream: mpsc::Receiver<UpdateStreamCall>,
}

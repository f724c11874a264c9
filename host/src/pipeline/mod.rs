//! Capture pipelines: what actually records. Runs inside the `egress run-handler` child process
//! (see [`crate::process::handler`]), never in the service process.
//!
//! The contract with the rest of the host:
//! * [`supports`]: which request types this build can run. The service bids on and accepts only
//!   those; everything else is refused with the Go egress's "not yet supported" error.
//! * [`validate`]: request validation with the Go egress's errors, run in the service before
//!   anything is launched (so bad input is answered synchronously, as in Go).
//! * [`run`]: records until the source ends or a stop arrives, reporting every status change on
//!   [`Control::updates`], and returns the final [`EgressInfo`].
//! * `crate::storage::salvage`: run by the service after a handler died, delivers the partial
//!   file it left (from the `crate::storage::local::DeliveryPlan`).
//!
//! What this build records: web pages ([`WebEgressRequest`], v2 web source) and room
//! composites through the template ([`RoomCompositeEgressRequest`], v2 template source), with
//! one file output (MP4, OGG, MP3, or VP8 WebM), streamed to its storage's sink plugin while it is written
//! (`crate::storage`); and single tracks over WebRTC without transcoding ([`track`], with
//! `crate::webrtc`). Modules, one job each:
//! [`config`] (request → settings, Go's validation), [`encoding`], [`filename`], [`token`],
//! [`display`] (Xvfb), [`pulse`] (PulseAudio), [`chrome`] (Chrome over CDP), [`gst`] (the
//! GStreamer pipeline), [`elements`] (GStreamer building blocks and the encoders and file end
//! shared with the composite), [`web_source`] (all of those together), [`controller`] (status
//! lifecycle of a Chrome recording), [`lifecycle`] (stop requests and the end of an egress, shared
//! by every recorder), [`file_output`] (one file from the work dir to its storage), `storage::local` (the
//! delivery plan and the local last resort), [`manifest`], [`track`] (track egress over
//! WebRTC, no Chrome), and [`composite`] (participant, track composite and v2 media egress over
//! WebRTC: decoded, mixed and re-encoded).
//!
//! [`WebEgressRequest`]: egress_proto::livekit::WebEgressRequest
//! [`RoomCompositeEgressRequest`]: egress_proto::livekit::RoomCompositeEgressRequest

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};

use egress_proto::livekit::{EgressInfo, FileInfo, UpdateStreamRequest};
use egress_proto::rpc::StartEgressRequest;

use crate::config::ServiceConfig;
use crate::plugins::PluginRegistry;
use crate::core::request::{Classified, RequestType};
use crate::rpc::{Code, RpcError};

pub mod chrome;
pub mod composite;
pub mod config;
pub mod controller;
pub mod display;
pub mod elements;
pub mod encoding;
pub mod file_output;
pub mod filename;
pub mod gst;
pub mod lifecycle;
pub mod manifest;
pub mod pulse;
pub mod token;
pub mod track;
pub mod web_source;

pub use crate::core::PipelineError;

/// Everything a pipeline needs to run one egress.
pub struct Job {
    pub config: Arc<ServiceConfig>,
    pub request: StartEgressRequest,
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

pub type UpdateStreamCall = (UpdateStreamRequest, oneshot::Sender<Result<EgressInfo, RpcError>>);

/// The pipeline's line back to the service.
pub struct Control {
    pub updates: mpsc::UnboundedSender<EgressInfo>,
    pub stop: watch::Receiver<Option<StopRequest>>,
    pub update_stream: mpsc::Receiver<UpdateStreamCall>,
}

/// Request types that have a pipeline in this build: web pages and template (room composite)
/// recordings through Chrome, track egress (to a file or a websocket) over WebRTC ([`track`]),
/// and participant, track composite and v2 media egress over WebRTC ([`composite`]). Audio-only
/// room composites without a layout use the Go egress's SDK source, which does not exist here
/// yet. A track's codec is only known once the recorder has joined the room, so a track whose
/// codec this build cannot write fails then, with the Go "not yet supported" text.
pub fn supports(request: &Classified) -> bool {
    match request.request_type {
        RequestType::RoomComposite | RequestType::Template | RequestType::Web => request.uses_chrome,
        // Every track request (file: passthrough; websocket: audio decoded to PCM).
        RequestType::Track => request.passthrough,
        // Over WebRTC, decoded and mixed ([`composite`]); PASSTHROUGH media runs as a track egress.
        RequestType::Participant | RequestType::TrackComposite | RequestType::Media => true,
        _ => false,
    }
}

/// Validates a request the way the Go egress's `GetValidatedPipelineConfig` does.
pub fn validate(config: &ServiceConfig, request: &StartEgressRequest) -> Result<(), RpcError> {
    if matches!(request.request, Some(egress_proto::rpc::start_egress_request::Request::Track(_))) {
        return track::config::TrackConfig::new(config, request, &request.room_name, SystemTime::now()).map(|_| ());
    }
    if is_composite(request) {
        return composite::config::CompositeConfig::parse(config, request, &request.room_name, SystemTime::now()).map(|_| ());
    }
    config::PipelineConfig::new(config, request, &request.room_name, SystemTime::now()).map(|_| ())
}

/// Participant, track composite and v2 media requests: recorded by [`composite`].
fn is_composite(request: &StartEgressRequest) -> bool {
    use egress_proto::rpc::start_egress_request::Request as R;
    match &request.request {
        Some(R::Participant(_) | R::TrackComposite(_)) => true,
        Some(R::Egress(r)) => matches!(r.source, Some(egress_proto::livekit::start_egress_request::Source::Media(_))),
        _ => false,
    }
}

/// Runs the pipeline for `job` to its end and returns the final info.
pub async fn run(job: Job, control: Control) -> EgressInfo {
    let Control { updates, stop, mut update_stream } = control;
    // Only stream outputs can be updated, and this build has none.
    tokio::spawn(async move {
        while let Some((_, reply)) = update_stream.recv().await {
            let _ = reply.send(Err(RpcError::new(Code::InvalidArgument, "UpdateStream called on non-streaming egress")));
        }
    });
    if matches!(job.request.request, Some(egress_proto::rpc::start_egress_request::Request::Track(_))) {
        return track::run(job, updates, stop).await;
    }
    if is_composite(&job.request) {
        return composite::run(job, updates, stop).await;
    }
    // The layout's renderer picks the page (issue 4); its errors fail the egress as the
    // request's own do.
    let page = config::render_page(&job.config, &job.request, &job.plugins).await;
    let cfg = match page.and_then(|page| config::PipelineConfig::with_page(&job.config, &job.request, &job.info.room_name, SystemTime::now(), page.as_deref())) {
        Ok(cfg) => cfg,
        Err(e) => {
            use crate::core::status::InfoExt;
            let mut info = job.info;
            info.set_failed(&PipelineError::Request(e));
            return info;
        }
    };
    let targets = crate::storage::target::for_file_output(&job.config, &job.request);
    let dests = match crate::storage::destinations(&targets, &job.plugins, &cfg.file.storage_path) {
        Ok(d) => d,
        Err(e) => {
            use crate::core::status::InfoExt;
            let mut info = job.info;
            info.set_failed(&PipelineError::Upload { location: targets.primary.provider.label(), reason: e.to_string() });
            return info;
        }
    };
    tracing::info!(egress_id = %cfg.egress_id, request_type = cfg.request_type.label(), source = ?cfg.source,
        file = %cfg.file.storage_path, storage = dests.primary.label, key = %dests.primary.key,
        backup = dests.backup.as_ref().map(|b| b.label), "starting web recording");
    controller::Controller::new(job.config, cfg, job.info, job.work_dir, dests, updates, stop).run().await
}

/// Puts salvaged files into a FAILED info (and the deprecated single result when there is one).
pub fn attach_salvaged(info: &mut EgressInfo, files: Vec<FileInfo>) {
    if files.is_empty() {
        return;
    }
    if let [only] = files.as_slice() {
        info.result = crate::core::status::deprecated_file_result(only);
    }
    info.file_results = files;
}

#[cfg(test)]
mod tests {
    use egress_proto::livekit;
    use egress_proto::rpc::StartEgressRequest;
    use egress_proto::rpc::start_egress_request::Request;

    use crate::core::request::tests::costs;
    use crate::core::request::{classify, cpu_cost};

    #[test]
    fn track_egress_runs_here_with_a_file_or_a_websocket_output() {
        use livekit::track_egress_request::Output;
        let track = |output| StartEgressRequest {
            request: Some(Request::Track(livekit::TrackEgressRequest { output, ..Default::default() })),
            ..Default::default()
        };
        let file = classify(&track(Some(Output::File(Default::default())))).unwrap();
        assert!(file.passthrough && crate::pipeline::supports(&file));
        let websocket = classify(&track(Some(Output::WebsocketUrl("ws://x".into())))).unwrap();
        assert!(websocket.passthrough && crate::pipeline::supports(&websocket));
        assert_eq!(cpu_cost(&websocket, &costs(), 0.0), costs().track_cpu_cost);
        // Composites over WebRTC run here too (`pipeline::composite`).
        let composite = StartEgressRequest { request: Some(Request::TrackComposite(Default::default())), ..Default::default() };
        assert!(crate::pipeline::supports(&classify(&composite).unwrap()));
        let participant = StartEgressRequest { request: Some(Request::Participant(Default::default())), ..Default::default() };
        assert!(crate::pipeline::supports(&classify(&participant).unwrap()));
    }
}

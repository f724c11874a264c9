//! The web recorder: a page (web egress, or a room composite's template) shown in Chrome on an
//! X display, its sound on a PulseAudio sink, both captured and encoded by GStreamer.
//!
//! Modules, one job each: [`config`] (request → [`WebConfig`], Go's validation, the layout's
//! page), [`display`] (Xvfb), [`pulse`] (PulseAudio), [`chrome`] (Chrome over CDP), [`gst`] (the
//! GStreamer pipeline), [`source`] (all of those together) and [`controller`] (the status
//! lifecycle of a recording).

pub mod chrome;
pub mod config;
pub mod controller;
pub mod display;
pub mod gst;
pub mod pulse;
pub mod source;

use std::time::SystemTime;

use tokio::sync::{mpsc, watch};

use egress_proto::livekit::EgressInfo;

use crate::core::PipelineError;
use crate::core::status::InfoExt;
use crate::outputs::FileOutput;
use crate::pipeline::job::{Job, StopRequest, UpdateStreamCall};
pub use config::WebConfig;

/// Runs a web recording to its end and returns the final info.
pub async fn run(
    job: Job,
    updates: mpsc::UnboundedSender<EgressInfo>,
    stop: watch::Receiver<Option<StopRequest>>,
    update_stream: mpsc::Receiver<UpdateStreamCall>,
) -> EgressInfo {
    // The layout's renderer picks the page (issue 4); its errors fail the egress as the
    // request's own do.
    let page = config::render_page(&job.config, &job.request, &job.plugins).await;
    let cfg = match page.and_then(|page| {
        WebConfig::with_page(
            &job.config,
            &job.request,
            &job.info.room_name,
            SystemTime::now(),
            page.as_deref(),
        )
    }) {
        Ok(cfg) => cfg,
        Err(e) => {
            let mut info = job.info;
            info.set_failed(&PipelineError::Request(e));
            return info;
        }
    };
    let file = if cfg.has_file {
        match FileOutput::open(
            &job.config,
            &job.request,
            &job.plugins,
            &job.work_dir,
            cfg.file.storage_path.clone(),
        ) {
            Ok(file) => Some(file),
            Err(e) => {
                let mut info = job.info;
                info.set_failed(&e);
                return info;
            }
        }
    } else {
        None
    };
    match &file {
        Some(file) => {
            let (storage, key) = file.destination();
            tracing::info!(egress_id = %cfg.egress_id, request_type = cfg.request_type.label(), source = ?cfg.source,
                file = %cfg.file.storage_path, storage, key = %key, backup = file.backup_label(), "starting web recording");
        }
        None => {
            tracing::info!(egress_id = %cfg.egress_id, request_type = cfg.request_type.label(), source = ?cfg.source,
                "starting web recording without a file output");
        }
    }
    controller::Controller::new(job, cfg, file, updates, stop, update_stream)
        .run()
        .await
}

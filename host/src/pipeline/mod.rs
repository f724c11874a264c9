//! Recorders: what actually records. Runs inside the `egress run-handler` child process
//! (see [`crate::process::handler`]), never in the service process.
//!
//! The contract with the rest of the host:
//! * [`supports`]: which request types this build can run. The service bids on and accepts only
//!   those; everything else is refused with the Go egress's "not yet supported" error.
//! * [`validate`]: request validation with the Go egress's errors (the recorder's settings, the
//!   outputs' storage, the layout's renderer), run in the service before anything is launched
//!   (so bad input is answered synchronously, as in Go).
//! * [`run`]: records until the source ends or a stop arrives, reporting every status change on
//!   [`Control::updates`], and returns the final [`EgressInfo`].
//! * [`job`]: what a recorder is given ([`Job`], [`Control`], [`StopRequest`]).
//! * `crate::storage::salvage`: run by the service after a handler died, delivers the partial
//!   file it left (from the `crate::storage::local::DeliveryPlan`).
//!
//! One folder per recorder, chosen once from the request's [`Classified`] ([`Recorder`]):
//! [`web`] (web pages and room composite templates in Chrome, captured by GStreamer), [`track`]
//! (one track over WebRTC without transcoding, to a file or a websocket; also v2 media with the
//! PASSTHROUGH preset) and [`composite`] (participant, track composite and v2 media over WebRTC:
//! decoded, mixed and re-encoded). Shared by them: [`lifecycle`] (stop requests and the end of an
//! egress), [`encoding`], [`elements`] (GStreamer building blocks) and [`token`]. What a
//! recording writes (files, streams, segments, images, websocket, the manifest) and how it is
//! named is `crate::outputs`'s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use egress_proto::livekit::EgressInfo;
use egress_proto::rpc::StartEgressRequest;

use crate::config::ServiceConfig;
use crate::core::request::{Classified, RequestType};
use crate::core::status::InfoExt;
use crate::plugins::PluginRegistry;
use crate::rpc::{Code, RpcError};

pub mod composite;
pub mod elements;
pub mod encoding;
pub mod job;
pub mod lifecycle;
pub mod token;
pub mod track;
pub mod web;

pub use crate::core::PipelineError;
pub use job::{Control, Job, StopRequest, UpdateStreamCall};

/// The recorder that runs a request. Decided here once, from its classification; the
/// recorders themselves never hand a request on to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorder {
    /// Chrome + GStreamer ([`web`]). Also where the request types no recorder takes (replay,
    /// audio-only room composite without a layout) are refused, with the Go texts.
    Web,
    /// One track without transcoding ([`track`]).
    Track,
    /// A v2 media request with the PASSTHROUGH preset: validated as media
    /// ([`composite::config`]), recorded as the track egress it stands for ([`track`]).
    Passthrough,
    /// Decoded, mixed and re-encoded over WebRTC ([`composite`]).
    Composite,
}

impl Recorder {
    pub fn for_request(request: &Classified) -> Recorder {
        match request.request_type {
            RequestType::Track => Recorder::Track,
            RequestType::Media if request.passthrough => Recorder::Passthrough,
            RequestType::Participant | RequestType::TrackComposite | RequestType::Media => {
                Recorder::Composite
            }
            RequestType::RoomComposite
            | RequestType::Template
            | RequestType::Web
            | RequestType::Replay => Recorder::Web,
        }
    }
}

/// Request types that have a pipeline in this build: web pages and template (room composite)
/// recordings through Chrome, track egress (to a file or a websocket) over WebRTC ([`track`]),
/// and participant, track composite and v2 media egress over WebRTC ([`composite`]). Audio-only
/// room composites without a layout use the Go egress's SDK source, which does not exist here
/// yet. A track's codec is only known once the recorder has joined the room, so a track whose
/// codec this build cannot write fails then, with the Go "not yet supported" text.
pub fn supports(request: &Classified) -> bool {
    match request.request_type {
        RequestType::RoomComposite | RequestType::Template | RequestType::Web => {
            request.uses_chrome
        }
        // Every track request (file: passthrough; websocket: audio decoded to PCM).
        RequestType::Track => request.passthrough,
        // Over WebRTC, decoded and mixed ([`composite`]); PASSTHROUGH media runs as a track egress.
        RequestType::Participant | RequestType::TrackComposite | RequestType::Media => true,
        _ => false,
    }
}

/// Validates a request the way the Go egress's `GetValidatedPipelineConfig` does, then checks
/// that its storage resolves to active sink plugins, then (web recorder) asks the layout's
/// renderer, so that an unknown layout fails StartEgress. Run by the service.
pub async fn validate(
    config: &Arc<ServiceConfig>,
    request: &StartEgressRequest,
    classified: &Classified,
    plugins: &Arc<PluginRegistry>,
) -> Result<(), RpcError> {
    let now = SystemTime::now();
    let recorder = Recorder::for_request(classified);
    // The live outputs are checked as attaching them would check them: a live-destination
    // plugin for the stream URLs (a slim build refuses them here, naming the plugin), the
    // segments' and images' names and storage.
    let live = match recorder {
        Recorder::Track => {
            track::config::TrackConfig::new(config, request, &request.room_name, now)?;
            None
        }
        Recorder::Passthrough | Recorder::Composite => {
            match composite::config::CompositeConfig::parse(
                config,
                request,
                &request.room_name,
                now,
            )? {
                composite::config::Parsed::Composite(cfg) => {
                    let ctx = cfg.output_context(
                        config.clone(),
                        request.clone(),
                        plugins.clone(),
                        PathBuf::new(),
                    );
                    Some((cfg.live.clone(), cfg.outputs.clone(), ctx))
                }
                composite::config::Parsed::Passthrough { .. } => None,
            }
        }
        Recorder::Web => {
            let cfg = web::config::WebConfig::new(config, request, &request.room_name, now)?;
            let ctx = cfg.output_context(
                config.clone(),
                request.clone(),
                plugins.clone(),
                PathBuf::new(),
            );
            Some((cfg.live, cfg.outputs, ctx))
        }
    };
    if let Some((live, plan, ctx)) = &live {
        crate::outputs::live::validate(live, plan, ctx)?;
    }
    crate::storage::check(config, request, plugins)?;
    if recorder == Recorder::Web {
        web::config::render_page(config, request, plugins).await?;
    }
    Ok(())
}

/// Runs the pipeline for `job` to its end and returns the final info.
pub async fn run(job: Job, control: Control) -> EgressInfo {
    let Control {
        updates,
        stop,
        update_stream,
    } = control;
    // Only stream outputs can be updated: the composite and web recorders take the calls (and
    // answer "non-streaming" without a stream output); the track recorder has none.
    let non_streaming = |mut calls: mpsc::Receiver<UpdateStreamCall>| {
        tokio::spawn(async move {
            while let Some((_, reply)) = calls.recv().await {
                let _ = reply.send(Err(RpcError::new(
                    Code::InvalidArgument,
                    "UpdateStream called on non-streaming egress",
                )));
            }
        });
    };
    let recorder = Recorder::for_request(&job.classified);
    let update_stream = match recorder {
        Recorder::Passthrough | Recorder::Composite | Recorder::Web => Some(update_stream),
        _ => {
            non_streaming(update_stream);
            None
        }
    };
    match recorder {
        Recorder::Track => track::run(job, updates, stop).await,
        // Media requests are parsed once here: the PASSTHROUGH preset (Go's `validatePassthrough`)
        // makes one a track egress, anything else is mixed.
        Recorder::Passthrough | Recorder::Composite => {
            use composite::config::{CompositeConfig, Parsed, passthrough_request};
            match CompositeConfig::parse(
                &job.config,
                &job.request,
                &job.info.room_name,
                SystemTime::now(),
            ) {
                Ok(Parsed::Passthrough {
                    track_id,
                    file,
                    storage,
                }) => {
                    if let Some(calls) = update_stream {
                        non_streaming(calls);
                    }
                    tracing::info!(track_id = %track_id, "media egress with PASSTHROUGH: recording the track without transcoding");
                    let request =
                        passthrough_request(&job.request, track_id, *file, storage.map(|s| *s));
                    track::run(Job { request, ..job }, updates, stop).await
                }
                Ok(Parsed::Composite(cfg)) => {
                    let (_, idle) = mpsc::channel(1);
                    composite::run(job, *cfg, updates, stop, update_stream.unwrap_or(idle)).await
                }
                Err(e) => {
                    let mut info = job.info;
                    info.set_failed(&PipelineError::Request(e));
                    info
                }
            }
        }
        Recorder::Web => {
            let (_, idle) = mpsc::channel(1);
            web::run(job, updates, stop, update_stream.unwrap_or(idle)).await
        }
    }
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
            request: Some(Request::Track(livekit::TrackEgressRequest {
                output,
                ..Default::default()
            })),
            ..Default::default()
        };
        let file = classify(&track(Some(Output::File(Default::default())))).unwrap();
        assert!(file.passthrough && crate::pipeline::supports(&file));
        let websocket = classify(&track(Some(Output::WebsocketUrl("ws://x".into())))).unwrap();
        assert!(websocket.passthrough && crate::pipeline::supports(&websocket));
        assert_eq!(cpu_cost(&websocket, &costs(), 0.0), costs().track_cpu_cost);
        // Composites over WebRTC run here too (`pipeline::composite`).
        let composite = StartEgressRequest {
            request: Some(Request::TrackComposite(Default::default())),
            ..Default::default()
        };
        assert!(crate::pipeline::supports(&classify(&composite).unwrap()));
        let participant = StartEgressRequest {
            request: Some(Request::Participant(Default::default())),
            ..Default::default()
        };
        assert!(crate::pipeline::supports(&classify(&participant).unwrap()));
    }
}

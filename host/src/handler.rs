//! `egress run-handler`: the child process that runs one egress's pipeline.
//!
//! The service passes the job through the environment (request and STARTING info as base64
//! protobuf, the IPC socket path, the work dir) and the config through the same
//! `--config`/`EGRESS_CONFIG_*` it was started with. The handler never touches Redis: every
//! status change goes to the service over IPC, which forwards it to livekit-server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine;
use prost::Message;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use egress_proto::livekit::EgressInfo;
use egress_proto::rpc::StartEgressRequest;

use crate::config::ServiceConfig;
use crate::egress::ipc::{self, HandlerMsg, ServiceMsg, handler_msg, service_msg};
use crate::pipeline::{self, Control, Job, StopRequest};
use crate::rpc::{Code, RpcError};

pub const ENV_REQUEST: &str = "EGRESS_HANDLER_REQUEST";
pub const ENV_INFO: &str = "EGRESS_HANDLER_INFO";
pub const ENV_IPC: &str = "EGRESS_HANDLER_IPC";
pub const ENV_WORK_DIR: &str = "EGRESS_HANDLER_WORK_DIR";

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("missing environment variable {0} (run-handler is started by the service, not by hand)")]
    MissingEnv(&'static str),
    #[error("{0} is not valid base64 protobuf: {1}")]
    BadJob(&'static str, String),
    #[error(transparent)]
    Ipc(#[from] ipc::IpcError),
}

/// The sink plugins, loaded as the service loaded them (the service already refused to start
/// on a bad `plugins:` entry, so an error here means the files changed underneath it).
async fn load_plugins(config: &Arc<ServiceConfig>) -> Result<Arc<crate::plugins::PluginRegistry>, String> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || crate::plugins::PluginRegistry::load(config.plugins.as_deref()))
        .await
        .map_err(|e| format!("loading plugins: {e}"))?
        .map(Arc::new)
        .map_err(|e| format!("loading plugins: {e}"))
}

pub fn encode_job_part(msg: &impl Message) -> String {
    base64::engine::general_purpose::STANDARD.encode(msg.encode_to_vec())
}

fn decode_job_part<M: Message + Default>(var: &'static str) -> Result<M, HandlerError> {
    let text = std::env::var(var).map_err(|_| HandlerError::MissingEnv(var))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| HandlerError::BadJob(var, e.to_string()))?;
    M::decode(bytes.as_slice()).map_err(|e| HandlerError::BadJob(var, e.to_string()))
}

/// Entry point of `egress run-handler`.
pub fn main(config: ServiceConfig) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "handler failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ServiceConfig) -> Result<(), HandlerError> {
    let request: StartEgressRequest = decode_job_part(ENV_REQUEST)?;
    let info: EgressInfo = decode_job_part(ENV_INFO)?;
    let socket = std::env::var(ENV_IPC).map_err(|_| HandlerError::MissingEnv(ENV_IPC))?;
    let work_dir = PathBuf::from(std::env::var(ENV_WORK_DIR).map_err(|_| HandlerError::MissingEnv(ENV_WORK_DIR))?);

    let stream = UnixStream::connect(&socket).await.map_err(ipc::IpcError::from)?;
    let (mut rd, mut wr) = stream.into_split();
    let ready = HandlerMsg { kind: Some(handler_msg::Kind::Ready(ipc::Ready { pid: std::process::id() })) };
    ipc::write_frame(&mut wr, &ready).await?;

    let (stop_tx, stop_rx) = watch::channel(None);
    let (us_tx, us_rx) = mpsc::channel(4);
    let (updates_tx, mut updates_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<HandlerMsg>();

    // Control messages from the service.
    let stop_for_ipc = stop_tx.clone();
    let out_for_results = out_tx.clone();
    tokio::spawn(async move {
        loop {
            match ipc::read_frame::<_, ServiceMsg>(&mut rd).await {
                Ok(Some(ServiceMsg { kind: Some(service_msg::Kind::Stop(s)) })) => {
                    stop_for_ipc.send_replace(Some(StopRequest::Graceful { reason: s.reason }));
                }
                Ok(Some(ServiceMsg { kind: Some(service_msg::Kind::Kill(s)) })) => {
                    stop_for_ipc.send_replace(Some(StopRequest::Kill { error: s.reason }));
                }
                Ok(Some(ServiceMsg { kind: Some(service_msg::Kind::UpdateStream(req)) })) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let out = out_for_results.clone();
                    let sent = us_tx.send((req, tx)).await.is_ok();
                    tokio::spawn(async move {
                        let result = match (sent, rx.await) {
                            (true, Ok(r)) => r,
                            _ => Err(RpcError::new(Code::Unavailable, "pipeline is not accepting stream updates")),
                        };
                        let msg = match result {
                            Ok(info) => ipc::UpdateStreamResult { info: Some(info), ..Default::default() },
                            Err(e) => ipc::UpdateStreamResult {
                                info: None,
                                error_code: e.code.as_str().to_owned(),
                                error: e.message,
                            },
                        };
                        let _ = out.send(HandlerMsg { kind: Some(handler_msg::Kind::UpdateStreamResult(msg)) });
                    });
                }
                Ok(Some(_)) => {}
                // The service went away: finish what we recorded rather than lose it.
                Ok(None) | Err(_) => {
                    stop_for_ipc.send_replace(Some(StopRequest::Graceful { reason: "Process killed".into() }));
                    break;
                }
            }
        }
    });

    // SIGTERM/SIGINT to the handler: finalize, as the Go handler does ("Process killed").
    let stop_for_signal = stop_tx.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            stop_for_signal.send_replace(Some(StopRequest::Graceful { reason: "Process killed".into() }));
        }
    });

    // Forward pipeline updates and results to the service, in order.
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let last = matches!(msg.kind, Some(handler_msg::Kind::Finished(_)));
            if ipc::write_frame(&mut wr, &msg).await.is_err() || last {
                break;
            }
        }
    });
    let out_for_updates = out_tx.clone();
    let forward = tokio::spawn(async move {
        while let Some(info) = updates_rx.recv().await {
            let _ = out_for_updates.send(HandlerMsg { kind: Some(handler_msg::Kind::Update(info)) });
        }
    });

    let config = Arc::new(config);
    let control = Control { updates: updates_tx, stop: stop_rx, update_stream: us_rx };
    let final_info = match load_plugins(&config).await {
        Ok(plugins) => pipeline::run(Job { config, request, info, work_dir, plugins }, control).await,
        Err(e) => {
            use pipeline::controller::InfoExt;
            let mut info = info;
            info.set_failed(&pipeline::PipelineError::Request(RpcError::new(Code::Internal, e)));
            info
        }
    };
    let _ = forward.await; // all updates are queued before the final one
    let _ = out_tx.send(HandlerMsg { kind: Some(handler_msg::Kind::Finished(final_info)) });
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

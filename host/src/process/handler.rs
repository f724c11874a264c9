//! `egress run-handler`: the child process that runs egress pipelines.
//!
//! The service starts it with the IPC socket path in the environment and the config through the
//! same `--config`/`EGRESS_CONFIG_*` it was started with. The handler connects, says `Ready`, and
//! runs every job (`Start`) the service sends, each as its own task with its own stop and
//! UpdateStream lines; a Chrome egress gets a handler to itself, WebRTC track egresses share one
//! (the service decides, `crate::service::launcher`). The handler never touches Redis: every
//! status change goes to the service over IPC, which forwards it to livekit-server.
//!
//! The handler exits when the service closes the connection and no job is left. A closed
//! connection with jobs still running means the service went away: the jobs are stopped
//! gracefully ("Process killed") so what they recorded is finalized, as in Go.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::UnixStream;
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::task::JoinSet;

use egress_proto::livekit::EgressInfo;

use super::ipc::{self, ENV_IPC, HandlerMsg, ServiceMsg, StartJob, handler_msg, service_msg};
use crate::config::ServiceConfig;
use crate::core::request::classify;
use crate::core::status::InfoExt;
use crate::core::{PipelineError, errors};
use crate::pipeline::{self, Control, Job, StopRequest, UpdateStreamCall};
use crate::plugins::PluginRegistry;
use crate::rpc::{Code, RpcError};

/// The end reason of jobs stopped because the handler is told to go (signal, service gone).
const REASON_PROCESS_KILLED: &str = "Process killed";

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(
        "missing environment variable {0} (run-handler is started by the service, not by hand)"
    )]
    MissingEnv(&'static str),
    #[error(transparent)]
    Ipc(#[from] ipc::IpcError),
}

/// Entry point of `egress run-handler`.
pub fn main(config: ServiceConfig) -> ExitCode {
    super::crash::install();
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

/// What the jobs of one handler process share: the config, and the sink plugins, loaded once
/// per process on first use (Ready goes out at once, and the WASM compile cost is paid once for
/// all the jobs this process runs). The service already refused to start on a bad `plugins:`
/// entry, so a load error here means the files changed underneath it.
struct Shared {
    config: Arc<ServiceConfig>,
    loaded: OnceCell<Result<Arc<PluginRegistry>, String>>,
}

impl Shared {
    async fn plugins(&self) -> Result<Arc<PluginRegistry>, String> {
        self.loaded
            .get_or_init(|| async {
                let config = self.config.clone();
                tokio::task::spawn_blocking(move || PluginRegistry::load(config.plugins.as_deref()))
                    .await
                    .map_err(|e| format!("loading plugins: {e}"))?
                    .map(Arc::new)
                    .map_err(|e| format!("loading plugins: {e}"))
            })
            .await
            .clone()
    }
}

/// The handler's end of one running job.
struct JobLine {
    stop: watch::Sender<Option<StopRequest>>,
    update_stream: mpsc::Sender<UpdateStreamCall>,
    /// The job as started: if its task panics, its partial file is delivered from this and the
    /// egress reported FAILED, while the other jobs of the process run on.
    job: StartJob,
}

async fn run(config: ServiceConfig) -> Result<(), HandlerError> {
    let socket = std::env::var(ENV_IPC).map_err(|_| HandlerError::MissingEnv(ENV_IPC))?;
    let stream = UnixStream::connect(&socket)
        .await
        .map_err(ipc::IpcError::from)?;
    let (mut rd, mut wr) = stream.into_split();
    let ready = HandlerMsg {
        kind: Some(handler_msg::Kind::Ready(ipc::Ready {
            pid: std::process::id(),
        })),
        egress_id: String::new(),
    };
    ipc::write_frame(&mut wr, &ready).await?;

    // Frames to the service go through one writer task, in the order they were queued.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<HandlerMsg>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if let Err(e) = ipc::write_frame(&mut wr, &msg).await {
                tracing::error!(error = %e, "cannot write to the service; status updates are lost");
                break;
            }
        }
    });

    // Every upload's outcome goes to the service, whose metrics count it.
    let uploads = out_tx.clone();
    let reporting = crate::storage::report::install(Arc::new(move |r| {
        let _ = uploads.send(HandlerMsg {
            kind: Some(handler_msg::Kind::Upload(r.into())),
            egress_id: String::new(),
        });
    }));

    // So do the live stream destinations' and the segments and image outputs' numbers, every
    // second.
    let stream_stats = tokio::spawn(report_stream_stats(out_tx.clone()));

    let shared = Arc::new(Shared {
        config: Arc::new(config),
        loaded: OnceCell::new(),
    });
    let mut lines: HashMap<String, JobLine> = HashMap::new();
    let mut jobs: JoinSet<String> = JoinSet::new();
    let mut task_jobs: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut terminate = termination_signal();
    let mut connected = true;
    while connected || !jobs.is_empty() {
        tokio::select! {
            frame = ipc::read_frame::<_, ServiceMsg>(&mut rd), if connected => match frame {
                Ok(Some(msg)) => {
                    let egress_id = msg.egress_id.clone();
                    match msg.kind {
                        Some(service_msg::Kind::Start(job)) => {
                            if lines.contains_key(&egress_id) {
                                tracing::warn!(egress_id, "job already running; duplicate Start ignored");
                                continue;
                            }
                            let (line, control) = job_line(job.clone());
                            lines.insert(egress_id.clone(), line);
                            let task = jobs.spawn(run_job(shared.clone(), egress_id.clone(), job, control, out_tx.clone()));
                            task_jobs.insert(task.id(), egress_id);
                        }
                        Some(service_msg::Kind::Stop(s)) => {
                            stop_job(&lines, &egress_id, StopRequest::Graceful { reason: s.reason });
                        }
                        Some(service_msg::Kind::Kill(s)) => {
                            stop_job(&lines, &egress_id, StopRequest::Kill { error: s.reason });
                        }
                        Some(service_msg::Kind::UpdateStream(req)) => {
                            let sender = lines.get(&egress_id).map(|l| l.update_stream.clone());
                            tokio::spawn(answer_update_stream(sender, egress_id, req, out_tx.clone()));
                        }
                        None => {}
                    }
                }
                // The service closed the connection: told to go when idle, or it went away.
                Ok(None) | Err(_) => {
                    connected = false;
                    stop_all(&lines, "the service closed the connection");
                }
            },
            Some(done) = jobs.join_next_with_id(), if !jobs.is_empty() => match done {
                Ok((task, egress_id)) => {
                    task_jobs.remove(&task);
                    lines.remove(&egress_id);
                }
                Err(e) => {
                    let line = task_jobs.remove(&e.id()).and_then(|id| lines.remove(&id).map(|l| (id, l)));
                    if let Some((egress_id, line)) = line {
                        tracing::error!(egress_id, error = %e, "the egress task panicked; the other jobs run on");
                        tokio::spawn(report_panicked(shared.clone(), egress_id, line.job, e.to_string(), out_tx.clone()));
                    }
                }
            },
            _ = &mut terminate => stop_all(&lines, "signal"),
        }
    }
    drop(reporting);
    // The last numbers (destinations that just ended), then the reporter lets go of the writer.
    stream_stats.abort();
    send_stream_stats(&out_tx);
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

/// Sends the live stream destinations' and the segments and image outputs' numbers to the
/// service every second.
async fn report_stream_stats(out: mpsc::UnboundedSender<HandlerMsg>) {
    let mut tick = tokio::time::interval(crate::outputs::stream::metrics::REPORT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        send_stream_stats(&out);
    }
}

fn send_stream_stats(out: &mpsc::UnboundedSender<HandlerMsg>) {
    for (egress_id, samples) in crate::outputs::stream::metrics::take_report() {
        let _ = out.send(HandlerMsg {
            kind: Some(handler_msg::Kind::StreamStats(samples.into())),
            egress_id,
        });
    }
    // The segments and image outputs' numbers travel on the same tick.
    for (egress_id, samples) in crate::outputs::upload_metrics::take_report() {
        let _ = out.send(HandlerMsg {
            kind: Some(handler_msg::Kind::OutputStats(samples.into())),
            egress_id,
        });
    }
}

/// A job's control receivers (its stop and UpdateStream lines; updates are wired in `run_job`).
struct JobControl {
    stop: watch::Receiver<Option<StopRequest>>,
    update_stream: mpsc::Receiver<UpdateStreamCall>,
}

fn job_line(job: StartJob) -> (JobLine, JobControl) {
    let (stop, stop_rx) = watch::channel(None);
    let (update_stream, us_rx) = mpsc::channel(4);
    (
        JobLine {
            stop,
            update_stream,
            job,
        },
        JobControl {
            stop: stop_rx,
            update_stream: us_rx,
        },
    )
}

/// A job's task panicked: deliver its partial file (from its delivery plan, as the service does
/// for a dead handler process) and report it FAILED.
async fn report_panicked(
    shared: Arc<Shared>,
    egress_id: String,
    job: StartJob,
    panic: String,
    out: mpsc::UnboundedSender<HandlerMsg>,
) {
    let mut info = failed(
        job.info.unwrap_or_default(),
        format!("internal error: {panic}"),
    );
    if let (Some(request), Ok(plugins)) = (job.request, shared.plugins().await) {
        let work_dir = PathBuf::from(&job.work_dir);
        let files = crate::storage::salvage(
            &work_dir,
            &shared.config,
            &request,
            &plugins,
            crate::rpc::server::now_unix_nanos(),
        )
        .await;
        crate::outputs::attach_salvaged(&mut info, files);
    }
    let _ = out.send(HandlerMsg {
        kind: Some(handler_msg::Kind::Finished(info)),
        egress_id,
    });
}

fn stop_job(lines: &HashMap<String, JobLine>, egress_id: &str, req: StopRequest) {
    match lines.get(egress_id) {
        Some(line) => {
            line.stop.send_replace(Some(req));
        }
        None => tracing::warn!(
            egress_id,
            ?req,
            "stop for an egress this handler does not run"
        ),
    }
}

/// Finalizes every job, as SIGINT does to a Go handler.
fn stop_all(lines: &HashMap<String, JobLine>, why: &str) {
    if !lines.is_empty() {
        tracing::info!(jobs = lines.len(), why, "stopping every job");
    }
    for line in lines.values() {
        line.stop.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(StopRequest::Graceful {
                    reason: REASON_PROCESS_KILLED.into(),
                });
            }
            first
        });
    }
}

/// Resolves once on SIGTERM or SIGINT (never, if the handlers cannot be installed).
fn termination_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    use tokio::signal::unix::{SignalKind, signal};
    Box::pin(async {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            }
            _ => std::future::pending().await,
        }
    })
}

/// Runs one egress to its end: its updates go to the service tagged with its id, then its final
/// info. Returns the egress id.
async fn run_job(
    shared: Arc<Shared>,
    egress_id: String,
    job: StartJob,
    control: JobControl,
    out: mpsc::UnboundedSender<HandlerMsg>,
) -> String {
    let _named_in_crash_reports = super::crash::Running::new(&egress_id);
    let (updates_tx, mut updates_rx) = mpsc::unbounded_channel::<EgressInfo>();
    let control = Control {
        updates: updates_tx,
        stop: control.stop,
        update_stream: control.update_stream,
    };
    let forward = {
        let out = out.clone();
        let egress_id = egress_id.clone();
        tokio::spawn(async move {
            while let Some(info) = updates_rx.recv().await {
                let msg = HandlerMsg {
                    kind: Some(handler_msg::Kind::Update(info)),
                    egress_id: egress_id.clone(),
                };
                let _ = out.send(msg);
            }
        })
    };
    let info = job.info.unwrap_or_default();
    let final_info = match (job.request, shared.plugins().await) {
        // Classified once in this process, as the service did once in its own.
        (Some(request), Ok(plugins)) => match classify(&request) {
            Some(classified) => {
                let span = tracing::info_span!("egress", egress_id = %egress_id);
                let job = Job {
                    config: shared.config.clone(),
                    request,
                    classified,
                    info,
                    work_dir: PathBuf::from(job.work_dir),
                    plugins,
                };
                // Its stream destinations' metrics are labelled with its id.
                let run = crate::outputs::stream::metrics::for_egress(
                    egress_id.clone(),
                    pipeline::run(job, control),
                );
                tracing::Instrument::instrument(run, span).await
            }
            None => {
                let mut info = info;
                info.set_failed(&PipelineError::Request(errors::invalid_input("request")));
                info
            }
        },
        (None, _) => failed(info, "the job carried no request".into()),
        (_, Err(e)) => failed(info, e),
    };
    let _ = forward.await; // every update is queued before the final one
    let _ = out.send(HandlerMsg {
        kind: Some(handler_msg::Kind::Finished(final_info)),
        egress_id: egress_id.clone(),
    });
    egress_id
}

fn failed(mut info: EgressInfo, error: String) -> EgressInfo {
    info.set_failed(&PipelineError::Request(RpcError::new(
        Code::Internal,
        error,
    )));
    info
}

/// Answers one UpdateStream: the job's pipeline decides; a job that is gone or does not listen
/// is Unavailable.
async fn answer_update_stream(
    sender: Option<mpsc::Sender<UpdateStreamCall>>,
    egress_id: String,
    req: egress_proto::livekit::UpdateStreamRequest,
    out: mpsc::UnboundedSender<HandlerMsg>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = match sender {
        Some(sender) => sender.send((req, tx)).await.is_ok(),
        None => false,
    };
    let result = match (sent, rx.await) {
        (true, Ok(r)) => r,
        _ => Err(RpcError::new(
            Code::Unavailable,
            "pipeline is not accepting stream updates",
        )),
    };
    let msg = match result {
        Ok(info) => ipc::UpdateStreamResult {
            info: Some(info),
            ..Default::default()
        },
        Err(e) => ipc::UpdateStreamResult {
            info: None,
            error_code: e.code.as_str().to_owned(),
            error: e.message,
        },
    };
    let _ = out.send(HandlerMsg {
        kind: Some(handler_msg::Kind::UpdateStreamResult(msg)),
        egress_id,
    });
}

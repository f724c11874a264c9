//! Launches and supervises `egress run-handler` child processes, one per Chrome/GStreamer
//! egress (reference §4.1), and bridges them to psrpc and IOInfo.
//!
//! Invariants:
//! * A handler's `EgressHandler.StopEgress`/`UpdateStream` topics are subscribed exactly while
//!   its process runs (registered after `Ready`, dropped after exit).
//! * Every egress that was launched ends with exactly one terminal status sent to IOInfo: the
//!   handler's own, or FAILED with the exit reason if the handler died without one.
//! * The handler runs in its own process group, so Chrome, Xvfb and PulseAudio helpers it
//!   spawned are killed with it and never outlive the egress.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::net::UnixListener;
use tokio::net::unix::OwnedWriteHalf;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use egress_proto::livekit::{EgressInfo, EgressStatus, StopEgressRequest, UpdateStreamRequest};
use egress_proto::rpc::StartEgressRequest;

use super::ioinfo::IoInfoClient;
use super::ipc::{self, HandlerMsg, ServiceMsg, handler_msg, service_msg};
use super::methods::{STOP_EGRESS, UPDATE_STREAM};
use super::worker::Worker;
use crate::config::ConfigSource;
use crate::handler::{ENV_INFO, ENV_IPC, ENV_REQUEST, ENV_WORK_DIR, encode_job_part};
use crate::rpc::server::now_unix_nanos;
use crate::rpc::{Code, RpcError, RpcServer};

/// How long a handler may take to say Ready (Go: 10 s).
const HANDLER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long IOInfo updates are retried before giving up on one.
const UPDATE_GIVE_UP: Duration = Duration::from_secs(600);

pub struct Launcher {
    pub exe: PathBuf,
    pub config_source: ConfigSource,
    pub tmp_root: PathBuf,
    pub worker: Arc<Worker>,
    pub io: Arc<IoInfoClient>,
    /// The service config and the active sink plugins: the service delivers what a dead handler
    /// left behind to the storage its request named.
    pub config: Arc<crate::config::ServiceConfig>,
    pub plugins: Arc<crate::plugins::PluginRegistry>,
    pub metrics: Arc<crate::service::metrics::Metrics>,
    /// The `EgressHandler` server object (its own `SRV_` id, as in Go).
    pub handler_rpc: RpcServer,
    /// Links of running handlers, by egress id.
    pub links: std::sync::Mutex<std::collections::HashMap<String, Arc<Link>>>,
}

/// The service's end of one handler's IPC link.
pub struct Link {
    wr: Mutex<OwnedWriteHalf>,
    latest: watch::Sender<EgressInfo>,
    update_stream: Mutex<Option<oneshot::Sender<ipc::UpdateStreamResult>>>,
    update_stream_serial: Mutex<()>,
}

impl Link {
    async fn send(&self, msg: ServiceMsg) -> Result<(), RpcError> {
        let mut wr = self.wr.lock().await;
        ipc::write_frame(&mut *wr, &msg).await.map_err(|e| RpcError::new(Code::Internal, format!("handler ipc: {e}")))
    }
}

fn is_terminal(status: i32) -> bool {
    status >= EgressStatus::EgressComplete as i32
}

fn failed(mut info: EgressInfo, error: String) -> EgressInfo {
    let now = now_unix_nanos();
    info.status = EgressStatus::EgressFailed as i32;
    if info.error.is_empty() {
        info.error = error;
        info.error_code = 500;
    }
    info.updated_at = now;
    info.ended_at = now;
    info
}

impl Launcher {
    /// Starts the handler and returns once it is Ready (or failed to start).
    pub async fn launch(self: &Arc<Self>, req: &StartEgressRequest, info: &EgressInfo) -> Result<(), RpcError> {
        let egress_id = info.egress_id.clone();
        let work_dir = self.tmp_root.join(&egress_id);
        let internal = |what: &str, e: &dyn std::fmt::Display| RpcError::new(Code::Internal, format!("{what}: {e}"));
        std::fs::create_dir_all(&work_dir).map_err(|e| internal("cannot create work dir", &e))?;
        let socket = work_dir.join("handler.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(|e| internal("cannot bind handler socket", &e))?;

        let mut cmd = Command::new(&self.exe);
        cmd.arg("run-handler")
            .env(ENV_REQUEST, encode_job_part(req))
            .env(ENV_INFO, encode_job_part(info))
            .env(ENV_IPC, &socket)
            .env(ENV_WORK_DIR, &work_dir)
            .env("TMPDIR", &work_dir)
            .stdin(Stdio::null())
            .process_group(0);
        if let Some(body) = &self.config_source.body {
            cmd.env("EGRESS_CONFIG_BODY", body);
        } else if let Some(file) = &self.config_source.file {
            cmd.env_remove("EGRESS_CONFIG_BODY").env("EGRESS_CONFIG_FILE", file);
        }
        let mut child = cmd.spawn().map_err(|e| internal("failed to launch handler", &e))?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));

        let ready = tokio::time::timeout(HANDLER_START_TIMEOUT, async {
            let (stream, _) = listener.accept().await?;
            let (mut rd, wr) = stream.into_split();
            match ipc::read_frame::<_, HandlerMsg>(&mut rd).await {
                Ok(Some(HandlerMsg { kind: Some(handler_msg::Kind::Ready(_)) })) => Ok((rd, wr)),
                _ => Err(std::io::Error::other("handler did not send Ready")),
            }
        })
        .await;
        let (rd, wr) = match ready {
            Ok(Ok(pair)) => pair,
            other => {
                tracing::error!(egress_id = %egress_id, outcome = ?other.err(), "handler failed to start");
                kill_group(pgid, Signal::SIGKILL);
                let _ = child.wait().await;
                let _ = std::fs::remove_dir_all(&work_dir);
                return Err(RpcError::new(Code::Internal, "handler failed to start"));
            }
        };
        let _ = std::fs::remove_file(&socket);

        let (latest, _) = watch::channel(info.clone());
        let link = Arc::new(Link {
            wr: Mutex::new(wr),
            latest,
            update_stream: Mutex::new(None),
            update_stream_serial: Mutex::new(()),
        });
        let registrations = self.register_handler_topics(&egress_id, link.clone()).await;
        self.links.lock().unwrap_or_else(|e| e.into_inner()).insert(egress_id.clone(), link.clone());
        tracing::info!(egress_id = %egress_id, pid = ?child.id(), "handler ready");
        let this = self.clone();
        let request = req.clone();
        tokio::spawn(async move {
            this.supervise(child, pgid, rd, link, registrations, work_dir, request).await;
        });
        Ok(())
    }

    /// Stops a running egress and marks it FAILED with `error` (Go's KillEgress / AbortProcess).
    pub async fn kill(&self, egress_id: &str, error: &str) {
        let link = self.links.lock().unwrap_or_else(|e| e.into_inner()).get(egress_id).cloned();
        if let Some(link) = link {
            let msg = ServiceMsg { kind: Some(service_msg::Kind::Kill(ipc::Stop { reason: error.to_owned() })) };
            if let Err(e) = link.send(msg).await {
                tracing::warn!(egress_id, error = %e, "could not deliver kill to handler");
            }
        }
    }

    async fn register_handler_topics(&self, egress_id: &str, link: Arc<Link>) -> Vec<crate::rpc::Registration> {
        let stop_link = link.clone();
        let stop = self
            .handler_rpc
            .register(STOP_EGRESS, &[egress_id], |_: &StopEgressRequest| 1.0, move |_req: StopEgressRequest, ctx| {
                let link = stop_link.clone();
                async move {
                    let mut watch = link.latest.subscribe();
                    let before = watch.borrow_and_update().status;
                    link.send(ServiceMsg { kind: Some(service_msg::Kind::Stop(ipc::Stop { reason: "StopEgress API".into() })) })
                        .await?;
                    // Answer with the status the stop produced (ENDING, or ABORTED if it had
                    // not started), as Go does; fall back to the latest known after a moment.
                    let wait = tokio::time::Instant::now() + Duration::from_secs(2);
                    let until = wait.min(ctx.deadline);
                    while watch.borrow().status == before {
                        if tokio::time::timeout_at(until, watch.changed()).await.is_err() {
                            break;
                        }
                    }
                    let info = watch.borrow().clone();
                    Ok(info)
                }
            })
            .await;
        let update = self
            .handler_rpc
            .register(UPDATE_STREAM, &[egress_id], |_: &UpdateStreamRequest| 1.0, move |req: UpdateStreamRequest, ctx| {
                let link = link.clone();
                async move {
                    let _serial = link.update_stream_serial.lock().await;
                    let (tx, rx) = oneshot::channel();
                    *link.update_stream.lock().await = Some(tx);
                    link.send(ServiceMsg { kind: Some(service_msg::Kind::UpdateStream(req)) }).await?;
                    match tokio::time::timeout_at(ctx.deadline, rx).await {
                        Ok(Ok(r)) if r.error.is_empty() => Ok(r.info.unwrap_or_default()),
                        Ok(Ok(r)) => Err(RpcError::new(Code::from_wire(&r.error_code), r.error)),
                        _ => Err(RpcError::new(Code::DeadlineExceeded, "request timed out")),
                    }
                }
            })
            .await;
        vec![stop, update]
    }

    async fn supervise(
        self: Arc<Self>,
        mut child: Child,
        pgid: Option<Pid>,
        mut rd: tokio::net::unix::OwnedReadHalf,
        link: Arc<Link>,
        registrations: Vec<crate::rpc::Registration>,
        work_dir: PathBuf,
        request: StartEgressRequest,
    ) {
        let egress_id = link.latest.borrow().egress_id.clone();
        // IOInfo updates go out in order, one egress at a time.
        let (updates_tx, mut updates_rx) = mpsc::unbounded_channel::<EgressInfo>();
        let io = self.io.clone();
        let updater = tokio::spawn(async move {
            while let Some(info) = updates_rx.recv().await {
                if let Err(e) = io.update_egress(&info, UPDATE_GIVE_UP).await {
                    tracing::error!(egress_id = %info.egress_id, error = %e, "UpdateEgress failed");
                }
            }
        });
        let mut terminal_sent = false;
        let mut backup_used = false;
        loop {
            match ipc::read_frame::<_, HandlerMsg>(&mut rd).await {
                Ok(Some(HandlerMsg { kind: Some(handler_msg::Kind::Update(info))
                    | Some(handler_msg::Kind::Finished(info)) })) => {
                    terminal_sent |= is_terminal(info.status);
                    backup_used |= is_terminal(info.status) && info.backup_storage_used;
                    link.latest.send_replace(info.clone());
                    let _ = updates_tx.send(info);
                }
                Ok(Some(HandlerMsg { kind: Some(handler_msg::Kind::UpdateStreamResult(r)) })) => {
                    if let Some(tx) = link.update_stream.lock().await.take() {
                        let _ = tx.send(r);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        // The handler closed its end: it is exiting (or died). Give it a moment, then make sure.
        let status = match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                tracing::warn!(egress_id = %egress_id, "handler did not exit after finishing; killing it");
                kill_group(pgid, Signal::SIGKILL);
                child.wait().await.ok()
            }
        };
        // Reap anything it left behind in its group (Chrome, Xvfb).
        kill_group(pgid, Signal::SIGKILL);
        drop(registrations);
        if !terminal_sent {
            let reason = match status {
                Some(s) => format!("handler process ended unexpectedly ({s})"),
                None => "handler process ended unexpectedly".to_owned(),
            };
            tracing::error!(egress_id = %egress_id, reason, "egress failed");
            let mut info = failed(link.latest.borrow().clone(), reason);
            // Deliver the partial recording the handler left in its work dir, and report it.
            let files = crate::storage::salvage(&work_dir, &self.config, &request, &self.plugins, now_unix_nanos()).await;
            crate::pipeline::attach_salvaged(&mut info, files);
            link.latest.send_replace(info.clone());
            let _ = updates_tx.send(info);
        }
        let request_type = super::request::classify(&request).map_or("unknown", |c| c.request_type.label());
        self.metrics.handler_ended(request_type, terminal_sent, backup_used);
        drop(updates_tx);
        let _ = updater.await;
        self.links.lock().unwrap_or_else(|e| e.into_inner()).remove(&egress_id);
        self.worker.finish(&egress_id);
        remove_work_dir(&work_dir);
        tracing::info!(egress_id = %egress_id, exit = ?status, "handler ended");
    }
}

fn kill_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, signal);
    }
}

fn remove_work_dir(dir: &Path) {
    if crate::pipeline::outputs::is_kept(dir) {
        tracing::error!(dir = %dir.display(), "keeping the work dir: it holds a recording that could not be delivered");
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove work dir");
    }
}

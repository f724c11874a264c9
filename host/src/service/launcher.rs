//! Launches egresses in `egress run-handler` child processes and bridges them to psrpc and
//! IOInfo (reference §4.1).
//!
//! Which process runs an egress: a Chrome/GStreamer egress gets a handler process of its own
//! (Chrome, Xvfb and PulseAudio are per egress anyway, and a browser crash must stay contained).
//! WebRTC track egresses share handler processes, up to [`EGRESSES_PER_SHARED_PROCESS`] each: a
//! passthrough track costs a few hundred kilobytes and a few millicores, far less than a
//! process, so a process per track would be most of its cost (issue 7; measured in
//! `bench/tracks`). A shared process that crashes takes its egresses with it, and each of them
//! is reported FAILED with the exit reason and its partial file delivered — never silently.
//! Idle shared processes are retired after [`SHARED_IDLE_RETIRE`].
//!
//! Invariants:
//! * An egress's `EgressHandler.StopEgress`/`UpdateStream` topics are subscribed exactly while
//!   it runs (registered after its job is sent, dropped after its terminal status).
//! * Every egress that was launched ends with exactly one terminal status sent to IOInfo: the
//!   handler's own, or FAILED with the exit reason if its process died without one.
//! * A handler runs in its own process group, so Chrome, Xvfb and PulseAudio helpers it spawned
//!   are killed with it and never outlive it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot, watch};

use egress_proto::livekit::{EgressInfo, EgressStatus, StopEgressRequest, UpdateStreamRequest};
use egress_proto::rpc::StartEgressRequest;

use super::ioinfo::IoInfoClient;
use super::methods::{STOP_EGRESS, UPDATE_STREAM};
use super::worker::Worker;
use crate::config::ConfigSource;
use crate::core::request::{Classified, RequestType};
use crate::process::child::{Frames, HandlerProcess};
use crate::process::ipc::{self, HandlerMsg, StartJob, handler_msg, service_msg};
use crate::rpc::server::now_unix_nanos;
use crate::rpc::{Code, RpcError, RpcServer};

/// How long IOInfo updates are retried before giving up on one.
const UPDATE_GIVE_UP: Duration = Duration::from_secs(600);
/// The most egresses one shared handler process runs: the blast radius of a crash, traded
/// against a process's fixed memory (~20 MiB resident) spread over its egresses.
pub const EGRESSES_PER_SHARED_PROCESS: usize = 64;
/// How long a shared handler process may sit idle before it is retired. Kept a while so a burst
/// of track egresses does not pay process start-up (and plugin loading) each time.
pub const SHARED_IDLE_RETIRE: Duration = Duration::from_secs(120);

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
    pub metrics: Arc<super::metrics::Metrics>,
    /// The `EgressHandler` server object (its own `SRV_` id, as in Go).
    pub handler_rpc: RpcServer,
    /// Links of running egresses, by egress id.
    pub links: std::sync::Mutex<std::collections::HashMap<String, Arc<Link>>>,
    /// Handler processes that take track egresses (see the module docs).
    pub shared: Mutex<Vec<Arc<HandlerProcess>>>,
}

/// The service's end of one running egress.
pub struct Link {
    egress_id: String,
    process: Arc<HandlerProcess>,
    latest: watch::Sender<EgressInfo>,
    update_stream: Mutex<Option<oneshot::Sender<ipc::UpdateStreamResult>>>,
    update_stream_serial: Mutex<()>,
}

impl Link {
    async fn send(&self, kind: service_msg::Kind) -> Result<(), RpcError> {
        self.process.send(&self.egress_id, kind).await
    }
}

/// Whether an egress runs in a shared handler process: track egresses (passthrough to a file,
/// or PCM to a websocket) and v2 media egresses with the PASSTHROUGH preset (one track, as a
/// track egress). Everything that decodes and re-encodes video keeps a process to itself.
pub fn shares_process(request: &Classified) -> bool {
    match request.request_type {
        RequestType::Track => true,
        RequestType::Media => request.passthrough,
        _ => false,
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
    /// Starts the egress in a handler process and returns once its job is sent (or it failed
    /// to start).
    pub async fn launch(
        self: &Arc<Self>,
        req: &StartEgressRequest,
        info: &EgressInfo,
        classified: Classified,
    ) -> Result<(), RpcError> {
        let egress_id = info.egress_id.clone();
        let work_dir = self.tmp_root.join(&egress_id);
        std::fs::create_dir_all(&work_dir)
            .map_err(|e| RpcError::new(Code::Internal, format!("cannot create work dir: {e}")))?;
        let shared = shares_process(&classified);
        let placed = if shared {
            self.place_in_shared(&egress_id).await
        } else {
            match HandlerProcess::spawn(&self.exe, &self.config_source, &work_dir).await {
                Ok(process) => match process.attach(&egress_id) {
                    Some(frames) => Ok((process, frames)),
                    None => Err(RpcError::new(Code::Internal, "handler failed to start")),
                },
                Err(e) => Err(e),
            }
        };
        let (process, frames) = match placed {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(egress_id = %egress_id, error = %e, "no handler for the egress");
                let _ = std::fs::remove_dir_all(&work_dir);
                return Err(e);
            }
        };
        let job = StartJob {
            request: Some(req.clone()),
            info: Some(info.clone()),
            work_dir: work_dir.display().to_string(),
        };
        if let Err(e) = process.start(&egress_id, job).await {
            tracing::error!(egress_id = %egress_id, error = %e, "could not hand the egress to its handler");
            process.detach(&egress_id);
            if !shared {
                process.retire().await;
            }
            let _ = std::fs::remove_dir_all(&work_dir);
            return Err(RpcError::new(Code::Internal, "handler failed to start"));
        }

        let (latest, _) = watch::channel(info.clone());
        let link = Arc::new(Link {
            egress_id: egress_id.clone(),
            process: process.clone(),
            latest,
            update_stream: Mutex::new(None),
            update_stream_serial: Mutex::new(()),
        });
        let registrations = self.register_handler_topics(&egress_id, link.clone()).await;
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(egress_id.clone(), link.clone());
        tracing::info!(egress_id = %egress_id, pid = ?process.pid, shared, load = process.load(), "egress handed to its handler");
        let this = self.clone();
        let request = req.clone();
        tokio::spawn(async move {
            this.supervise(frames, link, registrations, work_dir, request, classified)
                .await;
        });
        Ok(())
    }

    /// A shared handler process with room for one more egress (the fullest such, so processes
    /// fill up and idle ones can retire), or a new one; the egress is attached to it.
    async fn place_in_shared(
        self: &Arc<Self>,
        egress_id: &str,
    ) -> Result<(Arc<HandlerProcess>, Frames), RpcError> {
        let mut pool = self.shared.lock().await;
        pool.retain(|p| p.is_open());
        let fullest = pool
            .iter()
            .filter(|p| p.load() < EGRESSES_PER_SHARED_PROCESS)
            .max_by_key(|p| p.load())
            .cloned();
        if let Some(process) = fullest
            && let Some(frames) = process.attach(egress_id)
        {
            return Ok((process, frames));
        }
        let dir = self
            .tmp_root
            .join(format!("handler-{}", crate::rpc::ids::new_id("")));
        let process = HandlerProcess::spawn(&self.exe, &self.config_source, &dir).await?;
        let frames = process
            .attach(egress_id)
            .ok_or_else(|| RpcError::new(Code::Internal, "handler failed to start"))?;
        pool.push(process.clone());
        if pool.len() == 1 {
            self.spawn_idle_reaper();
        }
        // Remove the process's directory once it has exited.
        let exited = process.clone();
        tokio::spawn(async move {
            exited.exit().await;
            let _ = std::fs::remove_dir_all(&exited.dir);
        });
        Ok((process, frames))
    }

    /// Retires shared processes idle for longer than [`SHARED_IDLE_RETIRE`]; ends when the pool
    /// is empty (the next shared process starts a new reaper).
    fn spawn_idle_reaper(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SHARED_IDLE_RETIRE / 4).await;
                let mut pool = this.shared.lock().await;
                let mut retired = Vec::new();
                pool.retain(|p| {
                    let idle = p.idle_for().is_some_and(|d| d >= SHARED_IDLE_RETIRE);
                    if idle || !p.is_open() {
                        retired.push(p.clone());
                    }
                    !idle && p.is_open()
                });
                let empty = pool.is_empty();
                drop(pool);
                for p in retired {
                    tracing::info!(pid = ?p.pid, "retiring an idle shared handler process");
                    p.retire().await;
                }
                if empty {
                    break;
                }
            }
        });
    }

    /// Stops a running egress and marks it FAILED with `error` (Go's KillEgress / AbortProcess).
    pub async fn kill(&self, egress_id: &str, error: &str) {
        let link = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(egress_id)
            .cloned();
        if let Some(link) = link
            && let Err(e) = link
                .send(service_msg::Kind::Kill(ipc::Stop {
                    reason: error.to_owned(),
                }))
                .await
        {
            tracing::warn!(egress_id, error = %e, "could not deliver kill to handler");
        }
    }

    async fn register_handler_topics(
        &self,
        egress_id: &str,
        link: Arc<Link>,
    ) -> Vec<crate::rpc::Registration> {
        let stop_link = link.clone();
        let stop = self
            .handler_rpc
            .register(
                STOP_EGRESS,
                &[egress_id],
                |_: &StopEgressRequest| 1.0,
                move |_req: StopEgressRequest, ctx| {
                    let link = stop_link.clone();
                    async move {
                        let mut watch = link.latest.subscribe();
                        let before = watch.borrow_and_update().status;
                        link.send(service_msg::Kind::Stop(ipc::Stop {
                            reason: "StopEgress API".into(),
                        }))
                        .await?;
                        // Answer with the status the stop produced (ENDING, or ABORTED if it had
                        // not started), as Go does; fall back to the latest known after a moment.
                        let wait = tokio::time::Instant::now() + Duration::from_secs(2);
                        let until = wait.min(ctx.deadline);
                        while watch.borrow().status == before {
                            if tokio::time::timeout_at(until, watch.changed())
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                        let info = watch.borrow().clone();
                        Ok(info)
                    }
                },
            )
            .await;
        let update = self
            .handler_rpc
            .register(
                UPDATE_STREAM,
                &[egress_id],
                |_: &UpdateStreamRequest| 1.0,
                move |req: UpdateStreamRequest, ctx| {
                    let link = link.clone();
                    async move {
                        let _serial = link.update_stream_serial.lock().await;
                        let (tx, rx) = oneshot::channel();
                        *link.update_stream.lock().await = Some(tx);
                        link.send(service_msg::Kind::UpdateStream(req)).await?;
                        match tokio::time::timeout_at(ctx.deadline, rx).await {
                            Ok(Ok(r)) if r.error.is_empty() => Ok(r.info.unwrap_or_default()),
                            Ok(Ok(r)) => {
                                Err(RpcError::new(Code::from_wire(&r.error_code), r.error))
                            }
                            _ => Err(RpcError::new(Code::DeadlineExceeded, "request timed out")),
                        }
                    }
                },
            )
            .await;
        vec![stop, update]
    }

    async fn supervise(
        self: Arc<Self>,
        mut frames: Frames,
        link: Arc<Link>,
        registrations: Vec<crate::rpc::Registration>,
        work_dir: PathBuf,
        request: StartEgressRequest,
        classified: Classified,
    ) {
        let shared = shares_process(&classified);
        let egress_id = link.egress_id.clone();
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
        while let Some(msg) = frames.recv().await {
            match msg {
                HandlerMsg {
                    kind:
                        Some(handler_msg::Kind::Update(info)) | Some(handler_msg::Kind::Finished(info)),
                    ..
                } => {
                    let terminal = is_terminal(info.status);
                    terminal_sent |= terminal;
                    link.latest.send_replace(info.clone());
                    let _ = updates_tx.send(info);
                    if terminal {
                        break;
                    }
                }
                HandlerMsg {
                    kind: Some(handler_msg::Kind::UpdateStreamResult(r)),
                    ..
                } => {
                    if let Some(tx) = link.update_stream.lock().await.take() {
                        let _ = tx.send(r);
                    }
                }
                _ => {}
            }
        }
        link.process.detach(&egress_id);
        if !shared {
            // Its own process: let it exit (it has nothing left to run) and reap its group
            // before the work dir, its TMPDIR, goes.
            link.process.retire().await;
        }
        let exit = if !terminal_sent || !shared {
            Some(link.process.exit().await)
        } else {
            None
        };
        drop(registrations);
        if !terminal_sent {
            let reason = format!(
                "handler process ended unexpectedly ({})",
                exit.as_deref().unwrap_or("unknown")
            );
            tracing::error!(egress_id = %egress_id, reason, "egress failed");
            let mut info = failed(link.latest.borrow().clone(), reason.clone());
            if let Some(core) = link.process.core() {
                info.details = format!("{reason}; {core}");
            }
            // Deliver the partial recording the handler left in the work dir, and report it.
            let files = crate::storage::salvage(
                &work_dir,
                &self.config,
                &request,
                &self.plugins,
                now_unix_nanos(),
            )
            .await;
            crate::outputs::attach_salvaged(&mut info, files);
            link.latest.send_replace(info.clone());
            let _ = updates_tx.send(info);
        }
        self.metrics
            .handler_ended(classified.request_type.label(), terminal_sent);
        drop(updates_tx);
        let _ = updater.await;
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&egress_id);
        self.worker.finish(&egress_id);
        remove_work_dir(&work_dir);
        tracing::info!(egress_id = %egress_id, exit = ?exit, "egress ended");
    }
}

fn remove_work_dir(dir: &Path) {
    if crate::storage::local::is_kept(dir) {
        tracing::error!(dir = %dir.display(), "keeping the work dir: it holds a recording that could not be delivered");
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove work dir");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(request_type: RequestType, passthrough: bool) -> Classified {
        Classified {
            request_type,
            uses_chrome: false,
            audio_only: false,
            passthrough,
        }
    }

    #[test]
    fn only_egresses_without_a_video_encoder_share_a_process() {
        assert!(shares_process(&classified(RequestType::Track, true)));
        assert!(
            shares_process(&classified(RequestType::Track, false)),
            "websocket output: audio decode only"
        );
        assert!(shares_process(&classified(RequestType::Media, true)));
        assert!(!shares_process(&classified(RequestType::Media, false)));
        for t in [
            RequestType::RoomComposite,
            RequestType::Web,
            RequestType::Template,
            RequestType::Participant,
            RequestType::TrackComposite,
        ] {
            assert!(!shares_process(&classified(t, false)), "{t:?}");
        }
    }
}

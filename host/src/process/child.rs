//! One `egress run-handler` child process, as the service sees it: spawned in its own process
//! group, connected over a Unix socket, its frames routed to the egresses it runs.
//!
//! The process knows nothing about which egresses it will get; the service's launcher (`crate::service::launcher`) sends
//! them with [`HandlerProcess::start`]. When the process exits or its connection breaks, every
//! egress still attached sees its frame channel close and learns why from [`HandlerProcess::exit`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use super::ipc::{self, ENV_IPC, HandlerMsg, ServiceMsg, handler_msg, service_msg};
use crate::config::ConfigSource;
use crate::rpc::{Code, RpcError};

/// How long a handler may take to say Ready (Go: 10 s).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a handler that closed its connection may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(30);

/// Frames for one egress, in the order the handler sent them.
pub type Frames = mpsc::UnboundedReceiver<HandlerMsg>;

pub struct HandlerProcess {
    pub pid: Option<u32>,
    pgid: Option<Pid>,
    /// Where the socket was created and the process's TMPDIR.
    pub dir: PathBuf,
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    routes: Mutex<Routes>,
    /// `None` while running; then why it ended ("exit status: 0", "signal: 9 (SIGKILL)").
    exit: watch::Sender<Option<String>>,
    /// Where its core went, when it died with one ([`super::crash::core_file`]).
    core: std::sync::OnceLock<String>,
}

#[derive(Default)]
struct Routes {
    by_egress: HashMap<String, mpsc::UnboundedSender<HandlerMsg>>,
    /// Set when the connection is gone: no egress can attach any more.
    closed: bool,
    /// When the last egress detached (for retiring idle shared processes).
    idle_since: Option<Instant>,
}

impl HandlerProcess {
    /// Spawns a handler with `dir` as its TMPDIR and socket dir, and waits for Ready.
    pub async fn spawn(
        exe: &Path,
        config: &ConfigSource,
        dir: &Path,
    ) -> Result<Arc<HandlerProcess>, RpcError> {
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            RpcError::new(Code::Internal, format!("{what}: {e}"))
        };
        std::fs::create_dir_all(dir).map_err(|e| internal("cannot create handler dir", &e))?;
        let socket = dir.join("handler.sock");
        let _ = std::fs::remove_file(&socket);
        let listener =
            UnixListener::bind(&socket).map_err(|e| internal("cannot bind handler socket", &e))?;

        let mut cmd = Command::new(exe);
        cmd.arg("run-handler")
            .env(ENV_IPC, &socket)
            .env("TMPDIR", dir)
            .stdin(Stdio::null())
            .process_group(0);
        if let Some(body) = &config.body {
            cmd.env("EGRESS_CONFIG_BODY", body);
        } else if let Some(file) = &config.file {
            cmd.env_remove("EGRESS_CONFIG_BODY")
                .env("EGRESS_CONFIG_FILE", file);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| internal("failed to launch handler", &e))?;
        let pid = child.id();
        let pgid = pid.map(|id| Pid::from_raw(id as i32));

        let ready = tokio::time::timeout(START_TIMEOUT, async {
            let (stream, _) = listener.accept().await?;
            let (mut rd, wr) = stream.into_split();
            match ipc::read_frame::<_, HandlerMsg>(&mut rd).await {
                Ok(Some(HandlerMsg {
                    kind: Some(handler_msg::Kind::Ready(_)),
                    ..
                })) => Ok((rd, wr)),
                _ => Err(std::io::Error::other("handler did not send Ready")),
            }
        })
        .await;
        let _ = std::fs::remove_file(&socket);
        let (rd, wr) = match ready {
            Ok(Ok(pair)) => pair,
            other => {
                tracing::error!(outcome = ?other.err(), "handler failed to start");
                kill_group(pgid, Signal::SIGKILL);
                let _ = child.wait().await;
                return Err(RpcError::new(Code::Internal, "handler failed to start"));
            }
        };
        let (exit, _) = watch::channel(None);
        let process = Arc::new(HandlerProcess {
            pid,
            pgid,
            dir: dir.to_path_buf(),
            writer: tokio::sync::Mutex::new(Some(wr)),
            routes: Mutex::new(Routes {
                idle_since: Some(Instant::now()),
                ..Default::default()
            }),
            exit,
            core: std::sync::OnceLock::new(),
        });
        tokio::spawn(process.clone().read_until_exit(rd, child));
        tracing::info!(pid, "handler process ready");
        Ok(process)
    }

    /// Routes this egress's frames to the returned receiver. `None` when the process is gone.
    pub fn attach(&self, egress_id: &str) -> Option<Frames> {
        let mut routes = self.routes();
        if routes.closed {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        routes.by_egress.insert(egress_id.to_owned(), tx);
        routes.idle_since = None;
        Some(rx)
    }

    /// Stops routing this egress's frames (it has ended).
    pub fn detach(&self, egress_id: &str) {
        let mut routes = self.routes();
        routes.by_egress.remove(egress_id);
        if routes.by_egress.is_empty() {
            routes.idle_since = Some(Instant::now());
        }
    }

    /// How many egresses run here.
    pub fn load(&self) -> usize {
        self.routes().by_egress.len()
    }

    /// Whether the process can take another egress.
    pub fn is_open(&self) -> bool {
        !self.routes().closed
    }

    /// How long it has had nothing to do (`None` while it runs an egress).
    pub fn idle_for(&self) -> Option<Duration> {
        self.routes().idle_since.map(|t| t.elapsed())
    }

    /// Sends the job for an attached egress.
    pub async fn start(&self, egress_id: &str, job: ipc::StartJob) -> Result<(), RpcError> {
        self.send(egress_id, service_msg::Kind::Start(job)).await
    }

    pub async fn send(&self, egress_id: &str, kind: service_msg::Kind) -> Result<(), RpcError> {
        let msg = ServiceMsg {
            kind: Some(kind),
            egress_id: egress_id.to_owned(),
        };
        let mut writer = self.writer.lock().await;
        let Some(wr) = writer.as_mut() else {
            return Err(RpcError::new(
                Code::Unavailable,
                "handler process is exiting",
            ));
        };
        ipc::write_frame(wr, &msg)
            .await
            .map_err(|e| RpcError::new(Code::Internal, format!("handler ipc: {e}")))
    }

    /// Closes the service's end: the handler finishes what it runs and exits.
    pub async fn retire(&self) {
        self.routes().closed = true;
        if let Some(mut wr) = self.writer.lock().await.take() {
            use tokio::io::AsyncWriteExt;
            let _ = wr.shutdown().await;
        }
    }

    /// Waits for the process to end and says how it ended.
    pub async fn exit(&self) -> String {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return "unknown".into();
            }
        }
    }

    /// Where the core of a crashed process went ("core file /path", "core handed to …").
    pub fn core(&self) -> Option<&str> {
        self.core.get().map(String::as_str)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Demultiplexes frames until the connection ends, then reaps the process and its group and
    /// closes every egress's channel.
    async fn read_until_exit(self: Arc<Self>, mut rd: OwnedReadHalf, mut child: Child) {
        loop {
            match ipc::read_frame::<_, HandlerMsg>(&mut rd).await {
                // Upload outcomes are about the process, not one egress: counted here.
                Ok(Some(HandlerMsg {
                    kind: Some(handler_msg::Kind::Upload(outcome)),
                    ..
                })) => match outcome.into_report() {
                    Some(report) => crate::storage::report::report(report),
                    None => tracing::warn!(
                        pid = self.pid,
                        "upload outcome with an unknown status; not counted"
                    ),
                },
                // So are stream destinations' numbers, labelled with their egress.
                Ok(Some(HandlerMsg {
                    kind: Some(handler_msg::Kind::StreamStats(stats)),
                    egress_id,
                })) => crate::outputs::stream::metrics::record(&egress_id, stats.into_samples()),
                // And the segments and image outputs' queues and upload outcomes.
                Ok(Some(HandlerMsg {
                    kind: Some(handler_msg::Kind::OutputStats(stats)),
                    egress_id,
                })) => crate::outputs::upload_metrics::record(&egress_id, stats.into_samples()),
                Ok(Some(msg)) => {
                    let routes = self.routes();
                    match routes.by_egress.get(&msg.egress_id) {
                        Some(tx) => {
                            let _ = tx.send(msg);
                        }
                        None => {
                            tracing::warn!(pid = self.pid, egress_id = %msg.egress_id, "frame for an unknown egress")
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(pid = self.pid, error = %e, "handler connection broke");
                    break;
                }
            }
        }
        self.routes().closed = true;
        let status = match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                tracing::warn!(
                    pid = self.pid,
                    "handler did not exit after closing its connection; killing it"
                );
                kill_group(self.pgid, Signal::SIGKILL);
                child.wait().await.ok()
            }
        };
        // Reap anything it left in its group (Chrome, Xvfb, PulseAudio).
        kill_group(self.pgid, Signal::SIGKILL);
        let reason = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        tracing::info!(pid = self.pid, exit = %reason, "handler process ended");
        if let (Some(pid), Some(status)) = (self.pid, status)
            && let Some(core) = super::crash::core_of_crash(pid, &status)
        {
            tracing::error!(pid, exit = %reason, core = %core, "handler process crashed; its report (signal, egress ids, backtrace) is in the log above");
            let _ = self.core.set(core);
        }
        self.exit.send_replace(Some(reason));
        // Every egress still attached learns that its process is gone.
        self.routes().by_egress.clear();
    }
}

fn kill_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, signal);
    }
}

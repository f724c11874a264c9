//! A private PulseAudio server for one egress, with a null sink that Chrome plays into and
//! whose monitor GStreamer records.
//!
//! The Go egress loads a `module-null-sink` per egress into one shared daemon and needs a
//! reaper for sinks that outlive a crashed handler. Here each handler runs its own small daemon
//! (`--daemonize=no`, so it stays in the handler's process group) with its runtime dir and
//! socket inside the egress's work dir: nothing is shared between egresses, and killing the
//! handler's group removes the sink with it. The cost is one extra process of a few MB per
//! egress, started in about 50 ms.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::core::PipelineError;

const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The sink runs at the rate Opus needs; AAC/MP3 at other rates resample in GStreamer.
const SINK_RATE: u32 = 48_000;

pub struct Pulse {
    child: Child,
    socket: PathBuf,
    sink: String,
}

fn failed(reason: impl std::fmt::Display) -> PipelineError {
    PipelineError::ProcessFailed {
        process: "pulse",
        reason: reason.to_string(),
    }
}

impl Pulse {
    /// Starts the daemon in `<work_dir>/pulse` with a null sink named `sink`.
    pub async fn start(work_dir: &Path, sink: &str) -> Result<Pulse, PipelineError> {
        let dir = work_dir.join("pulse");
        std::fs::create_dir_all(&dir).map_err(failed)?;
        set_private(&dir).map_err(failed)?;
        let socket = dir.join("native");
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::File::create(dir.join("pulse.log")).map_err(failed)?;

        let mut cmd = Command::new("pulseaudio");
        cmd.args([
            "--daemonize=no",
            "--system=false",
            "--exit-idle-time=-1",
            "--disallow-exit=true",
            "--use-pid-file=no",
            "--realtime=false",
            "--high-priority=false",
            "--log-target=stderr",
            "--log-level=warning",
            // No default.pa: only what we load below (no dbus, no hardware, no X11 modules).
            "-n",
        ])
        .arg(format!("--load=module-native-protocol-unix auth-anonymous=1 socket={}", socket.display()))
        .arg(format!(
            "--load=module-null-sink sink_name={sink} rate={SINK_RATE} channels=2 sink_properties=device.description={sink}"
        ))
        // pulseaudio keeps its runtime state and cookie under these; keep them in the work dir.
        .env("XDG_RUNTIME_DIR", &dir)
        .env("HOME", &dir)
        .env_remove("PULSE_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(failed)?;

        let ready = tokio::time::timeout(START_TIMEOUT, async {
            loop {
                if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                    return Ok(());
                }
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("pulseaudio exited ({status})"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => {
                tracing::debug!(socket = %socket.display(), sink, "pulse ready");
                Ok(Pulse {
                    child,
                    socket,
                    sink: sink.to_owned(),
                })
            }
            Ok(Err(reason)) => Err(failed(format!(
                "{reason}; see {}",
                dir.join("pulse.log").display()
            ))),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(failed("pulseaudio did not open its socket in time"))
            }
        }
    }

    /// `unix:<socket>`, for `PULSE_SERVER` and pulsesrc's `server`.
    pub fn server(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The sink Chrome plays into (`PULSE_SINK`).
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// The source GStreamer records.
    pub fn monitor(&self) -> String {
        format!("{}.monitor", self.sink)
    }

    /// Makes the null sink render at its clients' latency now rather than after its current
    /// block. A null sink with no clients renders in 2-second blocks and only picks up a new,
    /// smaller requested latency when that block ends, so the first audio reached our recorder
    /// up to 2 s late; a suspend/resume cycle restarts its clock at the current latency.
    /// Call it once the recorder's stream is connected.
    pub async fn restart_sink_clock(&self) {
        for suspend in ["1", "0"] {
            let status = Command::new("pactl")
                .args(["suspend-sink", &self.sink, suspend])
                .env("PULSE_SERVER", self.server())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if !matches!(&status, Ok(s) if s.success()) {
                tracing::warn!(
                    ?status,
                    "pactl suspend-sink failed; the first second of audio may be silent"
                );
                return;
            }
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn set_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

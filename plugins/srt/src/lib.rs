//! The `srt` live destination: publishes MPEG-TS to `srt://host:port?…` URLs in caller mode.
//!
//! libsrt itself, loaded at run time (why not GStreamer's `srtsink` or `srt-tokio`: see
//! `libsrt.rs`). The query of the URL configures SRT as libsrt's URI syntax does
//! (`passphrase`, `pbkeylen`, `streamid`, `latency` in ms). `connect` returns once the
//! listener accepted; a refusal says why (a wrong passphrase is an auth error within one
//! round trip). Each session runs on a thread of its own; `send` blocks there, never on the
//! host's executor.
//!
//! Config (all optional):
//!
//! ```yaml
//! plugins:
//!   - builtin: srt
//!     config:
//!       connect_timeout_ms: 3000   # no handshake answer within this: retryable (libsrt's default)
//!       send_timeout_ms: 5000      # a send that cannot go out for this long fails the session
//! ```

mod libsrt;
mod session;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use egress_plugin_api::blocking::Worker;
use egress_plugin_api::{
    LiveChunk, LiveDescriptor, LiveFactory, LiveFormat, LivePlugin, LiveSession, SinkError, Value,
    async_trait, config, export_live, json,
};
use serde::Deserialize;

pub use target::Target;

use session::{Conn, Timeouts};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_send_timeout_ms")]
    send_timeout_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    3_000
}

fn default_send_timeout_ms() -> u64 {
    5_000
}

/// The configured destination.
pub struct SrtDestination {
    timeouts: Timeouts,
}

impl LivePlugin for SrtDestination {
    fn describe() -> LiveDescriptor {
        LiveDescriptor::new("srt", env!("CARGO_PKG_VERSION"), LiveFormat::MpegTs)
            .with_schemes(["srt"])
            .with_config_schema(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "connect_timeout_ms": { "type": "integer", "minimum": 1, "default": 3000 },
                    "send_timeout_ms": { "type": "integer", "minimum": 1, "default": 5000 }
                }
            }))
    }

    fn create(config: &Value) -> Result<Self, SinkError> {
        let config: Config = config::parse(config)?;
        for (field, value) in [
            ("connect_timeout_ms", config.connect_timeout_ms),
            ("send_timeout_ms", config.send_timeout_ms),
        ] {
            if value == 0 || value > i32::MAX as u64 {
                return Err(config::invalid(field, "must be between 1 and 2147483647"));
            }
        }
        Ok(SrtDestination {
            timeouts: Timeouts {
                connect: Duration::from_millis(config.connect_timeout_ms),
                send: Duration::from_millis(config.send_timeout_ms),
            },
        })
    }
}

#[async_trait]
impl LiveFactory for SrtDestination {
    fn validate_url(&self, url: &str) -> Result<(), SinkError> {
        Target::parse(url).map(drop)
    }

    async fn connect(&self, url: &str) -> Result<Box<dyn LiveSession>, SinkError> {
        let target = Target::parse(url)?;
        let worker: Worker<Option<Conn>> = Worker::spawn("egress-srt", None)
            .map_err(|e| SinkError::retryable(format!("cannot start a thread: {e}")))?;
        let timeouts = self.timeouts;
        worker
            .run(move |slot| {
                *slot = Some(Conn::connect(target, timeouts)?);
                Ok::<_, SinkError>(())
            })
            .await
            .map_err(gone)??;
        Ok(Box::new(SrtSession {
            worker,
            sent: Arc::new(AtomicU64::new(0)),
        }))
    }
}

fn gone(_: egress_plugin_api::blocking::WorkerGone) -> SinkError {
    SinkError::permanent("the SRT session's thread stopped unexpectedly")
}

fn closed() -> SinkError {
    SinkError::permanent("the SRT session is closed")
}

/// A publishing session; its connection lives on its worker thread.
struct SrtSession {
    worker: Worker<Option<Conn>>,
    sent: Arc<AtomicU64>,
}

#[async_trait]
impl LiveSession for SrtSession {
    async fn send(&mut self, chunk: LiveChunk<'_>) -> Result<(), SinkError> {
        if !chunk.data.len().is_multiple_of(188) || chunk.data.first().is_some_and(|b| *b != 0x47) {
            return Err(SinkError::permanent(format!(
                "not MPEG-TS packets: {} bytes, not a multiple of 188 starting with 0x47",
                chunk.data.len()
            )));
        }
        // The worker needs the bytes beyond this call: one copy per chunk (1316 bytes).
        let data = chunk.data.to_vec();
        let sent = self.sent.clone();
        self.worker
            .run(move |slot| {
                let conn = slot.as_mut().ok_or_else(closed)?;
                let result = conn.send(&data);
                sent.store(conn.bytes_sent(), Ordering::Relaxed);
                if result.is_err() {
                    // Dead: release the socket now rather than when the session is dropped.
                    *slot = None;
                }
                result
            })
            .await
            .map_err(gone)?
    }

    async fn close(self: Box<Self>) -> Result<(), SinkError> {
        self.worker
            .run(|slot| {
                if let Some(conn) = slot.take() {
                    conn.close();
                }
            })
            .await
            .map_err(gone)
    }

    fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

export_live!(SrtDestination);

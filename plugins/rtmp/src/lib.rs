//! The `rtmp` live destination: publishes FLV tags to `rtmp://` and `rtmps://` URLs.
//!
//! Pure Rust: `rml_rtmp` (handshake and client session, sans-IO) over tokio, `tokio-rustls`
//! for RTMPS with Mozilla's roots plus an optional `ca_file`. The host sends the stream headers
//! and media as FLV tags ([`LiveFormat::Flv`]); each tag body becomes one RTMP audio or video
//! message with the tag's timestamp, `onMetaData` becomes `@setDataFrame`. The host owns
//! reconnects: one `connect` is one attempt, bounded by `connect_timeout_ms`.
//!
//! Config (all optional):
//!
//! ```yaml
//! plugins:
//!   - builtin: rtmp
//!     config:
//!       ca_file: /etc/egress/ingest-ca.pem   # PEM CA(s) trusted for rtmps:// beside the public roots
//!       connect_timeout_ms: 5000             # TCP + TLS + handshake + publish accepted
//!       send_timeout_ms: 10000               # one tag stuck longer than this fails the session
//! ```

mod error;
mod flv;
mod runtime;
mod session;
mod target;
mod tls;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use egress_plugin_api::{
    LiveDescriptor, LiveFactory, LiveFormat, LivePlugin, LiveSession, SinkError, Value,
    async_trait, config, export_live, json,
};
use rustls::ClientConfig;
use serde::Deserialize;

pub use target::{FORMAT_ERROR, Target};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_send_timeout_ms")]
    send_timeout_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_send_timeout_ms() -> u64 {
    10_000
}

/// The configured destination.
pub struct RtmpDestination {
    config: Config,
    /// Built on the first `rtmps://` connect (it reads `ca_file`), then shared.
    tls: Mutex<Option<Arc<ClientConfig>>>,
}

impl RtmpDestination {
    fn tls(&self) -> Result<Arc<ClientConfig>, SinkError> {
        let mut slot = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = tls::client_config(self.config.ca_file.as_deref())?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

impl LivePlugin for RtmpDestination {
    fn describe() -> LiveDescriptor {
        LiveDescriptor::new("rtmp", env!("CARGO_PKG_VERSION"), LiveFormat::Flv)
            .with_schemes(["rtmp", "rtmps"])
            .with_config_schema(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "ca_file": { "type": "string", "description": "PEM CA certificates trusted for rtmps:// beside the public roots" },
                    "connect_timeout_ms": { "type": "integer", "minimum": 1, "default": 5000 },
                    "send_timeout_ms": { "type": "integer", "minimum": 1, "default": 10000 }
                }
            }))
    }

    fn create(config: &Value) -> Result<Self, SinkError> {
        let config: Config = config::parse(config)?;
        if config.connect_timeout_ms == 0 {
            return Err(config::invalid("connect_timeout_ms", "must be at least 1"));
        }
        if config.send_timeout_ms == 0 {
            return Err(config::invalid("send_timeout_ms", "must be at least 1"));
        }
        Ok(RtmpDestination {
            config,
            tls: Mutex::new(None),
        })
    }
}

#[async_trait]
impl LiveFactory for RtmpDestination {
    fn validate_url(&self, url: &str) -> Result<(), SinkError> {
        Target::parse(url).map(drop)
    }

    async fn connect(&self, url: &str) -> Result<Box<dyn LiveSession>, SinkError> {
        let target = Target::parse(url)?;
        let options = session::Options {
            connect_timeout: Duration::from_millis(self.config.connect_timeout_ms),
            send_timeout: Duration::from_millis(self.config.send_timeout_ms),
            tls: if target.tls { Some(self.tls()?) } else { None },
        };
        let session = runtime::handle()?
            .spawn(session::connect(target, options))
            .await
            .map_err(|e| SinkError::permanent(format!("the RTMP connect task failed: {e}")))??;
        Ok(Box::new(session))
    }
}

export_live!(RtmpDestination);

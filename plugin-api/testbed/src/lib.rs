//! `testbed`: a sink that discards what it is given (keeping size and SHA-256) and misbehaves on
//! request. The host's loader tests use it to check what no well-behaved sink can show: panics
//! caught at the C boundary, WASM time and memory limits, log forwarding. The benchmark uses it
//! as a null sink, to measure what each loader costs.
//!
//! Not a plugin to deploy.

use egress_plugin_api::{
    Bytes, Capabilities, Descriptor, ObjectSpec, Receipt, SinkError, SinkFactory, SinkObject,
    SinkPlugin, Value, async_trait, config, export_sink, log,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Compute the SHA-256 of what is written (off for the benchmark's null sink).
    hash: Option<bool>,
    /// Panic in this call: `create`, `health_check`, `open`, `write` or `finish`.
    panic_in: Option<String>,
    /// Spin forever in `write` (to hit a WASM time limit).
    spin_in_write: bool,
    /// Allocate and touch this many bytes per `write` and keep them (to hit a memory limit).
    leak_per_write: usize,
    /// Fail every `write` with this kind: `retryable`, `permanent` or `auth`.
    fail_write: Option<String>,
    /// Log this message (at warn) when an object opens.
    log_on_open: Option<String>,
}

impl Config {
    fn panics_in(&self, call: &str) -> bool {
        self.panic_in.as_deref() == Some(call)
    }
}

pub struct Testbed {
    config: Config,
}

impl SinkPlugin for Testbed {
    fn describe() -> Descriptor {
        Descriptor::new("testbed", env!("CARGO_PKG_VERSION"))
            .with_capabilities(Capabilities::none().streaming())
            .with_config_schema(serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "hash": { "type": "boolean", "default": true },
                    "panic_in": { "enum": ["create", "health_check", "open", "write", "finish"] },
                    "spin_in_write": { "type": "boolean" },
                    "leak_per_write": { "type": "integer", "minimum": 0 },
                    "fail_write": { "enum": ["retryable", "permanent", "auth"] },
                    "log_on_open": { "type": "string" }
                }
            }))
    }

    fn validate(config: &Value) -> Result<(), SinkError> {
        let c: Config = config::parse(config)?;
        if let Some(call) = &c.panic_in
            && !["create", "health_check", "open", "write", "finish"].contains(&call.as_str())
        {
            return Err(config::invalid(
                "panic_in",
                format!("{call:?} is not a call"),
            ));
        }
        if let Some(kind) = &c.fail_write
            && !["retryable", "permanent", "auth"].contains(&kind.as_str())
        {
            return Err(config::invalid(
                "fail_write",
                format!("{kind:?} is not an error kind"),
            ));
        }
        Ok(())
    }

    fn create(config: &Value) -> Result<Self, SinkError> {
        Self::validate(config)?;
        let config: Config = config::parse(config)?;
        if config.panics_in("create") {
            panic!("testbed: panic in create, as configured");
        }
        Ok(Testbed { config })
    }
}

#[async_trait]
impl SinkFactory for Testbed {
    async fn health_check(&self) -> Result<(), SinkError> {
        if self.config.panics_in("health_check") {
            panic!("testbed: panic in health_check, as configured");
        }
        Ok(())
    }

    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        if self.config.panics_in("open") {
            panic!("testbed: panic in open, as configured");
        }
        if let Some(message) = &self.config.log_on_open {
            log::warn(format!("{message} ({})", spec.key));
        }
        Ok(Box::new(Discard {
            key: spec.key,
            config: self.config.clone(),
            hasher: self.config.hash.unwrap_or(true).then(Sha256::new),
            size: 0,
            leaked: Vec::new(),
        }))
    }
}

struct Discard {
    key: String,
    config: Config,
    hasher: Option<Sha256>,
    size: u64,
    leaked: Vec<Vec<u8>>,
}

#[async_trait]
impl SinkObject for Discard {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        if self.config.panics_in("write") {
            panic!("testbed: panic in write, as configured");
        }
        if self.config.spin_in_write {
            // A guest that never yields: only the host's time limit can stop it.
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        if self.config.leak_per_write > 0 {
            self.leaked.push(vec![1u8; self.config.leak_per_write]);
        }
        match self.config.fail_write.as_deref() {
            Some("retryable") => return Err(SinkError::retryable("testbed: configured to fail")),
            Some("permanent") => return Err(SinkError::permanent("testbed: configured to fail")),
            Some("auth") => return Err(SinkError::auth("testbed: configured to fail")),
            _ => {}
        }
        if let Some(h) = &mut self.hasher {
            h.update(&chunk);
        }
        self.size += chunk.len() as u64;
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<Receipt, SinkError> {
        if self.config.panics_in("finish") {
            panic!("testbed: panic in finish, as configured");
        }
        let sha256 = self.hasher.map(|h| h.finalize().into()).unwrap_or([0; 32]);
        Ok(Receipt::new(
            format!("testbed:{}", self.key),
            self.size,
            sha256,
        ))
    }

    async fn abort(self: Box<Self>) {}
}

export_sink!(Testbed);

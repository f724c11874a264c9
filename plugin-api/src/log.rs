//! Logging from a plugin, whatever loaded it.
//!
//! Compiled in, messages become `tracing` events (target `plugin`). In a dylib, the plugin's copy
//! of `tracing` has no subscriber, so messages go to the host through the `log` function of the
//! C host API. In WASM they go through the `egress:plugin/log` import. Plugins call these
//! functions and never care which.

use std::fmt;

/// Severity, in increasing order. The values are the C ABI's `EGRESS_LOG_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

impl Level {
    /// From the C ABI value; unknown values are treated as `Info`.
    pub fn from_u32(value: u32) -> Level {
        match value {
            0 => Level::Trace,
            1 => Level::Debug,
            3 => Level::Warn,
            4 => Level::Error,
            _ => Level::Info,
        }
    }
}

pub fn log(level: Level, message: impl fmt::Display) {
    backend::emit(level, &message.to_string());
}

pub fn trace(message: impl fmt::Display) {
    log(Level::Trace, message);
}

pub fn debug(message: impl fmt::Display) {
    log(Level::Debug, message);
}

pub fn info(message: impl fmt::Display) {
    log(Level::Info, message);
}

pub fn warn(message: impl fmt::Display) {
    log(Level::Warn, message);
}

pub fn error(message: impl fmt::Display) {
    log(Level::Error, message);
}

#[cfg(not(target_family = "wasm"))]
pub(crate) mod backend {
    use std::sync::OnceLock;

    use super::Level;
    use crate::abi::{EgressStr, HostLogFn};

    /// Set by the C entry point's `init` when the plugin runs as a dylib.
    static HOST_LOG: OnceLock<HostLogFn> = OnceLock::new();

    pub(crate) fn set_host(log: HostLogFn) {
        // A second init (the host loaded the same library twice) keeps the first: same host.
        let _ = HOST_LOG.set(log);
    }

    pub(crate) fn emit(level: Level, message: &str) {
        if let Some(host) = HOST_LOG.get() {
            // SAFETY: the host promised that `log` stays valid for the life of the process, and
            // `message` outlives the call.
            host(level as u32, EgressStr::from_bytes(message.as_bytes()));
            return;
        }
        match level {
            Level::Trace => tracing::trace!(target: "plugin", "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", "{message}"),
            Level::Info => tracing::info!(target: "plugin", "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", "{message}"),
            Level::Error => tracing::error!(target: "plugin", "{message}"),
        }
    }
}

#[cfg(target_family = "wasm")]
pub(crate) mod backend {
    use super::Level;
    use crate::wasm::bindings::egress::plugin::log as host;

    pub(crate) fn emit(level: Level, message: &str) {
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }
}

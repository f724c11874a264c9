//! One sandboxed store: WASI without ambient authority, a memory cap, a per-call time limit,
//! the HTTP gate and captured stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egress_plugin_api::SinkError;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::egress::plugin::{log, types};
use super::http::HttpGate;

/// Captured guest stderr per store (panic messages end up here).
const STDERR_CAPACITY: usize = 64 << 10;
/// How much of the guest's stderr an error message carries.
const MAX_STDERR_IN_ERROR: usize = 1024;
/// Longest log line accepted from a guest.
const MAX_LOG_LINE: usize = 4096;

/// What every store of one plugin gets.
#[derive(Clone)]
pub struct Sandbox {
    pub plugin: String,
    pub memory_bytes: usize,
    pub max_call_time: Duration,
    pub http: Arc<HttpGate>,
    pub dirs: Vec<PathBuf>,
}

/// Wall time of the current call, minus time spent in host HTTP calls.
pub struct CallClock {
    started: Option<Instant>,
    pub in_host: Duration,
    limit: Duration,
}

impl CallClock {
    fn guest_time(&self) -> Option<Duration> {
        self.started
            .map(|t| t.elapsed().saturating_sub(self.in_host))
    }
}

pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    pub clock: CallClock,
    pub http: Arc<HttpGate>,
    pub plugin: String,
    stderr: MemoryOutputPipe,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StoreState {}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let plugin = &self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", %plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", %plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", %plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", %plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", %plugin, "{message}"),
        }
    }
}

/// The error a deadline callback raises when a call runs out of time.
#[derive(Debug)]
struct TimeLimit(Duration);

impl std::fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the plugin exceeded its time limit of {:?} per call (max_call_time)",
            self.0
        )
    }
}

impl std::error::Error for TimeLimit {}

/// A fresh store for `sandbox`: no environment, no arguments, no stdin, stdout discarded,
/// stderr captured, no sockets, only the allowed directories.
pub fn new_store(engine: &Engine, sandbox: &Sandbox) -> Result<Store<StoreState>, SinkError> {
    let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
    let mut wasi = WasiCtxBuilder::new();
    wasi.stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    for dir in &sandbox.dirs {
        let guest = dir.to_string_lossy();
        wasi.preopened_dir(dir, guest.as_ref(), FsPerms::ReadWrite)
            .map_err(|e| {
                SinkError::permanent(format!("cannot open {} for the plugin: {e}", dir.display()))
            })?;
    }
    let limits = StoreLimitsBuilder::new()
        .memory_size(sandbox.memory_bytes)
        // A Rust guest sees a failed allocation and aborts with a message, better than a
        // trap without one.
        .trap_on_grow_failure(false)
        .build();
    let state = StoreState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits,
        clock: CallClock {
            started: None,
            in_host: Duration::ZERO,
            limit: sandbox.max_call_time,
        },
        http: sandbox.http.clone(),
        plugin: sandbox.plugin.clone(),
        stderr,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        let clock = &ctx.data().clock;
        match clock.guest_time() {
            Some(t) if t > clock.limit => Err(TimeLimit(clock.limit).into()),
            _ => Ok(UpdateDeadline::Continue(1)),
        }
    });
    Ok(store)
}

/// Run one call into the guest under the time limit, turning traps into permanent errors that
/// carry what the guest printed to stderr.
pub fn timed<R>(
    store: &mut Store<StoreState>,
    call: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<R>,
) -> Result<R, SinkError> {
    {
        let clock = &mut store.data_mut().clock;
        clock.started = Some(Instant::now());
        clock.in_host = Duration::ZERO;
    }
    let result = call(store);
    store.data_mut().clock.started = None;
    result.map_err(|e| trap_error(store.data(), e))
}

fn trap_error(state: &StoreState, e: wasmtime::Error) -> SinkError {
    if let Some(limit) = e.downcast_ref::<TimeLimit>() {
        return SinkError::permanent(limit.to_string());
    }
    let stderr = state.stderr.contents();
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();
    // The full error has the WASM backtrace: for the log. The message gets the cause and what
    // the guest printed last (a panic message, an allocation failure).
    tracing::warn!(plugin = %state.plugin, error = %format!("{e:?}"), stderr = %stderr, "WASM plugin trapped.");
    let cause = e.root_cause().to_string();
    let cause = cause.lines().next().unwrap_or_default();
    if stderr.is_empty() {
        SinkError::permanent(format!("the plugin trapped: {cause}"))
    } else {
        let mut start = stderr.len().saturating_sub(MAX_STDERR_IN_ERROR);
        while !stderr.is_char_boundary(start) {
            start += 1;
        }
        SinkError::permanent(format!(
            "the plugin trapped: {cause}; it printed: {}",
            stderr[start..].replace('\n', " | ")
        ))
    }
}

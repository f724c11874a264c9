//! The plugin's own tokio runtime.
//!
//! The plugin's futures are polled by whatever drives it: the host's executor (compiled in),
//! a plain thread of the dylib loader (whose tokio, if any, is another copy with other
//! statics), or a test's `block_on`. Sockets and timers need a reactor, so every connection
//! runs on this runtime and callers only await channels and join handles, which work from any
//! executor. One runtime per process, started on first use and never dropped (a runtime must
//! not be dropped inside an async context, and a process-wide one never is).

use std::sync::OnceLock;

use egress_plugin_api::SinkError;
use tokio::runtime::{Builder, Handle, Runtime};

/// One worker thread: a publish is a few hundred small writes a second.
const WORKER_THREADS: usize = 1;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

pub fn handle() -> Result<Handle, SinkError> {
    let runtime = RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("egress-rtmp")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match runtime {
        Ok(rt) => Ok(rt.handle().clone()),
        Err(e) => Err(SinkError::retryable(format!(
            "cannot start the RTMP plugin's runtime: {e}"
        ))),
    }
}

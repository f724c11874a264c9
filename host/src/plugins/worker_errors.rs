//! How a failure of a plugin's own thread (dylib and WASM objects each run on one) surfaces as
//! a [`SinkError`], the same for both loaders.

use egress_plugin_api::SinkError;
use egress_plugin_api::blocking::WorkerGone;

pub(crate) fn no_thread(e: std::io::Error) -> SinkError {
    SinkError::retryable(format!("cannot start a plugin thread: {e}"))
}

pub(crate) fn gone(_: WorkerGone) -> SinkError {
    SinkError::permanent("the plugin thread stopped unexpectedly")
}

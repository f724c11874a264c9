//! The sink's own tokio runtime.
//!
//! object_store needs tokio (reqwest, timers, `WriteMultipart`'s `JoinSet`), but a sink's
//! futures may be polled by anything: the host's executor, a dylib loader's plain thread, or the
//! conformance kit's `block_on`. So every object_store future runs on this runtime
//! (`handle().spawn(..)`), and the caller only awaits the `JoinHandle`, which works from any
//! executor.
//!
//! A runtime must not be dropped inside an async context (tokio panics: dropping waits for its
//! blocking threads). The last reference may well go away inside one (the host drops a factory
//! in a task, an upload task drops its own reference when it ends), so [`Drop`] hands the
//! runtime to a short-lived thread in that case and shuts it down there with
//! `shutdown_background`, which does not wait for running tasks.

use std::io;
use std::sync::Arc;

use tokio::runtime::{Builder, Handle, Runtime};

/// Worker threads per sink: uploads are I/O-bound; hashing and signing need little CPU.
const WORKER_THREADS: usize = 2;

pub struct SinkRuntime {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl SinkRuntime {
    /// Start a runtime whose threads are called `egress-<name>`.
    pub fn start(name: &str) -> io::Result<Arc<SinkRuntime>> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .max_blocking_threads(4)
            .thread_name(format!("egress-{name}"))
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Arc::new(SinkRuntime {
            runtime: Some(runtime),
            handle,
        }))
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for SinkRuntime {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if Handle::try_current().is_err() {
            runtime.shutdown_background();
            return;
        }
        // The runtime goes to the thread through a channel, so that it stays here (and is not
        // dropped with the closure) if the thread cannot start.
        let (tx, rx) = std::sync::mpsc::channel::<Runtime>();
        let spawned = std::thread::Builder::new()
            .name("egress-rt-shutdown".into())
            .spawn(move || {
                if let Ok(runtime) = rx.recv() {
                    runtime.shutdown_background();
                }
            });
        match spawned {
            Ok(_) => {
                if let Err(std::sync::mpsc::SendError(runtime)) = tx.send(runtime) {
                    std::mem::forget(runtime);
                }
            }
            Err(e) => {
                // Dropping it here would panic; its idle threads stay parked until exit.
                std::mem::forget(runtime);
                egress_plugin_api::log::warn(format!(
                    "object storage sink: cannot start a thread to stop the runtime: {e}"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_futures_for_callers_outside_tokio() {
        let rt = SinkRuntime::start("test").unwrap();
        let join = rt.handle().spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            7
        });
        assert_eq!(egress_plugin_api::blocking::block_on(join).unwrap(), 7);
    }

    #[test]
    fn can_be_dropped_inside_its_own_tasks() {
        let rt = SinkRuntime::start("test").unwrap();
        let inner = rt.clone();
        let join = rt.handle().spawn(async move {
            // The task holds the last reference once the test drops its own below.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            drop(inner);
        });
        drop(rt);
        // The task's runtime shuts down while the task ends; the join handle then resolves
        // (Ok or cancelled), but the process does not panic.
        let _ = egress_plugin_api::blocking::block_on(join);
    }

    #[test]
    fn can_be_dropped_inside_another_runtime() {
        let outer = Builder::new_current_thread().enable_all().build().unwrap();
        let rt = SinkRuntime::start("test").unwrap();
        outer.block_on(async move { drop(rt) });
    }
}

//! The async face of a dylib live destination: [`DylibLiveFactory`] and its sessions.
//!
//! As for sink objects, C calls block, so none runs on the async executor: each session gets a
//! thread of its own (a [`Worker`]) that connects, sends every chunk in order and, if the
//! session is dropped without `close`, aborts it. `bytes_sent` must not block, so the worker
//! copies the plugin's count into an atomic after each send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use egress_plugin_api::blocking::Worker;
use egress_plugin_api::{LiveChunk, LiveFactory, LiveSession, SinkError, async_trait};

use super::live_ffi::{LiveFactoryHandle, SessionHandle};
use crate::plugins::worker_errors::{gone, no_thread};

/// A live factory created by a dylib plugin.
pub struct DylibLiveFactory {
    handle: Arc<LiveFactoryHandle>,
}

impl DylibLiveFactory {
    pub fn new(handle: LiveFactoryHandle) -> Self {
        DylibLiveFactory {
            handle: Arc::new(handle),
        }
    }
}

#[async_trait]
impl LiveFactory for DylibLiveFactory {
    fn validate_url(&self, url: &str) -> Result<(), SinkError> {
        self.handle.validate_url(url)
    }

    async fn connect(&self, url: &str) -> Result<Box<dyn LiveSession>, SinkError> {
        let worker: Worker<Option<SessionHandle>> =
            Worker::spawn("egress-dylib-live", None).map_err(no_thread)?;
        let handle = self.handle.clone();
        let url = url.to_string();
        worker
            .run(move |slot| {
                *slot = Some(handle.connect(&url)?);
                Ok::<_, SinkError>(())
            })
            .await
            .map_err(gone)??;
        Ok(Box::new(DylibLiveSession {
            worker,
            bytes_sent: Arc::new(AtomicU64::new(0)),
        }))
    }
}

/// A session of a dylib live destination. Dropping it drops the worker, whose thread then
/// drops the handle, which aborts the session.
struct DylibLiveSession {
    worker: Worker<Option<SessionHandle>>,
    bytes_sent: Arc<AtomicU64>,
}

fn closed() -> SinkError {
    SinkError::permanent("the live session was already closed")
}

#[async_trait]
impl LiveSession for DylibLiveSession {
    async fn send(&mut self, chunk: LiveChunk<'_>) -> Result<(), SinkError> {
        // The chunk is borrowed for this call, the worker needs it for as long as it runs: the
        // one copy the thread hop costs (a few KB per tag or TS burst).
        let data = chunk.data.to_vec();
        let (pts, keyframe, header) = (chunk.pts, chunk.keyframe, chunk.header);
        let bytes_sent = self.bytes_sent.clone();
        self.worker
            .run(move |slot| {
                let session = slot.as_mut().ok_or_else(closed)?;
                let result = session.send(&data, pts, keyframe, header);
                bytes_sent.store(session.bytes_sent(), Ordering::Relaxed);
                result
            })
            .await
            .map_err(gone)?
    }

    async fn close(self: Box<Self>) -> Result<(), SinkError> {
        self.worker
            .run(|slot| slot.take().ok_or_else(closed)?.close())
            .await
            .map_err(gone)?
    }

    fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }
}

//! The async face of a dylib plugin: [`DylibFactory`] and its objects.
//!
//! C calls block, so none runs on the async executor. Each object gets a thread of its own
//! (a [`Worker`]) that opens it, runs every call on it in order and, if the object is dropped
//! unfinished, aborts it. Health checks get a short-lived thread.

use std::sync::Arc;

use egress_plugin_api::blocking::Worker;

use crate::plugins::worker_errors::{gone, no_thread};
use egress_plugin_api::{
    Bytes, ObjectSpec, Receipt, SinkError, SinkFactory, SinkObject, async_trait,
};

use super::ffi::{FactoryHandle, ObjectHandle};

/// A factory created by a dylib plugin.
pub struct DylibFactory {
    handle: Arc<FactoryHandle>,
}

impl DylibFactory {
    pub fn new(handle: FactoryHandle) -> Self {
        DylibFactory {
            handle: Arc::new(handle),
        }
    }
}

#[async_trait]
impl SinkFactory for DylibFactory {
    async fn health_check(&self) -> Result<(), SinkError> {
        let handle = self.handle.clone();
        let worker = Worker::spawn("egress-dylib-health", ()).map_err(no_thread)?;
        worker
            .run(move |_| handle.health_check())
            .await
            .map_err(gone)?
    }

    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        let worker: Worker<Option<ObjectHandle>> =
            Worker::spawn("egress-dylib-object", None).map_err(no_thread)?;
        let handle = self.handle.clone();
        worker
            .run(move |slot| {
                *slot = Some(handle.open(&spec)?);
                Ok::<_, SinkError>(())
            })
            .await
            .map_err(gone)??;
        Ok(Box::new(DylibObject { worker }))
    }
}

/// An object of a dylib plugin. Dropping it drops the worker, whose thread then drops the
/// handle, which aborts an unfinished object.
struct DylibObject {
    worker: Worker<Option<ObjectHandle>>,
}

fn consumed() -> SinkError {
    SinkError::permanent("the object was already finished or aborted")
}

#[async_trait]
impl SinkObject for DylibObject {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.worker
            .run(move |slot| slot.as_mut().ok_or_else(consumed)?.write(&chunk))
            .await
            .map_err(gone)?
    }

    async fn finish(self: Box<Self>) -> Result<Receipt, SinkError> {
        self.worker
            .run(|slot| slot.take().ok_or_else(consumed)?.finish())
            .await
            .map_err(gone)?
    }

    async fn abort(self: Box<Self>) {
        let _ = self
            .worker
            .run(|slot| {
                if let Some(object) = slot.take() {
                    object.abort();
                }
            })
            .await;
    }
}

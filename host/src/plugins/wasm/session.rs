//! The async face of a WASM plugin: [`WasmFactory`] and its objects.
//!
//! Every object gets its own instance, in its own store: its own memory cap, no state shared
//! with other objects, and a trap that poisons only that object. Calls are synchronous
//! wasmtime calls, so each object runs on a thread of its own (a [`Worker`]), which creates
//! the instance, runs every call in order and aborts the object if it is dropped unfinished.

use std::sync::Arc;

use egress_plugin_api::blocking::Worker;

use crate::plugins::worker_errors::{gone, no_thread};
use egress_plugin_api::{
    Bytes, ObjectSpec, Receipt, SinkError, SinkFactory, SinkObject, async_trait,
};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::Component;
use super::bindings::SinkPlugin;
use super::bindings::egress::plugin::types;
use super::store::{StoreState, new_store, timed};

/// Largest chunk copied into guest memory at once; bigger writes are split, so that guest
/// memory needs do not depend on the host's chunk size.
const MAX_GUEST_CHUNK: usize = 1 << 20;

pub fn from_wit(e: types::SinkError) -> SinkError {
    let message = e.message;
    match e.kind {
        types::ErrorKind::Retryable => SinkError::retryable(message),
        types::ErrorKind::Permanent => SinkError::permanent(message),
        types::ErrorKind::Auth => SinkError::auth(message),
        types::ErrorKind::Config => match e.field {
            Some(field) => SinkError::config_field(field, message),
            None => SinkError::config(message),
        },
    }
}

/// A configured WASM sink: the compiled component and the config every instance is created
/// with.
pub struct WasmFactory {
    component: Arc<Component>,
    config: Arc<str>,
}

impl WasmFactory {
    pub fn new(component: Arc<Component>, config: String) -> Self {
        WasmFactory {
            component,
            config: config.into(),
        }
    }
}

#[async_trait]
impl SinkFactory for WasmFactory {
    async fn health_check(&self) -> Result<(), SinkError> {
        let (component, config) = (self.component.clone(), self.config.clone());
        let worker = Worker::spawn("egress-wasm-health", ()).map_err(no_thread)?;
        worker
            .run(move |_| Instance::create(&component, &config)?.health_check())
            .await
            .map_err(gone)?
    }

    async fn open(&self, spec: ObjectSpec) -> Result<Box<dyn SinkObject>, SinkError> {
        let (component, config) = (self.component.clone(), self.config.clone());
        let worker: Worker<Option<Instance>> =
            Worker::spawn("egress-wasm-object", None).map_err(no_thread)?;
        worker
            .run(move |slot| {
                let mut instance = Instance::create(&component, &config)?;
                instance.open(&spec)?;
                *slot = Some(instance);
                Ok::<_, SinkError>(())
            })
            .await
            .map_err(gone)??;
        Ok(Box::new(WasmObject { worker }))
    }
}

/// One instance: its store, its exports, its factory and (once opened) its object.
struct Instance {
    store: Store<StoreState>,
    bindings: SinkPlugin,
    factory: ResourceAny,
    object: Option<ResourceAny>,
    /// A call trapped: the instance may not be entered again (not even to abort).
    trapped: bool,
}

impl Instance {
    fn create(component: &Component, config: &str) -> Result<Self, SinkError> {
        let mut store = new_store(component.engine, &component.sandbox)?;
        let bindings = timed(&mut store, |s| component.pre.instantiate(s))?;
        let factory = timed(&mut store, |s| {
            bindings
                .egress_plugin_sink()
                .factory()
                .call_create(s, config)
        })?
        .map_err(from_wit)?;
        Ok(Instance {
            store,
            bindings,
            factory,
            object: None,
            trapped: false,
        })
    }

    /// [`timed`], remembering a trap.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&SinkPlugin, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, SinkError> {
        if self.trapped {
            return Err(SinkError::permanent(
                "the plugin instance trapped earlier and cannot be used",
            ));
        }
        let bindings = &self.bindings;
        let result = timed(&mut self.store, |s| f(bindings, s));
        self.trapped = result.is_err();
        result
    }

    fn health_check(&mut self) -> Result<(), SinkError> {
        let (bindings, factory) = (&self.bindings, self.factory);
        timed(&mut self.store, |s| {
            bindings
                .egress_plugin_sink()
                .factory()
                .call_health_check(s, factory)
        })?
        .map_err(from_wit)
    }

    fn open(&mut self, spec: &ObjectSpec) -> Result<(), SinkError> {
        let wit_spec = types::ObjectSpec {
            key: spec.key.clone(),
            content_type: spec.content_type.clone(),
            expected_size: spec.expected_size,
        };
        let (bindings, factory) = (&self.bindings, self.factory);
        let object = timed(&mut self.store, |s| {
            bindings
                .egress_plugin_sink()
                .factory()
                .call_open(s, factory, &wit_spec)
        })?
        .map_err(from_wit)?;
        self.object = Some(object);
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        let object = self.object.ok_or_else(consumed)?;
        for piece in chunk.chunks(MAX_GUEST_CHUNK) {
            let bindings = &self.bindings;
            timed(&mut self.store, |s| {
                bindings
                    .egress_plugin_sink()
                    .object()
                    .call_write(s, object, piece)
            })?
            .map_err(from_wit)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Receipt, SinkError> {
        let object = self.object.take().ok_or_else(consumed)?;
        let bindings = &self.bindings;
        let receipt = timed(&mut self.store, |s| {
            bindings
                .egress_plugin_sink()
                .object()
                .call_finish(s, object)
        })?
        .map_err(from_wit)?;
        let sha256: [u8; 32] = receipt.sha256.as_slice().try_into().map_err(|_| {
            SinkError::permanent(format!(
                "the plugin returned a {}-byte SHA-256",
                receipt.sha256.len()
            ))
        })?;
        Ok(Receipt::new(receipt.location, receipt.size, sha256))
    }

    fn abort(&mut self) {
        if let Some(object) = self.object.take()
            && !self.trapped
        {
            // Abort cannot fail; a trap here is logged by `timed` and the store goes away.
            let _ = self.call(|b, s| b.egress_plugin_sink().object().call_abort(s, object));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Dropped unfinished (the host task was cancelled): let the guest clean up.
        self.abort();
    }
}

fn consumed() -> SinkError {
    SinkError::permanent("the object was already finished or aborted")
}

struct WasmObject {
    worker: Worker<Option<Instance>>,
}

#[async_trait]
impl SinkObject for WasmObject {
    async fn write(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.worker
            .run(move |slot| slot.as_mut().ok_or_else(consumed)?.write(&chunk))
            .await
            .map_err(gone)?
    }

    async fn finish(self: Box<Self>) -> Result<Receipt, SinkError> {
        self.worker
            .run(|slot| {
                let mut instance = slot.take().ok_or_else(consumed)?;
                instance.finish()
            })
            .await
            .map_err(gone)?
    }

    async fn abort(self: Box<Self>) {
        let _ = self
            .worker
            .run(|slot| {
                if let Some(mut instance) = slot.take() {
                    instance.abort();
                }
            })
            .await;
    }
}

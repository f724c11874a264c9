//! Safe wrappers around one plugin's renderer table (ABI 1.1): the renderer counterpart of
//! `ffi.rs`, with the same ownership rules. Requests, rooms and answers cross as JSON.

use std::ffi::c_void;
use std::mem::size_of;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use egress_plugin_api::abi::{
    CreateFn, DescribeFn, DestroyFn, EgressBuf, EgressRendererApi, EgressStr, FreeBufFn, InitFn,
    LayoutsFn, RenderFn, ValidateFn,
};
use egress_plugin_api::{Descriptor, RenderRequest, Rendering, RoomState, SinkError, Value};
use libloading::Library;

use super::ffi::{call_with, config_json, host_api, take_buf};

/// A v1.1 renderer table with every entry present, and the library it lives in.
#[derive(Clone)]
pub struct RendererApi {
    init: InitFn,
    describe: DescribeFn,
    validate: ValidateFn,
    create: CreateFn,
    layouts: LayoutsFn,
    render: RenderFn,
    destroy: DestroyFn,
    free_buf: FreeBufFn,
    /// Keeps the code above mapped (it is never unloaded anyway).
    _lib: Arc<Library>,
}

fn need<T>(f: Option<T>, name: &str) -> Result<T, String> {
    f.ok_or_else(|| format!("the renderer table has no `{name}` function"))
}

impl RendererApi {
    pub fn from_table(t: &'static EgressRendererApi, lib: Arc<Library>) -> Result<Self, String> {
        if (t.struct_size as usize) < size_of::<EgressRendererApi>() {
            return Err(format!(
                "the renderer table is {} bytes, smaller than v1.1's {}",
                t.struct_size,
                size_of::<EgressRendererApi>()
            ));
        }
        Ok(RendererApi {
            init: need(t.init, "init")?,
            describe: need(t.describe, "describe")?,
            validate: need(t.validate, "validate")?,
            create: need(t.create, "create")?,
            layouts: need(t.layouts, "layouts")?,
            render: need(t.render, "render")?,
            destroy: need(t.destroy, "destroy")?,
            free_buf: need(t.free_buf, "free_buf")?,
            _lib: lib,
        })
    }

    pub fn init(&self) {
        // SAFETY: the host table is a static that outlives the plugin.
        unsafe { (self.init)(host_api()) };
    }

    /// A JSON answer in a plugin buffer, parsed.
    fn json_out<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        f: impl FnOnce(*mut EgressBuf, *mut egress_plugin_api::abi::EgressError) -> i32,
    ) -> Result<T, SinkError> {
        let mut out = EgressBuf::EMPTY;
        let result = call_with(self.free_buf, |err| f(&mut out, err));
        // Taken whatever the status, so that a buffer filled before a failure is freed.
        let json = take_buf(self.free_buf, out);
        result?;
        serde_json::from_slice(&json)
            .map_err(|e| SinkError::permanent(format!("{what} returned invalid JSON: {e}")))
    }

    pub fn describe(&self) -> Result<Descriptor, SinkError> {
        // SAFETY: both out-pointers are valid for the call.
        self.json_out("describe", |out, err| unsafe { (self.describe)(out, err) })
    }

    pub fn validate(&self, config: &Value) -> Result<(), SinkError> {
        let json = config_json(config)?;
        // SAFETY: `json` outlives the call.
        call_with(self.free_buf, |err| unsafe {
            (self.validate)(EgressStr::from_bytes(&json), err)
        })
    }

    pub fn create(&self, config: &Value) -> Result<RendererHandle, SinkError> {
        let json = config_json(config)?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: `json` outlives the call; `ptr` is a valid out-pointer.
        call_with(self.free_buf, |err| unsafe {
            (self.create)(EgressStr::from_bytes(&json), &mut ptr, err)
        })?;
        if ptr.is_null() {
            return Err(SinkError::permanent(
                "create succeeded but returned no renderer",
            ));
        }
        Ok(RendererHandle {
            api: self.clone(),
            ptr,
        })
    }
}

/// A renderer the plugin created; destroyed on drop.
pub struct RendererHandle {
    api: RendererApi,
    ptr: *mut c_void,
}

// SAFETY: the header says renderer functions may be called concurrently from any thread.
unsafe impl Send for RendererHandle {}
// SAFETY: as above.
unsafe impl Sync for RendererHandle {}

impl RendererHandle {
    /// Blocking.
    pub fn layouts(&self) -> Result<Vec<String>, SinkError> {
        // SAFETY: `ptr` is a live renderer; the out-pointers are valid for the call.
        self.api.json_out("layouts", |out, err| unsafe {
            (self.api.layouts)(self.ptr, out, err)
        })
    }

    /// Blocking.
    pub fn render(
        &self,
        request: &RenderRequest,
        room: &RoomState,
    ) -> Result<Rendering, SinkError> {
        let encode = |what: &str, e: serde_json::Error| {
            SinkError::permanent(format!("cannot encode the {what}: {e}"))
        };
        let request = serde_json::to_vec(request).map_err(|e| encode("render request", e))?;
        let room = serde_json::to_vec(room).map_err(|e| encode("room state", e))?;
        // SAFETY: `ptr` is a live renderer; both JSON buffers outlive the call.
        self.api.json_out("render", |out, err| unsafe {
            (self.api.render)(
                self.ptr,
                EgressStr::from_bytes(&request),
                EgressStr::from_bytes(&room),
                out,
                err,
            )
        })
    }
}

impl Drop for RendererHandle {
    fn drop(&mut self) {
        // SAFETY: `ptr` is a live renderer, given up here.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { (self.api.destroy)(self.ptr) }));
    }
}

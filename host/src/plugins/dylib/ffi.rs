//! Safe wrappers around one plugin's C function table: who owns which pointer and buffer, and
//! how status codes become [`SinkError`]s. Every `unsafe` block of the dylib loader is here or
//! in `mod.rs`.

use std::ffi::c_void;
use std::mem::size_of;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use egress_plugin_api::abi::{
    self, AbortFn, CreateFn, DescribeFn, DestroyFn, EGRESS_OK, EgressBuf, EgressError,
    EgressHostApi, EgressObjectSpec, EgressReceipt, EgressSinkApi, EgressStr, FinishFn, FreeBufFn,
    HealthCheckFn, InitFn, OpenFn, ValidateFn, WriteFn,
};
use egress_plugin_api::log::Level;
use egress_plugin_api::{Descriptor, ObjectSpec, Receipt, SinkError, Value};
use libloading::Library;

/// What the host offers every dylib plugin.
static HOST_API: EgressHostApi = EgressHostApi {
    struct_size: size_of::<EgressHostApi>() as u32,
    log: Some(host_log),
};

/// Plugin log lines become `tracing` events with target `plugin`.
extern "C" fn host_log(level: u32, message: EgressStr<'_>) {
    // Nothing may unwind into the plugin's C frames.
    let _ = catch_unwind(|| {
        // SAFETY: the plugin passes a buffer valid for the call.
        let text = String::from_utf8_lossy(unsafe { message.as_bytes() });
        match Level::from_u32(level) {
            Level::Trace => tracing::trace!(target: "plugin", "{text}"),
            Level::Debug => tracing::debug!(target: "plugin", "{text}"),
            Level::Info => tracing::info!(target: "plugin", "{text}"),
            Level::Warn => tracing::warn!(target: "plugin", "{text}"),
            Level::Error => tracing::error!(target: "plugin", "{text}"),
        }
    });
}

/// A v1.0 function table with every entry present, and the library it lives in.
#[derive(Clone)]
pub struct SinkApi {
    init: InitFn,
    describe: DescribeFn,
    validate: ValidateFn,
    create: CreateFn,
    health_check: HealthCheckFn,
    open: OpenFn,
    write: WriteFn,
    finish: FinishFn,
    abort: AbortFn,
    destroy: DestroyFn,
    free_buf: FreeBufFn,
    /// Keeps the code above mapped (it is never unloaded anyway; see `LOADED`).
    _lib: Arc<Library>,
}

fn need<T>(f: Option<T>, name: &str) -> Result<T, String> {
    f.ok_or_else(|| format!("the sink table has no `{name}` function"))
}

impl SinkApi {
    pub fn from_table(t: &'static EgressSinkApi, lib: Arc<Library>) -> Result<Self, String> {
        // Entries a newer minor appends lie beyond v1.0's size; we read only v1.0's.
        if (t.struct_size as usize) < size_of::<EgressSinkApi>() {
            return Err(format!(
                "the sink table is {} bytes, smaller than v1.0's {}",
                t.struct_size,
                size_of::<EgressSinkApi>()
            ));
        }
        Ok(SinkApi {
            init: need(t.init, "init")?,
            describe: need(t.describe, "describe")?,
            validate: need(t.validate, "validate")?,
            create: need(t.create, "create")?,
            health_check: need(t.health_check, "health_check")?,
            open: need(t.open, "open")?,
            write: need(t.write, "write")?,
            finish: need(t.finish, "finish")?,
            abort: need(t.abort, "abort")?,
            destroy: need(t.destroy, "destroy")?,
            free_buf: need(t.free_buf, "free_buf")?,
            _lib: lib,
        })
    }

    /// Copy a plugin-owned buffer and hand it back to the plugin.
    fn take(&self, buf: EgressBuf) -> Vec<u8> {
        take_buf(self.free_buf, buf)
    }

    /// Run a fallible call with a fresh error slot; turn its status into a `Result`.
    fn call(&self, f: impl FnOnce(*mut EgressError) -> i32) -> Result<(), SinkError> {
        call_with(self.free_buf, f)
    }

    pub fn init(&self) {
        // SAFETY: HOST_API is a static that outlives the plugin.
        unsafe { (self.init)(&HOST_API) };
    }

    pub fn describe(&self) -> Result<Descriptor, SinkError> {
        let mut out = EgressBuf::EMPTY;
        // SAFETY: both out-pointers are valid for the call.
        self.call(|err| unsafe { (self.describe)(&mut out, err) })?;
        let json = self.take(out);
        serde_json::from_slice(&json)
            .map_err(|e| SinkError::permanent(format!("describe returned invalid JSON: {e}")))
    }

    pub fn validate(&self, config: &Value) -> Result<(), SinkError> {
        let json = config_json(config)?;
        // SAFETY: `json` outlives the call.
        self.call(|err| unsafe { (self.validate)(EgressStr::from_bytes(&json), err) })
    }

    pub fn create(&self, config: &Value) -> Result<FactoryHandle, SinkError> {
        let json = config_json(config)?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: `json` outlives the call; `ptr` is a valid out-pointer.
        self.call(|err| unsafe { (self.create)(EgressStr::from_bytes(&json), &mut ptr, err) })?;
        if ptr.is_null() {
            return Err(SinkError::permanent(
                "create succeeded but returned no factory",
            ));
        }
        Ok(FactoryHandle {
            api: self.clone(),
            ptr,
        })
    }
}

/// Copy a plugin-owned buffer and hand it back to the plugin through its `free_buf`.
pub(super) fn take_buf(free_buf: FreeBufFn, buf: EgressBuf) -> Vec<u8> {
    if buf.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the plugin filled `buf` with `len` readable bytes it owns.
    let bytes = unsafe { buf.as_bytes() }.to_vec();
    // SAFETY: returned to the plugin that allocated it, exactly once.
    unsafe { free_buf(buf) };
    bytes
}

/// Run a fallible call with a fresh error slot; turn its status into a `Result`.
pub(super) fn call_with(
    free_buf: FreeBufFn,
    f: impl FnOnce(*mut EgressError) -> i32,
) -> Result<(), SinkError> {
    let mut err = EgressError::EMPTY;
    let status = f(&mut err);
    let message = String::from_utf8_lossy(&take_buf(
        free_buf,
        std::mem::replace(&mut err.message, EgressBuf::EMPTY),
    ))
    .into_owned();
    let field = take_buf(
        free_buf,
        std::mem::replace(&mut err.field, EgressBuf::EMPTY),
    );
    if status == EGRESS_OK {
        return Ok(());
    }
    let field = (!field.is_empty()).then(|| String::from_utf8_lossy(&field).into_owned());
    let message = if message.is_empty() {
        "the plugin gave no message".to_string()
    } else {
        message
    };
    Err(abi::error_from_status(status, message, field))
}

pub(super) fn host_api() -> &'static EgressHostApi {
    &HOST_API
}

pub(super) fn config_json(config: &Value) -> Result<Vec<u8>, SinkError> {
    serde_json::to_vec(config).map_err(|e| SinkError::config(format!("cannot encode config: {e}")))
}

/// A factory the plugin created; destroyed when the last object opened from it is gone.
pub struct FactoryHandle {
    api: SinkApi,
    ptr: *mut c_void,
}

// SAFETY: the C contract says factory functions may be called concurrently from any thread.
unsafe impl Send for FactoryHandle {}
// SAFETY: as above.
unsafe impl Sync for FactoryHandle {}

impl FactoryHandle {
    /// Blocking.
    pub fn health_check(&self) -> Result<(), SinkError> {
        // SAFETY: `ptr` is a live factory.
        self.api
            .call(|err| unsafe { (self.api.health_check)(self.ptr, err) })
    }

    /// Blocking. The object keeps the factory alive.
    pub fn open(self: &Arc<Self>, spec: &ObjectSpec) -> Result<ObjectHandle, SinkError> {
        let c_spec = EgressObjectSpec {
            struct_size: size_of::<EgressObjectSpec<'_>>() as u32,
            key: EgressStr::from_bytes(spec.key.as_bytes()),
            content_type: EgressStr::from_bytes(spec.content_type.as_bytes()),
            has_expected_size: u8::from(spec.expected_size.is_some()),
            expected_size: spec.expected_size.unwrap_or(0),
        };
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: `c_spec` and the strings it borrows outlive the call; `ptr` is an out-pointer.
        self.api
            .call(|err| unsafe { (self.api.open)(self.ptr, &c_spec, &mut ptr, err) })?;
        if ptr.is_null() {
            return Err(SinkError::permanent(
                "open succeeded but returned no object",
            ));
        }
        Ok(ObjectHandle {
            factory: self.clone(),
            ptr,
        })
    }
}

impl Drop for FactoryHandle {
    fn drop(&mut self) {
        // SAFETY: `ptr` is a live factory and no object of it remains (they hold an Arc).
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { (self.api.destroy)(self.ptr) }));
    }
}

/// An open object. Consumed by `finish` or `abort`; dropping it unfinished aborts it.
pub struct ObjectHandle {
    factory: Arc<FactoryHandle>,
    /// Null once consumed.
    ptr: *mut c_void,
}

// SAFETY: the C contract allows an object's functions to be called from any thread, one at a
// time; `&mut self` on every call enforces "one at a time".
unsafe impl Send for ObjectHandle {}

impl ObjectHandle {
    /// Blocking. The chunk is borrowed for the call only.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        if self.ptr.is_null() {
            return Err(SinkError::permanent("write after finish or abort"));
        }
        let api = &self.factory.api;
        // SAFETY: `ptr` is a live object; `chunk` outlives the call.
        api.call(|err| unsafe { (api.write)(self.ptr, EgressStr::from_bytes(chunk), err) })
    }

    /// Blocking. Consumes the object whatever the outcome.
    pub fn finish(mut self) -> Result<Receipt, SinkError> {
        let ptr = std::mem::replace(&mut self.ptr, std::ptr::null_mut());
        if ptr.is_null() {
            return Err(SinkError::permanent("finish after abort"));
        }
        let api = &self.factory.api;
        let mut out = EgressReceipt::EMPTY;
        // SAFETY: `ptr` is a live object, given up here; `out` is an out-pointer.
        let result = api.call(|err| unsafe { (api.finish)(ptr, &mut out, err) });
        let location = api.take(std::mem::replace(&mut out.location, EgressBuf::EMPTY));
        result?;
        Ok(Receipt::new(
            String::from_utf8_lossy(&location),
            out.size,
            out.sha256,
        ))
    }

    /// Blocking. Consumes the object.
    pub fn abort(mut self) {
        self.abort_in_place();
    }

    fn abort_in_place(&mut self) {
        let ptr = std::mem::replace(&mut self.ptr, std::ptr::null_mut());
        if !ptr.is_null() {
            // SAFETY: `ptr` is a live object, given up here.
            unsafe { (self.factory.api.abort)(ptr) };
        }
    }
}

impl Drop for ObjectHandle {
    fn drop(&mut self) {
        self.abort_in_place();
    }
}

//! Safe wrappers around a plugin's live destination table (API 1.2): who owns the factory and
//! session pointers, and how status codes become [`SinkError`]s (through the sink's helpers).

use std::ffi::c_void;
use std::mem::size_of;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use egress_plugin_api::abi::{
    AbortFn, BytesSentFn, CloseFn, ConnectFn, CreateFn, DescribeFn, DestroyFn, EgressBuf,
    EgressLiveApi, EgressLiveChunk, EgressStr, FreeBufFn, InitFn, SendFn, ValidateFn,
    ValidateUrlFn,
};
use egress_plugin_api::{LiveDescriptor, SinkError, Value};
use libloading::Library;

use super::ffi::{call_with, config_json, host_api, take_buf};

/// A v1.2 live table with every entry present, and the library it lives in.
#[derive(Clone)]
pub struct LiveApi {
    init: InitFn,
    describe: DescribeFn,
    validate: ValidateFn,
    create: CreateFn,
    validate_url: ValidateUrlFn,
    connect: ConnectFn,
    send: SendFn,
    bytes_sent: BytesSentFn,
    close: CloseFn,
    abort: AbortFn,
    destroy: DestroyFn,
    free_buf: FreeBufFn,
    _lib: Arc<Library>,
}

fn need<T>(f: Option<T>, name: &str) -> Result<T, String> {
    f.ok_or_else(|| format!("the live destination table has no `{name}` function"))
}

impl LiveApi {
    pub fn from_table(t: &'static EgressLiveApi, lib: Arc<Library>) -> Result<Self, String> {
        if (t.struct_size as usize) < size_of::<EgressLiveApi>() {
            return Err(format!(
                "the live destination table is {} bytes, smaller than v1.2's {}",
                t.struct_size,
                size_of::<EgressLiveApi>()
            ));
        }
        Ok(LiveApi {
            init: need(t.init, "init")?,
            describe: need(t.describe, "describe")?,
            validate: need(t.validate, "validate")?,
            create: need(t.create, "create")?,
            validate_url: need(t.validate_url, "validate_url")?,
            connect: need(t.connect, "connect")?,
            send: need(t.send, "send")?,
            bytes_sent: need(t.bytes_sent, "bytes_sent")?,
            close: need(t.close, "close")?,
            abort: need(t.abort, "abort")?,
            destroy: need(t.destroy, "destroy")?,
            free_buf: need(t.free_buf, "free_buf")?,
            _lib: lib,
        })
    }

    fn call(
        &self,
        f: impl FnOnce(*mut egress_plugin_api::abi::EgressError) -> i32,
    ) -> Result<(), SinkError> {
        call_with(self.free_buf, f)
    }

    pub fn init(&self) {
        // SAFETY: the host table is a static that outlives the plugin.
        unsafe { (self.init)(host_api()) };
    }

    pub fn describe(&self) -> Result<LiveDescriptor, SinkError> {
        let mut out = EgressBuf::EMPTY;
        // SAFETY: both out-pointers are valid for the call.
        self.call(|err| unsafe { (self.describe)(&mut out, err) })?;
        let json = take_buf(self.free_buf, out);
        serde_json::from_slice(&json)
            .map_err(|e| SinkError::permanent(format!("describe returned invalid JSON: {e}")))
    }

    pub fn validate(&self, config: &Value) -> Result<(), SinkError> {
        let json = config_json(config)?;
        // SAFETY: `json` outlives the call.
        self.call(|err| unsafe { (self.validate)(EgressStr::from_bytes(&json), err) })
    }

    pub fn create(&self, config: &Value) -> Result<LiveFactoryHandle, SinkError> {
        let json = config_json(config)?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: `json` outlives the call; `ptr` is a valid out-pointer.
        self.call(|err| unsafe { (self.create)(EgressStr::from_bytes(&json), &mut ptr, err) })?;
        if ptr.is_null() {
            return Err(SinkError::permanent(
                "create succeeded but returned no factory",
            ));
        }
        Ok(LiveFactoryHandle {
            api: self.clone(),
            ptr,
        })
    }
}

/// A live factory the plugin created; destroyed when the last session of it is gone.
pub struct LiveFactoryHandle {
    api: LiveApi,
    ptr: *mut c_void,
}

// SAFETY: the C contract says factory functions may be called concurrently from any thread.
unsafe impl Send for LiveFactoryHandle {}
// SAFETY: as above.
unsafe impl Sync for LiveFactoryHandle {}

impl LiveFactoryHandle {
    /// Pure (no I/O by contract), so it runs on the caller's thread.
    pub fn validate_url(&self, url: &str) -> Result<(), SinkError> {
        // SAFETY: `ptr` is a live factory; `url` outlives the call.
        self.api.call(|err| unsafe {
            (self.api.validate_url)(self.ptr, EgressStr::from_bytes(url.as_bytes()), err)
        })
    }

    /// Blocking. The session keeps the factory alive.
    pub fn connect(self: &Arc<Self>, url: &str) -> Result<SessionHandle, SinkError> {
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: `url` outlives the call; `ptr` is an out-pointer.
        self.api.call(|err| unsafe {
            (self.api.connect)(
                self.ptr,
                EgressStr::from_bytes(url.as_bytes()),
                &mut ptr,
                err,
            )
        })?;
        if ptr.is_null() {
            return Err(SinkError::permanent(
                "connect succeeded but returned no session",
            ));
        }
        Ok(SessionHandle {
            factory: self.clone(),
            ptr,
        })
    }
}

impl Drop for LiveFactoryHandle {
    fn drop(&mut self) {
        // SAFETY: `ptr` is a live factory and no session of it remains (they hold an Arc).
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { (self.api.destroy)(self.ptr) }));
    }
}

/// A connected session. Consumed by `close`; dropping it aborts it.
pub struct SessionHandle {
    factory: Arc<LiveFactoryHandle>,
    /// Null once consumed.
    ptr: *mut c_void,
}

// SAFETY: the C contract allows a session's functions to be called from any thread, one at a
// time; `&mut self` on every call enforces "one at a time".
unsafe impl Send for SessionHandle {}

impl SessionHandle {
    /// Blocking. The data is borrowed for the call only.
    pub fn send(
        &mut self,
        data: &[u8],
        pts: Duration,
        keyframe: bool,
        header: bool,
    ) -> Result<(), SinkError> {
        if self.ptr.is_null() {
            return Err(SinkError::permanent("send after close"));
        }
        let chunk = EgressLiveChunk {
            struct_size: size_of::<EgressLiveChunk<'_>>() as u32,
            data: EgressStr::from_bytes(data),
            pts_ns: u64::try_from(pts.as_nanos()).unwrap_or(u64::MAX),
            keyframe: u8::from(keyframe),
            header: u8::from(header),
        };
        let api = &self.factory.api;
        // SAFETY: `ptr` is a live session; `chunk` and the data it borrows outlive the call.
        api.call(|err| unsafe { (api.send)(self.ptr, &chunk, err) })
    }

    pub fn bytes_sent(&self) -> u64 {
        if self.ptr.is_null() {
            return 0;
        }
        // SAFETY: `ptr` is a live session; calls are never concurrent (`&self` here, `&mut
        // self` for the others, and the session lives on one thread).
        unsafe { (self.factory.api.bytes_sent)(self.ptr) }
    }

    /// Blocking. Consumes the session whatever the outcome.
    pub fn close(mut self) -> Result<(), SinkError> {
        let ptr = std::mem::replace(&mut self.ptr, std::ptr::null_mut());
        if ptr.is_null() {
            return Ok(());
        }
        let api = &self.factory.api;
        // SAFETY: `ptr` is a live session, given up here.
        api.call(|err| unsafe { (api.close)(ptr, err) })
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let ptr = std::mem::replace(&mut self.ptr, std::ptr::null_mut());
        if !ptr.is_null() {
            // SAFETY: `ptr` is a live session, given up here.
            unsafe { (self.factory.api.abort)(ptr) };
        }
    }
}

//! The plugin side of the C ABI: `extern "C"` functions generic over a [`SinkPlugin`] (or a
//! [`RendererPlugin`], a [`LivePlugin`]), put in a static table by
//! [`export_sink!`](crate::export_sink) (`export_renderer!`, `export_live!`) when the plugin
//! crate is built with its `dylib` feature.
//!
//! Each entry point catches panics (a panic unwinding into C is undefined behaviour) and turns
//! them into permanent errors, and drives the plugin's futures with
//! [`crate::blocking::block_on`]: C calls are blocking and the host runs them on its
//! own blocking threads.

use std::any::Any;
use std::ffi::c_void;
use std::mem::size_of;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use serde_json::Value;

use super::{
    ABI_MAJOR, ABI_MINOR, EGRESS_ERR_PERMANENT, EGRESS_OK, EgressBuf, EgressError, EgressHostApi,
    EgressLiveApi, EgressLiveChunk, EgressObjectSpec, EgressPluginDescriptor, EgressReceipt,
    EgressRendererApi, EgressSinkApi, EgressStr, status_of,
};
use crate::blocking::block_on;
use crate::error::SinkError;
use crate::live::{LiveChunk, LivePlugin, LiveSession};
use crate::renderer::{RenderRequest, RoomState};
use crate::renderer_plugin::RendererPlugin;
use crate::sink::{SinkObject, SinkPlugin};
use crate::types::ObjectSpec;

/// The function table for `F`.
pub const fn sink_api<F: SinkPlugin>() -> EgressSinkApi {
    EgressSinkApi {
        struct_size: size_of::<EgressSinkApi>() as u32,
        init: Some(init),
        describe: Some(describe::<F>),
        validate: Some(validate::<F>),
        create: Some(create::<F>),
        health_check: Some(health_check::<F>),
        open: Some(open::<F>),
        write: Some(write),
        finish: Some(finish),
        abort: Some(abort),
        destroy: Some(destroy::<F>),
        free_buf: Some(free_buf),
    }
}

/// The descriptor pointing at `sink`.
pub const fn descriptor(sink: &'static EgressSinkApi) -> EgressPluginDescriptor {
    EgressPluginDescriptor {
        struct_size: size_of::<EgressPluginDescriptor>() as u32,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        sink,
        renderer: std::ptr::null(),
        live: std::ptr::null(),
    }
}

/// The descriptor of a renderer-only plugin.
pub const fn renderer_descriptor(renderer: &'static EgressRendererApi) -> EgressPluginDescriptor {
    EgressPluginDescriptor {
        struct_size: size_of::<EgressPluginDescriptor>() as u32,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        sink: std::ptr::null(),
        renderer,
        live: std::ptr::null(),
    }
}

/// The descriptor of a live-destination-only plugin (since 1.2).
pub const fn live_descriptor(live: &'static EgressLiveApi) -> EgressPluginDescriptor {
    EgressPluginDescriptor {
        struct_size: size_of::<EgressPluginDescriptor>() as u32,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        sink: std::ptr::null(),
        renderer: std::ptr::null(),
        live,
    }
}

/// The live destination function table for `L`.
pub const fn live_api<L: LivePlugin>() -> EgressLiveApi {
    EgressLiveApi {
        struct_size: size_of::<EgressLiveApi>() as u32,
        init: Some(init),
        describe: Some(live_describe::<L>),
        validate: Some(live_validate::<L>),
        create: Some(live_create::<L>),
        validate_url: Some(live_validate_url::<L>),
        connect: Some(live_connect::<L>),
        send: Some(live_send),
        bytes_sent: Some(live_bytes_sent),
        close: Some(live_close),
        abort: Some(live_abort),
        destroy: Some(destroy::<L>),
        free_buf: Some(free_buf),
    }
}

/// The renderer function table for `R`.
pub const fn renderer_api<R: RendererPlugin>() -> EgressRendererApi {
    EgressRendererApi {
        struct_size: size_of::<EgressRendererApi>() as u32,
        init: Some(init),
        describe: Some(renderer_describe::<R>),
        validate: Some(renderer_validate::<R>),
        create: Some(renderer_create::<R>),
        layouts: Some(renderer_layouts::<R>),
        render: Some(renderer_render::<R>),
        destroy: Some(destroy::<R>),
        free_buf: Some(free_buf),
    }
}

/// Run `f`, turning an error or a panic into a status code and `err`.
fn guard(err: *mut EgressError, f: impl FnOnce() -> Result<(), SinkError>) -> i32 {
    let e = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return EGRESS_OK,
        Ok(Err(e)) => e,
        Err(panic) => SinkError::permanent(format!("plugin panicked: {}", panic_message(&panic))),
    };
    if !err.is_null() {
        // SAFETY: the host passes a valid, writable EgressError (or null, checked above).
        unsafe {
            *err = EgressError {
                message: EgressBuf::from_vec(e.message().as_bytes().to_vec()),
                field: e
                    .field()
                    .map(|f| EgressBuf::from_vec(f.as_bytes().to_vec()))
                    .unwrap_or(EgressBuf::EMPTY),
            };
        }
    }
    match status_of(&e) {
        EGRESS_OK => EGRESS_ERR_PERMANENT,
        status => status,
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

fn parse_json(config: EgressStr<'_>) -> Result<Value, SinkError> {
    // SAFETY: the host passes a valid borrowed buffer for the duration of the call.
    let bytes = unsafe { config.as_bytes() };
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| SinkError::config(format!("config is not JSON: {e}")))
}

fn utf8(s: EgressStr<'_>, what: &str) -> Result<String, SinkError> {
    // SAFETY: the host passes a valid borrowed buffer for the duration of the call.
    let bytes = unsafe { s.as_bytes() };
    String::from_utf8(bytes.to_vec())
        .map_err(|_| SinkError::permanent(format!("{what} is not UTF-8")))
}

unsafe extern "C" fn init(host: *const EgressHostApi) {
    let _ = catch_unwind(|| {
        if host.is_null() {
            return;
        }
        // SAFETY: the host passes a valid table that lives as long as the process.
        let host = unsafe { &*host };
        let has_log = host.struct_size as usize
            >= std::mem::offset_of!(EgressHostApi, log) + size_of::<Option<super::HostLogFn>>();
        if has_log && let Some(log) = host.log {
            crate::log::backend::set_host(log);
        }
    });
}

unsafe extern "C" fn describe<F: SinkPlugin>(
    out_json: *mut EgressBuf,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        let json = serde_json::to_vec(&F::describe())
            .map_err(|e| SinkError::permanent(format!("cannot encode the descriptor: {e}")))?;
        if out_json.is_null() {
            return Err(SinkError::permanent("describe: null output pointer"));
        }
        // SAFETY: checked non-null; the host passes a writable EgressBuf.
        unsafe { *out_json = EgressBuf::from_vec(json) };
        Ok(())
    })
}

unsafe extern "C" fn validate<F: SinkPlugin>(config: EgressStr<'_>, err: *mut EgressError) -> i32 {
    guard(err, || F::validate(&parse_json(config)?))
}

unsafe extern "C" fn create<F: SinkPlugin>(
    config: EgressStr<'_>,
    out_factory: *mut *mut c_void,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        if out_factory.is_null() {
            return Err(SinkError::permanent("create: null output pointer"));
        }
        let factory = F::create(&parse_json(config)?)?;
        // SAFETY: checked non-null. The host owns the pointer until it calls `destroy::<F>`.
        unsafe { *out_factory = Box::into_raw(Box::new(factory)).cast() };
        Ok(())
    })
}

/// # Safety
/// `factory` must come from `create::<F>` and not be destroyed.
unsafe fn factory_ref<'a, F>(factory: *mut c_void) -> Result<&'a F, SinkError> {
    if factory.is_null() {
        return Err(SinkError::permanent("null factory"));
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { &*(factory as *const F) })
}

unsafe extern "C" fn health_check<F: SinkPlugin>(
    factory: *mut c_void,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        // SAFETY: the host passes a live factory from `create`.
        let factory = unsafe { factory_ref::<F>(factory)? };
        block_on(factory.health_check())
    })
}

unsafe extern "C" fn open<F: SinkPlugin>(
    factory: *mut c_void,
    spec: *const EgressObjectSpec<'_>,
    out_object: *mut *mut c_void,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        // SAFETY: the host passes a live factory from `create`.
        let factory = unsafe { factory_ref::<F>(factory)? };
        if spec.is_null() || out_object.is_null() {
            return Err(SinkError::permanent("open: null argument"));
        }
        // SAFETY: checked non-null; the host passes a valid spec for the duration of the call.
        let spec = unsafe { &*spec };
        let mut object_spec = ObjectSpec::new(utf8(spec.key, "the object key")?)
            .with_content_type(utf8(spec.content_type, "the content type")?);
        if spec.has_expected_size != 0 {
            object_spec = object_spec.with_expected_size(spec.expected_size);
        }
        let object: Box<dyn SinkObject> = block_on(factory.open(object_spec))?;
        // A thin pointer to the fat one, so that C sees one word.
        // SAFETY: checked non-null. The host owns the pointer until `finish` or `abort`.
        unsafe { *out_object = Box::into_raw(Box::new(object)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn write(
    object: *mut c_void,
    chunk: EgressStr<'_>,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        if object.is_null() {
            return Err(SinkError::permanent("write: null object"));
        }
        // SAFETY: the host passes a live object from `open` and never calls it concurrently.
        let object = unsafe { &mut *(object as *mut Box<dyn SinkObject>) };
        // The chunk is borrowed for this call only; the trait takes owned bytes. This is the
        // one copy the C boundary costs.
        // SAFETY: the host passes a valid borrowed buffer for the duration of the call.
        let chunk = Bytes::copy_from_slice(unsafe { chunk.as_bytes() });
        block_on(object.write(chunk))
    })
}

unsafe extern "C" fn finish(
    object: *mut c_void,
    out: *mut EgressReceipt,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        if object.is_null() {
            return Err(SinkError::permanent("finish: null object"));
        }
        // SAFETY: the host passes a live object from `open` and gives up ownership here.
        let object = unsafe { Box::from_raw(object as *mut Box<dyn SinkObject>) };
        let receipt = block_on((*object).finish())?;
        if out.is_null() {
            return Err(SinkError::permanent("finish: null output pointer"));
        }
        // SAFETY: checked non-null; the host passes a writable EgressReceipt.
        unsafe {
            *out = EgressReceipt {
                location: EgressBuf::from_vec(receipt.location.into_bytes()),
                size: receipt.size,
                sha256: receipt.sha256,
            };
        }
        Ok(())
    })
}

unsafe extern "C" fn abort(object: *mut c_void) {
    if object.is_null() {
        return;
    }
    // SAFETY: the host passes a live object from `open` and gives up ownership here.
    let object = unsafe { Box::from_raw(object as *mut Box<dyn SinkObject>) };
    if catch_unwind(AssertUnwindSafe(|| block_on((*object).abort()))).is_err() {
        crate::log::error("plugin panicked while aborting an object");
    }
}

unsafe extern "C" fn destroy<F>(factory: *mut c_void) {
    if factory.is_null() {
        return;
    }
    // SAFETY: the pointer comes from `create::<F>` (or `renderer_create::<F>`); the host gives
    // up ownership here.
    let factory = unsafe { Box::from_raw(factory as *mut F) };
    if catch_unwind(AssertUnwindSafe(|| drop(factory))).is_err() {
        crate::log::error("plugin panicked while destroying a factory");
    }
}

unsafe extern "C" fn free_buf(buf: EgressBuf) {
    // SAFETY: every EgressBuf the host holds was made by `EgressBuf::from_vec` in this library.
    drop(unsafe { buf.into_vec() });
}

/// Write `value` as JSON into the host's out-buffer.
fn out_json<T: serde::Serialize>(
    out: *mut EgressBuf,
    value: &T,
    what: &str,
) -> Result<(), SinkError> {
    let json = serde_json::to_vec(value)
        .map_err(|e| SinkError::permanent(format!("cannot encode {what}: {e}")))?;
    if out.is_null() {
        return Err(SinkError::permanent(format!("{what}: null output pointer")));
    }
    // SAFETY: checked non-null; the host passes a writable EgressBuf.
    unsafe { *out = EgressBuf::from_vec(json) };
    Ok(())
}

fn parse_arg<T: serde::de::DeserializeOwned>(s: EgressStr<'_>, what: &str) -> Result<T, SinkError> {
    // SAFETY: the host passes a valid borrowed buffer for the duration of the call.
    let bytes = unsafe { s.as_bytes() };
    serde_json::from_slice(bytes)
        .map_err(|e| SinkError::permanent(format!("{what} is not valid JSON: {e}")))
}

unsafe extern "C" fn renderer_describe<R: RendererPlugin>(
    out_json_buf: *mut EgressBuf,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        out_json(out_json_buf, &R::describe(), "the descriptor")
    })
}

unsafe extern "C" fn renderer_validate<R: RendererPlugin>(
    config: EgressStr<'_>,
    err: *mut EgressError,
) -> i32 {
    guard(err, || R::validate(&parse_json(config)?))
}

unsafe extern "C" fn renderer_create<R: RendererPlugin>(
    config: EgressStr<'_>,
    out_renderer: *mut *mut c_void,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        if out_renderer.is_null() {
            return Err(SinkError::permanent("create: null output pointer"));
        }
        let renderer = R::create(&parse_json(config)?)?;
        // SAFETY: checked non-null. The host owns the pointer until it calls `destroy::<R>`.
        unsafe { *out_renderer = Box::into_raw(Box::new(renderer)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn renderer_layouts<R: RendererPlugin>(
    renderer: *mut c_void,
    out: *mut EgressBuf,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        // SAFETY: the host passes a live renderer from `renderer_create::<R>`.
        let renderer = unsafe { factory_ref::<R>(renderer)? };
        out_json(out, &renderer.layouts(), "the layouts")
    })
}

unsafe extern "C" fn renderer_render<R: RendererPlugin>(
    renderer: *mut c_void,
    request: EgressStr<'_>,
    room: EgressStr<'_>,
    out: *mut EgressBuf,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        // SAFETY: the host passes a live renderer from `renderer_create::<R>`.
        let renderer = unsafe { factory_ref::<R>(renderer)? };
        let request: RenderRequest = parse_arg(request, "the render request")?;
        let room: RoomState = parse_arg(room, "the room state")?;
        let rendering = block_on(renderer.render(&request, &room))?;
        out_json(out, &rendering, "the rendering")
    })
}

unsafe extern "C" fn live_describe<L: LivePlugin>(
    out_json_buf: *mut EgressBuf,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        out_json(out_json_buf, &L::describe(), "the descriptor")
    })
}

unsafe extern "C" fn live_validate<L: LivePlugin>(
    config: EgressStr<'_>,
    err: *mut EgressError,
) -> i32 {
    guard(err, || L::validate(&parse_json(config)?))
}

unsafe extern "C" fn live_create<L: LivePlugin>(
    config: EgressStr<'_>,
    out_factory: *mut *mut c_void,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        if out_factory.is_null() {
            return Err(SinkError::permanent("create: null output pointer"));
        }
        let factory = L::create(&parse_json(config)?)?;
        // SAFETY: checked non-null. The host owns the pointer until it calls `destroy::<L>`.
        unsafe { *out_factory = Box::into_raw(Box::new(factory)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn live_validate_url<L: LivePlugin>(
    factory: *mut c_void,
    url: EgressStr<'_>,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        // SAFETY: the host passes a live factory from `live_create::<L>`.
        let factory = unsafe { factory_ref::<L>(factory)? };
        factory.validate_url(&utf8(url, "the URL")?)
    })
}

unsafe extern "C" fn live_connect<L: LivePlugin>(
    factory: *mut c_void,
    url: EgressStr<'_>,
    out_session: *mut *mut c_void,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        // SAFETY: the host passes a live factory from `live_create::<L>`.
        let factory = unsafe { factory_ref::<L>(factory)? };
        if out_session.is_null() {
            return Err(SinkError::permanent("connect: null output pointer"));
        }
        let url = utf8(url, "the URL")?;
        let session: Box<dyn LiveSession> = block_on(factory.connect(&url))?;
        // A thin pointer to the fat one, so that C sees one word.
        // SAFETY: checked non-null. The host owns the pointer until `close` or `abort`.
        unsafe { *out_session = Box::into_raw(Box::new(session)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn live_send(
    session: *mut c_void,
    chunk: *const EgressLiveChunk<'_>,
    err: *mut EgressError,
) -> i32 {
    guard(err, || {
        if session.is_null() || chunk.is_null() {
            return Err(SinkError::permanent("send: null argument"));
        }
        // SAFETY: the host passes a live session from `connect`, never concurrently, and a
        // valid chunk for the duration of the call.
        let (session, chunk) = unsafe { (&mut *(session as *mut Box<dyn LiveSession>), &*chunk) };
        // SAFETY: the data is borrowed for this call, which is as long as `send` holds it.
        let data = unsafe { chunk.data.as_bytes() };
        let chunk = LiveChunk::new(data, std::time::Duration::from_nanos(chunk.pts_ns))
            .keyframe(chunk.keyframe != 0)
            .header(chunk.header != 0);
        block_on(session.send(chunk))
    })
}

unsafe extern "C" fn live_bytes_sent(session: *mut c_void) -> u64 {
    if session.is_null() {
        return 0;
    }
    // SAFETY: the host passes a live session from `connect` and never calls it concurrently.
    let session = unsafe { &*(session as *const Box<dyn LiveSession>) };
    catch_unwind(AssertUnwindSafe(|| session.bytes_sent())).unwrap_or(0)
}

unsafe extern "C" fn live_close(session: *mut c_void, err: *mut EgressError) -> i32 {
    guard(err, || {
        if session.is_null() {
            return Err(SinkError::permanent("close: null session"));
        }
        // SAFETY: the host passes a live session from `connect` and gives up ownership here.
        let session = unsafe { Box::from_raw(session as *mut Box<dyn LiveSession>) };
        block_on((*session).close())
    })
}

unsafe extern "C" fn live_abort(session: *mut c_void) {
    if session.is_null() {
        return;
    }
    // SAFETY: the host passes a live session from `connect` and gives up ownership here.
    let session = unsafe { Box::from_raw(session as *mut Box<dyn LiveSession>) };
    if catch_unwind(AssertUnwindSafe(|| drop(session))).is_err() {
        crate::log::error("plugin panicked while dropping a live session");
    }
}

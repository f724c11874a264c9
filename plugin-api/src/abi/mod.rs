//! The C ABI: `#[repr(C)]` mirrors of `include/egress_plugin.h`, shared by the plugin-side shim
//! ([`export`], used by [`export_sink!`](crate::export_sink)) and the host's dylib loader.
//!
//! Rules (also in the header): the host resolves one symbol, [`ENTRY_SYMBOL`]; every struct
//! starts with its size and minor versions only append; strings passed in are borrowed for the
//! call; buffers passed out belong to the plugin and come back through `free_buf`; `finish` and
//! `abort` consume the object (`close` and `abort` a live session); panics never cross the
//! boundary.

#[cfg(not(target_family = "wasm"))]
pub mod export;

use std::ffi::c_void;
use std::marker::PhantomData;

use crate::error::{Kind, SinkError};

/// ABI major version (the `_v1` in the entry symbol). Equal to the API major.
pub const ABI_MAJOR: u16 = crate::API_VERSION_MAJOR;
/// ABI minor version. Equal to the API minor.
pub const ABI_MINOR: u16 = crate::API_VERSION_MINOR;

/// The one symbol a dylib plugin exports, NUL-terminated for `dlsym`.
pub const ENTRY_SYMBOL: &[u8] = b"egress_plugin_entry_v1\0";

pub const EGRESS_OK: i32 = 0;
pub const EGRESS_ERR_RETRYABLE: i32 = Kind::Retryable as i32;
pub const EGRESS_ERR_PERMANENT: i32 = Kind::Permanent as i32;
pub const EGRESS_ERR_AUTH: i32 = Kind::Auth as i32;
pub const EGRESS_ERR_CONFIG: i32 = Kind::Config as i32;

/// Borrowed bytes: valid for the duration of the call that receives them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EgressStr<'a> {
    pub ptr: *const u8,
    pub len: usize,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> EgressStr<'a> {
    pub fn from_bytes(bytes: &'a [u8]) -> Self {
        EgressStr {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
            _borrow: PhantomData,
        }
    }

    /// The bytes. A null pointer reads as empty.
    ///
    /// # Safety
    /// `ptr` must be null or point to `len` readable bytes for `'a`.
    pub unsafe fn as_bytes(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Bytes owned by the plugin. The host reads them, then hands them back to `free_buf`.
#[repr(C)]
#[derive(Debug)]
pub struct EgressBuf {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl EgressBuf {
    pub const EMPTY: EgressBuf = EgressBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Give up ownership of `v` (the plugin side; undone by [`EgressBuf::into_vec`]).
    pub fn from_vec(v: Vec<u8>) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        EgressBuf {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// Take back a buffer made by [`EgressBuf::from_vec`] in the same binary.
    ///
    /// # Safety
    /// The buffer must come from `from_vec` in this binary (same allocator) and not be used
    /// afterwards.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
        }
    }

    /// Read the bytes without taking ownership.
    ///
    /// # Safety
    /// `ptr` must be null or point to `len` readable bytes.
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

#[repr(C)]
#[derive(Debug)]
pub struct EgressError {
    pub message: EgressBuf,
    pub field: EgressBuf,
}

impl EgressError {
    pub const EMPTY: EgressError = EgressError {
        message: EgressBuf::EMPTY,
        field: EgressBuf::EMPTY,
    };
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EgressObjectSpec<'a> {
    pub struct_size: u32,
    pub key: EgressStr<'a>,
    pub content_type: EgressStr<'a>,
    pub has_expected_size: u8,
    pub expected_size: u64,
}

#[repr(C)]
#[derive(Debug)]
pub struct EgressReceipt {
    pub location: EgressBuf,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl EgressReceipt {
    pub const EMPTY: EgressReceipt = EgressReceipt {
        location: EgressBuf::EMPTY,
        size: 0,
        sha256: [0; 32],
    };
}

pub type HostLogFn = extern "C" fn(level: u32, message: EgressStr<'_>);

#[repr(C)]
#[derive(Debug)]
pub struct EgressHostApi {
    pub struct_size: u32,
    pub log: Option<HostLogFn>,
}

pub type InitFn = unsafe extern "C" fn(host: *const EgressHostApi);
pub type DescribeFn = unsafe extern "C" fn(out_json: *mut EgressBuf, err: *mut EgressError) -> i32;
pub type ValidateFn = unsafe extern "C" fn(config: EgressStr<'_>, err: *mut EgressError) -> i32;
pub type CreateFn = unsafe extern "C" fn(
    config: EgressStr<'_>,
    out_factory: *mut *mut c_void,
    err: *mut EgressError,
) -> i32;
pub type HealthCheckFn = unsafe extern "C" fn(factory: *mut c_void, err: *mut EgressError) -> i32;
pub type OpenFn = unsafe extern "C" fn(
    factory: *mut c_void,
    spec: *const EgressObjectSpec<'_>,
    out_object: *mut *mut c_void,
    err: *mut EgressError,
) -> i32;
pub type WriteFn =
    unsafe extern "C" fn(object: *mut c_void, chunk: EgressStr<'_>, err: *mut EgressError) -> i32;
pub type FinishFn = unsafe extern "C" fn(
    object: *mut c_void,
    out: *mut EgressReceipt,
    err: *mut EgressError,
) -> i32;
pub type AbortFn = unsafe extern "C" fn(object: *mut c_void);
pub type DestroyFn = unsafe extern "C" fn(factory: *mut c_void);
pub type FreeBufFn = unsafe extern "C" fn(buf: EgressBuf);

/// The sink function table (v1.0). Function pointers are nullable in C; the host refuses a
/// table with a null v1.0 entry.
#[repr(C)]
#[derive(Debug)]
pub struct EgressSinkApi {
    pub struct_size: u32,
    pub init: Option<InitFn>,
    pub describe: Option<DescribeFn>,
    pub validate: Option<ValidateFn>,
    pub create: Option<CreateFn>,
    pub health_check: Option<HealthCheckFn>,
    pub open: Option<OpenFn>,
    pub write: Option<WriteFn>,
    pub finish: Option<FinishFn>,
    pub abort: Option<AbortFn>,
    pub destroy: Option<DestroyFn>,
    pub free_buf: Option<FreeBufFn>,
}

// SAFETY: the table is immutable static data (function pointers).
unsafe impl Sync for EgressSinkApi {}

pub type LayoutsFn = unsafe extern "C" fn(
    renderer: *mut c_void,
    out_json: *mut EgressBuf,
    err: *mut EgressError,
) -> i32;
pub type RenderFn = unsafe extern "C" fn(
    renderer: *mut c_void,
    request_json: EgressStr<'_>,
    room_json: EgressStr<'_>,
    out_json: *mut EgressBuf,
    err: *mut EgressError,
) -> i32;

/// The renderer function table (v1.1). Requests, rooms and answers cross as JSON (the serde
/// forms of [`RenderRequest`](crate::RenderRequest), [`RoomState`](crate::RoomState) and
/// [`Rendering`](crate::Rendering)): they are trees of lists of strings, which in C would need a
/// size-prefixed struct and an ownership rule per level, and JSON objects gain fields in a minor
/// version without any layout change. Renders are rare (once per egress), so the cost is moot.
#[repr(C)]
#[derive(Debug)]
pub struct EgressRendererApi {
    pub struct_size: u32,
    pub init: Option<InitFn>,
    pub describe: Option<DescribeFn>,
    pub validate: Option<ValidateFn>,
    pub create: Option<CreateFn>,
    pub layouts: Option<LayoutsFn>,
    pub render: Option<RenderFn>,
    pub destroy: Option<DestroyFn>,
    pub free_buf: Option<FreeBufFn>,
}

// SAFETY: the table is immutable static data (function pointers).
unsafe impl Sync for EgressRendererApi {}

/// One chunk of a live stream (v1.2), borrowed for the duration of `send`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EgressLiveChunk<'a> {
    pub struct_size: u32,
    pub data: EgressStr<'a>,
    /// Presentation time in nanoseconds from the session's first chunk.
    pub pts_ns: u64,
    pub keyframe: u8,
    pub header: u8,
}

pub type ValidateUrlFn =
    unsafe extern "C" fn(factory: *mut c_void, url: EgressStr<'_>, err: *mut EgressError) -> i32;
pub type ConnectFn = unsafe extern "C" fn(
    factory: *mut c_void,
    url: EgressStr<'_>,
    out_session: *mut *mut c_void,
    err: *mut EgressError,
) -> i32;
pub type SendFn = unsafe extern "C" fn(
    session: *mut c_void,
    chunk: *const EgressLiveChunk<'_>,
    err: *mut EgressError,
) -> i32;
pub type BytesSentFn = unsafe extern "C" fn(session: *mut c_void) -> u64;
pub type CloseFn = unsafe extern "C" fn(session: *mut c_void, err: *mut EgressError) -> i32;

/// The live destination function table (v1.2). The descriptor is JSON (the serde form of
/// [`LiveDescriptor`](crate::LiveDescriptor)); chunks are a struct, as they are many per second.
#[repr(C)]
#[derive(Debug)]
pub struct EgressLiveApi {
    pub struct_size: u32,
    pub init: Option<InitFn>,
    pub describe: Option<DescribeFn>,
    pub validate: Option<ValidateFn>,
    pub create: Option<CreateFn>,
    pub validate_url: Option<ValidateUrlFn>,
    pub connect: Option<ConnectFn>,
    pub send: Option<SendFn>,
    pub bytes_sent: Option<BytesSentFn>,
    pub close: Option<CloseFn>,
    /// Drop a session without closing it cleanly; consumes it.
    pub abort: Option<AbortFn>,
    pub destroy: Option<DestroyFn>,
    pub free_buf: Option<FreeBufFn>,
}

// SAFETY: the table is immutable static data (function pointers).
unsafe impl Sync for EgressLiveApi {}

#[repr(C)]
#[derive(Debug)]
pub struct EgressPluginDescriptor {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    /// The sink table. From v1.1 it may be null when another table is set.
    pub sink: *const EgressSinkApi,
    /// v1.1: the renderer table, or null. Read only when `struct_size` covers it.
    pub renderer: *const EgressRendererApi,
    /// v1.2: the live destination table, or null. Read only from a minor-2 (or newer)
    /// descriptor whose `struct_size` covers it.
    pub live: *const EgressLiveApi,
}

/// The size of a v1.0 descriptor (no `renderer` field): what a minor-0 plugin fills.
pub const DESCRIPTOR_V1_0_SIZE: usize = std::mem::offset_of!(EgressPluginDescriptor, renderer);
/// The size of a v1.1 descriptor (no `live` field): what a minor-1 plugin fills.
pub const DESCRIPTOR_V1_1_SIZE: usize = std::mem::offset_of!(EgressPluginDescriptor, live);

// SAFETY: points to a static, immutable table.
unsafe impl Sync for EgressPluginDescriptor {}

/// The type of [`ENTRY_SYMBOL`].
pub type EntryFn = unsafe extern "C" fn() -> *const EgressPluginDescriptor;

/// The status code for an error (its kind).
pub fn status_of(e: &SinkError) -> i32 {
    e.kind() as i32
}

/// Rebuild an error from a status code and the plugin's message and field. A status outside
/// the known kinds (a newer plugin, a buggy one) is permanent: retrying something we do not
/// understand helps nobody.
pub fn error_from_status(status: i32, message: String, field: Option<String>) -> SinkError {
    let kind = match status {
        EGRESS_ERR_RETRYABLE => Kind::Retryable,
        EGRESS_ERR_AUTH => Kind::Auth,
        EGRESS_ERR_CONFIG => Kind::Config,
        EGRESS_ERR_PERMANENT => Kind::Permanent,
        other => {
            return SinkError::from_parts(
                Kind::Permanent,
                format!("{message} (unknown status {other})"),
                field,
            );
        }
    };
    SinkError::from_parts(kind, message, field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The layouts the header describes on 64-bit targets. A change here is an ABI change.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn layouts_match_the_header() {
        assert_eq!(size_of::<EgressStr<'_>>(), 16);
        assert_eq!(size_of::<EgressBuf>(), 24);
        assert_eq!(size_of::<EgressError>(), 48);
        assert_eq!(offset_of!(EgressObjectSpec<'_>, key), 8);
        assert_eq!(offset_of!(EgressObjectSpec<'_>, has_expected_size), 40);
        assert_eq!(offset_of!(EgressObjectSpec<'_>, expected_size), 48);
        assert_eq!(size_of::<EgressObjectSpec<'_>>(), 56);
        assert_eq!(offset_of!(EgressReceipt, sha256), 32);
        assert_eq!(size_of::<EgressReceipt>(), 64);
        assert_eq!(size_of::<EgressHostApi>(), 16);
        assert_eq!(size_of::<EgressSinkApi>(), 8 + 11 * 8);
        assert_eq!(offset_of!(EgressPluginDescriptor, sink), 8);
        assert_eq!(DESCRIPTOR_V1_0_SIZE, 16);
        assert_eq!(DESCRIPTOR_V1_1_SIZE, 24);
        assert_eq!(size_of::<EgressPluginDescriptor>(), 32);
        assert_eq!(size_of::<EgressRendererApi>(), 8 + 8 * 8);
        assert_eq!(size_of::<EgressLiveApi>(), 8 + 12 * 8);
        assert_eq!(offset_of!(EgressLiveChunk<'_>, data), 8);
        assert_eq!(offset_of!(EgressLiveChunk<'_>, pts_ns), 24);
        assert_eq!(offset_of!(EgressLiveChunk<'_>, keyframe), 32);
        assert_eq!(offset_of!(EgressLiveChunk<'_>, header), 33);
        assert_eq!(size_of::<EgressLiveChunk<'_>>(), 40);
    }

    #[test]
    fn status_round_trips() {
        for e in [
            SinkError::retryable("a"),
            SinkError::permanent("b"),
            SinkError::auth("c"),
            SinkError::config_field("f", "d"),
        ] {
            let back =
                error_from_status(status_of(&e), e.message().into(), e.field().map(Into::into));
            assert_eq!(back.to_string(), e.to_string());
        }
        assert!(error_from_status(99, "x".into(), None).is_permanent());
    }
}

//! libsrt, loaded at run time, and the few calls a caller-mode sender needs.
//!
//! Why libsrt directly and not GStreamer's `srtsink` (the first choice, which Go uses): in
//! GStreamer 1.22 `srtsink` connects in the background and neither its state nor its `stats`
//! say when the handshake is done, and until it is done it drops what it is given (a 4 s push
//! arrived as 0.7 s, without the stream headers), then reports a refused handshake (a wrong
//! passphrase) only as "Connection does not exist" on a later write, the same text as for no
//! listener at all. libsrt's own blocking `srt_connect` returns when the listener accepted or
//! refused, with the reason (`SRT_REJ_BADSECRET`), which is exactly what `connect` must say.
//! Why not the pure-Rust `srt-tokio`: young, little used, interop reports against gosrt.
//!
//! Why `dlopen` and not a `-sys` crate: the runtime library is already on every machine that
//! has GStreamer's SRT elements (Debian's `libsrt1.5-gnutls`), its C API is stable, and
//! linking would need the `-dev` package and pkg-config at build time for seven functions.
//! Constants are those of `srt/srt.h` (1.4 and 1.5 agree).

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use libloading::Library;

pub type SrtSocket = c_int;
pub const SRT_INVALID_SOCK: SrtSocket = -1;
pub const SRT_ERROR: c_int = -1;

// SRT_SOCKOPT
pub const SRTO_SNDTIMEO: c_int = 13;
pub const SRTO_LINGER: c_int = 7;
pub const SRTO_SENDER: c_int = 21;
pub const SRTO_LATENCY: c_int = 23;
pub const SRTO_PASSPHRASE: c_int = 26;
pub const SRTO_PBKEYLEN: c_int = 27;
pub const SRTO_CONNTIMEO: c_int = 36;
pub const SRTO_STREAMID: c_int = 46;
pub const SRTO_TRANSTYPE: c_int = 50;
pub const SRTT_LIVE: c_int = 0;

// SRT_ERRNO
pub const SRT_ENOSERVER: c_int = 1001;
pub const SRT_ECONNREJ: c_int = 1002;
pub const SRT_ETIMEOUT: c_int = 6003;

// SRT_REJECT_REASON
pub const SRT_REJ_PEER: c_int = 2;
pub const SRT_REJ_BADSECRET: c_int = 10;
pub const SRT_REJ_UNSECURE: c_int = 11;
/// Reasons from here up are the listener's own (access control: 1401 unauthorized, 1403
/// forbidden, 1404 no such resource, …; `SRT_REJC_PREDEFINED`).
pub const SRT_REJC_PREDEFINED: c_int = 1000;

/// The library names distributions ship, newest ABI first.
const NAMES: [&str; 6] = [
    "libsrt-gnutls.so.1.5",
    "libsrt.so.1.5",
    "libsrt-openssl.so.1.5",
    "libsrt-gnutls.so.1.4",
    "libsrt.so.1.4",
    "libsrt-openssl.so.1.4",
];

#[repr(C)]
pub struct Linger {
    pub l_onoff: c_int,
    pub l_linger: c_int,
}

type StartupFn = unsafe extern "C" fn() -> c_int;
type CreateSocketFn = unsafe extern "C" fn() -> SrtSocket;
type SetSockFlagFn = unsafe extern "C" fn(SrtSocket, c_int, *const c_void, c_int) -> c_int;
type ConnectFn = unsafe extern "C" fn(SrtSocket, *const libc::sockaddr, c_int) -> c_int;
type SendMsg2Fn = unsafe extern "C" fn(SrtSocket, *const c_char, c_int, *mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(SrtSocket) -> c_int;
type GetLastErrorFn = unsafe extern "C" fn(*mut c_int) -> c_int;
type GetLastErrorStrFn = unsafe extern "C" fn() -> *const c_char;
type GetRejectReasonFn = unsafe extern "C" fn(SrtSocket) -> c_int;
type RejectReasonStrFn = unsafe extern "C" fn(c_int) -> *const c_char;

/// The functions, resolved once; the library stays loaded for the life of the process.
pub struct Srt {
    pub create_socket: CreateSocketFn,
    pub setsockflag: SetSockFlagFn,
    pub connect: ConnectFn,
    pub sendmsg2: SendMsg2Fn,
    pub close: CloseFn,
    getlasterror: GetLastErrorFn,
    getlasterror_str: GetLastErrorStrFn,
    pub getrejectreason: GetRejectReasonFn,
    rejectreason_str: RejectReasonStrFn,
    _lib: Library,
}

static SRT: OnceLock<Result<Srt, String>> = OnceLock::new();

/// libsrt, loaded and started on first use.
pub fn srt() -> Result<&'static Srt, String> {
    SRT.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Srt, String> {
    let mut errors = Vec::new();
    for name in NAMES {
        // SAFETY: loading libsrt runs its initialisers, which have no preconditions.
        match unsafe { Library::new(name) } {
            Ok(lib) => return resolve(lib).map_err(|e| format!("{name}: {e}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(format!(
        "libsrt is not installed (apt-get install libsrt1.5-gnutls): {}",
        errors.join("; ")
    ))
}

fn resolve(lib: Library) -> Result<Srt, libloading::Error> {
    // SAFETY: the symbols have these C signatures in every libsrt 1.4/1.5 (srt/srt.h); the
    // function pointers stay valid because the library is kept in the struct forever.
    unsafe {
        let startup: StartupFn = *lib.get(b"srt_startup\0")?;
        let srt = Srt {
            create_socket: *lib.get(b"srt_create_socket\0")?,
            setsockflag: *lib.get(b"srt_setsockflag\0")?,
            connect: *lib.get(b"srt_connect\0")?,
            sendmsg2: *lib.get(b"srt_sendmsg2\0")?,
            close: *lib.get(b"srt_close\0")?,
            getlasterror: *lib.get(b"srt_getlasterror\0")?,
            getlasterror_str: *lib.get(b"srt_getlasterror_str\0")?,
            getrejectreason: *lib.get(b"srt_getrejectreason\0")?,
            rejectreason_str: *lib.get(b"srt_rejectreason_str\0")?,
            _lib: lib,
        };
        // Starts libsrt's threads; idempotent (reference counted), never undone.
        startup();
        Ok(srt)
    }
}

impl Srt {
    /// This thread's last error: code and text.
    pub fn last_error(&self) -> (c_int, String) {
        // SAFETY: null is allowed for the errno out-pointer; the string is libsrt's
        // thread-local buffer, copied at once.
        unsafe {
            let code = (self.getlasterror)(std::ptr::null_mut());
            (code, text((self.getlasterror_str)()))
        }
    }

    pub fn reject_reason_text(&self, reason: c_int) -> String {
        // SAFETY: returns a static string for any value.
        unsafe { text((self.rejectreason_str)(reason)) }
    }
}

/// # Safety
/// `p` is null or a NUL-terminated string.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

//! One SRT publish in caller mode, on blocking libsrt calls (made on the session's worker
//! thread, never on the host's executor): `srt_connect` returns once the listener accepted
//! (or refused, with a reason), `srt_sendmsg2` sends one ≤ 1316-byte payload (7 TS packets)
//! and blocks at most `send_timeout` when the sender buffer is full.

use std::ffi::{CString, c_int, c_void};
use std::mem::size_of;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use egress_plugin_api::{SinkError, log};

use crate::libsrt::{self, Linger, Srt, SrtSocket};
use crate::target::Target;

/// One SRT live payload: 7 TS packets (libsrt's default and maximum for MPEG-TS in live mode).
const PAYLOAD: usize = 1316;

/// How long `close` lets the sender buffer drain (`SRTO_LINGER`, whole seconds).
const LINGER_SECS: c_int = 1;

/// Timeouts of a session.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub send: Duration,
}

/// A connected caller socket.
pub struct Conn {
    srt: &'static Srt,
    sock: SrtSocket,
    target: Target,
    sent: u64,
}

fn ms(d: Duration) -> c_int {
    c_int::try_from(d.as_millis()).unwrap_or(c_int::MAX)
}

impl Conn {
    /// Blocking: resolve, connect, and return once the listener accepted.
    pub fn connect(target: Target, timeouts: Timeouts) -> Result<Conn, SinkError> {
        let srt = libsrt::srt().map_err(SinkError::permanent)?;
        if !target.ignored.is_empty() {
            log::warn(format!(
                "srt: {target}: query parameters not applied: {}",
                target.ignored.join(", ")
            ));
        }
        let addr = resolve(&target)?;
        let started = Instant::now();
        // SAFETY: no preconditions; a negative result is an error.
        let sock = unsafe { (srt.create_socket)() };
        if sock == libsrt::SRT_INVALID_SOCK {
            let (_, text) = srt.last_error();
            return Err(SinkError::retryable(format!(
                "srt: cannot create a socket: {text}"
            )));
        }
        let mut conn = Conn {
            srt,
            sock,
            target,
            sent: 0,
        };
        conn.configure(timeouts)?;
        let (storage, len) = sockaddr(addr);
        // SAFETY: `storage` holds a sockaddr_in or sockaddr_in6 of `len` bytes.
        let status =
            unsafe { (srt.connect)(sock, (&raw const storage).cast::<libc::sockaddr>(), len) };
        if status == libsrt::SRT_ERROR {
            return Err(conn.connect_error(started.elapsed()));
        }
        log::debug(format!(
            "srt: connected to {} in {} ms",
            conn.target,
            started.elapsed().as_millis()
        ));
        Ok(conn)
    }

    fn set_int(&self, opt: c_int, value: c_int, name: &str) -> Result<(), SinkError> {
        // SAFETY: `value` is a c_int that outlives the call, its size given.
        let status = unsafe {
            (self.srt.setsockflag)(
                self.sock,
                opt,
                (&raw const value).cast::<c_void>(),
                size_of::<c_int>() as c_int,
            )
        };
        self.check_option(status, name)
    }

    fn set_str(&self, opt: c_int, value: &str, name: &str) -> Result<(), SinkError> {
        let c = CString::new(value)
            .map_err(|_| SinkError::config_field("url", format!("{name} contains a NUL byte")))?;
        let len = c_int::try_from(value.len()).unwrap_or(c_int::MAX);
        // SAFETY: `c` holds `len` bytes (plus NUL) and outlives the call.
        let status =
            unsafe { (self.srt.setsockflag)(self.sock, opt, c.as_ptr().cast::<c_void>(), len) };
        self.check_option(status, name)
    }

    fn check_option(&self, status: c_int, name: &str) -> Result<(), SinkError> {
        if status == libsrt::SRT_ERROR {
            let (_, text) = self.srt.last_error();
            // libsrt refused a value we pass from the URL: the URL is wrong.
            return Err(SinkError::config_field(
                "url",
                format!("srt {name}: {text}"),
            ));
        }
        Ok(())
    }

    fn configure(&mut self, timeouts: Timeouts) -> Result<(), SinkError> {
        self.set_int(libsrt::SRTO_TRANSTYPE, libsrt::SRTT_LIVE, "transtype")?;
        self.set_int(libsrt::SRTO_SENDER, 1, "sender")?;
        self.set_int(
            libsrt::SRTO_CONNTIMEO,
            ms(timeouts.connect),
            "connect timeout",
        )?;
        self.set_int(libsrt::SRTO_SNDTIMEO, ms(timeouts.send), "send timeout")?;
        let linger = Linger {
            l_onoff: 1,
            l_linger: LINGER_SECS,
        };
        // SAFETY: `linger` outlives the call, its size given.
        let status = unsafe {
            (self.srt.setsockflag)(
                self.sock,
                libsrt::SRTO_LINGER,
                (&raw const linger).cast::<c_void>(),
                size_of::<Linger>() as c_int,
            )
        };
        self.check_option(status, "linger")?;
        if let Some(ms) = self.target.latency_ms {
            self.set_int(
                libsrt::SRTO_LATENCY,
                c_int::try_from(ms).unwrap_or(c_int::MAX),
                "latency",
            )?;
        }
        if let Some(p) = self.target.passphrase.clone() {
            self.set_str(libsrt::SRTO_PASSPHRASE, &p, "passphrase")?;
        }
        if let Some(k) = self.target.pbkeylen {
            self.set_int(libsrt::SRTO_PBKEYLEN, k, "pbkeylen")?;
        }
        if let Some(id) = self.target.streamid.clone() {
            self.set_str(libsrt::SRTO_STREAMID, &id, "streamid")?;
        }
        Ok(())
    }

    /// Why `srt_connect` failed, classified: a refusal for a secret or access reason is auth,
    /// no answer is retryable, a refusal for protocol reasons is permanent.
    fn connect_error(&self, elapsed: Duration) -> SinkError {
        let (code, text) = self.srt.last_error();
        let target = &self.target;
        if code == libsrt::SRT_ECONNREJ {
            // SAFETY: a socket that failed to connect still answers this.
            let reason = unsafe { (self.srt.getrejectreason)(self.sock) };
            let why = self.srt.reject_reason_text(reason);
            let message = format!(
                "{target} refused the connection after {} ms: {why} (reason {reason})",
                elapsed.as_millis()
            );
            return match reason {
                libsrt::SRT_REJ_BADSECRET | libsrt::SRT_REJ_UNSECURE => {
                    SinkError::auth(format!("{message}: is the passphrase right?"))
                }
                // An explicit no in one round trip: what a gosrt listener (mediamtx) answers
                // to a wrong passphrase or a streamid it does not take.
                libsrt::SRT_REJ_PEER => {
                    SinkError::auth(format!("{message}: is the passphrase or streamid right?"))
                }
                r if r >= libsrt::SRT_REJC_PREDEFINED => {
                    SinkError::auth(format!("{message}: is the streamid right?"))
                }
                // Rogue handshake, IPE, version, rendezvous cookie, message API, congestion
                // control, filter, group: we and the listener do not speak the same SRT.
                4 | 6 | 8 | 9 | 12..=15 => SinkError::permanent(message),
                // Timeout, resources, backlog, closing, unknown: a busy or restarting
                // listener; the next attempt may work.
                _ => SinkError::retryable(message),
            };
        }
        if code == libsrt::SRT_ENOSERVER {
            return SinkError::retryable(format!(
                "no answer from {target} within {} ms: {text}",
                elapsed.as_millis()
            ));
        }
        SinkError::retryable(format!("connecting to {target}: {text} ({code})"))
    }

    /// Blocking: send TS packets, one SRT payload of up to 7 packets at a time.
    pub fn send(&mut self, data: &[u8]) -> Result<(), SinkError> {
        for piece in data.chunks(PAYLOAD) {
            let len = c_int::try_from(piece.len()).unwrap_or(c_int::MAX);
            // SAFETY: `piece` is `len` readable bytes; a null message control is allowed.
            let n = unsafe {
                (self.srt.sendmsg2)(self.sock, piece.as_ptr().cast(), len, std::ptr::null_mut())
            };
            if n == libsrt::SRT_ERROR {
                let (code, text) = self.srt.last_error();
                let target = &self.target;
                return Err(if code == libsrt::SRT_ETIMEOUT {
                    SinkError::retryable(format!("sending to {target}: timed out ({text})"))
                } else {
                    // Connection lost or broken: the listener went away or kicked us.
                    SinkError::retryable(format!("sending to {target}: {text} ({code})"))
                });
            }
            self.sent += piece.len() as u64;
        }
        Ok(())
    }

    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// Blocking, at most [`LINGER_SECS`]: close after the sender buffer drained.
    pub fn close(mut self) {
        self.close_socket();
    }

    fn close_socket(&mut self) {
        if self.sock != libsrt::SRT_INVALID_SOCK {
            // SAFETY: a socket of ours, closed once.
            unsafe { (self.srt.close)(self.sock) };
            self.sock = libsrt::SRT_INVALID_SOCK;
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.sock != libsrt::SRT_INVALID_SOCK {
            // Dropped, not closed: do not wait for the buffer to drain.
            let linger = Linger {
                l_onoff: 0,
                l_linger: 0,
            };
            // SAFETY: as in `configure`.
            unsafe {
                (self.srt.setsockflag)(
                    self.sock,
                    libsrt::SRTO_LINGER,
                    (&raw const linger).cast::<c_void>(),
                    size_of::<Linger>() as c_int,
                )
            };
        }
        self.close_socket();
    }
}

/// A name that does not exist is permanent; a resolver that does not answer is not.
fn resolve(target: &Target) -> Result<SocketAddr, SinkError> {
    match (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(SinkError::permanent(format!(
            "{target}: the host has no address"
        ))),
        Err(e) if e.to_string().contains("Temporary failure") => {
            Err(SinkError::retryable(format!("resolving {target}: {e}")))
        }
        Err(e) => Err(SinkError::permanent(format!("resolving {target}: {e}"))),
    }
}

/// `addr` as a C socket address and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, c_int) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as c_int)
}

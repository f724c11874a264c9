//! How requests leave the plugin: a small blocking HTTP client natively (ureq, rustls), the
//! host's `egress:plugin/http` import in WASM. The upload logic above does not know which.

use std::time::Duration;

#[cfg(not(target_family = "wasm"))]
mod native;
#[cfg(target_family = "wasm")]
mod wasm;

#[cfg(not(target_family = "wasm"))]
pub use native::NativeTransport as DefaultTransport;
#[cfg(target_family = "wasm")]
pub use wasm::HostTransport as DefaultTransport;

pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub timeout: Duration,
}

pub struct Response {
    pub status: u16,
    /// The start of the body, for error messages.
    pub snippet: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("connection failed: {0}")]
    Connection(String),
    /// The WASM host refused the destination (not in `allowed_hosts`).
    #[error("denied by the host: {0}")]
    Denied(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl TransportError {
    /// Worth another attempt: the network or the server may recover.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TransportError::Timeout(_) | TransportError::Connection(_)
        )
    }
}

/// Sends one request and waits for the response. Blocking: it runs on the object's worker
/// thread natively, inline in WASM.
pub trait Transport: Send + 'static {
    fn send(&mut self, request: Request<'_>) -> Result<Response, TransportError>;
}

/// At most this much of a response body is kept (for error messages).
pub const SNIPPET: usize = 512;

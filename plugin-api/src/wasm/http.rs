//! Outbound HTTP for WASM plugins, through the host's `egress:plugin/http` import.
//!
//! This is the only network a WASM plugin has: the host checks every URL against the hosts the
//! operator allowed for this plugin, follows no redirects and caps response bodies.

use std::fmt;
use std::time::Duration;

use super::bindings::egress::plugin::http as host;

/// One HTTP request; the body is sent as is (with `Content-Length`). Borrowed, so that a large
/// body is handed to the host without a copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// Whole-request timeout; zero means the host default.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why the host could not complete the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Not in the plugin's `allowed_hosts`, or not http(s).
    Denied(String),
    Timeout(String),
    /// DNS, connect, TLS or I/O failure.
    Connection(String),
    InvalidRequest(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "denied by the host: {m}"),
            HttpError::Timeout(m) => write!(f, "timed out: {m}"),
            HttpError::Connection(m) => write!(f, "connection failed: {m}"),
            HttpError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Send `request` through the host and wait for the whole response.
pub fn send(request: Request<'_>) -> Result<Response, HttpError> {
    let timeout_ms = u32::try_from(request.timeout.as_millis()).unwrap_or(u32::MAX);
    let req = host::Request {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
        timeout_ms,
    };
    match host::send(req) {
        Ok(r) => Ok(Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }),
        Err(host::Error::Denied(m)) => Err(HttpError::Denied(m)),
        Err(host::Error::Timeout(m)) => Err(HttpError::Timeout(m)),
        Err(host::Error::Connection(m)) => Err(HttpError::Connection(m)),
        Err(host::Error::InvalidRequest(m)) => Err(HttpError::InvalidRequest(m)),
    }
}

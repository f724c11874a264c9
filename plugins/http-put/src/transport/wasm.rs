//! The WASM transport: the host's HTTP import, which enforces the plugin's `allowed_hosts`.

use egress_plugin_api::wasm::http::{self, HttpError};

use super::{Request, Response, SNIPPET, Transport, TransportError};

#[derive(Clone, Default)]
pub struct HostTransport;

impl HostTransport {
    pub fn new(_timeout: std::time::Duration) -> Self {
        HostTransport
    }
}

impl Transport for HostTransport {
    fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
        let response = http::send(http::Request {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            timeout: req.timeout,
        })
        .map_err(|e| match e {
            HttpError::Denied(m) => TransportError::Denied(m),
            HttpError::Timeout(m) => TransportError::Timeout(m),
            HttpError::Connection(m) => TransportError::Connection(m),
            HttpError::InvalidRequest(m) => TransportError::Invalid(m),
        })?;
        let end = response.body.len().min(SNIPPET);
        Ok(Response {
            status: response.status,
            snippet: String::from_utf8_lossy(&response.body[..end]).into_owned(),
        })
    }
}

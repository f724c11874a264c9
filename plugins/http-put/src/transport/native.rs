//! The native transport: ureq with rustls, no redirects, statuses returned (not errors).

use std::io::Read;
use std::time::Duration;

use super::{Request, Response, SNIPPET, Transport, TransportError};

#[derive(Clone)]
pub struct NativeTransport {
    agent: ureq::Agent,
}

impl NativeTransport {
    /// Builds the client; no I/O happens until the first request.
    pub fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // We classify statuses ourselves, and a redirect could leave the configured server.
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!(
                "egress-plugin-http-put/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .into();
        NativeTransport { agent }
    }
}

impl Transport for NativeTransport {
    fn send(&mut self, req: Request<'_>) -> Result<Response, TransportError> {
        let mut builder = ureq::http::Request::builder()
            .method(req.method)
            .uri(req.url);
        for (name, value) in req.headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(req.body)
            .map_err(|e| TransportError::Invalid(e.to_string()))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(req.timeout))
            .build();
        let mut response = self.agent.run(request).map_err(map_error)?;
        let status = response.status().as_u16();
        let mut snippet = Vec::new();
        // The body only feeds error messages; a read failure there is not worth reporting.
        let _ = response
            .body_mut()
            .as_reader()
            .take(SNIPPET as u64)
            .read_to_end(&mut snippet);
        Ok(Response {
            status,
            snippet: String::from_utf8_lossy(&snippet).into_owned(),
        })
    }
}

fn map_error(e: ureq::Error) -> TransportError {
    use ureq::Error as E;
    match e {
        E::Timeout(t) => TransportError::Timeout(t.to_string()),
        E::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            TransportError::Timeout(io.to_string())
        }
        E::Io(io) => TransportError::Connection(io.to_string()),
        E::HostNotFound | E::ConnectionFailed | E::Protocol(_) => {
            TransportError::Connection(e.to_string())
        }
        E::Tls(_) | E::Rustls(_) | E::Pem(_) => TransportError::Tls(e.to_string()),
        E::BadUri(_) | E::Http(_) | E::InvalidProxyUrl => TransportError::Invalid(e.to_string()),
        other => TransportError::Connection(other.to_string()),
    }
}

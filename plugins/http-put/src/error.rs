//! Upload failures, and how each is classified for the host.

use egress_plugin_api::SinkError;

use crate::retry::status_is_retryable;
use crate::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum HttpPutError {
    #[error("{method} {url}{range} returned HTTP {status} after {attempts} attempt(s){detail}")]
    Status {
        method: &'static str,
        url: String,
        range: String,
        status: u16,
        attempts: u32,
        detail: String,
    },
    #[error("{method} {url}{range} failed after {attempts} attempt(s): {source}")]
    Transport {
        method: &'static str,
        url: String,
        range: String,
        attempts: u32,
        #[source]
        source: TransportError,
    },
    #[error("cannot start the upload worker thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the upload worker thread stopped")]
    WorkerGone,
}

impl From<HttpPutError> for SinkError {
    fn from(e: HttpPutError) -> Self {
        let message = e.to_string();
        let classified = match &e {
            HttpPutError::Status {
                status: 401 | 403, ..
            } => SinkError::auth(message),
            HttpPutError::Status { status, .. } if status_is_retryable(*status) => {
                SinkError::retryable(message)
            }
            HttpPutError::Status { .. } => SinkError::permanent(message),
            HttpPutError::Transport { source, .. } => match source {
                TransportError::Timeout(_) | TransportError::Connection(_) => {
                    SinkError::retryable(message)
                }
                // The operator must allow the host: a permission problem, not a broken plugin.
                TransportError::Denied(_) => SinkError::auth(message),
                TransportError::Tls(_) | TransportError::Invalid(_) => {
                    SinkError::permanent(message)
                }
            },
            HttpPutError::Thread(_) | HttpPutError::WorkerGone => SinkError::permanent(message),
        };
        classified.with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> SinkError {
        HttpPutError::Status {
            method: "PUT",
            url: "http://x/k".into(),
            range: String::new(),
            status,
            attempts: 1,
            detail: String::new(),
        }
        .into()
    }

    #[test]
    fn classification() {
        assert!(status(401).is_auth());
        assert!(status(403).is_auth());
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(status(400).is_permanent());
        assert!(status(404).is_permanent());
        let t = |source| -> SinkError {
            HttpPutError::Transport {
                method: "PUT",
                url: "u".into(),
                range: String::new(),
                attempts: 3,
                source,
            }
            .into()
        };
        assert!(t(TransportError::Timeout("t".into())).is_retryable());
        assert!(t(TransportError::Connection("c".into())).is_retryable());
        assert!(t(TransportError::Denied("d".into())).is_auth());
        assert!(t(TransportError::Tls("x".into())).is_permanent());
    }
}

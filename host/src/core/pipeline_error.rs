//! What can go wrong while recording, with the Go egress's texts and psrpc codes (reference §7).
//!
//! Every failure ends up in `EgressInfo.error` / `error_code`, so the `Display` texts here are
//! user-visible and must match the Go egress (`pkg/errors/errors.go`).

use crate::rpc::{Code, RpcError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Request validation (`ErrInvalidInput`, `ErrNotSupported`, codec errors, …), already in
    /// the Go wording.
    #[error("{}", .0.message)]
    Request(RpcError),
    /// `ErrProcessFailed`: a helper process (pulse, xvfb) could not be started.
    #[error("failed to launch {process}: {reason}")]
    ProcessFailed {
        process: &'static str,
        reason: String,
    },
    /// `ChromeError`: Chrome did not start or its DevTools connection broke.
    #[error("{0}")]
    Chrome(String),
    /// `PageLoadError`.
    #[error("page load error: {0}")]
    PageLoad(String),
    /// `TemplateError`: the page shows a `div.error`.
    #[error("template error: {0}")]
    Template(String),
    /// `ErrGstPipelineError`: the GStreamer error text.
    #[error("{0}")]
    Gst(String),
    /// `ErrPipelineFrozen`: EOS did not drain in time.
    #[error("pipeline frozen")]
    Frozen,
    /// `ErrUploadFailed`: the finished file could not be delivered.
    #[error("{location} upload failed: {reason}")]
    Upload {
        location: &'static str,
        reason: String,
    },
    /// The primary and the backup storage both failed (Go's two-line text, code 400).
    #[error("primary: {primary}\nbackup: {backup}")]
    UploadBoth { primary: String, backup: String },
    /// A stop with an error (CPU/OOM kill, shutdown), already worded by the service.
    #[error("{0}")]
    Killed(String),
}

impl PipelineError {
    pub fn code(&self) -> Code {
        match self {
            PipelineError::Request(e) => e.code,
            PipelineError::PageLoad(_)
            | PipelineError::Template(_)
            | PipelineError::Upload { .. }
            | PipelineError::UploadBoth { .. } => Code::InvalidArgument,
            // KillEgress wraps its reason as PermissionDenied (reference §7).
            PipelineError::Killed(_) => Code::PermissionDenied,
            PipelineError::ProcessFailed { .. }
            | PipelineError::Chrome(_)
            | PipelineError::Gst(_)
            | PipelineError::Frozen => Code::Internal,
        }
    }

    /// The HTTP status psrpc maps the code to (`psrpc.Error.ToHttp`), for `error_code`.
    pub fn http_status(&self) -> i32 {
        http_status(self.code())
    }

    pub fn into_rpc(self) -> RpcError {
        match self {
            PipelineError::Request(e) => e,
            other => RpcError::new(other.code(), other.to_string()),
        }
    }
}

impl From<RpcError> for PipelineError {
    fn from(e: RpcError) -> Self {
        PipelineError::Request(e)
    }
}

/// psrpc's code → HTTP status table.
pub fn http_status(code: Code) -> i32 {
    match code {
        Code::Canceled => 499,
        Code::InvalidArgument | Code::MalformedRequest | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::NotAcceptable => 406,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::FailedPrecondition => 412,
        Code::UnprocessableEntity => 422,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable | Code::UpstreamServerError | Code::UpstreamClientError => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss | Code::MalformedResult => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_codes_match_the_go_egress() {
        let e = PipelineError::PageLoad("timed out".into());
        assert_eq!(e.to_string(), "page load error: timed out");
        assert_eq!(e.http_status(), 400);
        let e = PipelineError::Template("could not connect".into());
        assert_eq!(e.to_string(), "template error: could not connect");
        assert_eq!(PipelineError::Frozen.to_string(), "pipeline frozen");
        assert_eq!(PipelineError::Frozen.http_status(), 500);
        let e = PipelineError::ProcessFailed {
            process: "xvfb",
            reason: "no such file".into(),
        };
        assert_eq!(e.to_string(), "failed to launch xvfb: no such file");
        let e = PipelineError::Upload {
            location: "Local",
            reason: "disk full".into(),
        };
        assert_eq!(e.to_string(), "Local upload failed: disk full");
        assert_eq!(
            PipelineError::Killed("CPU exhausted: 3.00 cores used".into()).http_status(),
            403
        );
    }
}

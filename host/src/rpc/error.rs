//! psrpc errors as they cross the wire: a lowercase code string plus a message (spec §1.7).

use std::fmt;

/// psrpc error codes. The wire form is the lowercase string; unknown strings map to `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Canceled,
    MalformedRequest,
    MalformedResult,
    DeadlineExceeded,
    Unavailable,
    Unknown,
    InvalidArgument,
    NotFound,
    NotAcceptable,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    DataLoss,
    Unauthenticated,
    UnprocessableEntity,
    UpstreamServerError,
    UpstreamClientError,
}

impl Code {
    pub const ALL: [Code; 22] = [
        Code::Canceled,
        Code::MalformedRequest,
        Code::MalformedResult,
        Code::DeadlineExceeded,
        Code::Unavailable,
        Code::Unknown,
        Code::InvalidArgument,
        Code::NotFound,
        Code::NotAcceptable,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::DataLoss,
        Code::Unauthenticated,
        Code::UnprocessableEntity,
        Code::UpstreamServerError,
        Code::UpstreamClientError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::MalformedRequest => "malformed_request",
            Code::MalformedResult => "malformed_result",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::Unavailable => "unavailable",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::NotAcceptable => "not_acceptable",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::DataLoss => "data_loss",
            Code::Unauthenticated => "unauthenticated",
            Code::UnprocessableEntity => "unprocessable_entity",
            Code::UpstreamServerError => "upstream_server_error",
            Code::UpstreamClientError => "upstream_client_error",
        }
    }

    /// Parses a wire code; an empty or unrecognised string is `Unknown` (as the Go client does).
    pub fn from_wire(s: &str) -> Code {
        Code::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(Code::Unknown)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error returned by a handler or received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    pub code: Code,
    pub message: String,
}

impl RpcError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        let message = message.into();
        // Go treats a response with an empty `error` as success: never send one.
        let message = if message.is_empty() {
            code.as_str().to_owned()
        } else {
            message
        };
        RpcError { code, message }
    }

    /// The client-side error when nobody bid for a request.
    pub fn no_response() -> Self {
        RpcError::new(Code::Unavailable, "no response from servers")
    }

    /// The client-side error when the response did not arrive in time.
    pub fn timed_out() -> Self {
        RpcError::new(Code::DeadlineExceeded, "request timed out")
    }

    pub fn is_unavailable(&self) -> bool {
        self.code == Code::Unavailable
    }

    pub fn is_timeout(&self) -> bool {
        self.code == Code::DeadlineExceeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in Code::ALL {
            assert_eq!(Code::from_wire(c.as_str()), c);
        }
        assert_eq!(Code::from_wire(""), Code::Unknown);
        assert_eq!(Code::from_wire("malformed_response"), Code::Unknown);
    }

    #[test]
    fn an_error_is_never_empty() {
        assert_eq!(RpcError::new(Code::Internal, "").message, "internal");
    }
}

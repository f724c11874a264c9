//! The Go egress's user-visible errors (reference §7), with the same psrpc codes and texts, so
//! that livekit-server's Twirp API answers exactly as it would for the Go service.

use crate::rpc::{Code, RpcError};

pub fn shutting_down() -> RpcError {
    RpcError::new(Code::Unavailable, "server is shutting down")
}

pub fn already_exists() -> RpcError {
    RpcError::new(Code::AlreadyExists, "egress already exists")
}

pub fn not_enough_cpu() -> RpcError {
    RpcError::new(Code::Unavailable, "not enough CPU")
}

pub fn egress_not_found() -> RpcError {
    RpcError::new(Code::NotFound, "egress not found")
}

/// `ErrInvalidInput(field)`.
pub fn invalid_input(field: &str) -> RpcError {
    RpcError::new(
        Code::InvalidArgument,
        format!("request has missing or invalid field: {field}"),
    )
}

/// `ErrNotSupported(feature)`.
pub fn not_supported(feature: &str) -> RpcError {
    RpcError::new(
        Code::InvalidArgument,
        format!("{feature} is not yet supported"),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn texts_match_the_go_egress() {
        assert_eq!(super::not_enough_cpu().message, "not enough CPU");
        assert_eq!(
            super::invalid_input("request").message,
            "request has missing or invalid field: request"
        );
        assert_eq!(
            super::not_supported("web egress").message,
            "web egress is not yet supported"
        );
    }
}

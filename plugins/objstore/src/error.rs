//! What can go wrong uploading an object, and how each failure is classified for the host.
//!
//! object_store has already retried what is worth retrying (5xx, 429, 408, connection failures
//! and timeouts, with jittered exponential backoff) by the time an error reaches us, so a
//! transient failure here means the retry budget is spent: *retryable* tells the host that the
//! whole object may still succeed later. 4xx answers are not retried by object_store (except
//! 429 and 408) and are permanent, auth or config problems.

use std::error::Error as StdError;
use std::io;

use egress_plugin_api::SinkError;
use object_store::client::{HttpError, HttpErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot start the {sink} sink's runtime: {source}")]
    Runtime {
        sink: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the {sink} sink's upload task stopped unexpectedly")]
    TaskGone { sink: &'static str },
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("{op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{key}: the store holds {stored} bytes after the upload, but {written} were written")]
    SizeMismatch {
        key: String,
        stored: u64,
        written: u64,
    },
    #[error("{key}: the object disappeared right after its upload completed")]
    Vanished { key: String },
    #[error("{key}: an earlier write failed; the object can only be aborted")]
    Failed { key: String },
}

impl StoreError {
    pub fn store(op: &'static str, key: &str, source: object_store::Error) -> Self {
        StoreError::Store {
            op,
            key: key.to_string(),
            source,
        }
    }
}

/// The host's four error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Retryable,
    Permanent,
    Auth,
    Config,
}

impl From<StoreError> for SinkError {
    fn from(e: StoreError) -> Self {
        let class = match &e {
            StoreError::Runtime { .. } => Class::Retryable,
            StoreError::Store { source, .. } => classify(source),
            StoreError::TaskGone { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::SizeMismatch { .. }
            | StoreError::Vanished { .. }
            | StoreError::Failed { .. } => Class::Permanent,
        };
        let message = e.to_string();
        let error = match class {
            Class::Retryable => SinkError::retryable(message),
            Class::Permanent => SinkError::permanent(message),
            Class::Auth => SinkError::auth(message),
            Class::Config => SinkError::config(message),
        };
        error.with_source(e)
    }
}

/// Response codes that mean "these credentials are wrong", whatever the status says (S3 answers
/// some of them with 400).
const AUTH_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthenticationFailed",
    "AuthorizationHeaderMalformed",
];

/// Sign-in failures: fetching a token (GCP, Azure, S3 Express) or instance credentials.
const CREDENTIAL_MARKERS: &[&str] = &[
    "token request",
    "CreateSession",
    "169.254.169.254",
    "169.254.170.2",
];

/// Classify an object_store error for the host.
pub fn classify(e: &object_store::Error) -> Class {
    use object_store::Error as E;
    match e {
        E::Unauthenticated { .. } | E::PermissionDenied { .. } => Class::Auth,
        // A missing bucket or container, or an upload id that no longer exists.
        E::NotFound { .. } => Class::Permanent,
        E::UnknownConfigurationKey { .. } => Class::Config,
        E::Generic { .. } => classify_generic(e),
        // Precondition, AlreadyExists, NotModified, InvalidPath, NotSupported, NotImplemented,
        // a panicked task, and whatever a newer object_store adds.
        _ => Class::Permanent,
    }
}

/// A `Generic` error wraps object_store's private retry error. Its text carries the HTTP status
/// (`Server returned non-2xx status code: 503 …`); a transport failure carries an `HttpError`.
fn classify_generic(e: &object_store::Error) -> Class {
    let text = e.to_string();
    if CREDENTIAL_MARKERS.iter().any(|m| text.contains(m)) {
        return Class::Auth;
    }
    if let Some(status) = http_status(&text) {
        return match status {
            401 | 403 => Class::Auth,
            _ if AUTH_CODES.iter().any(|c| text.contains(c)) => Class::Auth,
            408 | 429 | 500..=599 => Class::Retryable,
            _ => Class::Permanent,
        };
    }
    // A 2xx whose body says InternalError/SlowDown, retried until the budget ran out.
    if text.contains("Server returned error response") {
        return Class::Retryable;
    }
    match http_error_kind(e) {
        Some(
            HttpErrorKind::Connect
            | HttpErrorKind::Request
            | HttpErrorKind::Timeout
            | HttpErrorKind::Interrupted
            | HttpErrorKind::Decode,
        ) => Class::Retryable,
        // TLS failures, invalid requests: trying again will not help.
        Some(HttpErrorKind::Unknown) | Some(_) | None => Class::Permanent,
    }
}

/// The status in object_store's "non-2xx status code: NNN" text.
fn http_status(text: &str) -> Option<u16> {
    const MARKER: &str = "status code: ";
    let at = text.find(MARKER)? + MARKER.len();
    let digits = text.get(at..at + 3)?;
    digits.parse().ok().filter(|s| (100..600).contains(s))
}

fn http_error_kind(e: &object_store::Error) -> Option<HttpErrorKind> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Text(String);

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Text(text.to_string())),
        }
    }

    fn boxed(text: &str) -> Box<dyn StdError + Send + Sync> {
        Box::new(Text(text.to_string()))
    }

    #[test]
    fn typed_errors() {
        let path = || "b/k".to_string();
        assert_eq!(
            classify(&object_store::Error::PermissionDenied {
                path: path(),
                source: boxed("403")
            }),
            Class::Auth
        );
        assert_eq!(
            classify(&object_store::Error::Unauthenticated {
                path: path(),
                source: boxed("401")
            }),
            Class::Auth
        );
        assert_eq!(
            classify(&object_store::Error::NotFound {
                path: path(),
                source: boxed("NoSuchBucket")
            }),
            Class::Permanent
        );
        assert_eq!(
            classify(&object_store::Error::Precondition {
                path: path(),
                source: boxed("412")
            }),
            Class::Permanent
        );
        assert_eq!(
            classify(&object_store::Error::UnknownConfigurationKey {
                store: "S3",
                key: "x".into()
            }),
            Class::Config
        );
    }

    #[test]
    fn statuses_in_retry_errors() {
        let e = |s: &str| {
            generic(&format!(
                "Error performing PUT http://h/b/k in 3s, after 5 retries, max_retries: 5, \
                 retry_timeout: 30s  - Server returned non-2xx status code: {s}: <Error/>"
            ))
        };
        assert_eq!(classify(&e("503 Service Unavailable")), Class::Retryable);
        assert_eq!(classify(&e("500 Internal Server Error")), Class::Retryable);
        assert_eq!(classify(&e("429 Too Many Requests")), Class::Retryable);
        assert_eq!(classify(&e("400 Bad Request")), Class::Permanent);
        assert_eq!(classify(&e("403 Forbidden")), Class::Auth);
        assert_eq!(
            classify(&generic(
                "Server returned non-2xx status code: 400 Bad Request: \
                 <Code>ExpiredToken</Code>"
            )),
            Class::Auth
        );
        assert_eq!(
            classify(&generic("Server returned error response: InternalError")),
            Class::Retryable
        );
    }

    #[test]
    fn transport_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for (kind, class) in [
            (HttpErrorKind::Connect, Class::Retryable),
            (HttpErrorKind::Request, Class::Retryable),
            (HttpErrorKind::Timeout, Class::Retryable),
            (HttpErrorKind::Interrupted, Class::Retryable),
            (HttpErrorKind::Unknown, Class::Permanent),
        ] {
            let e = object_store::Error::Generic {
                store: "S3",
                source: Box::new(HttpError::new(
                    kind,
                    std::io::Error::new(io.kind(), "refused"),
                )),
            };
            assert_eq!(classify(&e), class, "{kind:?}");
        }
        assert_eq!(classify(&generic("bad XML")), Class::Permanent);
    }

    #[test]
    fn credential_fetch_failures_are_auth() {
        assert_eq!(
            classify(&generic(
                "Error performing token request: Error performing PUT \
                 http://169.254.169.254/latest/api/token"
            )),
            Class::Auth
        );
    }

    #[test]
    fn sink_errors_keep_the_class() {
        let e: SinkError = StoreError::store(
            "upload part of",
            "a/b.mp4",
            object_store::Error::PermissionDenied {
                path: "a/b.mp4".into(),
                source: boxed("denied"),
            },
        )
        .into();
        assert!(e.is_auth(), "{e}");
        assert!(e.message().contains("a/b.mp4"));
        let e: SinkError = StoreError::SizeMismatch {
            key: "k".into(),
            stored: 1,
            written: 2,
        }
        .into();
        assert!(e.is_permanent());
    }
}

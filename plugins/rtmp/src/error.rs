//! How transport failures become classified [`SinkError`]s (the table in the plugin API's
//! `LiveFactory` docs): the host's reconnect policy acts on the class.

use std::io;

use egress_plugin_api::SinkError;

/// Which step failed: the same I/O error means different things in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Connect,
    Tls,
    /// The RTMP handshake (C0-C2/S0-S2).
    Handshake,
    /// `connect` to the application sent, its `_result` awaited.
    App,
    /// `publish` sent, `NetStream.Publish.Start` awaited.
    Publish,
    /// Publishing.
    Stream,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Resolve => "resolving the host",
            Phase::Connect => "connecting",
            Phase::Tls => "TLS handshake",
            Phase::Handshake => "RTMP handshake",
            Phase::App => "connecting to the application",
            Phase::Publish => "publishing",
            Phase::Stream => "sending",
        }
    }
}

/// A failed I/O call during `phase`.
pub fn io_error(phase: Phase, e: io::Error) -> SinkError {
    let context = phase.label();
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        // The next attempt meets the same certificate (or the same non-TLS server).
        return SinkError::permanent(format!("{context}: TLS: {tls}"));
    }
    if phase == Phase::Resolve {
        // getaddrinfo's EAI_AGAIN ("Temporary failure in name resolution") is the resolver
        // not answering; anything else (EAI_NONAME, "Name or service not known") means the
        // name does not exist, which a retry will not change.
        let text = e.to_string();
        return if text.contains("Temporary failure") || text.contains("try again") {
            SinkError::retryable(format!("{context}: {text}"))
        } else {
            SinkError::permanent(format!("{context}: {text}"))
        };
    }
    // A server that refuses an application or a stream key hangs up (the kernel may turn
    // that into a reset, our command being unread).
    if matches!(phase, Phase::App | Phase::Publish)
        && matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        )
    {
        return closed_by_server(phase);
    }
    SinkError::retryable(format!("{context}: {e}"))
}

/// The server hung up after `publish`: what YouTube, Twitch and most servers do with a bad
/// stream key (they send no status first).
pub fn publish_closed() -> SinkError {
    SinkError::auth(
        "the server closed the connection when asked to publish: is the stream key right (or the stream already live elsewhere)?",
    )
}

/// The server closed the connection: while asked for the application or the stream key,
/// that is its answer (nginx-rtmp for an unknown application, YouTube and Twitch for a bad
/// key); later it was kicked or restarted.
pub fn closed_by_server(phase: Phase) -> SinkError {
    match phase {
        Phase::Publish => return publish_closed(),
        Phase::App => {
            return SinkError::auth(
                "the server closed the connection when asked for the application: is the URL's application right?",
            );
        }
        _ => {}
    }
    SinkError::retryable(format!(
        "{}: the server closed the connection",
        phase.label()
    ))
}

pub fn timeout(phase: Phase, after: std::time::Duration) -> SinkError {
    SinkError::retryable(format!(
        "{}: no answer within {} ms",
        phase.label(),
        after.as_millis()
    ))
}

/// An RTMP protocol error (malformed chunk, unexpected message): the server speaks something
/// we do not, so a retry would fail the same way.
pub fn protocol(phase: Phase, e: impl std::fmt::Display) -> SinkError {
    SinkError::permanent(format!("{}: RTMP protocol error: {e}", phase.label()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(io_error(Phase::Tls, tls).is_permanent());
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(io_error(Phase::Connect, refused).is_retryable());
        let nxdomain =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert!(io_error(Phase::Resolve, nxdomain).is_permanent());
        let again = io::Error::other(
            "failed to lookup address information: Temporary failure in name resolution",
        );
        assert!(io_error(Phase::Resolve, again).is_retryable());
        assert!(
            io_error(
                Phase::Publish,
                io::Error::from(io::ErrorKind::UnexpectedEof)
            )
            .is_auth()
        );
        assert!(closed_by_server(Phase::Stream).is_retryable());
        assert!(closed_by_server(Phase::Publish).is_auth());
        assert!(closed_by_server(Phase::App).is_auth());
        assert!(closed_by_server(Phase::Handshake).is_retryable());
        assert!(io_error(Phase::App, io::Error::from(io::ErrorKind::ConnectionReset)).is_auth());
    }
}

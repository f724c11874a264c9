//! Service ⇄ handler IPC: length-prefixed protobuf frames over a Unix socket.
//!
//! Each Chrome/GStreamer egress runs in its own `egress run-handler` child process so a crash
//! there cannot take the service or other egresses down. The handler connects to a socket the
//! service created in the egress's work directory, says `Ready`, then streams status updates;
//! the service sends it Stop, UpdateStream and Kill. Frames are a big-endian u32 length plus a
//! prost message, capped at [`MAX_FRAME`] so a confused peer cannot make us allocate gigabytes.

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use egress_proto::livekit::{EgressInfo, UpdateStreamRequest};

pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Handler → service.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandlerMsg {
    #[prost(oneof = "handler_msg::Kind", tags = "1, 2, 3, 4")]
    pub kind: Option<handler_msg::Kind>,
}

pub mod handler_msg {
    use super::*;

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// The handler is up and listening for control messages.
        #[prost(message, tag = "1")]
        Ready(super::Ready),
        /// A status change to forward to IOInfo.UpdateEgress (ACTIVE, ENDING, …).
        #[prost(message, tag = "2")]
        Update(EgressInfo),
        /// The final info (COMPLETE, FAILED, ABORTED, LIMIT_REACHED); the handler exits next.
        #[prost(message, tag = "3")]
        Finished(EgressInfo),
        /// The answer to an UpdateStream.
        #[prost(message, tag = "4")]
        UpdateStreamResult(super::UpdateStreamResult),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ready {
    #[prost(uint32, tag = "1")]
    pub pid: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateStreamResult {
    #[prost(message, optional, tag = "1")]
    pub info: Option<EgressInfo>,
    /// Empty on success; otherwise a psrpc error code and message.
    #[prost(string, tag = "2")]
    pub error_code: String,
    #[prost(string, tag = "3")]
    pub error: String,
}

/// Service → handler.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceMsg {
    #[prost(oneof = "service_msg::Kind", tags = "1, 2, 3")]
    pub kind: Option<service_msg::Kind>,
}

pub mod service_msg {
    use super::*;

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// Graceful stop: EOS, finalize outputs. `reason` goes into `details` ("StopEgress API").
        #[prost(message, tag = "1")]
        Stop(super::Stop),
        #[prost(message, tag = "2")]
        UpdateStream(UpdateStreamRequest),
        /// Stop and mark FAILED with this error (CPU/OOM kill, shutdown).
        #[prost(message, tag = "3")]
        Kill(super::Stop),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Stop {
    #[prost(string, tag = "1")]
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("ipc i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("ipc frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("ipc frame did not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

pub async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, msg: &impl Message) -> Result<(), IpcError> {
    let body = msg.encode_to_vec();
    if body.len() > MAX_FRAME {
        return Err(IpcError::TooLarge(body.len()));
    }
    w.write_u32(body.len() as u32).await?;
    w.write_all(&body).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin, M: Message + Default>(r: &mut R) -> Result<Option<M>, IpcError> {
    let len = match r.read_u32().await {
        Ok(n) => n as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if len > MAX_FRAME {
        return Err(IpcError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(M::decode(buf.as_slice())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let msg = HandlerMsg { kind: Some(handler_msg::Kind::Ready(Ready { pid: 42 })) };
        write_frame(&mut a, &msg).await.unwrap();
        let got: Option<HandlerMsg> = read_frame(&mut b).await.unwrap();
        assert_eq!(got, Some(msg));
        a.write_u32(u32::MAX).await.unwrap();
        assert!(matches!(read_frame::<_, HandlerMsg>(&mut b).await, Err(IpcError::TooLarge(_))));
        drop(a);
        assert!(matches!(read_frame::<_, HandlerMsg>(&mut b).await, Err(_) | Ok(None)));
    }
}

//! Service ⇄ handler IPC: length-prefixed protobuf frames over a Unix socket.
//!
//! Egresses run in `egress run-handler` child processes so a crash there cannot take the
//! service down: a Chrome/GStreamer egress has a process of its own, WebRTC track egresses share
//! one (see `crate::service::launcher`). The handler connects to a socket the service created, says `Ready`,
//! then the service sends it jobs (`Start`) and their Stop, UpdateStream and Kill; the handler
//! streams each job's status updates back. Every frame after `Ready` names its egress, so one
//! connection carries many egresses. Frames are a big-endian u32 length plus a prost message,
//! capped at [`MAX_FRAME`] so a confused peer cannot make us allocate gigabytes.

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use egress_proto::livekit::{EgressInfo, UpdateStreamRequest};
use egress_proto::rpc::StartEgressRequest;

use crate::outputs::stream::metrics::{DestinationSample, DestinationState};
use crate::outputs::upload_metrics::{OutputKind, OutputSample, UploadObject};
use crate::storage::report::{UploadReport, UploadStatus};

/// The environment variable that hands the handler the socket path.
pub const ENV_IPC: &str = "EGRESS_HANDLER_IPC";

pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Handler → service.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HandlerMsg {
    #[prost(oneof = "handler_msg::Kind", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub kind: Option<handler_msg::Kind>,
    /// The egress this frame is about (empty on `Ready` and `Upload`, which are about the
    /// process).
    #[prost(string, tag = "10")]
    pub egress_id: String,
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
        /// The final info (COMPLETE, FAILED, ABORTED, LIMIT_REACHED); nothing follows for this
        /// egress.
        #[prost(message, tag = "3")]
        Finished(EgressInfo),
        /// The answer to an UpdateStream.
        #[prost(message, tag = "4")]
        UpdateStreamResult(super::UpdateStreamResult),
        /// One object's upload outcome, counted in the service's metrics. Added after the
        /// first four: a peer that predates it decodes the frame with no kind and skips it.
        #[prost(message, tag = "5")]
        Upload(super::UploadOutcome),
        /// The egress's live stream destinations (bytes, reconnects, state), for the
        /// service's metrics; sent every second while it streams. Added after `Upload`, like it.
        #[prost(message, tag = "6")]
        StreamStats(super::StreamStats),
        /// The egress's segments and image outputs (queues, upload outcomes, playlist
        /// latencies), for the service's metrics; sent with `StreamStats`. Added after it.
        #[prost(message, tag = "7")]
        OutputStats(super::OutputStats),
    }
}

/// [`crate::outputs::stream::metrics::DestinationSample`]s on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamStats {
    #[prost(message, repeated, tag = "1")]
    pub destinations: Vec<DestinationStat>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DestinationStat {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// Redacted, as `StreamInfo.url`.
    #[prost(string, tag = "2")]
    pub url: String,
    /// The metric's state label (`publishing`, …).
    #[prost(string, tag = "3")]
    pub state: String,
    #[prost(uint64, tag = "4")]
    pub bytes_sent: u64,
    #[prost(uint64, tag = "5")]
    pub reconnects: u64,
}

impl From<Vec<DestinationSample>> for StreamStats {
    fn from(samples: Vec<DestinationSample>) -> Self {
        StreamStats {
            destinations: samples
                .into_iter()
                .map(|s| DestinationStat {
                    index: s.index,
                    url: s.url,
                    state: s.state.label().to_owned(),
                    bytes_sent: s.bytes_sent,
                    reconnects: s.reconnects,
                })
                .collect(),
        }
    }
}

impl StreamStats {
    /// The samples; one with a state this build does not know is left out.
    pub fn into_samples(self) -> Vec<DestinationSample> {
        self.destinations
            .into_iter()
            .filter_map(|d| {
                Some(DestinationSample {
                    index: d.index,
                    url: d.url,
                    state: DestinationState::from_label(&d.state)?,
                    bytes_sent: d.bytes_sent,
                    reconnects: d.reconnects,
                })
            })
            .collect()
    }
}

/// [`crate::outputs::upload_metrics::OutputSample`]s on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OutputStats {
    #[prost(message, repeated, tag = "1")]
    pub outputs: Vec<OutputStat>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OutputStat {
    /// The metric's output label (`segments`, `images`).
    #[prost(string, tag = "1")]
    pub output: String,
    #[prost(uint64, tag = "2")]
    pub segments_queue: u64,
    #[prost(uint64, tag = "3")]
    pub playlists_queue: u64,
    #[prost(message, repeated, tag = "4")]
    pub uploads: Vec<ObjectUploads>,
    /// Segment close → both playlists stored, in microseconds.
    #[prost(uint64, repeated, tag = "5")]
    pub playlist_latencies_us: Vec<u64>,
    #[prost(bool, tag = "6")]
    pub ended: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ObjectUploads {
    /// The metric's object label (`segment`, `playlist`, `image`).
    #[prost(string, tag = "1")]
    pub object: String,
    #[prost(uint64, tag = "2")]
    pub stored: u64,
    #[prost(uint64, tag = "3")]
    pub failed: u64,
}

impl From<Vec<OutputSample>> for OutputStats {
    fn from(samples: Vec<OutputSample>) -> Self {
        OutputStats {
            outputs: samples
                .into_iter()
                .map(|s| OutputStat {
                    output: s.output.map(|k| k.label()).unwrap_or_default().to_owned(),
                    segments_queue: s.segments_queue,
                    playlists_queue: s.playlists_queue,
                    uploads: s
                        .uploads
                        .into_iter()
                        .map(|(o, stored, failed)| ObjectUploads {
                            object: o.label().to_owned(),
                            stored,
                            failed,
                        })
                        .collect(),
                    playlist_latencies_us: s
                        .playlist_latencies
                        .iter()
                        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                        .collect(),
                    ended: s.ended,
                })
                .collect(),
        }
    }
}

impl OutputStats {
    /// The samples; an output or object this build does not know is left out.
    pub fn into_samples(self) -> Vec<OutputSample> {
        self.outputs
            .into_iter()
            .filter_map(|o| {
                Some(OutputSample {
                    output: Some(OutputKind::from_label(&o.output)?),
                    segments_queue: o.segments_queue,
                    playlists_queue: o.playlists_queue,
                    uploads: o
                        .uploads
                        .into_iter()
                        .filter_map(|u| {
                            Some((UploadObject::from_label(&u.object)?, u.stored, u.failed))
                        })
                        .collect(),
                    playlist_latencies: o
                        .playlist_latencies_us
                        .into_iter()
                        .map(std::time::Duration::from_micros)
                        .collect(),
                    ended: o.ended,
                })
            })
            .collect()
    }
}

/// [`crate::storage::report::UploadReport`] on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UploadOutcome {
    #[prost(string, tag = "1")]
    pub content_type: String,
    /// The metric's status label: `success`, `4xx`, `5xx` or `internal`.
    #[prost(string, tag = "2")]
    pub status: String,
    #[prost(bool, tag = "3")]
    pub custom_endpoint: bool,
    #[prost(bool, tag = "4")]
    pub backup: bool,
    /// [`crate::storage::report::UploadReport::response_time`], in microseconds.
    #[prost(uint64, optional, tag = "5")]
    pub response_time_us: Option<u64>,
}

impl From<UploadReport> for UploadOutcome {
    fn from(r: UploadReport) -> Self {
        UploadOutcome {
            content_type: r.content_type,
            status: r.status.label().to_owned(),
            custom_endpoint: r.custom_endpoint,
            backup: r.backup,
            response_time_us: r
                .response_time
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        }
    }
}

impl UploadOutcome {
    /// The report, or `None` for a status label this build does not know.
    pub fn into_report(self) -> Option<UploadReport> {
        Some(UploadReport {
            status: UploadStatus::from_label(&self.status)?,
            content_type: self.content_type,
            custom_endpoint: self.custom_endpoint,
            backup: self.backup,
            response_time: self.response_time_us.map(std::time::Duration::from_micros),
        })
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
    #[prost(oneof = "service_msg::Kind", tags = "1, 2, 3, 4")]
    pub kind: Option<service_msg::Kind>,
    /// The egress this frame is about.
    #[prost(string, tag = "10")]
    pub egress_id: String,
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
        /// Run this egress.
        #[prost(message, tag = "4")]
        Start(super::StartJob),
    }
}

/// One egress for a handler to run: the request, the STARTING info the service created, and
/// the egress's private work directory.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StartJob {
    #[prost(message, optional, tag = "1")]
    pub request: Option<StartEgressRequest>,
    #[prost(message, optional, tag = "2")]
    pub info: Option<EgressInfo>,
    #[prost(string, tag = "3")]
    pub work_dir: String,
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

pub async fn write_frame<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    msg: &impl Message,
) -> Result<(), IpcError> {
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
pub async fn read_frame<R: AsyncReadExt + Unpin, M: Message + Default>(
    r: &mut R,
) -> Result<Option<M>, IpcError> {
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
        let msg = HandlerMsg {
            kind: Some(handler_msg::Kind::Ready(Ready { pid: 42 })),
            egress_id: String::new(),
        };
        write_frame(&mut a, &msg).await.unwrap();
        let got: Option<HandlerMsg> = read_frame(&mut b).await.unwrap();
        assert_eq!(got, Some(msg));
        a.write_u32(u32::MAX).await.unwrap();
        assert!(matches!(
            read_frame::<_, HandlerMsg>(&mut b).await,
            Err(IpcError::TooLarge(_))
        ));
        drop(a);
        assert!(matches!(
            read_frame::<_, HandlerMsg>(&mut b).await,
            Err(_) | Ok(None)
        ));
    }

    #[test]
    fn upload_outcomes_round_trip_and_unknown_kinds_are_skipped() {
        let report = UploadReport {
            content_type: "video/mp4".into(),
            status: UploadStatus::ClientError,
            custom_endpoint: true,
            backup: false,
            response_time: Some(std::time::Duration::from_millis(1250)),
        };
        let msg = HandlerMsg {
            kind: Some(handler_msg::Kind::Upload(report.clone().into())),
            egress_id: String::new(),
        };
        let decoded = HandlerMsg::decode(msg.encode_to_vec().as_slice()).unwrap();
        match decoded.kind {
            Some(handler_msg::Kind::Upload(o)) => assert_eq!(o.into_report(), Some(report)),
            other => panic!("{other:?}"),
        }
        // Stream stats too.
        let samples = vec![DestinationSample {
            index: 2,
            url: "rtmp://h/live/{abc...xyz}".into(),
            state: DestinationState::Reconnecting,
            bytes_sent: 123_456,
            reconnects: 3,
        }];
        let msg = HandlerMsg {
            kind: Some(handler_msg::Kind::StreamStats(samples.clone().into())),
            egress_id: "EG_1".into(),
        };
        match HandlerMsg::decode(msg.encode_to_vec().as_slice())
            .unwrap()
            .kind
        {
            Some(handler_msg::Kind::StreamStats(s)) => assert_eq!(s.into_samples(), samples),
            other => panic!("{other:?}"),
        }
        // And the segments and image outputs' numbers.
        let outputs = vec![OutputSample {
            output: Some(OutputKind::Segments),
            segments_queue: 2,
            playlists_queue: 1,
            uploads: vec![
                (UploadObject::Segment, 7, 1),
                (UploadObject::Playlist, 14, 0),
            ],
            playlist_latencies: vec![std::time::Duration::from_millis(180)],
            ended: true,
        }];
        let msg = HandlerMsg {
            kind: Some(handler_msg::Kind::OutputStats(outputs.clone().into())),
            egress_id: "EG_1".into(),
        };
        match HandlerMsg::decode(msg.encode_to_vec().as_slice())
            .unwrap()
            .kind
        {
            Some(handler_msg::Kind::OutputStats(s)) => assert_eq!(s.into_samples(), outputs),
            other => panic!("{other:?}"),
        }
        // A kind from a newer peer (tag 9) decodes to no kind, which every reader skips.
        let mut newer = Vec::new();
        prost::encoding::message::encode(9, &Ready { pid: 1 }, &mut newer);
        assert_eq!(HandlerMsg::decode(newer.as_slice()).unwrap().kind, None);
        let bad = UploadOutcome {
            status: "2xx".into(),
            ..Default::default()
        };
        assert_eq!(bad.into_report(), None);
    }
}

//! One RTMP publish: connect (TCP, TLS for `rtmps`, RTMP handshake, `connect`, `publish`),
//! then a task on the plugin's runtime that owns the connection, sends each tag and answers
//! the server (acknowledgements, pings) until the session is closed or dropped.
//!
//! `rml_rtmp` is sans-IO: it turns commands and media into bytes and bytes into events, and
//! its chunk serializer compresses headers against what it serialized before. So every byte it
//! produces must reach the socket in the order produced, and every byte read must go back into
//! it: one task does both, and the caller's `send` is a request to that task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use egress_plugin_api::{LiveChunk, LiveSession, SinkError, async_trait, log};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

use crate::error::{self, Phase};
use crate::flv::{self, Tag};
use crate::target::Target;

/// What the session needs to know beyond the URL.
#[derive(Clone)]
pub struct Options {
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    /// The TLS client for `rtmps://` (built on first use by the factory).
    pub tls: Option<Arc<ClientConfig>>,
}

/// How long `close` may take to say goodbye (deleteStream, TLS close_notify).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Reader = ReadHalf<Box<dyn Io>>;
type Writer = WriteHalf<Box<dyn Io>>;

/// The writing side of a connection and the RTMP session state.
struct Link {
    writer: Writer,
    session: ClientSession,
    sent: Arc<AtomicU64>,
}

impl Link {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        // TLS buffers records: flush so that each tag leaves now, not with the next one.
        self.writer.flush().await?;
        self.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Write what the session produced, in order; return its events.
    async fn apply(
        &mut self,
        phase: Phase,
        results: Vec<ClientSessionResult>,
    ) -> Result<Vec<ClientSessionEvent>, SinkError> {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(packet) => self
                    .write(&packet.bytes)
                    .await
                    .map_err(|e| error::io_error(phase, e))?,
                ClientSessionResult::RaisedEvent(event) => events.push(event),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }

    /// Feed bytes read from the server to the session; answer it; return its events.
    async fn receive(
        &mut self,
        phase: Phase,
        bytes: &[u8],
    ) -> Result<Vec<ClientSessionEvent>, SinkError> {
        let results = self
            .session
            .handle_input(bytes)
            .map_err(|e| error::protocol(phase, e))?;
        self.apply(phase, results).await
    }

    async fn send_one(
        &mut self,
        result: Result<ClientSessionResult, rml_rtmp::sessions::ClientSessionError>,
    ) -> Result<(), SinkError> {
        let result = result.map_err(|e| error::protocol(Phase::Stream, e))?;
        self.apply(Phase::Stream, vec![result]).await.map(drop)
    }

    async fn publish(&mut self, media: Media) -> Result<(), SinkError> {
        match media {
            Media::Audio { timestamp, body } => {
                let r = self
                    .session
                    .publish_audio_data(body, RtmpTimestamp::new(timestamp), false);
                self.send_one(r).await
            }
            Media::Video { timestamp, body } => {
                let r = self
                    .session
                    .publish_video_data(body, RtmpTimestamp::new(timestamp), false);
                self.send_one(r).await
            }
            Media::Metadata(m) => {
                let r = self.session.publish_metadata(&m);
                self.send_one(r).await
            }
        }
    }

    async fn goodbye(&mut self) -> Result<(), SinkError> {
        let results = self
            .session
            .stop_publishing()
            .map_err(|e| error::protocol(Phase::Stream, e))?;
        self.apply(Phase::Stream, results).await?;
        self.writer
            .shutdown()
            .await
            .map_err(|e| error::io_error(Phase::Stream, e))
    }
}

/// A tag, parsed and owned, on its way to the connection task.
enum Media {
    Audio { timestamp: u32, body: Bytes },
    Video { timestamp: u32, body: Bytes },
    Metadata(StreamMetadata),
}

enum Command {
    Send(Media, oneshot::Sender<Result<(), SinkError>>),
    Close(oneshot::Sender<Result<(), SinkError>>),
}

/// Connect and publish to `target`; returns once the server said `NetStream.Publish.Start`.
pub async fn connect(target: Target, options: Options) -> Result<RtmpSession, SinkError> {
    let deadline = Instant::now() + options.connect_timeout;
    let started = std::time::Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let (mut reader, mut link) = establish(&target, &options, deadline, sent.clone()).await?;
    log::debug(format!(
        "rtmp: publishing to {target} after {} ms",
        started.elapsed().as_millis()
    ));
    let shared = Arc::new(Shared::default());
    let (tx, mut rx) = mpsc::channel::<Command>(1);
    let task_shared = shared.clone();
    let send_timeout = options.send_timeout;
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    // The session was dropped: release the connection at once.
                    None => return,
                    Some(Command::Send(media, reply)) => {
                        let result = match timeout(send_timeout, link.publish(media)).await {
                            Ok(r) => r,
                            Err(_) => Err(error::timeout(Phase::Stream, send_timeout)),
                        };
                        let failed = result.as_ref().err().map(copy_error);
                        let _ = reply.send(result);
                        if let Some(e) = failed {
                            task_shared.fail(e);
                            return;
                        }
                    }
                    Some(Command::Close(reply)) => {
                        let result = match timeout(CLOSE_TIMEOUT, link.goodbye()).await {
                            Ok(r) => r,
                            Err(_) => Err(error::timeout(Phase::Stream, CLOSE_TIMEOUT)),
                        };
                        let _ = reply.send(result);
                        return;
                    }
                },
                read = reader.read(&mut buf) => {
                    let failure = match read {
                        Ok(0) => Some(error::closed_by_server(Phase::Stream)),
                        Ok(n) => match link.receive(Phase::Stream, &buf[..n]).await {
                            Ok(events) => events.into_iter().find_map(stream_event_error),
                            Err(e) => Some(e),
                        },
                        Err(e) => Some(error::io_error(Phase::Stream, e)),
                    };
                    if let Some(e) = failure {
                        log::debug(format!("rtmp: {target}: {e}"));
                        task_shared.fail(e);
                        return;
                    }
                }
            }
        }
    });
    Ok(RtmpSession {
        tx,
        sent,
        shared,
        task,
    })
}

/// TCP (+ TLS) and the RTMP handshake, `connect` and `publish`, all before `deadline`.
async fn establish(
    target: &Target,
    options: &Options,
    deadline: Instant,
    sent: Arc<AtomicU64>,
) -> Result<(Reader, Link), SinkError> {
    let limit = options.connect_timeout;
    let within = |phase: Phase| move |_| error::timeout(phase, limit);

    let addrs: Vec<_> = timeout_at(
        deadline,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await
    .map_err(within(Phase::Resolve))?
    .map_err(|e| error::io_error(Phase::Resolve, e))?
    .collect();
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => last = Some(error::io_error(Phase::Connect, e)),
            Err(_) => return Err(error::timeout(Phase::Connect, limit)),
        }
    }
    let tcp = match (tcp, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e),
        (None, None) => {
            return Err(SinkError::permanent(format!(
                "resolving the host: {} has no address",
                target.host
            )));
        }
    };
    // Tags are written as they come; Nagle would hold small audio tags back.
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if target.tls {
        let config = options
            .tls
            .clone()
            .ok_or_else(|| SinkError::permanent("TLS is not set up for rtmps://"))?;
        let name = ServerName::try_from(target.host.clone()).map_err(|e| {
            SinkError::config_field(
                "url",
                format!("{} is not a TLS server name: {e}", target.host),
            )
        })?;
        let tls = timeout_at(
            deadline,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(within(Phase::Tls))?
        .map_err(|e| error::io_error(Phase::Tls, e))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut reader, writer) = tokio::io::split(io);

    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(target.tc_url());
    let (session, initial) =
        ClientSession::new(config).map_err(|e| error::protocol(Phase::Handshake, e))?;
    let mut link = Link {
        writer,
        session,
        sent,
    };
    let mut buf = vec![0u8; 8192];

    // Handshake: C0+C1, then answer until done; bytes after S2 belong to the session.
    let mut handshake = Handshake::new(PeerType::Client);
    let c0c1 = handshake
        .generate_outbound_p0_and_p1()
        .map_err(|e| error::protocol(Phase::Handshake, e))?;
    timeout_at(deadline, link.write(&c0c1))
        .await
        .map_err(within(Phase::Handshake))?
        .map_err(|e| error::io_error(Phase::Handshake, e))?;
    let leftover = loop {
        let n = read(&mut reader, &mut buf, deadline, Phase::Handshake, limit).await?;
        match handshake
            .process_bytes(&buf[..n])
            .map_err(|e| error::protocol(Phase::Handshake, e))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                if !response_bytes.is_empty() {
                    timeout_at(deadline, link.write(&response_bytes))
                        .await
                        .map_err(within(Phase::Handshake))?
                        .map_err(|e| error::io_error(Phase::Handshake, e))?;
                }
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                if !response_bytes.is_empty() {
                    timeout_at(deadline, link.write(&response_bytes))
                        .await
                        .map_err(within(Phase::Handshake))?
                        .map_err(|e| error::io_error(Phase::Handshake, e))?;
                }
                break remaining_bytes;
            }
        }
    };

    // `connect` to the application.
    let mut pending = link.apply(Phase::App, initial).await?;
    let request = link
        .session
        .request_connection(target.app.clone())
        .map_err(|e| error::protocol(Phase::App, e))?;
    pending.extend(link.apply(Phase::App, vec![request]).await?);
    if !leftover.is_empty() {
        pending.extend(link.receive(Phase::App, &leftover).await?);
    }
    await_event(
        &mut reader,
        &mut link,
        &mut buf,
        pending,
        deadline,
        Phase::App,
        limit,
        |e| match e {
            ClientSessionEvent::ConnectionRequestAccepted => Some(Ok(())),
            ClientSessionEvent::ConnectionRequestRejected { description } => {
                Some(Err(SinkError::auth(format!(
                    "the server refused to connect to the application: {description}"
                ))))
            }
            _ => None,
        },
    )
    .await?;

    // `publish` the stream key.
    let request = link
        .session
        .request_publishing(target.stream_key.clone(), PublishRequestType::Live)
        .map_err(|e| error::protocol(Phase::Publish, e))?;
    let pending = link.apply(Phase::Publish, vec![request]).await?;
    await_event(
        &mut reader,
        &mut link,
        &mut buf,
        pending,
        deadline,
        Phase::Publish,
        limit,
        |e| match e {
            ClientSessionEvent::PublishRequestAccepted => Some(Ok(())),
            ClientSessionEvent::UnhandleableOnStatusCode { code } if is_error_status(&code) => {
                Some(Err(SinkError::auth(format!(
                    "the server refused the publish: {code}"
                ))))
            }
            _ => None,
        },
    )
    .await?;
    Ok((reader, link))
}

/// Read some bytes before `deadline`; the end of the stream is an error of `phase`.
async fn read(
    reader: &mut Reader,
    buf: &mut [u8],
    deadline: Instant,
    phase: Phase,
    limit: Duration,
) -> Result<usize, SinkError> {
    match timeout_at(deadline, reader.read(buf)).await {
        Err(_) => Err(error::timeout(phase, limit)),
        Ok(Err(e)) => Err(error::io_error(phase, e)),
        Ok(Ok(0)) => Err(error::closed_by_server(phase)),
        Ok(Ok(n)) => Ok(n),
    }
}

/// Process events (those already raised, then those from new bytes) until `decide` settles.
#[allow(clippy::too_many_arguments)]
async fn await_event(
    reader: &mut Reader,
    link: &mut Link,
    buf: &mut [u8],
    mut pending: Vec<ClientSessionEvent>,
    deadline: Instant,
    phase: Phase,
    limit: Duration,
    mut decide: impl FnMut(ClientSessionEvent) -> Option<Result<(), SinkError>>,
) -> Result<(), SinkError> {
    loop {
        for event in pending.drain(..) {
            if let Some(result) = decide(event) {
                return result;
            }
        }
        let n = read(reader, buf, deadline, phase, limit).await?;
        pending = link.receive(phase, &buf[..n]).await?;
    }
}

/// `onStatus` codes that refuse a publish (`NetStream.Publish.BadName`, `…Rejected`,
/// `…Denied`, `…Failed`, `NetConnection.Connect.Rejected`, …).
fn is_error_status(code: &str) -> bool {
    [
        "BadName",
        "Rejected",
        "Denied",
        "Failed",
        "Unauthorized",
        "Forbidden",
    ]
    .iter()
    .any(|bad| code.contains(bad))
}

/// While publishing, a refusing `onStatus` ends the session (the server will not take more).
fn stream_event_error(event: ClientSessionEvent) -> Option<SinkError> {
    match event {
        ClientSessionEvent::UnhandleableOnStatusCode { code } if is_error_status(&code) => Some(
            SinkError::retryable(format!("the server stopped the publish: {code}")),
        ),
        _ => None,
    }
}

/// Why the connection task ended, for the sends that come after.
#[derive(Default)]
struct Shared {
    failure: Mutex<Option<SinkError>>,
}

impl Shared {
    fn fail(&self, e: SinkError) {
        let mut slot = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(e);
    }

    fn failure(&self) -> Option<SinkError> {
        let slot = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().map(copy_error)
    }

    fn failure_or_closed(&self) -> SinkError {
        self.failure()
            .unwrap_or_else(|| SinkError::retryable("sending: the connection is closed"))
    }
}

/// `SinkError` is not `Clone` (its source is not); the class and text are what matter here.
fn copy_error(e: &SinkError) -> SinkError {
    let message = e.message().to_string();
    if e.is_retryable() {
        SinkError::retryable(message)
    } else if e.is_auth() {
        SinkError::auth(message)
    } else if e.is_config() {
        SinkError::config_field(e.field().unwrap_or_default(), message)
    } else {
        SinkError::permanent(message)
    }
}

/// A publishing session; see the module docs.
pub struct RtmpSession {
    tx: mpsc::Sender<Command>,
    sent: Arc<AtomicU64>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl RtmpSession {
    async fn request(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), SinkError>>) -> Command,
    ) -> Result<(), SinkError> {
        if let Some(e) = self.shared.failure() {
            return Err(e);
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(command(reply))
            .await
            .map_err(|_| self.shared.failure_or_closed())?;
        answer.await.map_err(|_| self.shared.failure_or_closed())?
    }
}

#[async_trait]
impl LiveSession for RtmpSession {
    async fn send(&mut self, chunk: LiveChunk<'_>) -> Result<(), SinkError> {
        let media = match Tag::parse(chunk.data)? {
            Tag::Audio { timestamp, body } => Media::Audio {
                timestamp,
                body: Bytes::copy_from_slice(body),
            },
            Tag::Video { timestamp, body } => Media::Video {
                timestamp,
                body: Bytes::copy_from_slice(body),
            },
            Tag::Script { body } => match flv::metadata(body) {
                Ok(Some(m)) => Media::Metadata(m),
                // Not onMetaData: nothing a live publish needs.
                Ok(None) => return Ok(()),
                // Servers play without metadata; losing it is no reason to fail the stream.
                Err(e) => {
                    log::warn(format!("rtmp: metadata not sent: {e}"));
                    return Ok(());
                }
            },
        };
        self.request(|reply| Command::Send(media, reply)).await
    }

    async fn close(self: Box<Self>) -> Result<(), SinkError> {
        if self.shared.failure().is_some() {
            // Nothing to say goodbye on.
            return Ok(());
        }
        self.request(Command::Close).await
    }

    fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for RtmpSession {
    fn drop(&mut self) {
        // Release the connection now, even if the task is stuck writing to a dead peer.
        self.task.abort();
    }
}

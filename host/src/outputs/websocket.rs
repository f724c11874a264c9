//! The websocket output of a track egress (Go's `WebsocketSink`): the track's Opus packets are
//! decoded to raw PCM ([`super::pcm`]) and sent as binary messages to the request's
//! `websocket_url`.
//!
//! What the receiver sees, as with Go: the upgrade request carries `Content-Type: audio/x-raw`;
//! binary messages of S16LE 48 kHz stereo PCM, 20 ms each ([`MESSAGE_BYTES`]); a text message
//! `{"muted":true}` / `{"muted":false}` when the publisher mutes or unmutes; a ping (payload
//! `ping`) every 30 s; an empty close frame at the end.
//!
//! One tokio task owns the connection: it decodes (measured: about 50 µs of libopus per 20 ms
//! packet in a debug build, 0.25 % of a core, too little to move to a thread), writes, answers the receiver's pings (tungstenite queues the
//! pong and sends it with the next write) and notices the receiver going away. The recording
//! loop feeds it through a bounded channel, so a slow receiver slows the subscriber rather than
//! growing memory, as a slow disk does for a file.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::CONTENT_TYPE};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::pcm::{MESSAGE_BYTES, OpusToPcm, PcmError, PcmStats};
use crate::webrtc::Frame;

/// The `Content-Type` Go sends with the upgrade request (`types.MimeTypeRawAudio`).
pub const CONTENT_TYPE_RAW_AUDIO: &str = "audio/x-raw";
/// Go's `pingPeriod`.
pub const PING_PERIOD: Duration = Duration::from_secs(30);
/// Connecting and the upgrade together. Go's dialer allows 45 s; a shorter wait keeps a stop
/// request from being held up by an unreachable receiver.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the receiver's close frame after ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Packets in flight between the recording loop and the connection task (about 1.3 s).
const QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum WebsocketError {
    /// The receiver could not be reached or refused the upgrade, in Go's words
    /// (`dial tcp 127.0.0.1:9: connect: connection refused`, `websocket: bad handshake`).
    #[error("{0}")]
    Dial(String),
    /// Sending failed or the receiver closed the connection.
    #[error("{0}")]
    Send(String),
    #[error(transparent)]
    Decode(#[from] PcmError),
}

enum Command {
    Frame(Frame),
    Muted(bool),
}

/// What went out, reported when the output finishes.
#[derive(Debug, Default)]
pub struct Sent {
    pub pcm: PcmStats,
    pub bytes: u64,
    pub messages: u64,
    /// Why the connection ended early, if it did.
    pub error: Option<WebsocketError>,
}

pub struct WebsocketOutput {
    tx: mpsc::Sender<Command>,
    task: JoinHandle<Sent>,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl WebsocketOutput {
    /// Connects to `url` (Go dials when the track is found) and starts the connection task.
    pub async fn connect(url: &str) -> Result<WebsocketOutput, WebsocketError> {
        let pcm = OpusToPcm::new()?;
        let ws = tokio::time::timeout(DIAL_TIMEOUT, dial(url))
            .await
            .map_err(|_| WebsocketError::Dial(format!("dial {url}: i/o timeout")))??;
        tracing::info!(url, "websocket connected");
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(ws, rx, pcm));
        Ok(WebsocketOutput { tx, task })
    }

    /// Queues one Opus packet. `false` when the connection has ended (the reason comes out of
    /// [`finish`](Self::finish)).
    pub async fn write(&self, frame: Frame) -> bool {
        self.tx.send(Command::Frame(frame)).await.is_ok()
    }

    /// Tells the receiver the publisher muted or unmuted the track.
    pub async fn muted(&self, muted: bool) -> bool {
        self.tx.send(Command::Muted(muted)).await.is_ok()
    }

    /// Sends what is queued and the last partial message, then closes the connection.
    pub async fn finish(self) -> Sent {
        drop(self.tx);
        self.task.await.unwrap_or_else(|e| Sent {
            error: Some(WebsocketError::Send(format!("websocket task: {e}"))),
            ..Default::default()
        })
    }
}

async fn dial(url: &str) -> Result<Ws, WebsocketError> {
    let parsed =
        url::Url::parse(url).map_err(|e| WebsocketError::Dial(format!("parse {url}: {e}")))?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let tcp = connect_tcp(&host, port).await?;
    let mut request = url
        .into_client_request()
        .map_err(|e| WebsocketError::Dial(e.to_string()))?;
    request.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_RAW_AUDIO),
    );
    match tokio_tungstenite::client_async_tls_with_config(request, tcp, None, None).await {
        Ok((ws, _)) => Ok(ws),
        // gorilla/websocket's text for any answer but 101 Switching Protocols.
        Err(tungstenite::Error::Http(resp)) => {
            tracing::warn!(status = %resp.status(), "websocket upgrade refused");
            Err(WebsocketError::Dial("websocket: bad handshake".into()))
        }
        Err(e) => Err(WebsocketError::Dial(e.to_string())),
    }
}

/// Resolves and connects like Go's dialer (each address in turn), with Go's error texts.
async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, WebsocketError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| WebsocketError::Dial(format!("dial tcp: lookup {host}: no such host")))?
        .collect();
    let mut last = WebsocketError::Dial(format!("dial tcp: lookup {host}: no such host"));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                last = WebsocketError::Dial(format!("dial tcp {addr}: connect: {}", errno_text(&e)))
            }
        }
    }
    Err(last)
}

/// The system error as Go prints it (`connection refused`, not `Connection refused (os error 111)`).
fn errno_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut => "connection timed out".into(),
        io::ErrorKind::HostUnreachable => "no route to host".into(),
        io::ErrorKind::NetworkUnreachable => "network is unreachable".into(),
        _ => e.to_string(),
    }
}

/// The connection task: decode and send until the recording loop drops its sender, then close.
async fn run(ws: Ws, mut rx: mpsc::Receiver<Command>, mut pcm: OpusToPcm) -> Sent {
    let (mut sink, mut stream) = ws.split();
    let mut sent = Sent::default();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_PERIOD, PING_PERIOD);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut messages = Vec::new();
    let result: Result<(), WebsocketError> = async {
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Frame(f)) => {
                        pcm.push(f.rtp_time, f.clock_rate, f.received_at, &f.data, &mut messages)?;
                        send_pcm(&mut sink, &mut messages, &mut sent).await?;
                    }
                    Some(Command::Muted(muted)) => {
                        // Go logs a failed mute message and carries on; a broken connection
                        // shows up at the next PCM write anyway.
                        let text = serde_json::json!({ "muted": muted }).to_string();
                        if let Err(e) = sink.send(Message::Text(text.into())).await {
                            tracing::warn!(error = %e, muted, "could not send the mute message");
                        }
                    }
                    None => return Ok(()),
                },
                msg = stream.next() => match msg {
                    // gorilla answers a close frame with its own, and the next write fails with
                    // this text (ErrCloseSent).
                    Some(Ok(Message::Close(frame))) => {
                        tracing::info!(?frame, "the websocket receiver closed the connection");
                        return Err(WebsocketError::Send("websocket: close sent".into()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(WebsocketError::Send(e.to_string())),
                    None => return Err(WebsocketError::Send("websocket: connection closed by the receiver".into())),
                },
                _ = ping.tick() => {
                    sink.send(Message::Ping(b"ping".as_slice().into())).await.map_err(send_error)?;
                }
            }
        }
    }
    .await;
    sent.pcm = pcm.stats;
    match result {
        Ok(()) => {
            if let Some(rest) = pcm.flush() {
                messages.push(rest);
            }
            if let Err(e) = send_pcm(&mut sink, &mut messages, &mut sent).await {
                sent.error = Some(e);
                return sent;
            }
            // An empty close frame, as Go's `WriteMessage(CloseMessage, nil)`, then give the
            // receiver a moment to answer before the TCP connection goes.
            let _ = sink.send(Message::Close(None)).await;
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                while let Some(Ok(m)) = stream.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
            tracing::info!(
                bytes = sent.bytes,
                messages = sent.messages,
                "websocket closed"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, bytes = sent.bytes, "websocket output failed");
            sent.error = Some(e);
        }
    }
    sent
}

async fn send_pcm(
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    messages: &mut Vec<Vec<u8>>,
    sent: &mut Sent,
) -> Result<(), WebsocketError> {
    if messages.is_empty() {
        return Ok(());
    }
    for m in messages.drain(..) {
        debug_assert!(m.len() <= MESSAGE_BYTES);
        sent.bytes += m.len() as u64;
        sent.messages += 1;
        sink.feed(Message::Binary(m.into()))
            .await
            .map_err(send_error)?;
    }
    sink.flush().await.map_err(send_error)
}

fn send_error(e: tungstenite::Error) -> WebsocketError {
    WebsocketError::Send(e.to_string())
}

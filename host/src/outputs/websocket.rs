//! The websocket output (Go's `WebsocketSink`): a track egress's Opus packets are decoded to
//! raw PCM ([`super::pcm`]) and sent as binary messages to the request's `websocket_url`; a
//! composite recorder's mixed audio comes in as PCM already, from an `appsink` branch on its
//! raw audio tee ([`attach_pcm_branch`]), for a stream output with a `ws://` / `wss://` URL.
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

use gstreamer as gst;
use gstreamer::prelude::*;

use super::pcm::{CHANNELS, MESSAGE_BYTES, OpusToPcm, PcmError, PcmStats, SAMPLE_RATE};
use super::tap::EncodedStreams;
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
    /// The PCM branch could not be added to the recorder's pipeline.
    #[error("websocket branch: {0}")]
    Branch(String),
}

enum Command {
    Frame(Frame),
    Muted(bool),
    /// Raw S16LE 48 kHz stereo, any length (cut into 20 ms messages by the task).
    Pcm(Vec<u8>),
    /// The recording ended: send the rest and close (the PCM branch may still hold a sender).
    End,
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
        Self::start(url, Some(pcm)).await
    }

    /// Connects to `url` for raw PCM (a composite recorder's mixed audio, fed through
    /// [`attach_pcm_branch`]).
    pub async fn connect_pcm(url: &str) -> Result<WebsocketOutput, WebsocketError> {
        Self::start(url, None).await
    }

    async fn start(url: &str, pcm: Option<OpusToPcm>) -> Result<WebsocketOutput, WebsocketError> {
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
        // The PCM branch's sender may outlive this call (the pipeline drops it), so say it.
        let _ = self.tx.send(Command::End).await;
        drop(self.tx);
        self.task.await.unwrap_or_else(|e| Sent {
            error: Some(WebsocketError::Send(format!("websocket task: {e}"))),
            ..Default::default()
        })
    }
}

/// How much raw audio the PCM branch holds while the connection is slow; older audio is
/// dropped past it, so a slow receiver never holds up the recorder's other outputs.
const BRANCH_QUEUE: Duration = Duration::from_secs(1);

/// Adds the PCM branch to a composite recorder's raw audio tee, before its pipeline plays
/// (Go's websocket bin): `queue (leaky) → audioconvert → audioresample →
/// audio/x-raw,S16LE,48000,2 → appsink`, whose samples go to `output`'s connection task.
pub fn attach_pcm_branch(
    streams: &EncodedStreams,
    output: &WebsocketOutput,
) -> Result<(), WebsocketError> {
    let err = |e: &dyn std::fmt::Display| WebsocketError::Branch(e.to_string());
    let tee = streams
        .raw_audio
        .as_ref()
        .ok_or_else(|| WebsocketError::Branch("the recording has no audio".into()))?;
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .name(format!("websocket_{factory}"))
            .build()
            .map_err(|_| {
                WebsocketError::Branch(format!(
                    "could not create {factory} (is its GStreamer plugin installed?)"
                ))
            })
    };
    let queue = make("queue")?;
    queue.set_property_from_str("leaky", "downstream");
    queue.set_property("max-size-time", BRANCH_QUEUE.as_nanos() as u64);
    queue.set_property("max-size-buffers", 0u32);
    queue.set_property("max-size-bytes", 0u32);
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let caps = make("capsfilter")?;
    caps.set_property(
        "caps",
        gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("layout", "interleaved")
            .field("rate", SAMPLE_RATE as i32)
            .field("channels", CHANNELS as i32)
            .build(),
    );
    let sink = make("appsink")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    sink.set_property("emit-signals", true);
    let chain = [&queue, &convert, &resample, &caps, &sink];
    streams.pipeline.add_many(chain).map_err(|e| err(&e))?;
    gst::Element::link_many(chain).map_err(|e| err(&e))?;
    tee.link(&queue).map_err(|e| err(&e))?;
    let tx = output.tx.clone();
    // `appsink` without gstreamer-app: its `new-sample` signal and `pull-sample` action. The
    // signal comes on the queue's streaming thread (no tokio runtime), so a blocking send is
    // the backpressure, and the leaky queue above bounds it.
    sink.connect("new-sample", false, move |args| {
        let bytes = (|| {
            let sink = args.first()?.get::<gst::Element>().ok()?;
            let sample = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[])?;
            let map = sample.buffer()?.map_readable().ok()?;
            Some(map.as_slice().to_vec())
        })();
        match bytes {
            // A closed channel: the connection ended, and finishing reports why.
            Some(b) => {
                let _ = tx.blocking_send(Command::Pcm(b));
            }
            None => tracing::warn!("could not take a PCM sample for the websocket"),
        }
        Some(gst::FlowReturn::Ok.to_value())
    });
    Ok(())
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

/// The connection task: decode (Opus input) or cut (PCM input) and send until the recording
/// loop ends it, then close.
async fn run(ws: Ws, mut rx: mpsc::Receiver<Command>, mut opus: Option<OpusToPcm>) -> Sent {
    let (mut sink, mut stream) = ws.split();
    let mut sent = Sent::default();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_PERIOD, PING_PERIOD);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut messages = Vec::new();
    // PCM input not yet sent: less than one message.
    let mut raw: Vec<u8> = Vec::with_capacity(MESSAGE_BYTES);
    let mut raw_samples = 0u64;
    let result: Result<(), WebsocketError> = async {
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Frame(f)) => {
                        if let Some(pcm) = opus.as_mut() {
                            pcm.push(f.rtp_time, f.clock_rate, f.received_at, &f.data, &mut messages)?;
                            send_pcm(&mut sink, &mut messages, &mut sent).await?;
                        }
                    }
                    Some(Command::Pcm(bytes)) => {
                        raw_samples += (bytes.len() / (CHANNELS * 2)) as u64;
                        raw.extend_from_slice(&bytes);
                        while raw.len() >= MESSAGE_BYTES {
                            messages.push(raw.drain(..MESSAGE_BYTES).collect());
                        }
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
                    Some(Command::End) | None => return Ok(()),
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
    sent.pcm = match &opus {
        Some(pcm) => pcm.stats,
        None => PcmStats {
            samples: raw_samples,
            ..Default::default()
        },
    };
    match result {
        Ok(()) => {
            if let Some(rest) = opus.as_mut().and_then(OpusToPcm::flush) {
                messages.push(rest);
            }
            if !raw.is_empty() {
                messages.push(std::mem::take(&mut raw));
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

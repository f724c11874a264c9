//! A websocket server standing in for a consumer of an egress's websocket output (track egress
//! `websocket_url`, or a composite egress's `ws://` stream output): it records the upgrade's
//! `Content-Type`, every binary message (arrival and length) and the PCM they carry, the text
//! messages and whether a close frame came.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::recording::unix_nanos;

/// PCM S16LE, 48 kHz, stereo.
pub const BYTES_PER_SECOND: f64 = 48_000.0 * 2.0 * 2.0;

/// What the test's websocket server saw.
#[derive(Debug, Default)]
pub struct Received {
    pub connections: usize,
    pub content_type: Option<String>,
    /// Every binary message, in order: (arrival, unix ns; length).
    pub binary: Vec<(i64, usize)>,
    pub pcm: Vec<u8>,
    pub texts: Vec<String>,
    pub closed: bool,
}

impl Received {
    /// Bytes of the binary messages that arrived by `at_nanos` (unix ns).
    pub fn bytes_until(&self, at_nanos: i64) -> usize {
        self.binary
            .iter()
            .filter(|(t, _)| *t <= at_nanos)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A websocket server on 127.0.0.1:0 that records every connection into one [`Received`].
pub async fn receiver() -> (SocketAddr, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the websocket receiver");
    let addr = listener.local_addr().expect("receiver address");
    let received = Arc::new(Mutex::new(Received::default()));
    let shared = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let headers = shared.clone();
                let callback = move |req: &Request, resp: Response| {
                    let mut r = headers.lock().unwrap();
                    r.connections += 1;
                    r.content_type = req
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    let mut r = shared.lock().unwrap();
                    match msg {
                        Message::Binary(b) => {
                            r.binary.push((unix_nanos(), b.len()));
                            r.pcm.extend_from_slice(&b);
                        }
                        Message::Text(t) => r.texts.push(t.to_string()),
                        Message::Close(_) => r.closed = true,
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Root mean square of S16LE samples.
pub fn rms(pcm: &[u8]) -> f64 {
    let n = pcm.len() / 2;
    let sum: f64 = pcm
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])).powi(2))
        .sum();
    (sum / n.max(1) as f64).sqrt()
}

// src/lib.rs: `tcp://host:port` receives the stream's MPEG-TS bytes (what `ffmpeg -i
// 'tcp://0.0.0.0:9000?listen' out.ts` records).
use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use egress_plugin_api::blocking::{Worker, WorkerGone};
use egress_plugin_api::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "three_seconds")]
    connect_timeout_ms: u64,
}
fn three_seconds() -> u64 {
    3000
}

pub struct TcpLive {
    timeout: Duration,
}

impl LivePlugin for TcpLive {
    fn describe() -> LiveDescriptor {
        LiveDescriptor::new("tcp-live", env!("CARGO_PKG_VERSION"), LiveFormat::MpegTs)
            .with_schemes(["tcp"])
            .with_config_schema(json!({ "type": "object",
                "properties": { "connect_timeout_ms": { "type": "integer", "minimum": 1 } } }))
    }
    // Pure: no I/O here.
    fn create(config: &Value) -> Result<Self, SinkError> {
        let c: Config = config::parse(config)?;
        if c.connect_timeout_ms == 0 {
            return Err(config::invalid("connect_timeout_ms", "must be at least 1"));
        }
        Ok(TcpLive {
            timeout: Duration::from_millis(c.connect_timeout_ms),
        })
    }
}

/// `host:port` of a `tcp://host:port` URL; anything else is the request's fault (config).
fn address(url: &str) -> Result<String, SinkError> {
    match url.strip_prefix("tcp://").map(|a| a.trim_end_matches('/')) {
        Some(a) if a.contains(':') && !a.contains('/') => Ok(a.to_string()),
        _ => Err(SinkError::config_field("url", "must be tcp://host:port")),
    }
}

fn gone(_: WorkerGone) -> SinkError {
    SinkError::permanent("the session thread stopped")
}

#[async_trait]
impl LiveFactory for TcpLive {
    fn validate_url(&self, url: &str) -> Result<(), SinkError> {
        address(url).map(drop)
    }

    async fn connect(&self, url: &str) -> Result<Box<dyn LiveSession>, SinkError> {
        let (addr, timeout) = (address(url)?, self.timeout);
        // Blocking sockets live on the session's own thread, never on the host's executor.
        let worker =
            Worker::spawn("tcp-live", None).map_err(|e| SinkError::retryable(e.to_string()))?;
        let open = worker.run(move |slot: &mut Option<TcpStream>| {
            // A name that does not resolve will not resolve in a second either: permanent.
            let to = addr
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| SinkError::permanent(format!("cannot resolve {addr}")))?;
            // Refused, unreachable, timed out: the host retries with backoff.
            let s = TcpStream::connect_timeout(&to, timeout)
                .map_err(|e| SinkError::retryable(format!("{addr}: {e}")))?;
            s.set_write_timeout(Some(Duration::from_secs(5))).ok();
            *slot = Some(s);
            Ok::<_, SinkError>(())
        });
        open.await.map_err(gone)??;
        Ok(Box::new(TcpSession { worker, sent: 0 }))
    }
}

struct TcpSession {
    worker: Worker<Option<TcpStream>>,
    sent: u64,
}

#[async_trait]
impl LiveSession for TcpSession {
    async fn send(&mut self, chunk: LiveChunk<'_>) -> Result<(), SinkError> {
        let data = chunk.data.to_vec(); // borrowed for this call; the thread needs its own
        let n = data.len() as u64;
        let write = self.worker.run(move |s| match s {
            Some(s) => s
                .write_all(&data)
                .map_err(|e| SinkError::retryable(e.to_string())),
            None => Err(SinkError::permanent("closed")),
        });
        write.await.map_err(gone)??;
        self.sent += n;
        Ok(())
    }
    async fn close(self: Box<Self>) -> Result<(), SinkError> {
        let end = self
            .worker
            .run(|s| s.take().map(|s| s.shutdown(Shutdown::Write)));
        end.await.map_err(gone).map(drop)
    }
    fn bytes_sent(&self) -> u64 {
        self.sent
    }
}

export_live!(TcpLive);

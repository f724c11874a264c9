//! `livekit-server` on free ports, using a [`Redis`].

use std::time::Duration;

use crate::http::http_get;
use crate::process::{Proc, command};
use crate::redis::Redis;
use crate::tools::{TestDir, find_binary};
use crate::{START_TIMEOUT, free_port};

/// The API key livekit-server is started with.
pub const API_KEY: &str = "devkey";
/// The API secret livekit-server is started with.
pub const API_SECRET: &str = "secret";

/// A livekit-server (HTTP/WebSocket, RTC TCP and RTC UDP on free 127.0.0.1 ports) with the dev
/// keys `devkey`/`secret`, using the given Redis as its message bus.
pub struct LiveKitServer {
    proc: Proc,
    port: u16,
    rtc_tcp_port: u16,
    rtc_udp_port: u16,
    dir: TestDir,
}

impl LiveKitServer {
    /// Starts livekit-server and waits until `GET /` answers `200 OK`.
    pub async fn start(redis: &Redis) -> LiveKitServer {
        LiveKitServer::start_with(redis, "").await
    }

    /// Like [`start`](Self::start), with `extra_yaml` appended to the generated config (extra
    /// top-level keys only, such as `room:` or `limit:`; the generated config sets `port`,
    /// `bind_addresses`, `redis`, `keys`, `rtc` and `logging`). The log level is
    /// `$EGRESS_E2E_LIVEKIT_LOG_LEVEL`, default `info`.
    pub async fn start_with(redis: &Redis, extra_yaml: &str) -> LiveKitServer {
        let dir = TestDir::new("livekit");
        let port = free_port();
        let rtc_tcp_port = free_port();
        let rtc_udp_port = free_port();
        let level = std::env::var("EGRESS_E2E_LIVEKIT_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let config = format!(
            "port: {port}\n\
             bind_addresses: [\"127.0.0.1\"]\n\
             redis:\n  address: {redis}\n\
             keys:\n  {API_KEY}: {API_SECRET}\n\
             rtc:\n  tcp_port: {rtc_tcp_port}\n  udp_port: {rtc_udp_port}\n  use_external_ip: false\n  node_ip: 127.0.0.1\n\
             logging:\n  level: {level}\n\
             {extra_yaml}\n",
            redis = redis.addr(),
        );
        let config_path = dir.write("livekit.yaml", &config);
        let bin = find_binary("livekit-server");
        let mut cmd = command(&bin, dir.path());
        cmd.arg("--config").arg(&config_path);
        // Its own flags' env fallbacks (LIVEKIT_KEYS, LIVEKIT_CONFIG, ...) must not leak in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LIVEKIT_") {
                cmd.env_remove(&key);
            }
        }
        let log = dir.join("livekit-server.log");
        let mut proc = Proc::spawn(&format!("livekit-server :{port}"), cmd, &log, &log);
        // livekit-server ignores a SIGTERM that comes in while it is still starting up, and on
        // the first one it waits for participants to leave; a second one forces it out.
        proc.set_drop_signals(vec![
            (libc::SIGTERM, Duration::from_millis(500)),
            (libc::SIGTERM, Duration::from_secs(3)),
        ]);
        let url = format!("http://127.0.0.1:{port}/");
        proc.wait_ready(&format!("GET {url} answered 200 OK"), START_TIMEOUT, || {
            let url = url.clone();
            async move { matches!(http_get(&url).await, Ok((200, body)) if body.trim() == "OK") }
        })
        .await;
        LiveKitServer {
            proc,
            port,
            rtc_tcp_port,
            rtc_udp_port,
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn rtc_tcp_port(&self) -> u16 {
        self.rtc_tcp_port
    }

    pub fn rtc_udp_port(&self) -> u16 {
        self.rtc_udp_port
    }

    /// `http://127.0.0.1:PORT` (what `lk --url` and the server APIs take).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:PORT` (what egress's `ws_url` takes).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn api_key(&self) -> &'static str {
        API_KEY
    }

    pub fn api_secret(&self) -> &'static str {
        API_SECRET
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The server's temp dir (config and log).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Everything livekit-server logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Panics with the log tail if livekit-server has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.proc.try_wait() {
            panic!(
                "{} exited with {status}\n{}",
                self.proc.name(),
                self.proc.log_tail()
            );
        }
    }
}

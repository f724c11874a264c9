//! toxiproxy (Shopify's TCP fault proxy, v2.12.0 from `scripts/setup`) on a free 127.0.0.1 port,
//! driven through its HTTP API: put it between a client and a server with [`Toxiproxy::proxy`],
//! then black-hole, stall or cut that link mid-stream. What each does (read in toxiproxy
//! v2.12.0's `toxics/`, and seen with an RTMP push through it to mediamtx):
//!
//! * [`Toxiproxy::blackhole`]: the `timeout` toxic with `timeout: 0`, both ways (LiveKit's
//!   `rtmp_wedge` test uses it upstream). toxiproxy keeps reading and **drops** everything, so
//!   the sender's writes keep succeeding and it sees no error, the server receives nothing, and
//!   the TCP connections stay open, until the server's own read timeout closes its side
//!   (mediamtx: `readTimeout`, 10 s by default), which toxiproxy passes on to the client.
//!   Removing the toxic ([`Toxiproxy::restore`]) **closes** the black-holed connections
//!   (the toxic's cleanup does): the sender then gets a reset, and new connections work.
//! * [`Toxiproxy::stall`]: a `latency` toxic of an hour, both ways. Nothing is lost: bytes are
//!   held (toxiproxy buffers about a thousand reads per direction before the sender's writes
//!   block) and delivered when [`Toxiproxy::restore`] removes it; the connection survives.
//! * [`Toxiproxy::disable`] closes the listener and every connection through it (clients see a
//!   reset, new ones are refused); [`Toxiproxy::enable`] listens again on the same port.

use std::time::Duration;

use serde_json::json;

use crate::json_api::{Method, request, request_ok};
use crate::process::{Proc, command};
use crate::tools::TestDir;
use crate::{START_TIMEOUT, find_binary, free_port};

/// Both directions of a proxied connection (upstream is client → server).
const DIRECTIONS: [&str; 2] = ["upstream", "downstream"];
/// How long [`Toxiproxy::stall`] holds data back: longer than any test.
const STALL_MS: u64 = 3_600_000;

/// A running toxiproxy server. Killed on drop (with every proxy it holds).
pub struct Toxiproxy {
    proc: Proc,
    port: u16,
    _dir: TestDir,
}

impl Toxiproxy {
    /// Starts `toxiproxy-server` and waits until its API answers.
    pub async fn start() -> Toxiproxy {
        let dir = TestDir::new("toxiproxy");
        let port = free_port();
        let log = dir.join("toxiproxy.log");
        let mut cmd = command(&find_binary("toxiproxy-server"), dir.path());
        cmd.args(["-host", "127.0.0.1", "-port", &port.to_string()])
            // Its default level logs every lock it takes.
            .env("LOG_LEVEL", "info");
        let mut proc = Proc::spawn(&format!("toxiproxy :{port}"), cmd, &log, &log);
        let url = format!("http://127.0.0.1:{port}/version");
        proc.wait_ready(&format!("its API answered {url}"), START_TIMEOUT, || {
            let url = url.clone();
            async move { matches!(request(Method::Get, &url, None).await, Ok((200, _))) }
        })
        .await;
        Toxiproxy {
            proc,
            port,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`, the HTTP API.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates the proxy `name` forwarding to `upstream` (`host:port`) and returns the address
    /// it listens on, `127.0.0.1:PORT` (a fixed free port, kept across `disable`/`enable`).
    pub async fn proxy(&self, name: &str, upstream: &str) -> String {
        let listen = format!("127.0.0.1:{}", free_port());
        request_ok(
            Method::Post,
            &format!("{}/proxies", self.api_url()),
            Some(&json!({ "name": name, "listen": listen, "upstream": upstream, "enabled": true })),
        )
        .await;
        listen
    }

    /// Drops everything sent through `name`, both ways, without closing anything (see the
    /// module docs). New connections are accepted and black-holed as well.
    pub async fn blackhole(&self, name: &str) {
        for stream in DIRECTIONS {
            self.add_toxic(name, "timeout", stream, json!({ "timeout": 0 }))
                .await;
        }
    }

    /// Holds back everything sent through `name`, both ways, losing nothing, until
    /// [`Self::restore`] (see the module docs).
    pub async fn stall(&self, name: &str) {
        for stream in DIRECTIONS {
            self.add_toxic(
                name,
                "latency",
                stream,
                json!({ "latency": STALL_MS, "jitter": 0 }),
            )
            .await;
        }
    }

    /// Removes every toxic from `name`, so data flows again. Connections that were
    /// black-holed are closed by this; stalled ones carry on with what was held back.
    pub async fn restore(&self, name: &str) {
        let proxy = request_ok(
            Method::Get,
            &format!("{}/proxies/{name}", self.api_url()),
            None,
        )
        .await;
        for toxic in proxy["toxics"].as_array().into_iter().flatten() {
            if let Some(toxic) = toxic["name"].as_str() {
                request_ok(
                    Method::Delete,
                    &format!("{}/proxies/{name}/toxics/{toxic}", self.api_url()),
                    None,
                )
                .await;
            }
        }
    }

    /// Adds a toxic of any type (`latency`, `bandwidth`, `slow_close`, `reset_peer`,
    /// `limit_data`, `timeout`, …; see toxiproxy's README) to one direction (`upstream` is
    /// client → server), named `<type>-<direction>`. [`Self::restore`] removes it.
    pub async fn add_toxic(
        &self,
        name: &str,
        toxic_type: &str,
        stream: &str,
        attributes: serde_json::Value,
    ) {
        request_ok(
            Method::Post,
            &format!("{}/proxies/{name}/toxics", self.api_url()),
            Some(&json!({
                "name": format!("{toxic_type}-{stream}"),
                "type": toxic_type,
                "stream": stream,
                "toxicity": 1.0,
                "attributes": attributes,
            })),
        )
        .await;
    }

    async fn set_enabled(&self, name: &str, enabled: bool) {
        request_ok(
            Method::Patch,
            &format!("{}/proxies/{name}", self.api_url()),
            Some(&json!({ "enabled": enabled })),
        )
        .await;
    }

    /// Closes `name`'s listener and every connection through it.
    pub async fn disable(&self, name: &str) {
        self.set_enabled(name, false).await;
    }

    /// Listens again (same address) after [`Self::disable`].
    pub async fn enable(&self, name: &str) {
        self.set_enabled(name, true).await;
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Stops the server now (SIGTERM, SIGKILL after 5 s), closing every proxied connection.
    pub async fn stop(mut self) {
        self.proc.terminate(Duration::from_secs(5)).await;
    }
}

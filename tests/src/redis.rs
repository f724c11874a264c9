//! `redis-server` on a free port, plus a minimal RESP client for assertions.

use std::io::{Error, ErrorKind, Result};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::process::{Proc, command};
use crate::tools::{TestDir, find_binary};
use crate::{START_TIMEOUT, free_port};

/// A `redis-server` (no RDB/AOF persistence) bound to 127.0.0.1 on a free port.
/// `stop()`/`kill()` then `restart()` bring it back on the same port, empty.
pub struct Redis {
    proc: Option<Proc>,
    port: u16,
    starts: u32,
    dir: TestDir,
}

impl Redis {
    /// Starts redis-server and waits until it answers PING.
    pub async fn start() -> Redis {
        let mut redis = Redis {
            proc: None,
            port: free_port(),
            starts: 0,
            dir: TestDir::new("redis"),
        };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let bin = find_binary("redis-server");
        let mut cmd = command(&bin, self.dir.path());
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        cmd.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--logfile",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ]);
        // One log per start, so a restart keeps the earlier run's log.
        let log = self.dir.join(&format!("redis-{}.log", self.starts));
        let proc = self.proc.insert(Proc::spawn(
            &format!("redis-server :{port}"),
            cmd,
            &log,
            &log,
        ));
        let addr = format!("127.0.0.1:{}", self.port);
        proc.wait_ready("it answered PING", START_TIMEOUT, || {
            let addr = addr.clone();
            async move { matches!(cmd_at(&addr, &["PING"]).await, Ok(Resp::Simple(s)) if s == "PONG") }
        })
        .await;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as `redis.address` in livekit and egress configs.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The pid of the running redis-server, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn is_running(&mut self) -> bool {
        match self.proc.as_mut() {
            Some(p) => p.try_wait().is_none(),
            None => false,
        }
    }

    /// Graceful stop (SIGTERM, SIGKILL after 10 s). The port stays reserved for `restart()`.
    pub async fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.terminate(Duration::from_secs(10)).await;
        }
    }

    /// Abrupt stop (SIGKILL), like a crash.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Starts redis-server again on the same port (stopping it first if it is running) and
    /// waits until it answers PING. The data is gone: there is no persistence.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Everything every run of this redis-server logged.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            let path = self.dir.join(&format!("redis-{n}.log"));
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
        out
    }

    /// Sends one command on a new connection and returns the reply.
    pub async fn cmd(&self, args: &[&str]) -> Result<Resp> {
        cmd_at(&self.addr(), args).await
    }

    /// `PUBSUB CHANNELS pattern`, sorted. Panics if Redis does not answer.
    pub async fn pubsub_channels(&self, pattern: &str) -> Vec<String> {
        let reply = self
            .cmd(&["PUBSUB", "CHANNELS", pattern])
            .await
            .unwrap_or_else(|e| panic!("redis {}: PUBSUB CHANNELS {pattern}: {e}", self.addr()));
        let mut channels: Vec<String> = match reply {
            Resp::Array(Some(items)) => items.into_iter().filter_map(|i| i.into_string()).collect(),
            other => panic!(
                "redis {}: PUBSUB CHANNELS {pattern}: unexpected reply {other:?}",
                self.addr()
            ),
        };
        channels.sort();
        channels
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// Simple and bulk strings as text; `None` for anything else.
    pub fn into_string(self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }
    }
}

async fn cmd_at(addr: &str, args: &[&str]) -> Result<Resp> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        stream.write_all(&req).await?;
        let mut reader = BufReader::new(stream);
        read_reply(&mut reader).await
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::TimedOut,
                format!("redis {addr}: no reply in 5 s"),
            )
        })?
}

fn bad(msg: String) -> Error {
    Error::new(ErrorKind::InvalidData, msg)
}

async fn read_line(r: &mut BufReader<TcpStream>) -> Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Err(Error::new(
            ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_reply(
    r: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Resp>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(r).await?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let num = || {
            rest.parse::<i64>()
                .map_err(|_| bad(format!("bad RESP line {line:?}")))
        };
        Ok(match kind {
            "+" => Resp::Simple(rest.to_string()),
            "-" => Resp::Error(rest.to_string()),
            ":" => Resp::Integer(num()?),
            "$" => {
                let len = num()?;
                if len < 0 {
                    Resp::Bulk(None)
                } else {
                    let mut buf = vec![0; len as usize + 2];
                    r.read_exact(&mut buf).await?;
                    buf.truncate(len as usize);
                    Resp::Bulk(Some(buf))
                }
            }
            "*" => {
                let len = num()?;
                if len < 0 {
                    Resp::Array(None)
                } else {
                    let mut items = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        items.push(read_reply(r).await?);
                    }
                    Resp::Array(Some(items))
                }
            }
            _ => return Err(bad(format!("bad RESP line {line:?}"))),
        })
    })
}

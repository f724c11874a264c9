//! A PUT server that implements the `http-put` protocol, for tests.
//!
//! It never keeps bodies: each object is a size and a running SHA-256, so gigabytes stream
//! through in constant memory. Faults can be injected per key (an HTTP status, or a connection
//! dropped half-way through the body) to exercise retries and error classification. It runs on
//! its own thread and runtime, so that it keeps serving whatever the test's own executor does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use egress_plugin_api::Receipt;
use egress_plugin_api::conformance::{Inspector, Stored};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

/// Objects live under this path: `http://127.0.0.1:<port>/objects/<key>`.
const BASE: &str = "/objects/";

/// What an injected fault does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status without storing anything.
    Status(u16),
    /// Read about half of the body, then drop the connection without an answer.
    Disconnect,
    /// Wait this long before handling the request normally (to trip client timeouts).
    Delay(Duration),
}

struct Rule {
    key_contains: String,
    /// PUT requests (counted per key, from 0, retries included) `first..first + times` fail.
    first: usize,
    times: usize,
    fault: Fault,
}

struct Partial {
    received: u64,
    hasher: Sha256,
}

#[derive(Default)]
struct State {
    objects: HashMap<String, Stored>,
    partials: HashMap<String, Partial>,
    puts: HashMap<String, usize>,
    rules: Vec<Rule>,
    authorization: Option<String>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running server; stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Start on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// If no socket or thread can be had: a test cannot run without them.
    pub fn start() -> Self {
        let state: Shared = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name("http-put-test-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("test server runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let state = served.clone();
                                tokio::spawn(async move {
                                    let service = service_fn(move |req| handle(req, state.clone()));
                                    // Errors here are the injected disconnects, or clients going away.
                                    let _ = http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
            .expect("test server thread");
        TestServer {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Require this exact `Authorization` value (401 without one, 403 with another).
    pub fn require_authorization(&self, value: &str) {
        lock(&self.state).authorization = Some(value.to_string());
    }

    /// The base URL to put in the plugin's `url`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, BASE.trim_end_matches('/'))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// For keys containing `key_contains`, PUT requests number `first..first + times` (per
    /// key, from 0, retries included) get `fault`.
    pub fn inject(&self, key_contains: &str, first: usize, times: usize, fault: Fault) {
        lock(&self.state).rules.push(Rule {
            key_contains: key_contains.to_string(),
            first,
            times,
            fault,
        });
    }

    /// The complete object at `key`.
    pub fn object(&self, key: &str) -> Option<Stored> {
        lock(&self.state).objects.get(key).copied()
    }

    /// PUT requests received for `key`, retries included.
    pub fn puts(&self, key: &str) -> usize {
        lock(&self.state).puts.get(key).copied().unwrap_or(0)
    }

    /// Unfinished uploads.
    pub fn partial_keys(&self) -> Vec<String> {
        lock(&self.state).partials.keys().cloned().collect()
    }

    /// An [`Inspector`] for the conformance kit.
    pub fn inspector(&self) -> Arc<dyn Inspector> {
        Arc::new(ServerInspector(self.state.clone()))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct ServerInspector(Shared);

#[async_trait]
impl Inspector for ServerInspector {
    async fn stored(
        &self,
        key: &str,
        _receipt: Option<&Receipt>,
    ) -> Result<Option<Stored>, String> {
        Ok(lock(&self.0).objects.get(key).copied())
    }

    async fn leftovers(&self, prefix: &str) -> Result<Vec<String>, String> {
        Ok(lock(&self.0)
            .partials
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(|k| format!("unfinished upload {k}"))
            .collect())
    }
}

/// Returned to hyper to drop the connection without an answer.
#[derive(Debug)]
struct Disconnect;

impl std::fmt::Display for Disconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected disconnect")
    }
}

impl std::error::Error for Disconnect {}

type Reply = Result<Response<Full<Bytes>>, Disconnect>;

fn reply(status: u16, text: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok(r)
}

async fn handle(req: Request<Incoming>, state: Shared) -> Reply {
    let Some(key) = req.uri().path().strip_prefix(BASE).map(percent_decode) else {
        return if req.method() == Method::HEAD {
            authorize(&req, &state).unwrap_or_else(|| reply(200, ""))
        } else {
            reply(404, "not under /objects/")
        };
    };
    if let Some(denied) = authorize(&req, &state) {
        drain(req.into_body()).await;
        return denied;
    }
    match *req.method() {
        Method::PUT => put(req, key, state).await,
        Method::DELETE => {
            let mut s = lock(&state);
            // An unfinished upload is what an abort cancels; only without one does DELETE
            // remove the object itself.
            if s.partials.remove(&key).is_none() {
                s.objects.remove(&key);
            }
            reply(204, "")
        }
        Method::HEAD | Method::GET => match lock(&state).objects.get(&key) {
            Some(_) => reply(200, ""),
            None => reply(404, ""),
        },
        _ => reply(405, "method not allowed"),
    }
}

fn authorize(req: &Request<Incoming>, state: &Shared) -> Option<Reply> {
    let expected = lock(state).authorization.clone()?;
    match req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        None => Some(reply(401, "authorization required")),
        Some(v) if v != expected => Some(reply(403, "wrong credentials")),
        Some(_) => None,
    }
}

/// Read and discard a body before answering early, as production servers do (nginx's lingering
/// close): a client still sending would otherwise see a broken pipe instead of the status.
async fn drain(mut body: Incoming) {
    while let Some(Ok(_)) = body.frame().await {}
}

/// `bytes a-b/*` or `bytes a-b/total` → (a, b, total).
fn parse_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    (a <= b).then_some((a, b, total))
}

async fn put(req: Request<Incoming>, key: String, state: Shared) -> Reply {
    let fault = {
        let mut s = lock(&state);
        let n = {
            let count = s.puts.entry(key.clone()).or_insert(0);
            *count += 1;
            *count - 1
        };
        s.rules
            .iter()
            .find(|r| key.contains(&r.key_contains) && (r.first..r.first + r.times).contains(&n))
            .map(|r| r.fault)
    };
    let declared: Option<u64> = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    match fault {
        Some(Fault::Status(status)) => {
            drain(req.into_body()).await;
            return reply(status, "injected fault");
        }
        Some(Fault::Disconnect) => {
            let half = declared.unwrap_or(0) / 2;
            let mut body = req.into_body();
            let mut read = 0u64;
            while read < half {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                    _ => break,
                }
            }
            return Err(Disconnect);
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let range = match req.headers().get("content-range").map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => match parse_range(v) {
            Some(r) => Some(r),
            None => return reply(400, "bad Content-Range"),
        },
        Some(Err(_)) => return reply(400, "bad Content-Range"),
    };

    // Take the upload state out of the map while the body streams; put it back after.
    let (mut partial, duplicate) = match range {
        None | Some((0, _, _)) => (
            Partial {
                received: 0,
                hasher: Sha256::new(),
            },
            false,
        ),
        Some((first, last, total)) => {
            let mut s = lock(&state);
            match s.partials.remove(&key) {
                Some(p) if p.received == first => (p, false),
                // A retry of a range we already have: accept it without hashing it twice.
                Some(p) if last < p.received => {
                    s.partials.insert(key.clone(), p);
                    (
                        Partial {
                            received: 0,
                            hasher: Sha256::new(),
                        },
                        true,
                    )
                }
                Some(p) => {
                    let have = p.received;
                    s.partials.insert(key.clone(), p);
                    return reply(416, &format!("have {have} bytes, got a range from {first}"));
                }
                // The last part arrived and its answer was lost; the object is complete.
                None if total.is_some_and(|t| s.objects.get(&key).is_some_and(|o| o.size == t)) => {
                    (
                        Partial {
                            received: 0,
                            hasher: Sha256::new(),
                        },
                        true,
                    )
                }
                None => return reply(416, "no upload in progress for this key"),
            }
        }
    };

    // The digest before this part, to roll back to if the part does not arrive whole.
    let before = partial.hasher.clone();
    let mut body = req.into_body();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The client went away mid-body: forget this request's bytes, keep the upload.
            if !duplicate && range.is_some_and(|(first, _, _)| first > 0) {
                partial.hasher = before;
                lock(&state).partials.insert(key, partial);
            }
            return reply(400, "body interrupted");
        };
        if let Some(data) = frame.data_ref() {
            len += data.len() as u64;
            if !duplicate {
                partial.hasher.update(data);
            }
        }
    }
    if duplicate {
        return reply(200, "already have this range");
    }
    let mut s = lock(&state);
    match range {
        None => {
            s.partials.remove(&key);
            s.objects.insert(
                key,
                Stored {
                    size: len,
                    sha256: partial.hasher.finalize().into(),
                },
            );
            reply(201, "stored")
        }
        Some((first, last, total)) => {
            if len != last - first + 1 {
                if first > 0 {
                    // Keep what came before; this part must be sent again.
                    partial.hasher = before;
                    s.partials.insert(key, partial);
                }
                return reply(400, "body length does not match Content-Range");
            }
            partial.received = last + 1;
            match total {
                Some(t) if t == partial.received => {
                    s.objects.insert(
                        key,
                        Stored {
                            size: t,
                            sha256: partial.hasher.finalize().into(),
                        },
                    );
                    reply(201, "stored")
                }
                Some(t) => reply(
                    400,
                    &format!("total {t} but {} bytes received", partial.received),
                ),
                None => {
                    s.partials.insert(key, partial);
                    reply(202, "part accepted")
                }
            }
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

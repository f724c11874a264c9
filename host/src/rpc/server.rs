//! The psrpc server side: subscribe to a method's request channel, bid, wait for the claim,
//! run the handler, respond (spec §2.1).
//!
//! One [`Registration`] per (method, topic). Each incoming request runs in its own task so a
//! slow handler never delays bids on other requests. Dropping a registration unsubscribes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use egress_proto::psrpc::{ClaimRequest, Request, Response};

use super::bus::Bus;
use super::envelope::{self, Envelope};
use super::error::{Code, RpcError};
use super::{channel, ids};

/// How a method routes requests (spec §1.8, §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Broadcast; every server bids its own affinity; the caller picks; claim required.
    Affinity,
    /// Queue (`SET NX`) among processes; the winner bids 1.0; claim required.
    Queue,
    /// Broadcast; every server answers directly; no claim.
    Multi,
}

/// A psrpc method as the generated Go code registers it.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub service: &'static str,
    pub name: &'static str,
    pub routing: Routing,
}

/// What a handler learns about the request besides its payload.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_id: String,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The caller's deadline, as an instant on our clock.
    pub deadline: tokio::time::Instant,
    /// Unix ns of the caller's deadline (to clamp nested calls, as Go does).
    pub expiry_unix_nanos: i64,
}

/// How a bid ended, as psrpc's `ClaimOutcome` names it (the `outcome` label of
/// `livekit_psrpc_claim_wait_time_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The caller picked us; the handler runs.
    Granted,
    /// The caller picked another server.
    LostToPeer,
    /// The request expired before the caller decided; the handler does not run.
    TimedOut,
}

impl ClaimOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimOutcome::Granted => "granted",
            ClaimOutcome::LostToPeer => "lost_to_peer",
            ClaimOutcome::TimedOut => "timed_out",
        }
    }
}

/// Server-side lifecycle events the service exports as `livekit_psrpc_*` metrics, at the
/// points where Go's psrpc reports them (`RequestObserver` and the server metrics
/// interceptor):
/// - `request_received`: every request taken off the bus (after the queue lock), expired or not;
/// - `request_expired`: a received request already past its expiry, dropped unanswered;
/// - `claimed`: a bid was published and the caller's decision (or expiry) arrived; `waited`
///   is measured from the bid's publication;
/// - `handled`: the handler ran and returned (`error` is its code). Requests answered
///   without running the handler (malformed payloads) are not reported, as in Go.
pub trait ServerObserver: Send + Sync {
    fn request_received(&self, _method: &Method) {}
    fn request_expired(&self, _method: &Method) {}
    fn claimed(&self, _method: &Method, _outcome: ClaimOutcome, _waited: Duration) {}
    fn handled(&self, _method: &Method, _error: Option<Code>) {}
}

struct NoObserver;
impl ServerObserver for NoObserver {}

/// The server half of one psrpc service object (`SRV_…`).
#[derive(Clone)]
pub struct RpcServer {
    bus: Bus,
    server_id: String,
    observer: Arc<dyn ServerObserver>,
}

/// Keeps a (method, topic) subscribed. Dropping it unsubscribes.
pub struct Registration {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

type ClaimBook = Arc<Mutex<HashMap<String, oneshot::Sender<String>>>>;

pub fn now_unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl RpcServer {
    pub fn new(bus: Bus) -> Self {
        RpcServer {
            bus,
            server_id: ids::new_server_id(),
            observer: Arc::new(NoObserver),
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn ServerObserver>) -> Self {
        self.observer = observer;
        self
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Subscribes `method` on `topic` and serves it until the registration is dropped.
    ///
    /// `affinity` is called on every decoded request of an affinity method: a negative value
    /// means "do not bid" (the request is dropped silently). Queue methods always bid 1.0.
    pub async fn register<Req, Resp, A, H, Fut>(
        &self,
        method: Method,
        topic: &[&str],
        affinity: A,
        handler: H,
    ) -> Registration
    where
        Req: Message + Default + Send + 'static,
        Resp: Message + Send + 'static,
        A: Fn(&Req) -> f32 + Send + Sync + 'static,
        H: Fn(Req, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, RpcError>> + Send + 'static,
    {
        let claims: ClaimBook = Arc::default();
        let mut tasks = Vec::new();
        // Subscribe RCLAIM before REQ so that no claim response can arrive unheard.
        if method.routing != Routing::Multi {
            let mut sub = self
                .bus
                .subscribe(&channel::claim_response(method.service, method.name, topic))
                .await;
            let claims = claims.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(payload) = sub.recv().await {
                    if let Envelope::ClaimResponse(c) = Envelope::decode(&payload) {
                        let waiter = claims
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&c.request_id);
                        if let Some(tx) = waiter {
                            let _ = tx.send(c.server_id);
                        }
                    }
                }
            }));
        }
        let mut requests = self
            .bus
            .subscribe(&channel::request(method.service, method.name, topic))
            .await;
        let shared = Arc::new(Served {
            server: self.clone(),
            method,
            claims,
            affinity,
            handler,
        });
        tasks.push(tokio::spawn(async move {
            while let Some(payload) = requests.recv().await {
                let shared = shared.clone();
                tokio::spawn(async move { shared.serve(payload).await });
            }
        }));
        Registration { tasks }
    }
}

struct Served<A, H> {
    server: RpcServer,
    method: Method,
    claims: ClaimBook,
    affinity: A,
    handler: H,
}

impl<A, H> Served<A, H> {
    async fn serve<Req, Resp, Fut>(&self, payload: Bytes)
    where
        Req: Message + Default,
        Resp: Message,
        A: Fn(&Req) -> f32,
        H: Fn(Req, RequestContext) -> Fut,
        Fut: Future<Output = Result<Resp, RpcError>>,
    {
        let Envelope::Request(req) = Envelope::decode(&payload) else {
            return; // a wrong type on a REQ channel is ignored, never answered
        };
        let method = &self.method;
        let bus = &self.server.bus;
        if method.routing == Routing::Queue && !bus.try_lock(&payload).await {
            return; // another process won this message
        }
        self.server.observer.request_received(method);
        let now = now_unix_nanos();
        if now >= req.expiry {
            self.server.observer.request_expired(method);
            tracing::debug!(method = method.name, request_id = %req.request_id, "expired request dropped");
            return;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_nanos((req.expiry - now) as u64);
        let decoded = match Req::decode(req.raw_request.as_slice()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(method = method.name, request_id = %req.request_id, error = %e, "malformed request");
                let err = RpcError::new(Code::MalformedRequest, format!("malformed request: {e}"));
                self.respond(&req, Err(err)).await;
                return;
            }
        };
        if method.routing != Routing::Multi {
            let affinity = if method.routing == Routing::Affinity {
                (self.affinity)(&decoded)
            } else {
                1.0
            };
            if affinity < 0.0 {
                return; // cannot take it: no bid
            }
            if !self.claim(&req, affinity, deadline).await {
                return;
            }
        }
        let ctx = RequestContext {
            request_id: req.request_id.clone(),
            client_id: req.client_id.clone(),
            metadata: req.metadata.clone(),
            deadline,
            expiry_unix_nanos: req.expiry,
        };
        let result = match tokio::time::timeout_at(deadline, (self.handler)(decoded, ctx)).await {
            Ok(r) => r.map(|resp| resp.encode_to_vec()),
            Err(_) => Err(RpcError::new(Code::DeadlineExceeded, "request timed out")),
        };
        let code = result.as_ref().err().map(|e| e.code);
        self.server.observer.handled(method, code);
        self.respond(&req, result).await;
    }

    /// Bids and waits for the caller's decision. True when we won.
    async fn claim(&self, req: &Request, affinity: f32, deadline: tokio::time::Instant) -> bool {
        let (tx, rx) = oneshot::channel();
        // Register the wait before publishing the bid (spec §6.3).
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.request_id.clone(), tx);
        let bid = ClaimRequest {
            request_id: req.request_id.clone(),
            server_id: self.server.server_id.clone(),
            affinity,
        };
        let channel = channel::claim_request(self.method.service, &req.client_id);
        let published = self
            .server
            .bus
            .publish(&channel, envelope::encode_claim_request(&bid))
            .await;
        // The wait is the caller's decision latency, so it starts once the bid is out.
        let bid_at = tokio::time::Instant::now();
        let outcome = match published {
            // An unsent bid cannot be granted; like Go, give up at once and observe nothing.
            Err(e) => {
                tracing::warn!(method = self.method.name, error = %e, "could not publish claim");
                None
            }
            Ok(()) => Some(match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(winner)) if winner == self.server.server_id => ClaimOutcome::Granted,
                Ok(Ok(_)) => ClaimOutcome::LostToPeer,
                // The caller's deadline passed (or the registration is closing) undecided.
                _ => ClaimOutcome::TimedOut,
            }),
        };
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req.request_id);
        if let Some(outcome) = outcome {
            self.server
                .observer
                .claimed(&self.method, outcome, bid_at.elapsed());
        }
        outcome == Some(ClaimOutcome::Granted)
    }

    async fn respond(&self, req: &Request, result: Result<Vec<u8>, RpcError>) {
        let mut resp = Response {
            request_id: req.request_id.clone(),
            server_id: self.server.server_id.clone(),
            sent_at: now_unix_nanos(),
            ..Default::default()
        };
        match result {
            Ok(raw) => resp.raw_response = raw,
            Err(e) => {
                resp.error = e.message;
                resp.code = e.code.as_str().to_owned();
            }
        }
        let channel = channel::response(self.method.service, &req.client_id);
        if let Err(e) = self
            .server
            .bus
            .publish(&channel, envelope::encode_response(&resp))
            .await
        {
            tracing::warn!(method = self.method.name, error = %e, "could not publish response");
        }
    }
}

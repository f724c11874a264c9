//! The psrpc client side (spec §2.2): publish a request, pick a bidder, announce the winner,
//! wait for the response.
//!
//! One [`RpcClient`] per service object (`CLI_…`). Its CLAIM and RES channels are subscribed
//! (and confirmed by Redis) before the first request goes out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use egress_proto::psrpc::{ClaimRequest, ClaimResponse, Request, Response};

use super::bus::Bus;
use super::envelope::{self, Envelope};
use super::error::{Code, RpcError};
use super::server::{Method, Routing, now_unix_nanos};
use super::{channel, ids};

/// psrpc's default selection timeout when none is configured.
pub const DEFAULT_SELECTION_TIMEOUT: Duration = Duration::from_secs(1);

enum Event {
    Claim(ClaimRequest),
    Response(Response),
}

type Pending = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Event>>>>;

/// How long to wait, and for what.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    /// Overall timeout, measured from the publish.
    pub timeout: Duration,
    /// Cap on waiting for a bid.
    pub selection_timeout: Duration,
    /// Absolute cap (unix ns) inherited from an enclosing request, as Go clamps to the context.
    pub expiry_cap_unix_nanos: Option<i64>,
}

impl CallOptions {
    pub fn with_timeout(timeout: Duration) -> Self {
        CallOptions {
            timeout,
            selection_timeout: DEFAULT_SELECTION_TIMEOUT,
            expiry_cap_unix_nanos: None,
        }
    }
}

/// Client-side failures the service exports as `livekit_psrpc_error_total{role="client"}`,
/// counted per call as Go's psrpc client metrics interceptor does: a unary call that ends in
/// an error reports its code; a multi call with no successful response reports `Unknown`
/// (Go's observer gets no code for multi calls).
pub trait ClientObserver: Send + Sync {
    fn call_failed(&self, _method: &Method, _code: Code) {}
}

pub struct RpcClient {
    bus: Bus,
    client_id: String,
    pending: Pending,
    tasks: Vec<JoinHandle<()>>,
    observer: Option<Arc<dyn ClientObserver>>,
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl RpcClient {
    pub async fn new(bus: Bus, service: &'static str) -> RpcClient {
        let client_id = ids::new_client_id();
        let pending: Pending = Arc::default();
        let mut tasks = Vec::new();
        for ch in [
            channel::claim_request(service, &client_id),
            channel::response(service, &client_id),
        ] {
            let mut sub = bus.subscribe(&ch).await;
            let pending = pending.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(payload) = sub.recv().await {
                    let (id, event) = match Envelope::decode(&payload) {
                        Envelope::ClaimRequest(c) => (c.request_id.clone(), Event::Claim(c)),
                        Envelope::Response(r) => (r.request_id.clone(), Event::Response(r)),
                        _ => continue,
                    };
                    let tx = pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&id)
                        .cloned();
                    if let Some(tx) = tx {
                        let _ = tx.send(event);
                    }
                }
            }));
        }
        RpcClient {
            bus,
            client_id,
            pending,
            tasks,
            observer: None,
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn ClientObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn observe_failure(&self, method: &Method, code: Code) {
        if let Some(o) = &self.observer {
            o.call_failed(method, code);
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn build_request(&self, raw: Vec<u8>, multi: bool, opts: &CallOptions) -> Request {
        let sent_at = now_unix_nanos();
        let mut expiry = sent_at + opts.timeout.as_nanos() as i64;
        if let Some(cap) = opts.expiry_cap_unix_nanos {
            expiry = expiry.min(cap);
        }
        Request {
            request_id: ids::new_request_id(),
            client_id: self.client_id.clone(),
            sent_at,
            expiry,
            multi,
            raw_request: raw,
            ..Default::default()
        }
    }

    /// A single-server call. Takes the first bid for queue methods, the best bid within the
    /// selection window for affinity methods.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        method: Method,
        topic: &[&str],
        req: &Req,
        opts: CallOptions,
    ) -> Result<Resp, RpcError> {
        let result = self.call_once(method, topic, req, opts).await;
        if let Err(e) = &result {
            self.observe_failure(&method, e.code);
        }
        result
    }

    async fn call_once<Req: Message, Resp: Message + Default>(
        &self,
        method: Method,
        topic: &[&str],
        req: &Req,
        opts: CallOptions,
    ) -> Result<Resp, RpcError> {
        let request = self.build_request(req.encode_to_vec(), false, &opts);
        let request_id = request.request_id.clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request_id.clone(), tx);
        let _cleanup = PendingGuard {
            pending: self.pending.clone(),
            id: request_id.clone(),
        };

        let deadline = tokio::time::Instant::now() + opts.timeout;
        let req_channel = channel::request(method.service, method.name, topic);
        self.bus
            .publish(&req_channel, envelope::encode_request(&request))
            .await
            .map_err(|e| RpcError::new(Code::Unavailable, format!("publish failed: {e}")))?;

        // Selection.
        let selection_deadline = deadline.min(tokio::time::Instant::now() + opts.selection_timeout);
        let mut best: Option<ClaimRequest> = None;
        let mut early_error: Option<RpcError> = None;
        let mut claims_seen = 0usize;
        let mut short_circuit: Option<tokio::time::Instant> = None;
        loop {
            let until = short_circuit.map_or(selection_deadline, |s| s.min(selection_deadline));
            let event = match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(e)) => e,
                _ => break,
            };
            match event {
                Event::Claim(c) => {
                    claims_seen += 1;
                    if c.affinity <= 0.0 {
                        continue;
                    }
                    match method.routing {
                        Routing::Queue | Routing::Multi => {
                            best = Some(c);
                            break;
                        }
                        Routing::Affinity => {
                            if best.as_ref().is_none_or(|b| c.affinity > b.affinity) {
                                let top = c.affinity >= 1.0;
                                best = Some(c);
                                if top {
                                    break;
                                }
                                short_circuit.get_or_insert(
                                    tokio::time::Instant::now() + Duration::from_millis(500),
                                );
                            }
                        }
                    }
                }
                Event::Response(r) if !r.error.is_empty() => {
                    early_error = Some(RpcError::new(Code::from_wire(&r.code), r.error));
                }
                Event::Response(_) => {}
            }
        }
        let Some(winner) = best else {
            return Err(early_error.unwrap_or_else(|| {
                if claims_seen == 0 {
                    RpcError::no_response()
                } else {
                    RpcError::new(
                        Code::Unavailable,
                        format!("no servers available (received {claims_seen} responses)"),
                    )
                }
            }));
        };
        let decision = ClaimResponse {
            request_id: request_id.clone(),
            server_id: winner.server_id.clone(),
        };
        let rclaim = channel::claim_response(method.service, method.name, topic);
        self.bus
            .publish(&rclaim, envelope::encode_claim_response(&decision))
            .await
            .map_err(|e| RpcError::new(Code::Unavailable, format!("publish failed: {e}")))?;

        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Event::Response(r)))
                    if r.server_id == winner.server_id || r.server_id.is_empty() =>
                {
                    return decode_response(r);
                }
                Ok(Some(_)) => continue,
                _ => return Err(RpcError::timed_out()),
            }
        }
    }

    /// A multi call: every server answers; collects until the timeout (Go does not stop early).
    pub async fn call_multi<Req: Message, Resp: Message + Default>(
        &self,
        method: Method,
        topic: &[&str],
        req: &Req,
        timeout: Duration,
    ) -> Vec<Result<Resp, RpcError>> {
        let opts = CallOptions::with_timeout(timeout);
        let request = self.build_request(req.encode_to_vec(), true, &opts);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.request_id.clone(), tx);
        let _cleanup = PendingGuard {
            pending: self.pending.clone(),
            id: request.request_id.clone(),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let channel = channel::request(method.service, method.name, topic);
        if let Err(e) = self
            .bus
            .publish(&channel, envelope::encode_request(&request))
            .await
        {
            self.observe_failure(&method, Code::Unknown);
            return vec![Err(RpcError::new(
                Code::Unavailable,
                format!("publish failed: {e}"),
            ))];
        }
        let mut out = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if let Event::Response(r) = event {
                out.push(decode_response(r));
            }
        }
        if !out.iter().any(Result::is_ok) {
            self.observe_failure(&method, Code::Unknown);
        }
        out
    }
}

fn decode_response<Resp: Message + Default>(r: Response) -> Result<Resp, RpcError> {
    if !r.error.is_empty() {
        return Err(RpcError::new(Code::from_wire(&r.code), r.error));
    }
    Resp::decode(r.raw_response.as_slice())
        .map_err(|e| RpcError::new(Code::MalformedResult, format!("malformed result: {e}")))
}

struct PendingGuard {
    pending: Pending,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

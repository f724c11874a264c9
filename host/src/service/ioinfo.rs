//! The IOInfo client: how the egress reports status to livekit-server (spec §3.4, §2.4).
//!
//! `CreateEgress` is called once per egress before StartEgress answers, clamped to the
//! StartEgress deadline. `UpdateEgress` is retried on timeouts and "no response" with backoff
//! from 250 ms doubling to 1 min, as the Go egress does, because a lost status update leaves
//! the server (and its webhooks) with a wrong picture of the recording.

use std::sync::Arc;
use std::time::Duration;

use egress_proto::livekit::EgressInfo;

use super::methods::{IO_CREATE_EGRESS, IO_UPDATE_EGRESS};
use crate::rpc::{Bus, CallOptions, ClientObserver, RpcClient, RpcError};

/// `google.protobuf.Empty`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Debug, Clone, Copy)]
pub struct IoTimeouts {
    pub create: Duration,
    pub update: Duration,
    /// 0 means psrpc's default (1 s).
    pub selection: Duration,
}

pub struct IoInfoClient {
    client: RpcClient,
    timeouts: IoTimeouts,
}

impl IoInfoClient {
    pub async fn new(bus: Bus, timeouts: IoTimeouts) -> Self {
        IoInfoClient {
            client: RpcClient::new(bus, "IOInfo").await,
            timeouts,
        }
    }

    /// Counts failed calls (each attempt, as Go's client interceptor sees them) in `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn ClientObserver>) -> Self {
        self.client = self.client.with_observer(observer);
        self
    }

    fn options(&self, timeout: Duration, cap: Option<i64>) -> CallOptions {
        let mut opts = CallOptions::with_timeout(timeout);
        if !self.timeouts.selection.is_zero() {
            opts.selection_timeout = self.timeouts.selection;
        }
        opts.expiry_cap_unix_nanos = cap;
        opts
    }

    /// Stores a new egress at livekit-server. `expiry_cap_unix_nanos` is the StartEgress deadline.
    pub async fn create_egress(
        &self,
        info: &EgressInfo,
        expiry_cap_unix_nanos: Option<i64>,
    ) -> Result<(), RpcError> {
        let opts = self.options(self.timeouts.create, expiry_cap_unix_nanos);
        self.client
            .call::<_, Empty>(IO_CREATE_EGRESS, &[], info, opts)
            .await
            .map(|_| ())
    }

    /// Sends one status update, retrying while livekit-server is unreachable, up to `give_up`.
    pub async fn update_egress(
        &self,
        info: &EgressInfo,
        give_up: Duration,
    ) -> Result<(), RpcError> {
        let start = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(250);
        loop {
            let opts = self.options(self.timeouts.update, None);
            match self
                .client
                .call::<_, Empty>(IO_UPDATE_EGRESS, &[], info, opts)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if (e.is_timeout() || e.is_unavailable())
                        && start.elapsed() + backoff < give_up =>
                {
                    tracing::warn!(egress_id = %info.egress_id, error = %e, retry_in = ?backoff, "UpdateEgress failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

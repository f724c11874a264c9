//! The egress's psrpc surface: `EgressInternal.StartEgress` (affinity bidding on the
//! `cluster_id` topic) and `EgressInternal.ListActiveEgress` (multi).
//!
//! `EgressHandler.StopEgress`/`UpdateStream` are registered per running egress on its
//! `egress_id` topic, for as long as it runs, by the pipeline layer that owns it.

use std::sync::Arc;

use egress_proto::livekit::EgressInfo;
use egress_proto::rpc::{ListActiveEgressRequest, ListActiveEgressResponse, StartEgressRequest};

use super::errors;
use super::methods::{LIST_ACTIVE_EGRESS, START_EGRESS};
use super::request::{classify, cpu_cost};
use super::worker::Worker;
use crate::config::CpuCostConfig;
use crate::rpc::{Registration, RpcError, RpcServer};

#[derive(Clone)]
pub struct EgressServer {
    worker: Arc<Worker>,
    costs: CpuCostConfig,
    rpc: RpcServer,
}

impl EgressServer {
    pub fn new(worker: Arc<Worker>, costs: CpuCostConfig, rpc: RpcServer) -> Self {
        EgressServer { worker, costs, rpc }
    }

    /// Subscribes StartEgress on the cluster topic. Dropping the registration stops bidding,
    /// which is the first step of a drain.
    pub async fn register_start(&self, cluster_id: &str) -> Registration {
        let bid = self.clone();
        let handle = self.clone();
        self.rpc
            .register(
                START_EGRESS,
                &[cluster_id],
                move |req: &StartEgressRequest| bid.affinity(req),
                move |req: StartEgressRequest, ctx| {
                    let this = handle.clone();
                    async move {
                        tracing::info!(egress_id = %req.egress_id, request_id = %ctx.request_id,
                            node_id = %this.worker.node_id, "StartEgress claimed");
                        this.start_egress(req)
                    }
                },
            )
            .await
    }

    pub async fn register_list(&self) -> Registration {
        let worker = self.worker.clone();
        self.rpc
            .register(LIST_ACTIVE_EGRESS, &[""], |_: &ListActiveEgressRequest| 1.0, move |_, _| {
                let egress_ids = worker.active_ids();
                async move { Ok::<_, RpcError>(ListActiveEgressResponse { egress_ids }) }
            })
            .await
    }

    fn affinity(&self, req: &StartEgressRequest) -> f32 {
        match classify(req) {
            // A request without a type: bid so we can answer it with a clear error.
            None => super::worker::LAST_RESORT_AFFINITY,
            Some(c) => self.worker.affinity(&c, cpu_cost(&c, &self.costs, req.estimated_cpu)),
        }
    }

    /// The checks of the Go egress's `StartEgress`, in its order.
    fn start_egress(&self, req: StartEgressRequest) -> Result<EgressInfo, RpcError> {
        if self.worker.is_disabled() {
            return Err(errors::shutting_down());
        }
        if self.worker.contains(&req.egress_id) {
            return Err(errors::already_exists());
        }
        let classified = classify(&req).ok_or_else(|| errors::invalid_input("request"))?;
        if req.egress_id.is_empty() {
            return Err(errors::invalid_input("egressID"));
        }
        let cpu = cpu_cost(&classified, &self.costs, req.estimated_cpu);
        if !self.worker.can_accept(cpu) {
            return Err(errors::not_enough_cpu());
        }
        // Validation. No request type has a capture pipeline in this build (`Worker::can_run`
        // is false for all), so every well-formed request is refused here, honestly, with the
        // Go egress's error. Pipelines hook in at this point as they land.
        let label = classified.request_type.label();
        tracing::warn!(egress_id = %req.egress_id, request_type = label,
            "refusing a request type this build cannot run");
        Err(errors::not_supported(&format!("{label} egress")))
    }
}

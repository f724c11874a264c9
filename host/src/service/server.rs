//! The egress's psrpc surface: `EgressInternal.StartEgress` (affinity bidding on the
//! `cluster_id` topic) and `EgressInternal.ListActiveEgress` (multi).
//!
//! `EgressHandler.StopEgress`/`UpdateStream` are registered per running egress on its
//! `egress_id` topic, for as long as it runs, by the pipeline layer that owns it.

use std::sync::Arc;

use egress_proto::livekit::EgressInfo;
use egress_proto::rpc::{ListActiveEgressRequest, ListActiveEgressResponse, StartEgressRequest};

use super::ioinfo::IoInfoClient;
use super::launcher::Launcher;
use super::methods::{LIST_ACTIVE_EGRESS, START_EGRESS};
use super::worker::{ActiveEgress, Worker};
use crate::config::ServiceConfig;
use crate::core::errors;
use crate::core::info::starting_info;
use crate::core::request::{classify, cpu_cost};
use crate::rpc::{Registration, RequestContext, RpcError, RpcServer};

#[derive(Clone)]
pub struct EgressServer {
    worker: Arc<Worker>,
    config: Arc<ServiceConfig>,
    io: Arc<IoInfoClient>,
    launcher: Arc<Launcher>,
    rpc: RpcServer,
}

impl EgressServer {
    pub fn new(
        worker: Arc<Worker>,
        config: Arc<ServiceConfig>,
        io: Arc<IoInfoClient>,
        launcher: Arc<Launcher>,
        rpc: RpcServer,
    ) -> Self {
        EgressServer {
            worker,
            config,
            io,
            launcher,
            rpc,
        }
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
                        this.start_egress(req, ctx).await
                    }
                },
            )
            .await
    }

    pub async fn register_list(&self) -> Registration {
        let worker = self.worker.clone();
        self.rpc
            .register(
                LIST_ACTIVE_EGRESS,
                &[""],
                |_: &ListActiveEgressRequest| 1.0,
                move |_, _| {
                    let egress_ids = worker.active_ids();
                    async move { Ok::<_, RpcError>(ListActiveEgressResponse { egress_ids }) }
                },
            )
            .await
    }

    fn affinity(&self, req: &StartEgressRequest) -> f32 {
        match classify(req) {
            // A request without a type: bid so we can answer it with a clear error.
            None => super::worker::LAST_RESORT_AFFINITY,
            Some(c) => self
                .worker
                .affinity(&c, cpu_cost(&c, &self.config.cpu_cost, req.estimated_cpu)),
        }
    }

    /// The Go egress's `StartEgress`: the same checks in the same order, then CreateEgress at
    /// livekit-server and the handler launch in parallel.
    async fn start_egress(
        &self,
        req: StartEgressRequest,
        ctx: RequestContext,
    ) -> Result<EgressInfo, RpcError> {
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
        let cpu = cpu_cost(&classified, &self.config.cpu_cost, req.estimated_cpu);
        if !self.worker.can_accept(cpu) {
            return Err(errors::not_enough_cpu());
        }
        // The recorder's settings, the outputs' storage and the layout's renderer, as the handler
        // will meet them.
        let valid =
            crate::pipeline::validate(&self.config, &req, &classified, &self.launcher.plugins)
                .await;
        if let Err(e) = valid {
            tracing::warn!(egress_id = %req.egress_id, request_type = classified.request_type.label(),
                error = %e, "request refused");
            return Err(e);
        }
        let info = starting_info(&req, &classified);
        let active = ActiveEgress {
            request_type: classified.request_type,
            cpu,
        };
        if !self.worker.admit(&req.egress_id, active) {
            return Err(errors::already_exists());
        }
        let (created, launched) = tokio::join!(
            self.io.create_egress(&info, Some(ctx.expiry_unix_nanos)),
            self.launcher.launch(&req, &info, classified)
        );
        match (created, launched) {
            (_, Err(launch_err)) => {
                self.worker.finish(&req.egress_id);
                Err(launch_err)
            }
            (Err(create_err), Ok(())) => {
                // Launched but not stored at livekit-server: abort, as Go does.
                self.launcher
                    .kill(&req.egress_id, &create_err.message)
                    .await;
                Err(create_err)
            }
            (Ok(()), Ok(())) => Ok(info),
        }
    }
}

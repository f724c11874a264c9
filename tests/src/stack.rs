//! Redis + livekit-server + egress, started and ready.

use crate::egress::{Egress, egress_config};
use crate::free_port;
use crate::livekit::LiveKitServer;
use crate::lk::Lk;
use crate::redis::Redis;

/// All three services. Fields drop in reverse order of start: egress, then livekit, then Redis.
pub struct Stack {
    pub egress: Egress,
    pub livekit: LiveKitServer,
    pub redis: Redis,
    pub health_port: u16,
    pub prometheus_port: u16,
    /// The config the egress was started with.
    pub config: String,
}

impl Stack {
    /// Starts Redis, livekit-server and the egress with [`egress_config`], and waits until the
    /// egress is healthy.
    pub async fn start() -> Stack {
        Stack::start_with(|yaml| yaml).await
    }

    /// Like [`start`](Self::start), with the egress config passed through `edit` first (to add
    /// keys such as `storage:` or `cpu_cost:`).
    pub async fn start_with(edit: impl FnOnce(String) -> String) -> Stack {
        let redis = Redis::start().await;
        let livekit = LiveKitServer::start(&redis).await;
        let health_port = free_port();
        let prometheus_port = free_port();
        let config = edit(egress_config(
            &redis,
            &livekit,
            health_port,
            prometheus_port,
        ));
        let mut egress = Egress::start(config.clone()).await;
        egress.wait_healthy(health_port).await;
        Stack {
            egress,
            livekit,
            redis,
            health_port,
            prometheus_port,
            config,
        }
    }

    /// An [`Lk`] for this stack's livekit-server.
    pub fn lk(&self) -> Lk {
        Lk::new(&self.livekit)
    }

    /// `http://127.0.0.1:{health_port}/`
    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.health_port)
    }

    /// `http://127.0.0.1:{prometheus_port}/metrics`
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.prometheus_port)
    }
}

//! The long-running service: connect to Redis, serve psrpc, health, metrics and templates,
//! and drain on SIGTERM/SIGINT.
//!
//! Its rooms: the psrpc face ([`server`]: StartEgress and ListActiveEgress; [`methods`]: the
//! methods and their routing), admission ([`worker`]: what runs here, whether to bid),
//! [`launcher`] (handler child processes, their psrpc topics, the IOInfo updates they send
//! through [`ioinfo`]), [`http`], [`metrics`] and [`logging`]. The service never records: it asks
//! the pipeline's contract (`crate::pipeline::{supports, validate}`) and hands the request to a
//! handler process (`crate::process`).
//!
//! Start-up order mirrors the Go egress (spec §4.2): IOInfo client, ListActiveEgress, then
//! StartEgress last, so the worker only bids once everything it needs is in place. Shutdown
//! runs it backwards: stop bidding first, let running egresses finish, then exit 0.

pub mod http;
pub mod ioinfo;
pub mod launcher;
pub mod logging;
pub mod methods;
pub mod metrics;
pub mod server;
pub mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigSource, ServiceConfig};
use crate::rpc::{Bus, RedisTarget, RpcServer, ids};
use ioinfo::{IoInfoClient, IoTimeouts};
use launcher::Launcher;
use metrics::Metrics;
use server::EgressServer;
use worker::Worker;

/// State shared by the RPC handlers and the HTTP endpoints.
pub struct Shared {
    pub config: Arc<ServiceConfig>,
    pub worker: Arc<Worker>,
    pub metrics: Arc<Metrics>,
    /// The active sink plugins, loaded (and checked) at start-up.
    pub plugins: Arc<crate::plugins::PluginRegistry>,
}

/// Where the template server finds its files: `EGRESS_TEMPLATES_DIR`, else `./templates/dist`
/// (what `scripts/setup` builds from `templates/`).
fn templates_dir() -> PathBuf {
    std::env::var_os("EGRESS_TEMPLATES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("templates/dist"))
}

/// Where per-egress work directories go: `EGRESS_TMP_DIR`, else `$TMPDIR/egress`.
fn tmp_root() -> PathBuf {
    std::env::var_os("EGRESS_TMP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("egress"))
}

fn redis_target(config: &ServiceConfig) -> Result<RedisTarget, String> {
    let r = &config.redis;
    if !r.sentinel_addresses.is_empty() || !r.cluster_addresses.is_empty() {
        return Err(
            "redis.sentinel_addresses / redis.cluster_addresses are not supported yet: \
                    point redis.address at the primary"
                .into(),
        );
    }
    let tls = r.tls.as_ref();
    Ok(RedisTarget {
        address: r.address.clone(),
        username: r.username.clone(),
        password: r.password.expose().to_owned(),
        db: i64::from(r.db),
        use_tls: r.tls_enabled(),
        tls_insecure: tls.is_some_and(|t| t.insecure),
    })
}

/// The Go egress logs an error when the host cannot fit its largest job; so do we, naming the
/// request types that this host will never bid on with the configured costs.
fn warn_about_small_hosts(config: &ServiceConfig, cores: f64) {
    let c = &config.cpu_cost;
    let too_big: Vec<&str> = [
        ("room_composite", c.room_composite_cpu_cost),
        ("web", c.web_cpu_cost),
        ("participant", c.participant_cpu_cost),
        ("track_composite", c.track_composite_cpu_cost),
        ("track", c.track_cpu_cost),
    ]
    .into_iter()
    .filter(|(_, cost)| *cost > cores)
    .map(|(name, _)| name)
    .collect();
    if !too_big.is_empty() {
        tracing::error!(cores, request_types = ?too_big,
            "not enough CPU for these request types with the configured cpu_cost: they will never be accepted");
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; the service will not drain on signals");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received: draining"),
        _ = int.recv() => tracing::info!("SIGINT received: draining"),
    }
}

pub async fn run(config: ServiceConfig, source: ConfigSource) -> ExitCode {
    let config = Arc::new(config);
    let node_id = ids::new_id("NE_");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0);
    let worker = Arc::new(Worker::new(
        node_id.clone(),
        cores,
        config.cpu_cost.max_cpu_utilization,
    ));
    let metrics = match Metrics::new(&node_id, &config.cluster_id) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            tracing::error!(error = %e, "cannot create metrics");
            return ExitCode::FAILURE;
        }
    };
    // Uploads in this process (a dead handler's partial file) and, through IPC, in every handler
    // are counted here.
    let counting = metrics.clone();
    let _uploads = crate::storage::report::install(Arc::new(move |r| counting.upload(&r)));
    let target = match redis_target(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("config error: {e}");
            return ExitCode::from(2);
        }
    };
    // Plugins load before anything listens: a bad `plugins:` entry fails start-up, naming it.
    let plugins = match crate::plugins::PluginRegistry::load(config.plugins.as_deref()) {
        Ok(registry) => Arc::new(registry),
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let shared = Arc::new(Shared {
        config: config.clone(),
        worker: worker.clone(),
        metrics: metrics.clone(),
        plugins,
    });
    if let Err(e) = http::start(shared.clone(), templates_dir()).await {
        tracing::error!(error = %e, "cannot listen");
        return ExitCode::FAILURE;
    }
    tracing::info!(node_id = %node_id, cluster_id = %config.cluster_id, cores, "egress service starting");
    warn_about_small_hosts(&config, cores);

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    // Redis: keep trying with backoff; health stays 503 meanwhile and says why.
    let mut backoff = Duration::from_millis(250);
    let bus = loop {
        tokio::select! {
            r = Bus::connect(&target) => match r {
                Ok(bus) => break bus,
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "cannot connect to redis");
                }
            },
            _ = &mut shutdown => return ExitCode::SUCCESS,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut shutdown => return ExitCode::SUCCESS,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    };
    let mut state = bus.connection_state();
    let w = worker.clone();
    tokio::spawn(async move {
        loop {
            w.set_connected(*state.borrow_and_update());
            if state.changed().await.is_err() {
                break;
            }
        }
    });

    let timeouts = IoTimeouts {
        create: config.io_create_timeout,
        update: config.io_update_timeout,
        selection: config.io_selection_timeout,
    };
    let io = Arc::new(
        IoInfoClient::new(bus.clone(), timeouts)
            .await
            .with_observer(metrics.clone()),
    );
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::error!(error = %e, "cannot find the egress executable to launch handlers");
            return ExitCode::FAILURE;
        }
    };
    let launcher = Arc::new(Launcher {
        exe,
        config_source: source,
        tmp_root: tmp_root(),
        worker: worker.clone(),
        io: io.clone(),
        config: config.clone(),
        plugins: shared.plugins.clone(),
        metrics: metrics.clone(),
        handler_rpc: RpcServer::new(bus.clone()).with_observer(metrics.clone()),
        links: Default::default(),
        shared: Default::default(),
    });
    let rpc = RpcServer::new(bus.clone()).with_observer(metrics.clone());
    let server = EgressServer::new(worker.clone(), config.clone(), io, launcher, rpc);
    let list = server.register_list().await;
    let start = server.register_start(&config.cluster_id).await;
    worker.set_connected(bus.is_connected());
    worker.set_ready();
    tracing::info!(node_id = %node_id, "egress service ready: bidding on StartEgress");

    shutdown.await;
    worker.start_draining();
    drop(start); // stop bidding first
    while worker.active_count() > 0 {
        tracing::info!(
            active = worker.active_count(),
            "waiting for running egresses to finish"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(list);
    tracing::info!("drained; exiting");
    ExitCode::SUCCESS
}

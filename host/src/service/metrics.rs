//! Prometheus metrics with the Go egress's names (reference §4.3), so existing dashboards and
//! the Helm autoscaler (`livekit_egress_available`) keep working.
//!
//! Gauges derived from worker state are refreshed at scrape time rather than on every change:
//! there is one writer of truth (the [`Worker`]) and no way for a gauge to drift from it.

use std::sync::Mutex;

use prometheus::{Encoder, Gauge, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::egress::request::RequestType;
use crate::egress::worker::Worker;
use crate::rpc::{Code, Method, ServerObserver};

pub struct Metrics {
    registry: Registry,
    available: Gauge,
    can_accept: Gauge,
    is_disabled: Gauge,
    is_terminating: Gauge,
    cpu_load: Gauge,
    requests: GaugeVec,
    load_ratio: GaugeVec,
    proc_rss: Gauge,
    handler_results: IntCounterVec,
    backup_storage_writes: IntCounterVec,
    rpc_received: IntCounterVec,
    rpc_expired: IntCounterVec,
    rpc_errors: IntCounterVec,
    cpu_sample: Mutex<Option<CpuSample>>,
}

#[derive(Clone, Copy)]
struct CpuSample {
    total: u64,
    idle: u64,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new(node_id: &str, cluster_id: &str) -> Result<Metrics, prometheus::Error> {
        let labels = [("node_id".to_owned(), node_id.to_owned()), ("cluster_id".to_owned(), cluster_id.to_owned())]
            .into_iter()
            .collect();
        let registry = Registry::new_custom(None, Some(labels))?;
        let gauge = |name: &str, help: &str| -> Result<Gauge, prometheus::Error> {
            let g = Gauge::with_opts(opts(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let available = gauge("livekit_egress_available", "1 when the node is idle (no active egress)")?;
        let can_accept = gauge("livekit_egress_can_accept_request", "1 when a web request would be admitted")?;
        let is_disabled = gauge("livekit_egress_is_disabled", "1 when shutting down or cut off from Redis")?;
        let is_terminating = gauge("livekit_egress_is_terminating", "1 after SIGTERM/SIGINT")?;
        let proc_rss = gauge("livekit_egress_proc_rss_bytes", "resident memory of the service process")?;
        let cpu_load = Gauge::with_opts(
            opts("livekit_node_cpu_load", "1 - idle/cores").const_label("node_type", "EGRESS"),
        )?;
        registry.register(Box::new(cpu_load.clone()))?;
        let requests = GaugeVec::new(opts("livekit_egress_requests", "active requests by type"), &["type"])?;
        registry.register(Box::new(requests.clone()))?;
        let load_ratio = GaugeVec::new(opts("livekit_load_ratio", "utilization / limit"), &["type"])?;
        registry.register(Box::new(load_ratio.clone()))?;
        let handler_results = IntCounterVec::new(
            opts("livekit_egress_handler_results_total", "handler outcomes"),
            &["type", "result"],
        )?;
        registry.register(Box::new(handler_results.clone()))?;
        let backup_storage_writes =
            IntCounterVec::new(opts("livekit_egress_backup_storage_writes", "outputs stored in the backup storage"), &["output_type"])?;
        registry.register(Box::new(backup_storage_writes.clone()))?;
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(opts(name, help).const_label("node_type", "EGRESS"), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let rpc_received = counter("livekit_psrpc_requests_received_total", "psrpc requests received", &["service", "method"])?;
        let rpc_expired = counter("livekit_psrpc_requests_expired_total", "psrpc requests dropped as expired", &["service", "method"])?;
        let rpc_errors = counter("livekit_psrpc_error_total", "psrpc error responses sent", &["service", "method", "code"])?;
        Ok(Metrics {
            registry,
            available,
            can_accept,
            is_disabled,
            is_terminating,
            cpu_load,
            requests,
            load_ratio,
            proc_rss,
            handler_results,
            backup_storage_writes,
            rpc_received,
            rpc_expired,
            rpc_errors,
            cpu_sample: Mutex::new(None),
        })
    }

    /// Counts a handler's end: `completed` when it reported a final status itself,
    /// `process_error` when it died without one; and a file output that went to the backup.
    pub fn handler_ended(&self, request_type: &str, reported_final_status: bool, backup_used: bool) {
        let result = if reported_final_status { "completed" } else { "process_error" };
        self.handler_results.with_label_values(&[request_type, result]).inc();
        if backup_used {
            self.backup_storage_writes.with_label_values(&["file"]).inc();
        }
    }

    /// Refreshes the derived gauges and renders the text exposition format.
    pub fn render(&self, worker: &Worker, web_cpu_cost: f64) -> String {
        let active = worker.active_count();
        self.available.set(if active == 0 && !worker.is_disabled() { 1.0 } else { 0.0 });
        self.can_accept.set(if worker.can_accept(web_cpu_cost) { 1.0 } else { 0.0 });
        self.is_disabled.set(bool_f(worker.is_disabled()));
        self.is_terminating.set(bool_f(worker.is_terminating()));
        let by_type = worker.active_by_type();
        for t in RequestType::ALL {
            self.requests.with_label_values(&[t.label()]).set(*by_type.get(&t).unwrap_or(&0) as f64);
        }
        if let Some(load) = self.sample_cpu_load() {
            self.cpu_load.set(load);
            self.load_ratio.with_label_values(&["cpu"]).set(load);
        }
        if let Some(rss) = read_rss_bytes() {
            self.proc_rss.set(rss as f64);
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// CPU busy fraction since the previous scrape, from /proc/stat.
    fn sample_cpu_load(&self) -> Option<f64> {
        let now = read_cpu_sample()?;
        let mut last = self.cpu_sample.lock().unwrap_or_else(|e| e.into_inner());
        let load = last.and_then(|prev| {
            let total = now.total.checked_sub(prev.total)?;
            let idle = now.idle.checked_sub(prev.idle)?;
            (total > 0).then(|| 1.0 - idle as f64 / total as f64)
        });
        *last = Some(now);
        load
    }
}

fn bool_f(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn read_cpu_sample() -> Option<CpuSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some(CpuSample { total: fields.iter().sum(), idle })
}

fn read_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

impl ServerObserver for Metrics {
    fn request_received(&self, m: &Method) {
        self.rpc_received.with_label_values(&[m.service, m.name]).inc();
    }

    fn request_expired(&self, m: &Method) {
        self.rpc_expired.with_label_values(&[m.service, m.name]).inc();
    }

    fn responded(&self, m: &Method, error: Option<Code>) {
        if let Some(code) = error {
            self.rpc_errors.with_label_values(&[m.service, m.name, code.as_str()]).inc();
        }
    }
}

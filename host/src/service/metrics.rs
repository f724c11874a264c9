//! Prometheus metrics with the Go egress's names (reference §4.3), so existing dashboards and
//! the Helm autoscaler (`livekit_egress_available`) keep working.
//!
//! Gauges derived from worker state are refreshed at scrape time rather than on every change:
//! there is one writer of truth (the [`Worker`]) and no way for a gauge to drift from it.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use super::worker::Worker;
use crate::core::request::RequestType;
use crate::rpc::{ClaimOutcome, ClientObserver, Code, Method, Routing, ServerObserver};
use crate::storage::report::{UploadReport, UploadStatus};

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
    pipeline_uploads: IntCounterVec,
    upload_response_time: HistogramVec,
    backup_storage_writes: IntCounterVec,
    rpc_received: IntCounterVec,
    rpc_expired: IntCounterVec,
    rpc_errors: IntCounterVec,
    rpc_claim_wait: HistogramVec,
    cpu_sample: Mutex<Option<CpuSample>>,
}

#[derive(Clone, Copy)]
struct CpuSample {
    total: u64,
    idle: u64,
}

/// Go's buckets for `pipline_upload_response_time_ms`.
const UPLOAD_RESPONSE_BUCKETS_MS: [f64; 13] = [
    10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 15000.0, 20000.0,
    30000.0,
];

/// Go's buckets for `livekit_psrpc_claim_wait_time_ms` (protocol `rpc/metrics.go`): a granted
/// claim settles in a few ms, a timed-out one runs to the caller's deadline.
const CLAIM_WAIT_BUCKETS_MS: [f64; 10] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 3000.0,
];

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new(node_id: &str, cluster_id: &str) -> Result<Metrics, prometheus::Error> {
        let labels = [
            ("node_id".to_owned(), node_id.to_owned()),
            ("cluster_id".to_owned(), cluster_id.to_owned()),
        ]
        .into_iter()
        .collect();
        let registry = Registry::new_custom(None, Some(labels))?;
        let gauge = |name: &str, help: &str| -> Result<Gauge, prometheus::Error> {
            let g = Gauge::with_opts(opts(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let available = gauge(
            "livekit_egress_available",
            "1 when the node is idle (no active egress)",
        )?;
        let can_accept = gauge(
            "livekit_egress_can_accept_request",
            "1 when a web request would be admitted",
        )?;
        let is_disabled = gauge(
            "livekit_egress_is_disabled",
            "1 when shutting down or cut off from Redis",
        )?;
        let is_terminating = gauge("livekit_egress_is_terminating", "1 after SIGTERM/SIGINT")?;
        let proc_rss = gauge(
            "livekit_egress_proc_rss_bytes",
            "resident memory of the service process",
        )?;
        let cpu_load = Gauge::with_opts(
            opts("livekit_node_cpu_load", "1 - idle/cores").const_label("node_type", "EGRESS"),
        )?;
        registry.register(Box::new(cpu_load.clone()))?;
        let requests = GaugeVec::new(
            opts("livekit_egress_requests", "active requests by type"),
            &["type"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let load_ratio =
            GaugeVec::new(opts("livekit_load_ratio", "utilization / limit"), &["type"])?;
        registry.register(Box::new(load_ratio.clone()))?;
        let handler_results = IntCounterVec::new(
            opts("livekit_egress_handler_results_total", "handler outcomes"),
            &["type", "result"],
        )?;
        registry.register(Box::new(handler_results.clone()))?;
        // Go's labels: `type` is the object's MIME type, `status` success/4xx/5xx/internal,
        // `custom_endpoint` whether the storage config named its own endpoint.
        let pipeline_uploads = IntCounterVec::new(
            opts(
                "livekit_egress_pipeline_uploads",
                "Number of uploads per pipeline with type and status labels",
            ),
            &["type", "status", "custom_endpoint"],
        )?;
        registry.register(Box::new(pipeline_uploads.clone()))?;
        // Go's name, typo included ("pipline"), and its buckets; same labels.
        let upload_response_time = HistogramVec::new(
            HistogramOpts::new(
                "livekit_egress_pipline_upload_response_time_ms",
                "A histogram of latencies for upload requests in milliseconds.",
            )
            .buckets(UPLOAD_RESPONSE_BUCKETS_MS.to_vec()),
            &["type", "status", "custom_endpoint"],
        )?;
        registry.register(Box::new(upload_response_time.clone()))?;
        let backup_storage_writes = IntCounterVec::new(
            opts(
                "livekit_egress_backup_storage_writes",
                "number of writes to backup storage location by output type",
            ),
            &["output_type"],
        )?;
        registry.register(Box::new(backup_storage_writes.clone()))?;
        registry.register(crate::outputs::stream::metrics::collector()?)?;
        registry.register(crate::outputs::upload_metrics::collector()?)?;
        let counter = |name: &str,
                       help: &str,
                       labels: &[&str]|
         -> Result<IntCounterVec, prometheus::Error> {
            let c =
                IntCounterVec::new(opts(name, help).const_label("node_type", "EGRESS"), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let rpc_received = counter(
            "livekit_psrpc_requests_received_total",
            "psrpc requests received",
            &["service", "method"],
        )?;
        let rpc_expired = counter(
            "livekit_psrpc_requests_expired_total",
            "psrpc requests dropped as expired",
            &["service", "method"],
        )?;
        // Go's labels since protocol #1699: `role` server/client, `kind` rpc/multirpc,
        // and the psrpc code as `error_code`.
        let rpc_errors = counter(
            "livekit_psrpc_error_total",
            "psrpc calls that ended in an error",
            &["role", "kind", "service", "method", "error_code"],
        )?;
        let rpc_claim_wait = HistogramVec::new(
            HistogramOpts::new(
                "livekit_psrpc_claim_wait_time_ms",
                "time from publishing a bid to the caller's decision",
            )
            .const_label("node_type", "EGRESS")
            .buckets(CLAIM_WAIT_BUCKETS_MS.to_vec()),
            &["service", "method", "outcome"],
        )?;
        registry.register(Box::new(rpc_claim_wait.clone()))?;
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
            pipeline_uploads,
            upload_response_time,
            backup_storage_writes,
            rpc_received,
            rpc_expired,
            rpc_errors,
            rpc_claim_wait,
            cpu_sample: Mutex::new(None),
        })
    }

    /// Counts a handler's end: `completed` when it reported a final status itself,
    /// `process_error` when it died without one.
    pub fn handler_ended(&self, request_type: &str, reported_final_status: bool) {
        let result = if reported_final_status {
            "completed"
        } else {
            "process_error"
        };
        self.handler_results
            .with_label_values(&[request_type, result])
            .inc();
    }

    /// Counts one object's upload as Go's `Uploader.Upload` does: every outcome on the primary
    /// storage is a `pipeline_uploads`, a success on the backup a `backup_storage_writes` (by
    /// MIME type); a backup failure is not counted. Primary outcomes with a response time are
    /// observed in `pipline_upload_response_time_ms` as Go does.
    pub fn upload(&self, r: &UploadReport) {
        if r.backup {
            if r.status == UploadStatus::Success {
                self.backup_storage_writes
                    .with_label_values(&[r.content_type.as_str()])
                    .inc();
            }
            return;
        }
        let custom = if r.custom_endpoint { "true" } else { "false" };
        let labels = [r.content_type.as_str(), r.status.label(), custom];
        self.pipeline_uploads.with_label_values(&labels).inc();
        if let Some(waited) = r.response_time {
            self.upload_response_time
                .with_label_values(&labels)
                .observe(waited.as_secs_f64() * 1000.0);
        }
    }

    /// Refreshes the derived gauges and renders the text exposition format.
    pub fn render(&self, worker: &Worker, web_cpu_cost: f64) -> String {
        let active = worker.active_count();
        self.available.set(if active == 0 && !worker.is_disabled() {
            1.0
        } else {
            0.0
        });
        self.can_accept.set(if worker.can_accept(web_cpu_cost) {
            1.0
        } else {
            0.0
        });
        self.is_disabled.set(bool_f(worker.is_disabled()));
        self.is_terminating.set(bool_f(worker.is_terminating()));
        let by_type = worker.active_by_type();
        for t in RequestType::ALL {
            self.requests
                .with_label_values(&[t.label()])
                .set(*by_type.get(&t).unwrap_or(&0) as f64);
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
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some(CpuSample {
        total: fields.iter().sum(),
        idle,
    })
}

fn read_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

impl ServerObserver for Metrics {
    fn request_received(&self, m: &Method) {
        self.rpc_received
            .with_label_values(&[m.service, m.name])
            .inc();
    }

    fn request_expired(&self, m: &Method) {
        self.rpc_expired
            .with_label_values(&[m.service, m.name])
            .inc();
    }

    fn claimed(&self, m: &Method, outcome: ClaimOutcome, waited: Duration) {
        // Whole milliseconds, as Go observes `wait.Milliseconds()`.
        self.rpc_claim_wait
            .with_label_values(&[m.service, m.name, outcome.as_str()])
            .observe(waited.as_millis() as f64);
    }

    fn handled(&self, m: &Method, error: Option<Code>) {
        if let Some(code) = error {
            self.count_rpc_error("server", m, code);
        }
    }
}

impl ClientObserver for Metrics {
    fn call_failed(&self, m: &Method, code: Code) {
        self.count_rpc_error("client", m, code);
    }
}

impl Metrics {
    fn count_rpc_error(&self, role: &str, m: &Method, code: Code) {
        // Go's metrics observer gets no error code for multi calls and records `unknown`.
        let (kind, code) = match m.routing {
            Routing::Multi => ("multirpc", Code::Unknown),
            Routing::Affinity | Routing::Queue => ("rpc", code),
        };
        self.rpc_errors
            .with_label_values(&[role, kind, m.service, m.name, code.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report(
        content_type: &str,
        status: UploadStatus,
        custom_endpoint: bool,
        backup: bool,
    ) -> UploadReport {
        UploadReport {
            content_type: content_type.into(),
            status,
            custom_endpoint,
            backup,
            response_time: None,
        }
    }

    #[test]
    fn uploads_are_counted_with_gos_labels() {
        let m = Metrics::new("NE_1", "c1").unwrap();
        m.upload(&report("video/mp4", UploadStatus::Success, true, false));
        m.upload(&report("video/mp4", UploadStatus::Success, true, false));
        m.upload(&report(
            "application/json",
            UploadStatus::ClientError,
            false,
            false,
        ));
        m.upload(&report("video/mp4", UploadStatus::Success, false, true));
        m.upload(&report(
            "application/json",
            UploadStatus::Internal,
            false,
            true,
        ));
        let text = m.render(&Worker::new("NE_1".into(), 2.0, 0.8), 1.0);
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix) && !l.starts_with('#'))
                .map(str::to_owned)
        };
        let uploads: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("livekit_egress_pipeline_uploads{"))
            .collect();
        assert_eq!(uploads.len(), 2, "{text}");
        for (labels, count) in [
            (
                [
                    r#"custom_endpoint="true""#,
                    r#"status="success""#,
                    r#"type="video/mp4""#,
                ],
                2,
            ),
            (
                [
                    r#"custom_endpoint="false""#,
                    r#"status="4xx""#,
                    r#"type="application/json""#,
                ],
                1,
            ),
        ] {
            let found = uploads
                .iter()
                .any(|l| labels.iter().all(|p| l.contains(p)) && l.ends_with(&format!(" {count}")));
            assert!(found, "{labels:?}:\n{text}");
        }
        let backup = line("livekit_egress_backup_storage_writes{").expect("backup writes");
        assert!(
            backup.contains(r#"output_type="video/mp4""#) && backup.ends_with(" 1"),
            "{backup}"
        );
        assert_eq!(
            text.matches("livekit_egress_backup_storage_writes{")
                .count(),
            1,
            "a failed backup write is not counted"
        );
    }

    /// The sample lines of `name` (not its `# HELP`/`# TYPE`), with the value parsed.
    fn series(text: &str, name: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| {
                let (labels, value) = l.rsplit_once(' ')?;
                Some((labels.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    fn value_with(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
        series(text, name)
            .into_iter()
            .find(|(l, _)| labels.iter().all(|want| l.contains(want)))
            .map(|(_, v)| v)
    }

    #[test]
    fn psrpc_lifecycle_and_errors_are_counted_with_gos_names_and_labels() {
        use crate::service::methods::{IO_UPDATE_EGRESS, LIST_ACTIVE_EGRESS, START_EGRESS};
        let m = Metrics::new("NE_1", "c1").unwrap();
        m.request_received(&START_EGRESS);
        m.request_received(&START_EGRESS);
        m.request_received(&START_EGRESS);
        m.request_expired(&START_EGRESS);
        m.claimed(
            &START_EGRESS,
            ClaimOutcome::Granted,
            Duration::from_micros(3_900),
        );
        m.claimed(
            &START_EGRESS,
            ClaimOutcome::TimedOut,
            Duration::from_millis(1_005),
        );
        m.handled(&START_EGRESS, None); // a success is no error
        m.handled(&START_EGRESS, Some(Code::ResourceExhausted));
        m.handled(&LIST_ACTIVE_EGRESS, Some(Code::Internal));
        m.call_failed(&IO_UPDATE_EGRESS, Code::Unavailable);
        m.call_failed(&IO_UPDATE_EGRESS, Code::Unavailable);
        let text = m.render(&Worker::new("NE_1".into(), 2.0, 0.8), 1.0);

        let start = [
            r#"service="EgressInternal""#,
            r#"method="StartEgress""#,
            r#"node_type="EGRESS""#,
            r#"node_id="NE_1""#,
        ];
        assert_eq!(
            value_with(&text, "livekit_psrpc_requests_received_total", &start),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            value_with(&text, "livekit_psrpc_requests_expired_total", &start),
            Some(1.0),
            "{text}"
        );
        // Lifecycle series carry no role label (they are server-side only in Go).
        assert!(
            !series(&text, "livekit_psrpc_requests_received_total")
                .iter()
                .any(|(l, _)| l.contains("role=")),
            "{text}"
        );

        let claim = |outcome: &str, le: &str| {
            let o = format!(r#"outcome="{outcome}""#);
            let b = format!(r#"le="{le}""#);
            value_with(
                &text,
                "livekit_psrpc_claim_wait_time_ms_bucket",
                &[&o, &b, start[0], start[1]],
            )
        };
        // 3.9 ms is observed as Go's whole 3 ms: inside le=5, outside le=1.
        assert_eq!(claim("granted", "1"), Some(0.0), "{text}");
        assert_eq!(claim("granted", "5"), Some(1.0), "{text}");
        assert_eq!(claim("timed_out", "1000"), Some(0.0), "{text}");
        assert_eq!(claim("timed_out", "3000"), Some(1.0), "{text}");
        let buckets: Vec<String> = series(&text, "livekit_psrpc_claim_wait_time_ms_bucket")
            .into_iter()
            .filter(|(l, _)| l.contains(r#"outcome="granted""#))
            .filter_map(|(l, _)| Some(l.split("le=\"").nth(1)?.split('"').next()?.to_owned()))
            .collect();
        assert_eq!(
            buckets,
            [
                "1", "5", "10", "25", "50", "100", "250", "500", "1000", "3000", "+Inf"
            ],
            "Go's claim-wait buckets"
        );
        assert_eq!(
            value_with(
                &text,
                "livekit_psrpc_claim_wait_time_ms_sum",
                &[r#"outcome="timed_out""#]
            ),
            Some(1005.0),
            "{text}"
        );

        let errors = series(&text, "livekit_psrpc_error_total");
        assert_eq!(
            errors.len(),
            3,
            "one series per role/kind/method/code:\n{text}"
        );
        for (labels, count) in [
            (
                [
                    r#"role="server""#,
                    r#"kind="rpc""#,
                    r#"method="StartEgress""#,
                    r#"error_code="resource_exhausted""#,
                ],
                1.0,
            ),
            // Go's observer has no code for multi calls: always `unknown`.
            (
                [
                    r#"role="server""#,
                    r#"kind="multirpc""#,
                    r#"method="ListActiveEgress""#,
                    r#"error_code="unknown""#,
                ],
                1.0,
            ),
            (
                [
                    r#"role="client""#,
                    r#"kind="rpc""#,
                    r#"service="IOInfo""#,
                    r#"error_code="unavailable""#,
                ],
                2.0,
            ),
        ] {
            assert_eq!(
                value_with(&text, "livekit_psrpc_error_total", &labels),
                Some(count),
                "{labels:?}:\n{text}"
            );
        }
    }

    #[test]
    fn primary_upload_response_times_go_into_gos_histogram() {
        let m = Metrics::new("NE_1", "c1").unwrap();
        let timed = |ms: u64, backup: bool| UploadReport {
            response_time: Some(Duration::from_millis(ms)),
            ..report("video/mp4", UploadStatus::Success, false, backup)
        };
        m.upload(&timed(150, false));
        m.upload(&timed(3_000, false));
        m.upload(&timed(40, true)); // a backup write: not a primary response time
        m.upload(&report("video/mp4", UploadStatus::Success, false, false)); // failed mid-recording: no time
        let text = m.render(&Worker::new("NE_1".into(), 2.0, 0.8), 1.0);
        let sample = |suffix: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "livekit_egress_pipline_upload_response_time_ms{suffix}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        assert_eq!(sample("_count{"), Some(2.0), "{text}");
        assert_eq!(sample("_sum{"), Some(3_150.0), "{text}");
        let le_200 = text
            .lines()
            .find(|l| {
                l.starts_with("livekit_egress_pipline_upload_response_time_ms_bucket{")
                    && l.contains(r#"le="200""#)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert_eq!(le_200, Some(1.0), "{text}");
    }
}

//! The resolved service configuration. Field names are the Go egress YAML keys.
//!
//! Section types that need no resolution (`redis`, `storage`, `session_limits`, …) are also what
//! the YAML deserializes into; the top level and `cpu_cost` go through `raw.rs` first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::duration;
use super::secret::Secret;

/// `key:` with no value is null in YAML; Go leaves the zero value, so do we.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The whole service config, with defaults applied, env fallbacks filled in and legacy keys
/// mapped. `Serialize` prints secrets as `<redacted>` (see [`ServiceConfig::to_redacted_yaml`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceConfig {
    // required
    pub redis: RedisConfig,
    /// Identifies the key pair; not a secret.
    pub api_key: String,
    pub api_secret: Secret,
    pub ws_url: String,

    // optional
    pub logging: LoggingConfig,
    /// Base URL of the room-composite templates (default `http://localhost:<template_port>/`).
    pub template_base: String,
    pub cluster_id: String,
    pub enable_chrome_sandbox: bool,
    /// Upload queue size, in minutes of media (default 60).
    pub max_upload_queue: u32,
    pub disallow_local_storage: bool,
    #[serde(with = "duration")]
    pub io_create_timeout: Duration,
    #[serde(with = "duration")]
    pub io_update_timeout: Duration,
    /// 0 means the psrpc default.
    #[serde(with = "duration")]
    pub io_selection_timeout: Duration,
    pub io_workers: u32,
    pub session_limits: SessionLimits,
    /// Default upload target; `None` means local files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfig>,
    /// Fallback upload target when the primary fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<StorageConfig>,
    pub s3_assume_role_key: Secret,
    pub s3_assume_role_secret: Secret,
    pub s3_assume_role_arn: String,
    pub s3_assume_role_external_id: String,

    // advanced
    pub insecure: bool,
    pub debug: DebugConfig,
    pub chrome_flags: BTreeMap<String, serde_yaml::Value>,
    pub latency: LatencyConfig,
    /// Per request type (`room_composite`, `web`, `track`, …); defaults already applied.
    pub latency_overrides: BTreeMap<String, LatencyConfig>,
    /// x264enc threads; 0 lets x264 decide.
    pub video_encoder_threads: u32,
    pub enable_one_shot_sender_report_sync: bool,
    pub enable_sync_engine: bool,
    pub audio_tempo_controller: AudioTempoController,
    pub test_overrides: TestOverrides,
    /// How a live stream destination that dropped is tried again, and when it is given up.
    pub stream_reconnect: StreamReconnect,
    /// Live stream outputs: the Twitch ingest and the default keyframe interval.
    pub streams: StreamsConfig,
    /// HLS segment outputs: the live playlist's window and the uploads at once.
    pub segments: SegmentsConfig,
    /// Image outputs: whether a failed image fails the egress.
    pub images: ImagesConfig,

    // service only
    /// 0 = off.
    pub health_port: u16,
    pub template_port: u16,
    /// 0 = off.
    pub prometheus_port: u16,
    /// 0 = off.
    pub debug_handler_port: u16,
    /// Seconds an orphaned PulseAudio sink may live (default 30); negative disables reaping.
    pub pulse_sink_reap_grace_sec: i64,
    pub cpu_cost: CpuCostConfig,

    /// Legacy README key (a directory for failed uploads). Kept for information only; the
    /// Go egress ignores it since `backup:` replaced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_storage: Option<String>,

    /// Sink plugins to load, in order. `None` (no `plugins:` key) activates every plugin
    /// compiled into the binary with its default config; `Some(vec![])` activates none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<PluginEntry>>,
}

impl ServiceConfig {
    /// The resolved config as YAML, every non-empty secret shown as `<redacted>`.
    pub fn to_redacted_yaml(&self) -> String {
        match serde_yaml::to_string(self) {
            Ok(yaml) => yaml,
            Err(e) => format!("# could not print the config: {e}\n"),
        }
    }

    /// The latency settings for a request type (`room_composite`, `web`, `track`, …).
    pub fn latency_for(&self, request_type: &str) -> &LatencyConfig {
        self.latency_overrides
            .get(request_type)
            .unwrap_or(&self.latency)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    pub address: String,
    pub username: String,
    pub password: Secret,
    pub db: u32,
    /// Deprecated in favour of `tls.enabled`.
    pub use_tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    pub sentinel_master_name: String,
    pub sentinel_username: String,
    pub sentinel_password: Secret,
    #[serde(deserialize_with = "null_as_default")]
    pub sentinel_addresses: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub cluster_addresses: Vec<String>,
    /// Milliseconds (sentinel mode only; 0 = 2000).
    pub dial_timeout: u64,
    /// Milliseconds (sentinel mode only; 0 = 200).
    pub read_timeout: u64,
    /// Milliseconds (sentinel mode only; 0 = 200).
    pub write_timeout: u64,
    /// Cluster mode only; unset = 2.
    pub max_redirects: Option<u32>,
    #[serde(with = "duration")]
    pub pool_timeout: Duration,
    pub pool_size: u32,
}

impl RedisConfig {
    /// Whether any way to reach Redis is configured (address, sentinels or cluster).
    pub fn is_configured(&self) -> bool {
        !self.address.is_empty()
            || !self.sentinel_addresses.is_empty()
            || !self.cluster_addresses.is_empty()
    }

    pub fn max_redirects_or_default(&self) -> u32 {
        self.max_redirects.unwrap_or(2)
    }

    /// Whether the connection should use TLS (`tls.enabled` or the deprecated `use_tls`).
    pub fn tls_enabled(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.enabled) || self.use_tls
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    pub enabled: bool,
    /// Skip certificate and host name verification.
    pub insecure: bool,
    pub server_name: String,
    pub ca_cert_file: String,
    pub client_cert_file: String,
    pub client_key_file: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggingConfig {
    /// debug, info, warn or error (default info).
    pub level: String,
    pub json: bool,
    pub sample: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub component_levels: BTreeMap<String, String>,
    pub sample_initial: u32,
    pub sample_interval: u32,
    pub item_sample_seconds: u32,
    pub item_sample_initial: u32,
    pub item_sample_interval: u32,
}

/// How memory use is measured for admission and the OOM kill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// Sum of the RSS of the service and its handlers.
    #[default]
    ProcRss,
    /// The cgroup's working set.
    Cgroup,
}

impl MemorySource {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "proc_rss" => Some(MemorySource::ProcRss),
            "cgroup" => Some(MemorySource::Cgroup),
            _ => None,
        }
    }
}

/// Admission control costs (in cores) and limits, with the Go defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuCostConfig {
    /// Fraction of the cores that may be committed, in (0, 1] (default 0.8).
    pub max_cpu_utilization: f64,
    /// GB; 0 disables memory admission and the OOM kill.
    pub max_memory: f64,
    /// GB reserved per request.
    pub memory_cost: f64,
    pub room_composite_cpu_cost: f64,
    pub audio_room_composite_cpu_cost: f64,
    pub sdk_audio_room_composite_cpu_cost: f64,
    /// GB.
    pub sdk_audio_room_composite_memory_cost: f64,
    pub web_cpu_cost: f64,
    pub audio_web_cpu_cost: f64,
    pub participant_cpu_cost: f64,
    pub track_composite_cpu_cost: f64,
    pub track_cpu_cost: f64,
    pub max_pulse_clients: u32,
    pub memory_source: MemorySource,
    pub memory_kill_grace_sec: u32,
    pub cpu_kill_grace_sec: u32,
}

impl Default for CpuCostConfig {
    /// The Go egress defaults (what an empty `cpu_cost:` section resolves to).
    fn default() -> Self {
        use super::defaults::*;
        CpuCostConfig {
            max_cpu_utilization: DEFAULT_MAX_CPU_UTILIZATION,
            max_memory: 0.0,
            memory_cost: 0.0,
            room_composite_cpu_cost: DEFAULT_ROOM_COMPOSITE_CPU_COST,
            audio_room_composite_cpu_cost: DEFAULT_AUDIO_ROOM_COMPOSITE_CPU_COST,
            sdk_audio_room_composite_cpu_cost: DEFAULT_AUDIO_ROOM_COMPOSITE_CPU_COST,
            sdk_audio_room_composite_memory_cost: 0.0,
            web_cpu_cost: DEFAULT_WEB_CPU_COST,
            audio_web_cpu_cost: DEFAULT_AUDIO_WEB_CPU_COST,
            participant_cpu_cost: DEFAULT_PARTICIPANT_CPU_COST,
            track_composite_cpu_cost: DEFAULT_TRACK_COMPOSITE_CPU_COST,
            track_cpu_cost: DEFAULT_TRACK_CPU_COST,
            max_pulse_clients: DEFAULT_MAX_PULSE_CLIENTS,
            memory_source: MemorySource::ProcRss,
            memory_kill_grace_sec: 0,
            cpu_kill_grace_sec: DEFAULT_CPU_KILL_GRACE_SEC,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionLimits {
    /// 0 = no limit (same for the other durations).
    #[serde(with = "duration")]
    pub file_output_max_duration: Duration,
    #[serde(with = "duration")]
    pub stream_output_max_duration: Duration,
    #[serde(with = "duration")]
    pub segment_output_max_duration: Duration,
    #[serde(with = "duration")]
    pub image_output_max_duration: Duration,
    /// Bytes of the whole work directory; 0 = no limit.
    pub file_output_max_size: u64,
}

/// An upload target. At most one provider may be set; none means local files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// Prepended to every storage path.
    pub prefix: String,
    pub generate_presigned_url: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alioss: Option<AliOssConfig>,
}

impl StorageConfig {
    /// No cloud provider: files stay on the local disk.
    pub fn is_local(&self) -> bool {
        self.providers().is_empty()
    }

    /// The names of the providers that are set, in the order s3, azure, gcp, alioss.
    pub fn providers(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.s3.is_some() {
            out.push("s3");
        }
        if self.azure.is_some() {
            out.push("azure");
        }
        if self.gcp.is_some() {
            out.push("gcp");
        }
        if self.alioss.is_some() {
            out.push("alioss");
        }
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Config {
    /// Env fallback `AWS_ACCESS_KEY_ID`. Redacted when printed.
    pub access_key: Secret,
    /// Env fallback `AWS_SECRET_ACCESS_KEY`.
    pub secret: Secret,
    /// Env fallback `AWS_SESSION_TOKEN`.
    pub session_token: Secret,
    pub assume_role_arn: String,
    pub assume_role_external_id: String,
    /// Env fallback `AWS_DEFAULT_REGION`.
    pub region: String,
    pub endpoint: String,
    pub bucket: String,
    pub force_path_style: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_config: Option<ProxyConfig>,
    /// Default 5.
    pub max_retries: u32,
    /// Default 5s.
    #[serde(with = "duration")]
    pub max_retry_delay: Duration,
    /// Default 100ms.
    #[serde(with = "duration")]
    pub min_retry_delay: Duration,
    pub aws_log_level: String,
    #[serde(deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    pub tagging: String,
    pub content_disposition: String,
    /// Legacy `proxy: <url>`, moved to `proxy_config.url` at load.
    #[serde(rename = "proxy", skip_serializing)]
    pub(crate) legacy_proxy: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    pub url: String,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AzureConfig {
    /// Env fallback `AZURE_STORAGE_ACCOUNT`.
    pub account_name: String,
    /// Env fallback `AZURE_STORAGE_KEY`.
    pub account_key: Secret,
    pub container_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GcpConfig {
    /// The service-account JSON itself.
    pub credentials_json: Secret,
    pub bucket: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_config: Option<ProxyConfig>,
    /// Set from `GOOGLE_APPLICATION_CREDENTIALS` when `credentials_json` is empty: a path to the
    /// JSON file, read when uploading (not at load). Not a YAML key.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AliOssConfig {
    pub access_key: Secret,
    pub secret: Secret,
    pub region: String,
    pub endpoint: String,
    pub bucket: String,
}

/// Debug switches, plus where debug artifacts are uploaded (the storage keys inline, as in Go).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DebugConfig {
    pub enable_profiling: bool,
    pub enable_track_logging: bool,
    pub enable_stream_logging: bool,
    pub enable_chrome_logging: bool,
    pub prefix: String,
    pub generate_presigned_url: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alioss: Option<AliOssConfig>,
    /// Legacy `path_prefix`, moved to `prefix` at load.
    #[serde(rename = "path_prefix", skip_serializing)]
    pub(crate) legacy_path_prefix: Option<String>,
}

impl DebugConfig {
    /// The debug upload target as a storage config (`None` if no provider is set).
    pub fn storage(&self) -> Option<StorageConfig> {
        let storage = StorageConfig {
            prefix: self.prefix.clone(),
            generate_presigned_url: self.generate_presigned_url,
            s3: self.s3.clone(),
            azure: self.azure.clone(),
            gcp: self.gcp.clone(),
            alioss: self.alioss.clone(),
        };
        (!storage.is_local()).then_some(storage)
    }
}

/// GStreamer and synchronizer latencies (modifying these may break the service).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyConfig {
    /// SDK jitter buffer (default 2s).
    #[serde(with = "duration")]
    pub jitter_buffer_latency: Duration,
    /// Audio mixer latency (default 2.75s).
    #[serde(with = "duration")]
    pub audio_mixer_latency: Duration,
    /// Whole-pipeline latency (default 3s).
    #[serde(with = "duration")]
    pub pipeline_latency: Duration,
    /// Default 5s, raised to at least `jitter_buffer_latency`. The Go tag has a typo, so Go
    /// only reads `rtpmaxallowedtsdiff`; both spellings are accepted here.
    #[serde(with = "duration", alias = "rtpmaxallowedtsdiff")]
    pub rtp_max_allowed_ts_diff: Duration,
    /// Default 5ms.
    #[serde(with = "duration", alias = "rtpmaxdriftadjustment")]
    pub rtp_max_drift_adjustment: Duration,
    /// 0 disables drift adjustment throttling.
    #[serde(alias = "rtpdriftadjustmentwindowpercent")]
    pub rtp_drift_adjustment_window_percent: f64,
    /// Default 2.2s.
    #[serde(with = "duration")]
    pub old_packet_threshold: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AudioTempoController {
    pub enabled: bool,
    /// In (0, 0.2]; default 0.05.
    pub adjustment_rate: f64,
}

/// `stream_reconnect:`: the reconnect policy of live stream destinations (RTMP, RTMPS, SRT). The
/// Go egress has no such keys: it retries RTMP as fast as errors come, gives up 30 s after the
/// first disconnect, and fails an SRT URL on its first error. `window: 30s`, `initial_delay: 0`,
/// `min_interval: 0`, `jitter: 0` and `retry_srt: false` bring all of that back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReconnect {
    /// How long an outage may last before the URL is FAILED (default 60s). 0 fails a URL at its
    /// first drop, without a retry.
    #[serde(with = "duration")]
    pub window: Duration,
    /// The delay before the first retry of an outage (default 500ms); it doubles per attempt.
    #[serde(with = "duration")]
    pub initial_delay: Duration,
    /// The longest delay between two attempts (default 10s).
    #[serde(with = "duration")]
    pub max_delay: Duration,
    /// Attempts start at least this far apart, whatever the delay (default 1s).
    #[serde(with = "duration")]
    pub min_interval: Duration,
    /// Each delay is varied by up to ± this fraction, in [0, 1] (default 0.2).
    pub jitter: f64,
    /// Whether SRT URLs are retried like RTMP ones (default true). `false` is Go's behaviour:
    /// an SRT URL fails at its first error.
    pub retry_srt: bool,
}

impl Default for StreamReconnect {
    fn default() -> Self {
        use super::defaults::*;
        StreamReconnect {
            window: DEFAULT_STREAM_RECONNECT_WINDOW,
            initial_delay: DEFAULT_STREAM_RECONNECT_INITIAL_DELAY,
            max_delay: DEFAULT_STREAM_RECONNECT_MAX_DELAY,
            min_interval: DEFAULT_STREAM_RECONNECT_MIN_INTERVAL,
            jitter: DEFAULT_STREAM_RECONNECT_JITTER,
            retry_srt: true,
        }
    }
}

/// `streams:`: live stream outputs. Not Go keys: Go resolves `twitch://` through Twitch's API
/// during request validation and gives streams a keyframe every 4 s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamsConfig {
    /// What `twitch://<key>` becomes: an `rtmp(s)://` URL with `{stream_key}` (default Twitch's
    /// global ingest, `rtmps://live.twitch.tv:443/app/{stream_key}`).
    pub twitch_ingest: String,
    /// A stream's keyframe interval when the request sets none (default 2s; `4s` is Go's).
    #[serde(with = "duration")]
    pub keyframe_interval: Duration,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        use super::defaults::*;
        StreamsConfig {
            twitch_ingest: DEFAULT_TWITCH_INGEST.to_owned(),
            keyframe_interval: DEFAULT_STREAM_KEYFRAME_INTERVAL,
        }
    }
}

/// `segments:`: HLS segment outputs. Not Go keys: Go's live playlist holds 5 segments and its
/// segment uploads are unbounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentsConfig {
    /// Segments listed in a live playlist (`live_playlist_name`), at least 1 (default 5, Go's).
    pub live_playlist_window: u32,
    /// Segment uploads of one output running at once, 1 to 64 (default 4).
    pub parallel_uploads: u32,
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        use super::defaults::*;
        SegmentsConfig {
            live_playlist_window: DEFAULT_LIVE_PLAYLIST_WINDOW,
            parallel_uploads: DEFAULT_SEGMENT_PARALLEL_UPLOADS,
        }
    }
}

/// `images:`: image outputs. Not a Go key: Go fails the egress at the first image it cannot
/// store; we report it and record on unless `upload_failure_fails_egress: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImagesConfig {
    /// `true` is Go's behaviour: an image that cannot be stored (after retries) fails the
    /// egress, naming it (default false).
    pub upload_failure_fails_egress: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TestOverrides {
    /// Fail the first attempt for rooms whose name contains this.
    pub failure_injection_room: String,
    /// Inject one retryable disconnect for rooms whose name contains this.
    pub disconnect_injection_room: String,
}

/// One entry of `plugins:`: where a sink plugin comes from, its sandbox (WASM only), and its own
/// config, which the host passes to the plugin as JSON without reading it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginEntry {
    /// The name requests and storage settings use; default: the plugin's own name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub source: PluginSource,
    /// Limits and capabilities of a WASM plugin (`None` for builtin and dylib plugins).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<WasmSandbox>,
    /// The plugin's settings. Printed with secret-looking keys redacted.
    #[serde(serialize_with = "super::plugin_config::serialize_redacted")]
    pub config: serde_json::Value,
}

/// Which loader loads a plugin, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginSource {
    /// Compiled into this binary (a cargo feature of `egress-host`), by name.
    Builtin(String),
    /// A shared library exporting `egress_plugin_entry_v1`.
    Dylib(PathBuf),
    /// A WebAssembly component targeting `egress:plugin/sink-plugin@1.x`.
    Wasm(PathBuf),
}

impl PluginSource {
    /// `builtin`, `dylib` or `wasm`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginSource::Builtin(_) => "builtin",
            PluginSource::Dylib(_) => "dylib",
            PluginSource::Wasm(_) => "wasm",
        }
    }
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Builtin(name) => write!(f, "builtin {name}"),
            PluginSource::Dylib(path) => write!(f, "dylib {}", path.display()),
            PluginSource::Wasm(path) => write!(f, "wasm {}", path.display()),
        }
    }
}

/// What a WASM plugin may use. Nothing is inherited from the host process: no environment, no
/// directories and no network beyond what is listed here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WasmSandbox {
    /// Linear memory per instance (one instance per open object), in MiB.
    pub max_memory_mb: u32,
    /// Longest one call into the plugin may compute, not counting time spent waiting on the
    /// host's HTTP import.
    #[serde(with = "duration")]
    pub max_call_time: Duration,
    /// Hosts the plugin may reach through the HTTP import: `example.com`, `example.com:8443`,
    /// `*.example.com`.
    pub allowed_hosts: Vec<String>,
    /// Directories the plugin may read and write, pre-opened at the same path inside.
    pub allowed_dirs: Vec<PathBuf>,
}

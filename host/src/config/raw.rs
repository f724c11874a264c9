//! The YAML as written, before defaults, env fallbacks and legacy mapping.
//!
//! Numbers that Go treats as "<= 0 means default" are signed here so that such files keep
//! loading; the resolved types in `model.rs` are unsigned.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use super::model::{
    AliOssConfig, AudioTempoController, AzureConfig, DebugConfig, GcpConfig, LatencyConfig,
    LoggingConfig, RedisConfig, S3Config, SessionLimits, StorageConfig, TestOverrides,
    null_as_default,
};
use super::secret::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    pub redis: Option<RedisConfig>,
    pub api_key: String,
    pub api_secret: Secret,
    pub ws_url: String,

    pub logging: LoggingConfig,
    pub template_base: String,
    pub cluster_id: String,
    pub enable_chrome_sandbox: bool,
    pub max_upload_queue: i64,
    pub disallow_local_storage: bool,
    #[serde(with = "duration")]
    pub io_create_timeout: Duration,
    #[serde(with = "duration")]
    pub io_update_timeout: Duration,
    #[serde(with = "duration")]
    pub io_selection_timeout: Duration,
    pub io_workers: i64,
    pub session_limits: SessionLimits,
    pub storage: Option<StorageConfig>,
    pub backup: Option<StorageConfig>,
    pub s3_assume_role_key: Secret,
    pub s3_assume_role_secret: Secret,
    pub s3_assume_role_arn: String,
    pub s3_assume_role_external_id: String,

    pub insecure: bool,
    pub debug: DebugConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub chrome_flags: BTreeMap<String, serde_yaml::Value>,
    pub latency: LatencyConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub latency_overrides: BTreeMap<String, LatencyConfig>,
    pub video_encoder_threads: u32,
    pub enable_one_shot_sender_report_sync: bool,
    pub enable_sync_engine: bool,
    pub audio_tempo_controller: AudioTempoController,
    pub test_overrides: TestOverrides,
    pub stream_reconnect: RawStreamReconnect,
    pub streams: RawStreams,
    pub segments: RawSegments,
    pub images: RawImages,

    pub health_port: u16,
    pub template_port: u16,
    pub prometheus_port: u16,
    pub debug_handler_port: u16,
    pub pulse_sink_reap_grace_sec: i64,
    pub cpu_cost: RawCpuCost,

    // Legacy keys (egress < 1.8.3 and the README).
    pub log_level: String,
    pub s3: Option<S3Config>,
    pub azure: Option<AzureConfig>,
    pub gcp: Option<GcpConfig>,
    pub alioss: Option<AliOssConfig>,
    pub backup_storage: Option<String>,

    pub plugins: Option<Vec<RawPlugin>>,
}

/// One `plugins:` entry as written; `resolve.rs` checks that exactly one source is set.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawPlugin {
    pub name: Option<String>,
    pub builtin: Option<String>,
    pub dylib: Option<PathBuf>,
    pub wasm: Option<PathBuf>,
    /// Passed to the plugin as JSON; the plugin validates it.
    pub config: serde_json::Value,
    pub max_memory_mb: Option<u32>,
    pub max_call_time: Option<GoDuration>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_dirs: Option<Vec<PathBuf>>,
}

/// A duration in the Go syntax, for optional fields.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
pub(crate) struct GoDuration(#[serde(with = "duration")] pub Duration);

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawCpuCost {
    pub max_cpu_utilization: f64,
    pub max_memory: f64,
    pub memory_cost: f64,
    pub room_composite_cpu_cost: f64,
    pub audio_room_composite_cpu_cost: f64,
    pub sdk_audio_room_composite_cpu_cost: f64,
    pub sdk_audio_room_composite_memory_cost: f64,
    pub web_cpu_cost: f64,
    pub audio_web_cpu_cost: f64,
    pub participant_cpu_cost: f64,
    pub track_composite_cpu_cost: f64,
    pub track_cpu_cost: f64,
    pub max_pulse_clients: u32,
    pub memory_source: String,
    pub memory_kill_grace_sec: u32,
    pub cpu_kill_grace_sec: i64,
}

/// `stream_reconnect:` as written: an absent key takes the default, and 0 is a value (a window
/// of 0 fails a URL at its first drop), so the durations are optional here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawStreamReconnect {
    pub window: Option<GoDuration>,
    pub initial_delay: Option<GoDuration>,
    pub max_delay: Option<GoDuration>,
    pub min_interval: Option<GoDuration>,
    pub jitter: Option<f64>,
    pub retry_srt: Option<bool>,
}

/// `streams:` as written: absent keys take the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawStreams {
    pub twitch_ingest: Option<String>,
    pub keyframe_interval: Option<GoDuration>,
}

/// `segments:` as written: absent keys take the defaults; the numbers are signed so that a
/// negative one is an error naming the key rather than a type error.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawSegments {
    pub live_playlist_window: Option<i64>,
    pub parallel_uploads: Option<i64>,
}

/// `images:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawImages {
    pub upload_failure_fails_egress: Option<bool>,
}

//! The Go egress defaults and the allowed values of enumerated keys.

use std::time::Duration;

// Defaults, as in the Go egress (`pkg/config/service.go`).
pub const DEFAULT_TEMPLATE_PORT: u16 = 7980;
pub const DEFAULT_MAX_UPLOAD_QUEUE: u32 = 60;
pub const DEFAULT_IO_CREATE_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_IO_UPDATE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_IO_WORKERS: u32 = 5;
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_PULSE_SINK_REAP_GRACE_SEC: i64 = 30;

pub const DEFAULT_MAX_CPU_UTILIZATION: f64 = 0.8;
pub const DEFAULT_ROOM_COMPOSITE_CPU_COST: f64 = 4.0;
pub const DEFAULT_AUDIO_ROOM_COMPOSITE_CPU_COST: f64 = 1.0;
pub const DEFAULT_WEB_CPU_COST: f64 = 4.0;
pub const DEFAULT_AUDIO_WEB_CPU_COST: f64 = 1.0;
pub const DEFAULT_PARTICIPANT_CPU_COST: f64 = 2.0;
pub const DEFAULT_TRACK_COMPOSITE_CPU_COST: f64 = 1.0;
pub const DEFAULT_TRACK_CPU_COST: f64 = 0.5;
pub const DEFAULT_MAX_PULSE_CLIENTS: u32 = 60;
pub const DEFAULT_CPU_KILL_GRACE_SEC: u32 = 30;

pub const DEFAULT_JITTER_BUFFER_LATENCY: Duration = Duration::from_secs(2);
pub const DEFAULT_AUDIO_MIXER_LATENCY: Duration = Duration::from_millis(2750);
pub const DEFAULT_PIPELINE_LATENCY: Duration = Duration::from_secs(3);
pub const DEFAULT_RTP_MAX_ALLOWED_TS_DIFF: Duration = Duration::from_secs(5);
pub const DEFAULT_RTP_MAX_DRIFT_ADJUSTMENT: Duration = Duration::from_millis(5);
pub const DEFAULT_OLD_PACKET_THRESHOLD: Duration = Duration::from_millis(2200);

pub const DEFAULT_AUDIO_TEMPO_ADJUSTMENT_RATE: f64 = 0.05;
pub const MAX_AUDIO_TEMPO_ADJUSTMENT_RATE: f64 = 0.2;

// Live stream reconnects (ours; see `StreamReconnect`). The window is Mux's and Agora's.
pub const DEFAULT_STREAM_RECONNECT_WINDOW: Duration = Duration::from_secs(60);
pub const DEFAULT_STREAM_RECONNECT_INITIAL_DELAY: Duration = Duration::from_millis(500);
pub const DEFAULT_STREAM_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(10);
pub const DEFAULT_STREAM_RECONNECT_MIN_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_STREAM_RECONNECT_JITTER: f64 = 0.2;

// Live streams (ours; see `StreamsConfig`).
/// Twitch's documented global ingest for `twitch://<key>`; Go asks Twitch's API instead.
pub const DEFAULT_TWITCH_INGEST: &str = "rtmps://live.twitch.tv:443/app/{stream_key}";
/// A stream's keyframe interval when the request sets none (Go: 4 s, at YouTube's limit).
pub const DEFAULT_STREAM_KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);

// HLS segments and images (ours; see `SegmentsConfig`, `ImagesConfig`).
/// Go's fixed live playlist window.
pub const DEFAULT_LIVE_PLAYLIST_WINDOW: u32 = 5;
pub const DEFAULT_SEGMENT_PARALLEL_UPLOADS: u32 = 4;
/// More parallel uploads than this only open connections the storage throttles anyway.
pub const MAX_SEGMENT_PARALLEL_UPLOADS: u32 = 64;

// Per-request S3 defaults (`pkg/config/storage.go`).
pub const DEFAULT_S3_MAX_RETRIES: u32 = 5;
pub const DEFAULT_S3_MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
pub const DEFAULT_S3_MIN_RETRY_DELAY: Duration = Duration::from_millis(100);

pub const LOG_LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
pub const REQUEST_TYPES: [&str; 7] = [
    "template",
    "web",
    "media",
    "room_composite",
    "participant",
    "track_composite",
    "track",
];

// WASM plugin sandbox defaults (ours; the Go egress has no plugins).
pub const DEFAULT_WASM_MAX_MEMORY_MB: u32 = 128;
pub const MAX_WASM_MEMORY_MB: u32 = 4096;
pub const DEFAULT_WASM_MAX_CALL_TIME: Duration = Duration::from_secs(30);

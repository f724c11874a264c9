//! Test harness: starts real services on free 127.0.0.1 ports, each in its own temp dir.
//!
//! * [`Redis`]: `redis-server` with no persistence; `stop()`, `kill()` and `restart()` on the same port.
//! * [`LiveKitServer`]: `livekit-server` (dev keys `devkey`/`secret`) on top of a [`Redis`].
//! * [`Egress`]: the service under test (`$EGRESS_BIN`), configured by `EGRESS_CONFIG_BODY`;
//!   [`egress_config`] writes a YAML that points it at a [`Redis`] and a [`LiveKitServer`].
//! * [`Lk`]: the `lk` CLI against a [`LiveKitServer`].
//! * [`Stack`]: all three services, started and ready.
//! * [`free_port`], [`http_get`].
//! * [`plugin_build`]: the object storage sinks built as dylib plugins.
//! * [`hls`]: what a user checks on stored HLS segments and images (RFC 8216, PAT/PMT,
//!   keyframes, image size and brightness), and an `lk room join` publisher.
//! * [`recording`]: test pages, test media and publishers, ffprobe checks for recording tests.
//! * [`browser`]: a headless Chromium publishing camera and microphone with livekit-client.
//! * [`storage`]: storage emulators for sink tests: [`Moto`] and [`S3sFs`] (S3), [`Azurite`]
//!   (Azure Blob), [`GcsFacade`] (GCS XML API), with object_store clients to read objects back.
//! * Live-stream servers: [`MediaMtx`] (RTMP, RTMPS with a test CA, SRT with passphrases,
//!   recordings, its API to list and kick publishers), [`NginxRtmp`] (a second RTMP
//!   implementation, recording FLV) and [`Toxiproxy`] (stalls or cuts a connection);
//!   [`stream_check`]: what a user checks on a received stream (codecs, keyframes, decode errors).
//! * [`ws_receiver`]: a websocket server recording what an egress's websocket output sends.
//! * [`docker`]: the egress images (built by `scripts/docker-images`) and containers of them on
//!   the private dockerd of scripts/docker-setup.
//!
//! Every service logs to files in its temp dir and is killed (its whole process group, SIGTERM
//! then SIGKILL) when dropped. A service that fails to start makes the test panic with the tail of
//! its log. Set `EGRESS_E2E_KEEP=1` to keep the temp dirs (their paths are printed).
//!
//! Binaries are looked up on `PATH`, then in `$EGRESS_CACHE/bin` (default
//! `/var/cache/egress-rs/bin`), where `scripts/setup` builds `livekit-server` and `lk`.

pub mod browser;
pub mod docker;
mod egress;
pub mod hls;
mod http;
mod json_api;
mod livekit;
mod lk;
pub mod mediamtx;
pub mod nginx_rtmp;
pub mod plugin_build;
mod ports;
pub mod proc_stats;
mod process;
pub mod recording;
mod redis;
pub mod seekable;
mod stack;
pub mod storage;
pub mod stream_check;
mod tools;
pub mod toxiproxy;
pub mod ws_receiver;

pub use egress::{Egress, egress_bin, egress_config, egress_slim_bin};
pub use http::http_get;
pub use livekit::{API_KEY, API_SECRET, LiveKitServer};
pub use lk::{Lk, LkError, StartedEgress, lk};
pub use mediamtx::{MediaMtx, MediaMtxOptions};
pub use nginx_rtmp::NginxRtmp;
pub use ports::free_port;
pub use redis::{Redis, Resp};
pub use stack::Stack;
pub use storage::{Azurite, GcsFacade, Moto, S3sFs};
pub use tools::{TestDir, find_binary};
pub use toxiproxy::Toxiproxy;

/// Signal numbers for [`Egress::signal`].
pub use libc::{SIGINT, SIGKILL, SIGQUIT, SIGTERM};

/// How long a service may take to become ready before the test fails.
pub const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

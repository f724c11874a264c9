//! The live destinations (`rtmp`, `srt`) against a real ingest, mediamtx: the live conformance
//! suite (`egress_plugin_api::conformance::LiveKit`) on each, compiled in and built as a cdylib
//! loaded through the host's dylib loader (every call crosses the C ABI, each session on its
//! own thread), fed the FLV tags or TS packets of real H.264 + AAC media as the host sends
//! them. What a user checks is checked on mediamtx's side: the recording has H.264 and AAC and
//! lasts as long as what was sent; a wrong passphrase, an untrusted certificate and a closed
//! port fail with the class the host's reconnect policy needs, in bounded time.
//!
//! The kit runs on a plain thread with `blocking::block_on`, as the dylib loader drives a
//! plugin, so the plugins' own runtimes are exercised outside any tokio context.
//!
//! Run: `cargo test -p egress-e2e --test live_destinations`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use egress_e2e::stream_check::{codecs, duration, within};
use egress_e2e::{MediaMtx, MediaMtxOptions, NginxRtmp, TestDir, free_port};
use egress_host::config::EmptyEnv;
use egress_host::plugins::{PluginRegistry, Source};
use egress_plugin_api::blocking::block_on;
use egress_plugin_api::conformance::{
    Expect, LiveFailure, LiveKit, LiveReceiver, LiveStream, Report,
};
use egress_plugin_api::{BuiltinLive, LiveFactory, LoadedLive, Value, async_trait, json};

/// The SRT path that requires a passphrase.
const SRT_PASSPHRASE: &str = "egress-live-secret";

/// Seconds of test media.
const MEDIA_SECONDS: u32 = 4;

/// One kit at a time: each paces media in real time, and the machine has two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn builtin(name: &str) -> Arc<dyn LoadedLive> {
    let plugin = BuiltinLive::iter()
        .find(|p| p.descriptor().name == name)
        .unwrap_or_else(|| panic!("no compiled-in live destination {name}"));
    Arc::new(BuiltinLiveRef(plugin))
}

struct BuiltinLiveRef(&'static BuiltinLive);

impl LoadedLive for BuiltinLiveRef {
    fn descriptor(&self) -> egress_plugin_api::LiveDescriptor {
        self.0.descriptor()
    }
    fn validate(&self, config: &Value) -> Result<(), egress_plugin_api::SinkError> {
        self.0.validate(config)
    }
    fn create(&self, config: &Value) -> Result<Box<dyn LiveFactory>, egress_plugin_api::SinkError> {
        self.0.create(config)
    }
}

/// Test media made once per process: `MEDIA_SECONDS` of 640×360 30 fps H.264 (keyframe every
/// second) with 48 kHz AAC, as FLV and as MPEG-TS.
fn media() -> &'static (LiveStream, LiveStream) {
    static MEDIA: OnceLock<(LiveStream, LiveStream)> = OnceLock::new();
    MEDIA.get_or_init(|| {
        let dir = TestDir::new("live-media");
        let make = |format: &str, file: &str| -> Vec<u8> {
            let path = dir.join(file);
            let out = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-y"])
                .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
                .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
                .args(["-t", &MEDIA_SECONDS.to_string()])
                .args([
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-g",
                    "30",
                    "-pix_fmt",
                    "yuv420p",
                ])
                .args(["-c:a", "aac", "-b:a", "64k", "-f", format])
                .arg(&path)
                .output()
                .expect("run ffmpeg");
            assert!(
                out.status.success(),
                "ffmpeg: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::read(&path).expect("read the test media")
        };
        let flv = LiveStream::from_flv(&make("flv", "media.flv")).expect("FLV");
        let ts = LiveStream::from_ts(&make("mpegts", "media.ts")).expect("TS");
        (flv, ts)
    })
}

/// mediamtx as the kit's receiver: a fresh path per URL, bytes counted by its API.
struct Ingest {
    mediamtx: Arc<MediaMtx>,
    runtime: tokio::runtime::Handle,
    kind: Kind,
    /// URL → mediamtx path.
    paths: Mutex<HashMap<String, String>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Rtmp,
    Rtmps,
    Srt,
}

impl Ingest {
    fn new(mediamtx: Arc<MediaMtx>, kind: Kind) -> Self {
        Ingest {
            mediamtx,
            runtime: tokio::runtime::Handle::current(),
            kind,
            paths: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl LiveReceiver for Ingest {
    fn url(&self, name: &str) -> String {
        let path = format!("live/{name}");
        let url = match self.kind {
            Kind::Rtmp => self.mediamtx.rtmp_url(&path),
            Kind::Rtmps => self.mediamtx.rtmps_url(&path),
            Kind::Srt => self.mediamtx.srt_url(&path, None),
        };
        self.paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url.clone(), path);
        url
    }

    async fn received(&self, url: &str) -> Result<u64, String> {
        let path = self
            .paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url)
            .cloned()
            .ok_or_else(|| format!("not a URL of this receiver: {url}"))?;
        let mediamtx = self.mediamtx.clone();
        // The kit may run outside tokio; mediamtx's API client needs it. The publishing
        // connection's bytes count from its first byte; the path's only once its tracks are
        // known (after a second or so of media).
        self.runtime
            .spawn(async move {
                // The newest connection on the path (a closed one may linger in the list).
                let mut conns = mediamtx.rtmp_conns().await;
                conns.extend(mediamtx.srt_conns().await);
                conns.retain(|c| c.path == path);
                conns.sort_by(|a, b| a.created.cmp(&b.created));
                match conns.last() {
                    Some(c) => c.bytes_received,
                    None => mediamtx.bytes_received(&path).await,
                }
            })
            .await
            .map_err(|e| e.to_string())
    }
}

async fn start_mediamtx() -> Arc<MediaMtx> {
    Arc::new(
        MediaMtx::start_with(
            MediaMtxOptions::default().srt_publish_passphrase("live/srt-secret", SRT_PASSPHRASE),
        )
        .await,
    )
}

/// Run the kit on a plain thread (no tokio context), as the dylib loader drives a plugin.
async fn run_kit(kit: LiveKit) -> Report {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("live-conformance".into())
        .spawn(move || {
            let _ = tx.send(block_on(kit.run()));
        })
        .expect("cannot start the conformance thread");
    rx.await.expect("the conformance thread panicked")
}

/// The recording of the kit's main publish: H.264 + AAC, as long as what was sent.
async fn check_recording(mediamtx: &MediaMtx, prefix: &str) {
    let path = format!("live/{prefix}-publish");
    let files = mediamtx
        .wait_for_recordings(&path, 1, Duration::from_secs(15))
        .await;
    let file = files.first().expect("a recording");
    let (video, audio) = codecs(file).await;
    assert_eq!(
        (video.as_str(), audio.as_str()),
        ("h264", "aac"),
        "{}",
        file.display()
    );
    let d = duration(file).await;
    let sent = media().0.duration().as_secs_f64();
    // SRT loses the tail a sender that closes takes with it (mediamtx: 0.1–0.6 s).
    assert!(
        within(d, sent, 0.2),
        "recorded {d:.2} s of {sent:.2} s ({})",
        file.display()
    );
    eprintln!("{path}: recorded {d:.2} s of {sent:.2} s, h264 + aac");
}

async fn rtmp_kit(plugin: Arc<dyn LoadedLive>, prefix: &str) {
    let mediamtx = start_mediamtx().await;
    let ingest = Arc::new(Ingest::new(mediamtx.clone(), Kind::Rtmp));
    let closed = format!("rtmp://127.0.0.1:{}/live/closed", free_port());
    let kit = LiveKit::new(plugin, json!({}), ingest, media().0.clone())
        .name_prefix(prefix)
        .invalid_config(
            json!({ "connect_timeout_ms": 0 }),
            Some("connect_timeout_ms"),
        )
        .invalid_config(json!({ "unknown": 1 }), Some("unknown"))
        .invalid_url("rtmp://127.0.0.1/only-a-key")
        .invalid_url("rtmp://127.0.0.1/live/")
        .failure(
            LiveFailure::new("closed port", &closed, Expect::Retryable)
                .within(Duration::from_secs(1)),
        )
        .failure(
            LiveFailure::new(
                "no such host",
                "rtmp://nonexistent.invalid/live/x",
                Expect::Permanent,
            )
            .within(Duration::from_secs(2)),
        );
    let report = run_kit(kit).await;
    report.assert_passed();
    check_recording(&mediamtx, prefix).await;
}

async fn rtmps_kit(plugin: Arc<dyn LoadedLive>, prefix: &str) {
    let mediamtx = start_mediamtx().await;
    let ingest = Arc::new(Ingest::new(mediamtx.clone(), Kind::Rtmps));
    let trusted = json!({ "ca_file": mediamtx.ca_pem() });
    let untrusted_url = mediamtx.rtmps_url("live/untrusted");
    let kit = LiveKit::new(plugin, trusted, ingest, media().0.clone())
        .name_prefix(prefix)
        .failure(
            LiveFailure::new(
                "certificate of an unknown CA (public roots only)",
                &untrusted_url,
                Expect::Permanent,
            )
            .with_config(json!({}))
            .within(Duration::from_secs(2)),
        )
        .failure(
            LiveFailure::new(
                "certificate of another CA",
                &untrusted_url,
                Expect::Permanent,
            )
            .with_config(json!({ "ca_file": mediamtx.untrusted_ca_pem() }))
            .within(Duration::from_secs(2)),
        );
    let report = run_kit(kit).await;
    report.assert_passed();
    check_recording(&mediamtx, prefix).await;
}

async fn srt_kit(plugin: Arc<dyn LoadedLive>, prefix: &str) {
    let mediamtx = start_mediamtx().await;
    let ingest = Arc::new(Ingest::new(mediamtx.clone(), Kind::Srt));
    let wrong = mediamtx.srt_url("live/srt-secret", Some("not-the-passphrase"));
    let closed = format!("srt://127.0.0.1:{}?streamid=publish:live/x", free_port());
    let kit = LiveKit::new(plugin.clone(), json!({}), ingest, media().1.clone())
        .name_prefix(prefix)
        .invalid_config(json!({ "send_timeout_ms": 0 }), Some("send_timeout_ms"))
        .invalid_url("srt://127.0.0.1")
        .invalid_url("srt://127.0.0.1:9000?mode=listener")
        .invalid_url("srt://127.0.0.1:9000?passphrase=short")
        .failure(
            LiveFailure::new("wrong passphrase", &wrong, Expect::Auth)
                .within(Duration::from_secs(2)),
        )
        .failure(
            LiveFailure::new("nobody listens", &closed, Expect::Retryable)
                .within(Duration::from_secs(4)),
        );
    let report = run_kit(kit).await;
    report.assert_passed();
    check_recording(&mediamtx, prefix).await;

    // The right passphrase gets in, and the recording is whole.
    let factory = plugin.create(&json!({})).expect("create");
    let (_, ts) = media();
    let url = mediamtx.srt_url("live/srt-secret", Some(SRT_PASSPHRASE));
    let started = Instant::now();
    let mut session = factory
        .connect(&url)
        .await
        .expect("the right passphrase connects");
    eprintln!(
        "srt with a passphrase: connected in {} ms",
        started.elapsed().as_millis()
    );
    let sending = Instant::now();
    for c in ts.headers.iter().chain(&ts.media) {
        if let Some(wait) = c.pts.checked_sub(sending.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        session.send(c.as_chunk()).await.expect("send");
    }
    session.close().await.expect("close");
    let files = mediamtx
        .wait_for_recordings("live/srt-secret", 1, Duration::from_secs(15))
        .await;
    let (video, audio) = codecs(&files[0]).await;
    assert_eq!((video.as_str(), audio.as_str()), ("h264", "aac"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_passes_the_live_kit_on_mediamtx() {
    let _serial = SERIAL.lock().await;
    rtmp_kit(builtin("rtmp"), "rtmp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmps_with_a_test_ca_passes_the_live_kit_on_mediamtx() {
    let _serial = SERIAL.lock().await;
    rtmps_kit(builtin("rtmp"), "rtmps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_with_a_passphrase_passes_the_live_kit_on_mediamtx() {
    let _serial = SERIAL.lock().await;
    srt_kit(builtin("srt"), "srt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_and_srt_as_dylibs_pass_the_live_kit_on_mediamtx() {
    let _serial = SERIAL.lock().await;
    let (rtmp, srt) = tokio::task::spawn_blocking(live_plugin_dylibs)
        .await
        .expect("building the dylibs");
    rtmp_kit(dylib_plugin(&rtmp, "rtmp"), "rtmp-dylib").await;
    srt_kit(dylib_plugin(&srt, "srt"), "srt-dylib").await;
}

/// A second RTMP implementation, nginx-rtmp: the publish is recorded whole (H.264 + AAC), and
/// an application the server does not have is refused as auth (a retry would be refused too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_publishes_to_nginx_rtmp_and_an_unknown_app_is_refused() {
    let _serial = SERIAL.lock().await;
    let nginx = NginxRtmp::start().await;
    let rtmp = builtin("rtmp").create(&json!({})).expect("create");
    let (flv, _) = media();
    let mut session = rtmp
        .connect(&nginx.rtmp_url("nginx-key"))
        .await
        .expect("connect");
    let sending = Instant::now();
    for c in flv.headers.iter().chain(&flv.media) {
        if let Some(wait) = c.pts.checked_sub(sending.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        session.send(c.as_chunk()).await.expect("send");
    }
    session.close().await.expect("close");
    let files = nginx
        .wait_for_recordings("nginx-key", 1, Duration::from_secs(10))
        .await;
    let (video, audio) = codecs(&files[0]).await;
    assert_eq!((video.as_str(), audio.as_str()), ("h264", "aac"));
    let d = duration(&files[0]).await;
    assert!(
        within(d, flv.duration().as_secs_f64(), 0.1),
        "recorded {d:.2} s"
    );

    let url = format!("rtmp://127.0.0.1:{}/other-app/key", nginx.rtmp_port());
    let started = Instant::now();
    let e = rtmp
        .connect(&url)
        .await
        .err()
        .expect("an unknown application is refused");
    eprintln!(
        "unknown application: {} ms: {e}",
        started.elapsed().as_millis()
    );
    assert!(e.is_auth(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// What a destination costs: CPU time of this process while publishing 10 s of a 1 Mbit/s
/// stream in real time, per transport (printed; asserted only to be far below one core, so
/// that a busy-looping transport fails). Connect times are printed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_1_mbit_s_costs_little_cpu() {
    let _serial = SERIAL.lock().await;
    let mediamtx = start_mediamtx().await;
    let dir = TestDir::new("live-bench");
    let make = |format: &str, file: &str| -> Vec<u8> {
        let path = dir.join(file);
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-t",
                "10",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "60",
            ])
            .args([
                "-b:v", "900k", "-maxrate", "900k", "-bufsize", "900k", "-pix_fmt", "yuv420p",
            ])
            .args(["-c:a", "aac", "-b:a", "96k", "-f", format])
            .arg(&path)
            .output()
            .expect("run ffmpeg");
        assert!(
            out.status.success(),
            "ffmpeg: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(&path).expect("read")
    };
    let flv = LiveStream::from_flv(&make("flv", "bench.flv")).expect("FLV");
    let ts = LiveStream::from_ts(&make("mpegts", "bench.ts")).expect("TS");
    for (name, url, stream) in [
        ("rtmp", mediamtx.rtmp_url("live/bench-rtmp"), &flv),
        ("srt", mediamtx.srt_url("live/bench-srt", None), &ts),
    ] {
        let factory = builtin(name).create(&json!({})).expect("create");
        let cpu_before = cpu_time();
        let started = Instant::now();
        let mut session = factory.connect(&url).await.expect("connect");
        let connect = started.elapsed();
        let sending = Instant::now();
        for c in stream.headers.iter().chain(&stream.media) {
            if let Some(wait) = c.pts.checked_sub(sending.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            session.send(c.as_chunk()).await.expect("send");
        }
        let wall = sending.elapsed();
        let sent = session.bytes_sent();
        session.close().await.expect("close");
        let cpu = cpu_time() - cpu_before;
        let share = cpu.as_secs_f64() / wall.as_secs_f64();
        eprintln!(
            "{name}: connect {} ms; {:.2} Mbit/s for {:.1} s: CPU {} ms ({:.2} % of one core)",
            connect.as_millis(),
            sent as f64 * 8.0 / wall.as_secs_f64() / 1e6,
            wall.as_secs_f64(),
            cpu.as_millis(),
            share * 100.0
        );
        assert!(
            share < 0.25,
            "{name} used {:.0} % of a core to send 1 Mbit/s",
            share * 100.0
        );
        let path = if name == "rtmp" {
            "live/bench-rtmp"
        } else {
            "live/bench-srt"
        };
        let files = mediamtx
            .wait_for_recordings(path, 1, Duration::from_secs(15))
            .await;
        let d = duration(&files[0]).await;
        assert!(
            within(d, stream.duration().as_secs_f64(), 0.1),
            "{name}: recorded {d:.2} s"
        );
    }
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The plugin `name` loaded from `plugins: - dylib: <path>` as the service loads it.
fn dylib_plugin(path: &Path, name: &str) -> Arc<dyn LoadedLive> {
    let yaml = format!(
        "api_key: k\napi_secret: s\nws_url: ws://localhost:7880\nredis:\n  address: localhost:6379\nplugins:\n  - dylib: {:?}\n",
        path.display().to_string()
    );
    let loaded = egress_host::config::parse(&yaml, &EmptyEnv)
        .unwrap_or_else(|e| panic!("config rejected: {e}"));
    let registry = PluginRegistry::load(loaded.config.plugins.as_deref())
        .unwrap_or_else(|e| panic!("{} did not load: {e}", path.display()));
    let live = registry
        .live()
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no live destination {name}: {:?}", registry.live()));
    assert_eq!(
        live.source,
        Source::Dylib(path.to_path_buf()),
        "served by the dylib loader"
    );
    live.plugin()
}

/// `libegress_plugin_rtmp.so` and `libegress_plugin_srt.so`, built once with their `dylib`
/// feature in `<target>/plugin-artifacts` (the directory and settings of the other plugin
/// tests, so that they share builds).
fn live_plugin_dylibs() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"));
    let out = target.join("plugin-artifacts");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &out)
        .args([
            "build",
            "--lib",
            "-p",
            "egress-plugin-rtmp",
            "-p",
            "egress-plugin-srt",
        ])
        .args([
            "--features",
            "egress-plugin-rtmp/dylib,egress-plugin-srt/dylib",
        ])
        .args(["--config", "profile.dev.opt-level=2"])
        .args(["--config", "profile.dev.package.\"*\".opt-level=2"])
        .args(["--config", "profile.dev.debug=false"])
        .output()
        .expect("run cargo");
    assert!(
        status.status.success(),
        "building the live plugin dylibs: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let so = |name: &str| {
        let p = out.join("debug").join(format!("lib{name}.so"));
        assert!(p.is_file(), "{} was not built", p.display());
        p
    };
    (so("egress_plugin_rtmp"), so("egress_plugin_srt"))
}

//! Helpers for the recording tests (`tests/tests/record_*.rs`) and the composite benchmark:
//!
//! * [`RecordingStack`]: Redis + livekit-server + egress configured to record (templates served
//!   from `templates/dist`, low CPU costs so a 2-core host bids, a free template port);
//! * [`TestPage`]: a local web page with a known colour, a moving box and a WebAudio tone, and
//!   query switches for the start/end signals;
//! * [`TestMedia`] and [`Publisher`]: an H.264 test pattern and an Opus tone made with ffmpeg and
//!   published into a room with `lk room join --publish`;
//! * [`probe`], [`mean_volume`], [`pixel`]: ffprobe/ffmpeg checks of a recorded file;
//! * [`wait_for_status`] and friends: EgressInfo polling through `lk egress list`;
//! * [`twirp`]: livekit-server's Twirp JSON API, for what `lk` cannot send (v2 `StartEgress`);
//! * [`processes_mentioning`], [`handler_pid`]: what an egress left running;
//!   [`cpu_seconds`]: the CPU time they used.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::{Egress, LiveKitServer, Lk, Redis, TestDir, egress_config, find_binary, free_port};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// EgressStatus values as `lk egress list --json` prints them.
pub mod status {
    pub const STARTING: i64 = 0;
    pub const ACTIVE: i64 = 1;
    pub const ENDING: i64 = 2;
    pub const COMPLETE: i64 = 3;
    pub const FAILED: i64 = 4;
    pub const ABORTED: i64 = 5;
    pub const LIMIT_REACHED: i64 = 6;
}

/// Serializes recordings inside one test binary: two Chrome + x264 recordings at once on a
/// 2-core host would measure the host, not the egress.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `<workspace>/templates/dist`, built by `npm run build` in `templates/` (scripts/setup).
pub fn templates_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/dist");
    if !dir.join("index.html").is_file() {
        panic!(
            "{} has no built templates: run `npm ci && npm run build` in templates/ (scripts/setup does)",
            dir.display()
        );
    }
    dir.canonicalize().unwrap_or(dir)
}

/// Redis, livekit-server and an egress set up to record.
pub struct RecordingStack {
    pub egress: Egress,
    pub livekit: LiveKitServer,
    pub redis: Redis,
    pub health_port: u16,
    pub template_port: u16,
    pub config: String,
}

impl RecordingStack {
    pub async fn start() -> RecordingStack {
        RecordingStack::start_with(|y| y).await
    }

    /// Like [`start`](Self::start), with the egress YAML passed through `edit`.
    pub async fn start_with(edit: impl FnOnce(String) -> String) -> RecordingStack {
        let redis = Redis::start().await;
        let livekit = LiveKitServer::start(&redis).await;
        let health_port = free_port();
        let mut base = egress_config(&redis, &livekit, health_port, free_port());
        // Every worker needs a template port of its own (tests run several stacks at once).
        let template_port = match base.lines().find_map(|l| l.strip_prefix("template_port:")) {
            Some(p) => p.trim().parse().expect("template_port in egress_config"),
            None => {
                let port = free_port();
                base.push_str(&format!("template_port: {port}\n"));
                port
            }
        };
        // A 2-core host bids only on requests costing at most 1.6 cores.
        let config = edit(format!(
            "{base}cpu_cost:\n  room_composite_cpu_cost: 1\n  web_cpu_cost: 1\n  audio_web_cpu_cost: 0.5\n  audio_room_composite_cpu_cost: 0.5\n"
        ));
        let templates = templates_dir();
        let templates = templates.to_string_lossy().into_owned();
        let mut egress = Egress::start_with(
            config.clone(),
            &[],
            &[("EGRESS_TEMPLATES_DIR", templates.as_str())],
        )
        .await;
        egress.wait_healthy(health_port).await;
        RecordingStack {
            egress,
            livekit,
            redis,
            health_port,
            template_port,
            config,
        }
    }

    pub fn lk(&self) -> Lk {
        Lk::new(&self.livekit)
    }

    /// Where a local file output with storage path `path` lands (the egress's working dir).
    pub fn output(&self, path: &str) -> PathBuf {
        self.egress.dir().join(path)
    }

    /// The service's `/metrics` (its `prometheus_port`) as text.
    pub async fn scrape_metrics(&self) -> String {
        let port = self
            .config
            .lines()
            .find_map(|l| l.strip_prefix("prometheus_port:"))
            .and_then(|p| p.trim().parse::<u16>().ok())
            .expect("prometheus_port in the stack's config");
        let (status, text) = crate::http_get(&format!("http://127.0.0.1:{port}/metrics"))
            .await
            .expect("GET /metrics");
        assert_eq!(status, 200, "{text}");
        text
    }
}

/// The value of the Prometheus series `name` whose labels include every `labels` pair.
pub fn metric_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The latest EgressInfo of `egress_id`, as `lk egress list --json` prints it.
pub async fn egress_info(lk: &Lk, egress_id: &str) -> Option<Value> {
    lk.egress_list_with(&["--id", egress_id])
        .await
        .into_iter()
        .next()
}

/// `status` of an EgressInfo JSON (0 is omitted by Go's JSON encoder).
pub fn status_of(info: &Value) -> i64 {
    info.get("status")
        .and_then(Value::as_i64)
        .unwrap_or(status::STARTING)
}

/// Polls until the egress reaches `want` (or any later, terminal status); returns its info and
/// the instant the status was first seen. Panics after `timeout`, or if the status is terminal
/// and not `want`.
pub async fn wait_for_status(
    lk: &Lk,
    egress_id: &str,
    want: i64,
    timeout: Duration,
) -> (Value, Instant) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(info) = egress_info(lk, egress_id).await {
            let s = status_of(&info);
            if s == want {
                return (info, Instant::now());
            }
            if s >= status::COMPLETE && s != want {
                panic!(
                    "egress {egress_id} ended with status {s} while waiting for {want}: {info:#}"
                );
            }
        }
        if Instant::now() >= deadline {
            let info = egress_info(lk, egress_id).await;
            panic!(
                "egress {egress_id} did not reach status {want} in {timeout:?}; last info: {info:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wall-clock Unix nanoseconds (the egress's timestamps are on the same clock).
pub fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A one-page HTTP server on 127.0.0.1 serving [`TEST_PAGE`] at `/` (and 404 elsewhere).
pub struct TestPage {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

/// Background colour of [`TEST_PAGE`], as RGB.
pub const PAGE_RGB: [u8; 3] = [0x1e, 0x90, 0xff];
/// Tone of [`TEST_PAGE`], Hz.
pub const PAGE_TONE_HZ: u32 = 440;

/// A full-window colour, a moving box (so frames differ) and a WebAudio tone. Query switches:
/// `start_after=MS` logs START_RECORDING after MS ms, `end_after=MS` logs END_RECORDING,
/// `error=TEXT` shows a `div.error`.
pub const TEST_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>egress test page</title>
<style>
html,body{margin:0;height:100%;background:#1e90ff;overflow:hidden}
#box{position:absolute;left:0;top:0;width:80px;height:80px;background:#ffd700}
.error{position:absolute;bottom:0;right:0;color:#1e90ff}
</style></head>
<body><div id="box"></div>
<script>
const q = new URLSearchParams(location.search);
const box = document.getElementById('box');
const t0 = performance.now();
(function frame(now) { box.style.left = (((now - t0) / 5) % (innerWidth - 80)) + 'px'; requestAnimationFrame(frame); })(t0);
const ctx = new AudioContext();
const osc = ctx.createOscillator();
osc.frequency.value = 440;
const gain = ctx.createGain();
gain.gain.value = 0.5;
osc.connect(gain).connect(ctx.destination);
osc.start();
if (q.has('error')) { const e = document.createElement('div'); e.className = 'error'; e.textContent = q.get('error'); document.body.appendChild(e); }
if (q.has('start_after')) setTimeout(() => console.log('START_RECORDING'), Number(q.get('start_after')));
if (q.has('end_after')) setTimeout(() => console.log('END_RECORDING'), Number(q.get('end_after')));
</script></body></html>
"#;

impl TestPage {
    pub async fn start() -> TestPage {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test page server");
        let port = listener.local_addr().expect("local addr").port();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    let path = path.split('?').next().unwrap_or("/");
                    let (status, body) = if path == "/" || path == "/index.html" {
                        ("200 OK", TEST_PAGE)
                    } else {
                        ("404 Not Found", "not found")
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TestPage { port, task }
    }

    /// `http://127.0.0.1:PORT/?QUERY` (or `/QUERY` when it starts with `/`).
    pub fn url(&self, query: &str) -> String {
        if query.starts_with('/') {
            format!("http://127.0.0.1:{}{query}", self.port)
        } else if query.is_empty() {
            format!("http://127.0.0.1:{}/", self.port)
        } else {
            format!("http://127.0.0.1:{}/?{query}", self.port)
        }
    }
}

impl Drop for TestPage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Colour of the published test video, as RGB.
pub const VIDEO_RGB: [u8; 3] = [0x20, 0xc0, 0x40];
/// Tone of the published test audio, Hz.
pub const AUDIO_TONE_HZ: u32 = 440;

/// Test media made with ffmpeg: a green 640x360@30 (by default) H.264 Annex-B stream with a moving white box
/// (single slice, baseline, no B-frames: what `lk` can packetize and Chrome decodes) and an Ogg
/// Opus 440 Hz tone, both `seconds` long. A keyframe every half second stands in for a real
/// publisher answering the subscriber's keyframe request (`lk` publishing a file cannot).
pub struct TestMedia {
    pub video: PathBuf,
    pub audio: PathBuf,
    _dir: TestDir,
}

impl TestMedia {
    pub async fn generate(seconds: u32) -> TestMedia {
        TestMedia::generate_sized(seconds, 640, 360, 600).await
    }

    /// Like [`generate`](Self::generate) at `width`×`height` and `kbps`.
    pub async fn generate_sized(seconds: u32, width: u32, height: u32, kbps: u32) -> TestMedia {
        TestMedia::generate_coloured(seconds, width, height, kbps, VIDEO_RGB).await
    }

    /// Like [`generate_sized`](Self::generate_sized) with the background colour `rgb` (so that
    /// several publishers can be told apart in a composite).
    pub async fn generate_coloured(
        seconds: u32,
        width: u32,
        height: u32,
        kbps: u32,
        rgb: [u8; 3],
    ) -> TestMedia {
        let dir = TestDir::new("media");
        let video = dir.join("video.h264");
        let audio = dir.join("tone.ogg");
        let [r, g, b] = rgb;
        // The box moves every frame (overlay evaluates its position per frame), so frames
        // differ and a recorder that drops frames shows it.
        let source = format!(
            "color=c=0x{r:02x}{g:02x}{b:02x}:s={width}x{height}:r=30:d={seconds}[bg];\
             color=c=white:s=40x40:r=30:d={seconds}[box];\
             [bg][box]overlay=x='mod(t*120\\,{travel})':y=20:shortest=1",
            travel = width.saturating_sub(40).max(1)
        );
        let bitrate = format!("{kbps}k");
        run_ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                &source,
                "-c:v",
                "libx264",
                "-threads",
                "1",
                "-profile:v",
                "baseline",
                "-level",
                "3.1",
                "-pix_fmt",
                "yuv420p",
                "-bf",
                "0",
                "-g",
                "15",
                "-b:v",
                &bitrate,
                "-bsf:v",
                "h264_mp4toannexb",
                "-f",
                "h264",
            ],
            &video,
        )
        .await;
        let tone = format!("sine=frequency={AUDIO_TONE_HZ}:sample_rate=48000:duration={seconds}");
        run_ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                &tone,
                "-ac",
                "1",
                "-c:a",
                "libopus",
                "-b:a",
                "48k",
                "-frame_duration",
                "20",
                "-page_duration",
                "20000",
            ],
            &audio,
        )
        .await;
        TestMedia {
            video,
            audio,
            _dir: dir,
        }
    }
}

async fn run_ffmpeg(args: &[&str], out: &Path) {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        output.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `lk room join --publish FILE` running in the background; killed on drop.
pub struct Publisher {
    child: Child,
    pub identity: String,
}

impl Publisher {
    /// Joins `room` as `identity` and publishes `file` (`.h264` needs `fps`).
    pub fn start(
        livekit: &LiveKitServer,
        room: &str,
        identity: &str,
        file: &Path,
        fps: Option<u32>,
        log_dir: &Path,
    ) -> Publisher {
        let log = std::fs::File::create(log_dir.join(format!("publisher-{identity}.log")))
            .expect("publisher log");
        let mut cmd = Command::new(find_binary("lk"));
        cmd.args([
            "--url",
            &livekit.http_url(),
            "--api-key",
            livekit.api_key(),
            "--api-secret",
            livekit.api_secret(),
        ])
        .args(["room", "join", "--identity", identity, "--publish"])
        .arg(file);
        if let Some(fps) = fps {
            cmd.args(["--fps", &fps.to_string()]);
        }
        cmd.arg(room)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LIVEKIT_") {
                cmd.env_remove(&key);
            }
        }
        let child = cmd.spawn().expect("start lk room join");
        Publisher {
            child,
            identity: identity.to_owned(),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Waits until `room` has at least `publishers` participants with published tracks
/// (`numPublishers` in `lk room list --json`).
pub async fn wait_for_publishers(lk: &Lk, room: &str, publishers: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = lk.run(&["room", "list", "--json"]).await;
        let text = String::from_utf8_lossy(&out.stdout);
        let count = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let rooms = v.get("rooms").cloned().unwrap_or(v);
                rooms
                    .as_array()?
                    .iter()
                    .find(|r| r["name"] == room)
                    .map(|r| {
                        r.get("numPublishers")
                            .or_else(|| r.get("num_publishers"))
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                    })
            })
            .unwrap_or(0);
        if count >= publishers {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "room {room}: {count} of {publishers} publishers after {timeout:?}; lk printed:\n{text}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What ffprobe says about one stream.
#[derive(Debug, Clone)]
pub struct StreamProbe {
    pub codec: String,
    pub profile: String,
    pub width: i64,
    pub height: i64,
    /// `avg_frame_rate` as a number.
    pub fps: f64,
    pub sample_rate: i64,
    pub channels: i64,
    pub duration: f64,
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub format: String,
    pub duration: f64,
    pub video: Option<StreamProbe>,
    pub audio: Option<StreamProbe>,
}

fn ratio(s: &str) -> f64 {
    match s.split_once('/') {
        Some((n, d)) => {
            let (n, d) = (
                n.parse::<f64>().unwrap_or(0.0),
                d.parse::<f64>().unwrap_or(0.0),
            );
            if d == 0.0 { 0.0 } else { n / d }
        }
        None => s.parse().unwrap_or(0.0),
    }
}

/// Where an egress's (first) file went: `file_results[0].location` of its EgressInfo.
pub fn location(info: &Value) -> PathBuf {
    PathBuf::from(
        info["file_results"][0]["location"]
            .as_str()
            .expect("location"),
    )
}

/// Runs ffmpeg quietly (`-v error -y`), failing the test with its output if it fails.
pub async fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A recording stack whose egress bids on composites on a 2-core host (Go's participant cost
/// is 2 cores).
pub async fn composite_stack() -> RecordingStack {
    composite_stack_with("").await
}

/// [`composite_stack`] with `extra` (top-level YAML keys) added to the egress's config.
pub async fn composite_stack_with(extra: &str) -> RecordingStack {
    RecordingStack::start_with(|y| {
        format!("{y}  participant_cpu_cost: 0.5\n  track_composite_cpu_cost: 0.5\n{extra}")
    })
    .await
}

/// A 640x360@30 test video of colour `rgb` with a moving white box, in `codec`'s file format
/// for `lk room join --publish` or `lk-publish` (`h264`, `vp8`, `vp9`, `h265`, `av1`): a keyframe
/// every half second (a file publisher cannot answer keyframe requests), about 600 kbit/s, no
/// B-frames. Named after codec and colour, so two videos can share a directory.
pub async fn moving_box_video(dir: &TestDir, codec: &str, rgb: [u8; 3], seconds: u32) -> PathBuf {
    let (ext, encoder): (&str, &[&str]) = match codec {
        "h264" => (
            "h264",
            &[
                "-c:v",
                "libx264",
                "-threads",
                "1",
                "-profile:v",
                "baseline",
                "-bf",
                "0",
                "-bsf:v",
                "h264_mp4toannexb",
                "-f",
                "h264",
            ],
        ),
        "vp8" => (
            "ivf",
            &[
                "-c:v",
                "libvpx",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-threads",
                "1",
                "-f",
                "ivf",
            ],
        ),
        "vp9" => (
            "ivf",
            &[
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-lag-in-frames",
                "0",
                "-auto-alt-ref",
                "0",
                "-row-mt",
                "0",
                "-threads",
                "1",
                "-f",
                "ivf",
            ],
        ),
        "h265" => (
            "h265",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=error:bframes=0:keyint=15:min-keyint=15:repeat-headers=1:pools=1",
                "-f",
                "hevc",
            ],
        ),
        "av1" => (
            "ivf",
            &[
                "-c:v",
                "libaom-av1",
                "-usage",
                "realtime",
                "-cpu-used",
                "8",
                "-lag-in-frames",
                "0",
                "-threads",
                "1",
                "-f",
                "ivf",
            ],
        ),
        other => panic!("no test video for {other}"),
    };
    let [r, g, b] = rgb;
    let out = dir.join(&format!("video-{codec}-{r:02x}{g:02x}{b:02x}.{ext}"));
    let source = format!(
        "color=c=0x{r:02x}{g:02x}{b:02x}:s=640x360:r=30:d={seconds}[bg];color=c=white:s=40x40:r=30:d={seconds}[box];\
         [bg][box]overlay=x='mod(t*120\\,600)':y=20:shortest=1"
    );
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &source])
        .args(["-pix_fmt", "yuv420p", "-g", "15", "-b:v", "600k"])
        .args(encoder)
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        output.status.success(),
        "ffmpeg could not make the {codec} test video: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// `ffprobe` of `file`; panics if ffprobe cannot read it.
pub async fn probe(file: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file)
        .output()
        .await
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let text = |s: &Value, k: &str| {
        s.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let num = |s: &Value, k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
    let float = |s: &Value, k: &str| text(s, k).parse::<f64>().unwrap_or(0.0);
    let mut video = None;
    let mut audio = None;
    for s in v["streams"].as_array().into_iter().flatten() {
        let p = StreamProbe {
            codec: text(s, "codec_name"),
            profile: text(s, "profile"),
            width: num(s, "width"),
            height: num(s, "height"),
            fps: ratio(&text(s, "avg_frame_rate")),
            sample_rate: text(s, "sample_rate").parse().unwrap_or(0),
            channels: num(s, "channels"),
            duration: float(s, "duration"),
        };
        match s.get("codec_type").and_then(Value::as_str) {
            Some("video") => video = Some(p),
            Some("audio") => audio = Some(p),
            _ => {}
        }
    }
    Probe {
        format: text(&v["format"], "format_name"),
        duration: float(&v["format"], "duration"),
        video,
        audio,
    }
}

/// Mean audio level of `file` in dB (ffmpeg `volumedetect`); −91 is digital silence.
pub async fn mean_volume(file: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "info", "-nostats", "-i"])
        .arg(file)
        .args(["-vn", "-af", "volumedetect", "-f", "null", "-"])
        .output()
        .await
        .expect("run ffmpeg volumedetect");
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .and_then(|rest| rest.trim().trim_end_matches("dB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no mean_volume for {}:\n{log}", file.display()))
}

/// Whether every frame of `file` decodes without error.
pub async fn decodes_cleanly(file: &Path) -> bool {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .await
        .expect("run ffmpeg");
    out.status.success() && out.stderr.is_empty()
}

/// (distinct frames, all frames) of the video of `file`: with moving content every rendered
/// frame is distinct, and repeats mean the capture (or the page) fell behind.
pub async fn unique_frames(file: &Path) -> (usize, usize) {
    unique_frames_from(file, 0.0).await
}

/// [`unique_frames`] of the video from `from_secs` on.
pub async fn unique_frames_from(file: &Path, from_secs: f64) -> (usize, usize) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{from_secs:.2}"), "-i"])
        .arg(file)
        .args(["-an", "-f", "framemd5", "-"])
        .output()
        .await
        .expect("run ffmpeg framemd5");
    let hashes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_owned()))
        .collect();
    let mut distinct = hashes.clone();
    distinct.sort();
    distinct.dedup();
    (distinct.len(), hashes.len())
}

/// The average colour of a `size`×`size` square at (`x`, `y`) of the frame at `at_secs`.
pub async fn pixel(file: &Path, at_secs: f64, x: u32, y: u32, size: u32) -> [u8; 3] {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{at_secs:.3}"), "-i"])
        .arg(file)
        .args([
            "-frames:v",
            "1",
            "-vf",
            &format!("crop={size}:{size}:{x}:{y},scale=1:1:flags=area"),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .await
        .expect("run ffmpeg for a frame");
    assert!(
        out.status.success() && out.stdout.len() >= 3,
        "no frame at {at_secs}s of {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    [out.stdout[0], out.stdout[1], out.stdout[2]]
}

/// Largest per-channel difference between two colours.
pub fn colour_distance(a: [u8; 3], b: [u8; 3]) -> u8 {
    (0..3).map(|i| a[i].abs_diff(b[i])).max().unwrap_or(0)
}

/// PIDs (with their command lines) of processes whose command line or environment mentions
/// `needle`, excluding this test process.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Zombies are gone in all but name (their parent has not reaped them yet).
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
        {
            continue;
        }
        let hay = |b: &[u8]| String::from_utf8_lossy(b).contains(needle);
        if hay(&cmdline) || hay(&environ) {
            out.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    out
}

/// The `egress run-handler` process of `egress_id`.
pub fn handler_pid(egress_id: &str) -> Option<u32> {
    processes_mentioning(egress_id)
        .into_iter()
        .find(|(_, cmd)| cmd.contains("run-handler"))
        .map(|(pid, _)| pid)
}

/// Waits until no process mentions `needle` (Chrome, Xvfb and PulseAudio of an egress all carry
/// its ID in their command line or environment); returns what is still there after `timeout`.
pub async fn wait_no_processes(needle: &str, timeout: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU time (user + system, seconds) used so far by the live processes mentioning `needle`
/// (an egress ID: its handler, Chrome, Xvfb and PulseAudio). Exited processes no longer count,
/// so compare two samples taken while the egress runs.
pub fn cpu_seconds(needle: &str) -> f64 {
    processes_mentioning(needle)
        .into_iter()
        .map(|(pid, _)| process_cpu_seconds(pid))
        .sum()
}

/// CPU time (user + system, seconds) of one process, 0 when it is gone.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): state is the 1st, utime the 12th and
    // stime the 13th (fields 14 and 15 of proc(5)).
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11) + field(12)) / ticks
}

/// An HS256 access token for livekit-server with the `video` grant `video_grant`
/// (e.g. `{"roomRecord": true}`), valid for ten minutes.
pub fn access_token(livekit: &LiveKitServer, video_grant: Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = serde_json::json!({ "alg": "HS256", "typ": "JWT" });
    let claims = serde_json::json!({
        "iss": livekit.api_key(),
        "sub": "egress-e2e",
        "nbf": now.saturating_sub(10),
        "exp": now + 600,
        "video": video_grant,
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(livekit.api_secret().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        b64.encode(mac.finalize().into_bytes())
    )
}

/// A Twirp JSON call: `POST /twirp/livekit.<service_method>` (e.g. `Egress/StartEgress`) with
/// `body` and a token carrying `video_grant`. Returns the HTTP status and the JSON answer (a
/// Twirp error is `{"code": …, "msg": …}`). Panics if the server cannot be reached or answers
/// something that is not JSON.
pub async fn twirp(
    livekit: &LiveKitServer,
    service_method: &str,
    video_grant: Value,
    body: &Value,
) -> (u16, Value) {
    let token = access_token(livekit, video_grant);
    let body = body.to_string();
    let authority = format!("127.0.0.1:{}", livekit.port());
    // HTTP/1.0 with Connection: close, so the answer is the rest of the stream (no chunking).
    let request = format!(
        "POST /twirp/livekit.{service_method} HTTP/1.0\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("twirp {service_method}: no answer in 30 s"))
        .unwrap_or_else(|e| panic!("twirp {service_method}: {e}"));
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("twirp {service_method}: no HTTP head"));
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&raw[head_end + 4..]);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("twirp {service_method}: HTTP {status}, not JSON ({e}): {text}")
    });
    (status, json)
}

/// The SID of `identity`'s published track of `kind` ("AUDIO"/"VIDEO") in `room`, from
/// RoomService.ListParticipants; waits up to 30 s for it.
pub async fn track_sid(stack: &RecordingStack, room: &str, identity: &str, kind: &str) -> String {
    republished_track_sid(stack, room, identity, kind, None).await
}

/// The same, but a track other than `not` (the one published again after `not` went).
pub async fn republished_track_sid(
    stack: &RecordingStack,
    room: &str,
    identity: &str,
    kind: &str,
    not: Option<&str>,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = twirp(
            &stack.livekit,
            "RoomService/ListParticipants",
            serde_json::json!({ "roomAdmin": true, "room": room }),
            &serde_json::json!({ "room": room }),
        )
        .await;
        let sid = (status == 200)
            .then(|| body["participants"].as_array().cloned())
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["identity"] == identity)
            .flat_map(|p| p["tracks"].as_array().cloned().unwrap_or_default())
            // Go's JSON omits the zero enum value: a track without a type is AUDIO.
            .filter(|t| t["type"] == kind || (kind == "AUDIO" && t["type"].is_null()))
            .filter_map(|t| t["sid"].as_str().map(str::to_owned))
            .find(|sid| Some(sid.as_str()) != not);
        if let Some(sid) = sid {
            return sid;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} track of {identity} in {room}: HTTP {status} {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

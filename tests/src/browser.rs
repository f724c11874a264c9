//! A real browser publisher: headless Chromium running livekit-client, publishing its fake
//! camera and microphone into a room, as a user's browser does (VP8 by default, with picture
//! IDs and temporal layers, optionally simulcast; H.264 on request).
//!
//! The camera is a Y4M file and the microphone a WAV file made with ffmpeg (Chromium loops
//! both): a known colour with a moving box, and a tone, so a recording can be checked for
//! them. The page (`tests/browser/publisher.html`) and livekit-client's UMD build (from
//! `templates/node_modules`, installed by `scripts/setup`) are served by a small HTTP server
//! of the test, to which the page also POSTs its progress and, every second, the RTP sender's
//! statistics per layer (what Chromium really encodes: a layer it dropped for CPU or bandwidth
//! is the browser's doing, not the recorder's).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::process::{Proc, command};
use crate::recording::{AUDIO_TONE_HZ, VIDEO_RGB};
use crate::{LiveKitServer, TestDir, find_binary};

/// The page, kept beside the tests as a file so it can be opened and edited as HTML.
const PAGE: &str = include_str!("../browser/publisher.html");
/// Seconds of media in the looped capture files (a Y4M is raw: 960x540 is 0.78 MB a frame).
const LOOP_SECS: u32 = 2;
/// The largest request the page sends (a stats report is well under 4 KiB).
const MAX_REQUEST: usize = 256 * 1024;

/// What the browser publishes.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// livekit-client's `videoCodec`: `vp8` (the browser default), `h264`, `vp9`, `av1`.
    pub codec: String,
    /// Simulcast: livekit-client sends three layers for a 960x540 camera (320x180, 640x360,
    /// 960x540), two below 960 px.
    pub simulcast: bool,
    /// The camera size and frame rate (30 fps).
    pub width: u32,
    pub height: u32,
    /// The camera's background colour (a white box moves over it).
    pub rgb: [u8; 3],
    /// The microphone's tone, Hz.
    pub tone_hz: u32,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            codec: "vp8".into(),
            simulcast: false,
            width: 960,
            height: 540,
            rgb: VIDEO_RGB,
            tone_hz: AUDIO_TONE_HZ,
        }
    }
}

/// One track the page published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTrack {
    pub sid: String,
    /// `audio` or `video`.
    pub kind: String,
    /// livekit-client's source: `camera`, `microphone`.
    pub source: String,
}

/// One outbound RTP stream of the page's senders (a simulcast layer, or the only one).
#[derive(Debug, Clone)]
pub struct SenderStats {
    pub kind: String,
    pub rid: Option<String>,
    pub codec: String,
    pub width: u64,
    pub height: u64,
    pub fps: f64,
    pub frames_encoded: u64,
    pub bytes_sent: u64,
    /// `qualityLimitationReason`: `none`, `cpu`, `bandwidth`.
    pub limitation: String,
    pub scalability_mode: String,
}

impl SenderStats {
    fn from_json(v: &Value) -> SenderStats {
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let num = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        SenderStats {
            kind: text("kind"),
            rid: v.get("rid").and_then(Value::as_str).map(str::to_owned),
            codec: text("codec"),
            width: num("width"),
            height: num("height"),
            fps: v.get("fps").and_then(Value::as_f64).unwrap_or(0.0),
            frames_encoded: num("framesEncoded"),
            bytes_sent: num("bytesSent"),
            limitation: text("limitation"),
            scalability_mode: text("scalabilityMode"),
        }
    }
}

/// What the page reported, in order.
#[derive(Default)]
struct Events {
    all: Vec<Value>,
}

/// Headless Chromium publishing into a room; killed (with its whole process group) on drop.
pub struct BrowserPublisher {
    pub identity: String,
    chrome: Proc,
    events: Arc<Mutex<Events>>,
    server: tokio::task::JoinHandle<()>,
    dir: TestDir,
}

impl BrowserPublisher {
    /// Makes the capture files, serves the page and starts Chromium on it, joining `room` of
    /// `livekit` as `identity`. Returns at once: see [`wait_published`](Self::wait_published).
    pub async fn start(
        livekit: &LiveKitServer,
        room: &str,
        identity: &str,
        options: &BrowserOptions,
    ) -> BrowserPublisher {
        let dir = TestDir::new(&format!("browser-{identity}"));
        let (camera, microphone) = capture_files(&dir, options).await;
        let events = Arc::new(Mutex::new(Events::default()));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the browser page server");
        let port = listener.local_addr().expect("local addr").port();
        let server = tokio::spawn(serve(
            listener,
            livekit_client_js(),
            events.clone(),
            dir.join("events.jsonl"),
        ));

        let token = join_token(livekit, room, identity);
        let url = format!(
            "http://127.0.0.1:{port}/?url={}&token={token}&codec={}&simulcast={}&width={}&height={}",
            livekit.ws_url(),
            options.codec,
            u8::from(options.simulcast),
            options.width,
            options.height
        );
        let chrome = command(&find_binary("chromium"), dir.path());
        let chrome = launch(chrome, &dir, &camera, &microphone, &url);
        BrowserPublisher {
            identity: identity.to_owned(),
            chrome,
            events,
            server,
            dir,
        }
    }

    /// Waits until the page has published its camera and microphone; returns the tracks.
    /// Panics with the page's error and Chromium's log tail if it fails or takes `timeout`.
    pub async fn wait_published(&mut self, timeout: Duration) -> Vec<PublishedTrack> {
        let event = self
            .wait_for("published", timeout, |e| e["event"] == "published")
            .await;
        event["tracks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| PublishedTrack {
                sid: t["sid"].as_str().unwrap_or_default().to_owned(),
                kind: t["kind"].as_str().unwrap_or_default().to_owned(),
                source: t["source"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Waits until Chromium encodes video at `width`x`height` or more in one of its layers (the
    /// bandwidth estimate ramps up after publishing, and simulcast's top layer comes last);
    /// returns that report's senders.
    pub async fn wait_sending_video(
        &mut self,
        width: u64,
        height: u64,
        timeout: Duration,
    ) -> Vec<SenderStats> {
        let what = format!("video encoded at {width}x{height}");
        let event = self
            .wait_for(&what, timeout, |e| {
                e["event"] == "stats"
                    && senders_of(e).iter().any(|s| {
                        s.kind == "video" && s.width >= width && s.height >= height && s.fps > 0.0
                    })
            })
            .await;
        senders_of(&event)
    }

    /// The senders of the latest statistics report (empty before the first).
    pub fn latest_stats(&self) -> Vec<SenderStats> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events
            .all
            .iter()
            .rev()
            .find(|e| e["event"] == "stats")
            .map(senders_of)
            .unwrap_or_default()
    }

    /// A one-line summary of the latest statistics, for test output.
    pub fn stats_summary(&self) -> String {
        self.latest_stats()
            .iter()
            .map(|s| {
                format!(
                    "{} {}{}: {}x{} {:.0} fps {} frames {} B{}{}",
                    s.kind,
                    s.codec,
                    s.rid
                        .as_ref()
                        .map(|r| format!(" rid={r}"))
                        .unwrap_or_default(),
                    s.width,
                    s.height,
                    s.fps,
                    s.frames_encoded,
                    s.bytes_sent,
                    if s.scalability_mode.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", s.scalability_mode)
                    },
                    if s.limitation.is_empty() || s.limitation == "none" {
                        String::new()
                    } else {
                        format!(" limited by {}", s.limitation)
                    },
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The publisher's files: capture media, Chromium's profile and log, `events.jsonl`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Closes the browser (the participant leaves when its connection goes).
    pub async fn stop(mut self) {
        self.chrome.terminate(Duration::from_secs(3)).await;
    }

    async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(error) = events.all.iter().find(|e| e["event"] == "error") {
                    panic!(
                        "the browser publisher failed before {what}: {}\n{}",
                        error["message"],
                        self.chrome.log_tail()
                    );
                }
                if let Some(event) = events.all.iter().rev().find(|e| found(e)) {
                    return event.clone();
                }
            }
            if let Some(status) = self.chrome.try_wait() {
                panic!(
                    "chromium exited with {status} before {what}\n{}",
                    self.chrome.log_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "the browser publisher: no {what} after {timeout:?}; latest stats: {}\n{}",
                    self.stats_summary(),
                    self.chrome.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for BrowserPublisher {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn senders_of(event: &Value) -> Vec<SenderStats> {
    event["senders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(SenderStats::from_json)
        .collect()
}

/// Chromium with fake capture devices reading our files, permission prompts answered yes,
/// headless, its profile in the publisher's dir.
fn launch(
    mut cmd: std::process::Command,
    dir: &TestDir,
    camera: &Path,
    microphone: &Path,
    url: &str,
) -> Proc {
    cmd.args([
        "--headless=new",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--mute-audio",
        // livekit-server listens on 127.0.0.1 only; Chromium gathers no loopback candidates
        // unless told to.
        "--allow-loopback-in-peer-connection",
        // The page's console (and Chromium's own warnings) in the log.
        "--enable-logging=stderr",
        "--v=0",
    ]);
    cmd.arg(format!(
        "--use-file-for-fake-video-capture={}",
        camera.display()
    ))
    .arg(format!(
        "--use-file-for-fake-audio-capture={}",
        microphone.display()
    ))
    .arg(format!("--user-data-dir={}", dir.join("profile").display()));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Chromium refuses to run as root with its sandbox (test machines and CI run as root).
        cmd.arg("--no-sandbox");
    }
    cmd.arg(url);
    let log = dir.join("chromium.log");
    Proc::spawn("chromium (browser publisher)", cmd, &log, &log)
}

/// The capture files: a `rgb` video with a white box moving across it at the requested size
/// (Y4M, 30 fps) and a `tone_hz` sine (WAV, 48 kHz mono), each `LOOP_SECS` long.
async fn capture_files(dir: &TestDir, o: &BrowserOptions) -> (PathBuf, PathBuf) {
    let camera = dir.join("camera.y4m");
    let microphone = dir.join("microphone.wav");
    let [r, g, b] = o.rgb;
    let (w, h, s) = (o.width, o.height, LOOP_SECS);
    let box_size = (h / 6).max(16);
    // The box crosses the frame once per loop, so consecutive frames always differ.
    let video = format!(
        "color=c=0x{r:02x}{g:02x}{b:02x}:s={w}x{h}:r=30:d={s}[bg];color=c=white:s={box_size}x{box_size}:r=30:d={s}[box];\
         [bg][box]overlay=x='t*{speed}':y={y}:shortest=1",
        speed = f64::from(w - box_size) / f64::from(s),
        y = box_size / 2,
    );
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            &video,
            "-pix_fmt",
            "yuv420p",
            "-f",
            "yuv4mpegpipe",
        ],
        &camera,
    )
    .await;
    let tone = format!(
        "sine=frequency={}:sample_rate=48000:duration={s}",
        o.tone_hz
    );
    ffmpeg(
        &["-f", "lavfi", "-i", &tone, "-ac", "1", "-c:a", "pcm_s16le"],
        &microphone,
    )
    .await;
    (camera, microphone)
}

async fn ffmpeg(args: &[&str], out: &Path) {
    let output = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        output.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// livekit-client's browser bundle, from the templates' npm install.
fn livekit_client_js() -> Arc<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../templates/node_modules/livekit-client/dist/livekit-client.umd.js");
    let js = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run `npm ci` in templates/ (scripts/setup does)",
            path.display()
        )
    });
    Arc::new(js)
}

/// A join token for `identity` in `room`, allowed to publish (HS256 with the server's dev key).
pub fn join_token(livekit: &LiveKitServer, room: &str, identity: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let claims = json!({
        "iss": livekit.api_key(),
        "sub": identity,
        "name": identity,
        "nbf": now.saturating_sub(10),
        "exp": now + 3600,
        "video": { "room": room, "roomJoin": true, "canPublish": true, "canSubscribe": true },
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

/// Serves the page (`/`), livekit-client (`/livekit-client.umd.js`) and takes the page's
/// reports (`POST /event`, a JSON object), appended to `events` and to `log`.
async fn serve(listener: TcpListener, js: Arc<Vec<u8>>, events: Arc<Mutex<Events>>, log: PathBuf) {
    while let Ok((sock, _)) = listener.accept().await {
        let (js, events, log) = (js.clone(), events.clone(), log.clone());
        tokio::spawn(async move {
            // A broken connection only loses one report; the page sends more.
            let _ = answer(sock, &js, &events, &log).await;
        });
    }
}

async fn answer(
    mut sock: TcpStream,
    js: &[u8],
    events: &Mutex<Events>,
    log: &Path,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST {
            return Ok(());
        }
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut request_line = head.split_whitespace();
    let method = request_line.next().unwrap_or_default();
    let path = request_line
        .next()
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let (status, content_type, body): (&str, &str, &[u8]) = match (method, path) {
        ("GET", "/" | "/index.html") => ("200 OK", "text/html; charset=utf-8", PAGE.as_bytes()),
        ("GET", "/livekit-client.umd.js") => ("200 OK", "text/javascript", js),
        ("POST", "/event") => {
            let body = &buf[head_end..(head_end + length).min(buf.len())];
            if let Ok(event) = serde_json::from_slice::<Value>(body) {
                record(events, log, event);
            }
            ("204 No Content", "text/plain", b"")
        }
        _ => ("404 Not Found", "text/plain", b"not found"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.shutdown().await
}

fn record(events: &Mutex<Events>, log: &Path, event: Value) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "{event}");
    }
    if event["event"] == "error" {
        eprintln!("browser publisher: page error: {}", event["message"]);
    }
    events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .all
        .push(event);
}

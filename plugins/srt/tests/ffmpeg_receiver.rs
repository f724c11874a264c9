//! The srt destination against ffmpeg listening for one SRT caller (libsrt on both ends, as
//! most SRT ingests), fed the TS packets of a real H.264 + AAC recording as the host sends
//! them; the received recording is checked with ffprobe. A wrong passphrase must fail the
//! connect as a refusal within 2 s, a listener that is not there as retryable. (mediamtx and
//! the whole conformance suite: `tests/tests/live_destinations.rs`.)

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use egress_plugin_api::blocking::block_on;
use egress_plugin_api::conformance::LiveStream;
use egress_plugin_api::{BuiltinLive, LiveFactory, LoadedLive, json};
use egress_plugin_srt::SrtDestination;

const PASSPHRASE: &str = "correct-horse-battery";

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `seconds` of 640×360 30 fps H.264 (keyframe every second) and AAC, as MPEG-TS.
fn test_ts(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join("source.ts");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
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
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "mpegts"])
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn probe(path: &Path) -> (Vec<String>, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let codecs = v["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["codec_name"].as_str().map(str::to_string))
        .collect();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (codecs, duration)
}

/// ffmpeg listening for one SRT caller with [`PASSPHRASE`], writing what it gets to `out`.
struct Listener {
    child: Child,
    port: u16,
}

impl Listener {
    fn start(out: &Path) -> Listener {
        let port = free_udp_port();
        let child = Command::new("ffmpeg")
            // Probe one second, not five: the test stream is four seconds long.
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-analyzeduration",
                "1000000",
                "-i",
            ])
            .arg(format!(
                "srt://127.0.0.1:{port}?mode=listener&passphrase={PASSPHRASE}&pbkeylen=16"
            ))
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start ffmpeg");
        // No way to probe an SRT listener without becoming its one caller: give it time.
        std::thread::sleep(Duration::from_millis(700));
        Listener { child, port }
    }

    fn url(&self, passphrase: &str) -> String {
        format!(
            "srt://127.0.0.1:{}?passphrase={passphrase}&pbkeylen=16&latency=120",
            self.port
        )
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn destination() -> Box<dyn LiveFactory> {
    BuiltinLive::of::<SrtDestination>()
        .create(&json!({}))
        .expect("default config")
}

#[test]
fn publishes_to_ffmpeg_and_the_recording_plays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = LiveStream::from_ts(&std::fs::read(test_ts(dir.path(), 4)).unwrap()).unwrap();
    let received = dir.path().join("received.ts");
    let mut listener = Listener::start(&received);
    let srt = destination();
    let started = Instant::now();
    let connect_time = block_on(async {
        let mut session = srt
            .connect(&listener.url(PASSPHRASE))
            .await
            .expect("connect");
        let connect_time = started.elapsed();
        // In real time, as the host sends: SRT is a live transport, its receiver plays out
        // by the sender's clock.
        let start = Instant::now();
        for c in stream.headers.iter().chain(&stream.media) {
            if let Some(wait) = c.pts.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            session.send(c.as_chunk()).await.expect("send");
        }
        assert!(session.bytes_sent() >= stream.media_bytes());
        session.close().await.expect("close");
        connect_time
    });
    eprintln!("srt: connected in {} ms", connect_time.as_millis());
    let deadline = Instant::now() + Duration::from_secs(10);
    while listener.child.try_wait().expect("ffmpeg status").is_none() {
        assert!(
            Instant::now() < deadline,
            "ffmpeg did not end after the caller closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (codecs, duration) = probe(&received);
    assert!(
        codecs.contains(&"h264".to_string()) && codecs.contains(&"aac".to_string()),
        "{codecs:?}"
    );
    assert!(
        duration > 3.5 && duration < 4.5,
        "received {duration} s of a 4 s stream"
    );
}

#[test]
fn a_wrong_passphrase_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = Listener::start(&dir.path().join("never.ts"));
    let started = Instant::now();
    let e = block_on(destination().connect(&listener.url("not-the-passphrase")))
        .err()
        .expect("refused");
    let took = started.elapsed();
    assert!(e.is_auth(), "{e}");
    assert!(took < Duration::from_secs(2), "took {took:?}: {e}");
    assert!(!e.message().contains("not-the-passphrase"), "{e}");
}

#[test]
fn no_listener_is_retryable_and_bad_urls_are_config_errors() {
    let srt = destination();
    let started = Instant::now();
    let e = block_on(srt.connect(&format!("srt://127.0.0.1:{}", free_udp_port())))
        .err()
        .expect("nobody listens");
    assert!(e.is_retryable(), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let e = block_on(srt.connect("srt://nonexistent.invalid:9000"))
        .err()
        .expect("no such name");
    assert!(e.is_permanent(), "{e}");
    let e = block_on(srt.connect("srt://127.0.0.1:9000?mode=listener"))
        .err()
        .expect("listener");
    assert!(e.is_config(), "{e}");
}

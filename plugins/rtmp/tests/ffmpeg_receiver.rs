//! The rtmp destination against a second RTMP implementation, ffmpeg listening for one
//! publish (`ffmpeg -listen 1 -i rtmp://…`), fed the tags of a real H.264 + AAC FLV file as the
//! host sends them; the received recording is checked with ffprobe, as a user would. And the
//! error classes of the failures that need no server: a closed port, a name that does not
//! exist, a malformed URL. (mediamtx, RTMPS and the whole conformance suite:
//! `tests/tests/live_destinations.rs`.)

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use egress_plugin_api::blocking::block_on;
use egress_plugin_api::conformance::LiveStream;
use egress_plugin_api::{BuiltinLive, LiveFactory, LivePlugin, LoadedLive, json};
use egress_plugin_rtmp::RtmpDestination;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `seconds` of 640×360 30 fps H.264 (keyframe every second) and 48 kHz AAC, as FLV.
fn test_flv(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join("source.flv");
    run(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=640x360:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                &seconds.to_string(),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "30",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-f",
                "flv",
            ])
            .arg(&path),
        "ffmpeg (test media)",
    );
    path
}

/// What ffprobe says about a recording: codec names and duration.
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

struct Listener(Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn destination() -> Box<dyn LiveFactory> {
    BuiltinLive::of::<RtmpDestination>()
        .create(&json!({}))
        .expect("default config")
}

#[test]
fn publishes_to_ffmpeg_and_the_recording_plays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = LiveStream::from_flv(&std::fs::read(test_flv(dir.path(), 4)).unwrap()).unwrap();
    let port = free_port();
    let received = dir.path().join("received.flv");
    let url = format!("rtmp://127.0.0.1:{port}/live/secret-key");
    let mut listener = Listener(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-listen",
                "1",
                "-i",
                &url,
                "-c",
                "copy",
                "-f",
                "flv",
            ])
            .arg(&received)
            .stdin(Stdio::null())
            .spawn()
            .expect("start ffmpeg -listen"),
    );
    let rtmp = destination();
    block_on(async {
        // ffmpeg takes a moment to listen; until then the connect is refused (retryable).
        let started = Instant::now();
        let mut session = loop {
            match rtmp.connect(&url).await {
                Ok(s) => break s,
                Err(e) if e.is_retryable() && started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        for c in stream.headers.iter().chain(&stream.media) {
            session.send(c.as_chunk()).await.expect("send");
        }
        assert!(session.bytes_sent() > stream.media_bytes() / 2);
        session.close().await.expect("close");
    });
    // ffmpeg ends when the publisher has gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listener.0.try_wait().expect("ffmpeg status").is_none() {
        assert!(
            Instant::now() < deadline,
            "ffmpeg did not end after the publish closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (codecs, duration) = probe(&received);
    assert!(
        codecs.contains(&"h264".to_string()) && codecs.contains(&"aac".to_string()),
        "{codecs:?}"
    );
    assert!(
        (duration - 4.0).abs() < 0.3,
        "received {duration} s of a 4 s stream"
    );
}

#[test]
fn failures_have_the_right_class() {
    let rtmp = destination();
    block_on(async {
        let port = free_port(); // nothing listens there now
        let started = Instant::now();
        let e = rtmp
            .connect(&format!("rtmp://127.0.0.1:{port}/live/k"))
            .await
            .err()
            .expect("refused");
        assert!(e.is_retryable(), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );

        let e = rtmp
            .connect("rtmp://nonexistent.invalid/live/k")
            .await
            .err()
            .expect("no such name");
        assert!(e.is_permanent(), "{e}");

        let e = rtmp
            .connect("rtmp://127.0.0.1/only-a-key")
            .await
            .err()
            .expect("malformed");
        assert!(e.is_config(), "{e}");
        assert!(
            e.message().starts_with(egress_plugin_rtmp::FORMAT_ERROR),
            "{e}"
        );
        assert!(
            rtmp.validate_url("rtmps://a.example/app/key live=1")
                .is_ok()
        );
    });
    let bad = RtmpDestination::validate(&json!({ "connect_timeout_ms": 0 })).unwrap_err();
    assert_eq!(bad.field(), Some("connect_timeout_ms"));
    let bad = RtmpDestination::validate(&json!({ "ca_flie": "/x" })).unwrap_err();
    assert_eq!(bad.field(), Some("ca_flie"));
}

#[test]
fn a_silent_server_times_out_as_retryable() {
    // Accepts the TCP connection, never answers the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().unwrap().port();
    let rtmp = BuiltinLive::of::<RtmpDestination>()
        .create(&json!({ "connect_timeout_ms": 500 }))
        .unwrap();
    let started = Instant::now();
    let e = block_on(rtmp.connect(&format!("rtmp://127.0.0.1:{port}/live/k")))
        .err()
        .expect("timeout");
    assert!(e.is_retryable(), "{e}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "{took:?}"
    );
    drop(silent);
}

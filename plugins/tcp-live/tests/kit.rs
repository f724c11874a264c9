//! The README's third-party live destination, for real: the live conformance suite against a
//! TCP receiver of our own (one listener per URL, counting what each connection brings), and
//! the received bytes of the main publish played back with ffprobe (H.264 + AAC, 4 s). The
//! README shows this crate's source verbatim (checked below), so the example cannot rot.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use egress_plugin_api::blocking::block_on;
use egress_plugin_api::conformance::{Expect, LiveFailure, LiveKit, LiveReceiver, LiveStream};
use egress_plugin_api::{BuiltinLive, async_trait, json};
use egress_plugin_tcp_live::TcpLive;

/// A listener per URL. The newest connection's bytes are counted while it is open and kept,
/// once it ends, in `<name>.ts` in `dir`.
struct Receiver {
    dir: PathBuf,
    counts: Arc<Mutex<HashMap<String, u64>>>,
}

#[async_trait]
impl LiveReceiver for Receiver {
    fn url(&self, name: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("tcp://{}", listener.local_addr().expect("addr"));
        let (counts, key) = (self.counts.clone(), url.clone());
        let file = self.dir.join(format!("{name}.ts"));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let count = |n: u64| {
                    let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
                    *counts.entry(key.clone()).or_default() += n;
                };
                counts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.clone(), 0);
                let mut out = Vec::new();
                let mut buf = [0u8; 65536];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                    count(n as u64);
                }
                let _ = std::fs::write(&file, &out);
            }
        });
        url
    }

    async fn received(&self, url: &str) -> Result<u64, String> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(counts.get(url).copied().unwrap_or(0))
    }
}

fn test_ts(dir: &Path) -> Vec<u8> {
    let path = dir.join("source.ts");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts"])
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(path).expect("read the test media")
}

#[test]
fn the_readme_example_passes_the_live_kit_and_the_stream_plays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = LiveStream::from_ts(&test_ts(dir.path())).expect("TS");
    let receiver = Arc::new(Receiver {
        dir: dir.path().to_path_buf(),
        counts: Arc::default(),
    });
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("tcp://{}", l.local_addr().expect("addr"))
    }; // nothing listens once `l` is dropped
    let kit = LiveKit::new(
        Arc::new(BuiltinLive::of::<TcpLive>()),
        json!({}),
        receiver,
        stream,
    )
    .pace(false) // TCP takes bursts
    .invalid_config(
        json!({ "connect_timeout_ms": 0 }),
        Some("connect_timeout_ms"),
    )
    .invalid_url("tcp://127.0.0.1")
    .invalid_url("rtmp://127.0.0.1:1935/live/key")
    .failure(
        LiveFailure::new("closed port", &closed, Expect::Retryable).within(Duration::from_secs(1)),
    )
    .failure(LiveFailure::new(
        "no such host",
        "tcp://nonexistent.invalid:9000",
        Expect::Permanent,
    ));
    block_on(kit.run()).assert_passed();

    // What the receiver wrote for the main publish plays: H.264 + AAC, about 4 s.
    let file = dir.path().join("conformance-publish.ts");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(&file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert!(
        codecs.contains(&"h264") && codecs.contains(&"aac"),
        "{codecs:?}"
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    assert!((duration - 4.0).abs() < 0.3, "{duration} s");
}

#[test]
fn the_readme_shows_this_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/lib.rs")).expect("source");
    let readme = std::fs::read_to_string(root.join("../../plugin-api/README.md")).expect("README");
    assert!(
        readme.contains(&format!("```rust\n{source}```")),
        "plugin-api/README.md must show plugins/tcp-live/src/lib.rs verbatim in a ```rust block"
    );
}

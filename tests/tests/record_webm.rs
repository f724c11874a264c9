//! WebM end to end: a web egress with `video_codec: VP8` and the default file type records
//! VP8 + Opus into a `.webm` file (the Go egress would ignore VP8 and record H.264), and VP8
//! with an explicit MP4 file is refused when the egress is started; a participant egress
//! (decoded and re-encoded, the composite recorder) with VP8 does the same. Both files are
//! finished: their duration in ffprobe's format section, seekable to a keyframe, indexed.
//!
//! Needs Xvfb, PulseAudio, Chromium, GStreamer (vp8enc, webmmux) and ffmpeg (scripts/setup).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use egress_e2e::recording::*;
use egress_e2e::seekable::assert_seekable;
use serde_json::json;
use tokio::process::{Child, Command};

/// vp8enc's keyframe distance when the request sets none (`pipeline::elements`).
const VP8_KEYFRAME_SECS: f64 = 2.0;

const RECORD_SECS: f64 = 8.0;
const DURATION_TOLERANCE: f64 = 0.5;

#[tokio::test]
async fn a_vp8_web_egress_records_webm_with_vp8_and_opus() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let page = TestPage::start().await;
    let lk = stack.lk();

    let request = json!({
        "url": page.url(""),
        "advanced": { "video_codec": "VP8" },
        "file_outputs": [{ "filepath": "webm/{time}-page" }],
    });
    let started = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start");
    assert_eq!(started.status, "EGRESS_STARTING", "{}", started.stdout);
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");

    // CPU over the middle of the recording (start-up excluded), printed for comparison with
    // H.264: the handler runs capture and encoding, the rest is Chrome, Xvfb and PulseAudio.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let handler = handler_pid(&id).expect("handler process");
    let (t0, handler0, all0) = (
        Instant::now(),
        process_cpu_seconds(handler),
        cpu_seconds(&id),
    );
    let stop_at = file_started + (RECORD_SECS * 1e9) as i64;
    tokio::time::sleep(Duration::from_nanos((stop_at - unix_nanos()).max(0) as u64)).await;
    let wall = t0.elapsed().as_secs_f64();
    let (handler_cores, all_cores) = (
        (process_cpu_seconds(handler) - handler0) / wall,
        (cpu_seconds(&id) - all0) / wall,
    );
    eprintln!(
        "VP8 720p30 web recording {id}: handler {handler_cores:.2} cores, with Chrome/Xvfb/PulseAudio {all_cores:.2} cores (over {wall:.1} s)"
    );

    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    assert!(done.get("error").is_none_or(|e| e == ""), "{done:#}");

    let file = &done["file_results"][0];
    let filename = file["filename"].as_str().expect("filename");
    assert!(
        filename.starts_with("webm/") && filename.ends_with("-page.webm"),
        "{filename}"
    );
    let location = std::path::PathBuf::from(file["location"].as_str().expect("location"));
    let bytes = std::fs::read(&location).expect("recorded file");
    assert_eq!(file["size"].as_i64(), Some(bytes.len() as i64));
    // ffprobe names Matroska and WebM alike; the EBML header's DocType tells them apart.
    let doc_type_is_webm = bytes[..bytes.len().min(64)]
        .windows(7)
        .any(|w| w[..2] == [0x42, 0x82] && &w[3..] == b"webm");
    assert!(
        doc_type_is_webm,
        "DocType is not webm: {:02x?}",
        &bytes[..bytes.len().min(64)]
    );

    let p = probe(&location).await;
    assert_eq!(p.format, "matroska,webm", "{p:?}");
    let video = p.video.clone().expect("a video stream");
    let audio = p.audio.clone().expect("an audio stream");
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("vp8", 1280, 720),
        "{p:?}"
    );
    assert!((video.fps - 30.0).abs() < 0.5, "frame rate {}", video.fps);
    assert_eq!(
        (audio.codec.as_str(), audio.sample_rate, audio.channels),
        ("opus", 48000, 2),
        "{p:?}"
    );
    assert!(
        (p.duration - asked).abs() < DURATION_TOLERANCE,
        "recorded {:.2}s, asked for {asked:.2}s",
        p.duration
    );
    let reported = file["duration"].as_i64().unwrap_or(0) as f64 / 1e9;
    assert!(
        (reported - p.duration).abs() < DURATION_TOLERANCE,
        "FileInfo says {reported:.2}s, file has {:.2}s",
        p.duration
    );
    assert_seekable(&location, asked, VP8_KEYFRAME_SECS).await;

    let level = mean_volume(&location).await;
    assert!(level > -30.0, "the tone is missing: mean volume {level} dB");
    let colour = pixel(&location, p.duration / 2.0, 600, 400, 16).await;
    assert!(
        colour_distance(colour, PAGE_RGB) < 24,
        "page colour {PAGE_RGB:?}, recorded {colour:?}"
    );
    assert!(decodes_cleanly(&location).await);
    let (distinct, frames) = unique_frames(&location).await;
    assert!(
        distinct * 10 > frames * 9,
        "only {distinct} distinct of {frames} frames: capture or vp8enc fell behind"
    );

    let left = wait_no_processes(&id, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "processes of {id} still running: {left:?}");
}

#[tokio::test]
async fn vp8_into_an_mp4_file_is_refused_at_start() {
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let request = json!({
        "url": "http://127.0.0.1:9/",
        "advanced": { "video_codec": "VP8" },
        "file_outputs": [{ "filepath": "x.mp4", "file_type": "MP4" }],
    });
    let answer = match lk.egress_start("web", &request.to_string()).await {
        Ok(started) => started.stdout,
        Err(e) => format!("{}{}", e.stdout, e.stderr),
    };
    assert!(
        answer.contains("format video/mp4 incompatible with codec video/vp8"),
        "lk printed:\n{answer}"
    );
    assert!(lk.egress_list().await.is_empty(), "nothing may be started");
}

/// `lk room join --identity IDENTITY --publish …` at 30 fps in the background (killed on drop).
fn lk_join(stack: &RecordingStack, room: &str, identity: &str, publish: &[&Path]) -> Child {
    let log = std::fs::File::create(stack.egress.dir().join(format!("publisher-{identity}.log")))
        .expect("publisher log");
    let livekit = &stack.livekit;
    let mut cmd = Command::new(egress_e2e::find_binary("lk"));
    cmd.args([
        "--url",
        &livekit.http_url(),
        "--api-key",
        livekit.api_key(),
        "--api-secret",
        livekit.api_secret(),
    ])
    .args(["room", "join", "--identity", identity, "--fps", "30"]);
    for p in publish {
        cmd.arg("--publish").arg(p);
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
    cmd.spawn().expect("start lk room join")
}

/// The composite recorder's WebM: webmmux writes it (its header rewritten at the end, and the
/// upload sent again), and the stored file is as seekable as the MP4s.
#[tokio::test]
async fn a_vp8_participant_egress_records_a_seekable_webm() {
    let _serial = serial().await;
    let stack = composite_stack().await;
    let lk = stack.lk();
    let media = TestMedia::generate(60).await;
    let room = "webm-participant-room";
    let mut publisher = lk_join(&stack, room, "alice", &[&media.video, &media.audio]);
    wait_for_publishers(&lk, room, 1, Duration::from_secs(30)).await;

    let request = json!({
        "room_name": room,
        "identity": "alice",
        "file_outputs": [{ "filepath": "webm/{publisher_identity}" }],
        "advanced": {
            "width": 640, "height": 360, "framerate": 30, "video_bitrate": 800,
            "video_codec": "VP8", "audio_codec": "OPUS",
        },
    });
    let started = lk
        .egress_start("participant", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(40)).await;
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");
    let stop_at = file_started + (RECORD_SECS * 1e9) as i64;
    tokio::time::sleep(Duration::from_nanos((stop_at - unix_nanos()).max(0) as u64)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    let _ = publisher.kill().await;

    assert_eq!(
        done["file_results"][0]["filename"], "webm/alice.webm",
        "{done:#}"
    );
    let file = location(&done);
    let p = probe(&file).await;
    assert_eq!(p.format, "matroska,webm", "{p:?}");
    let (v, a) = (
        p.video.clone().expect("a video stream"),
        p.audio.clone().expect("an audio stream"),
    );
    assert_eq!(
        (v.codec.as_str(), v.width, v.height, a.codec.as_str()),
        ("vp8", 640, 360, "opus"),
        "{p:?}"
    );
    let duration = assert_seekable(&file, asked, VP8_KEYFRAME_SECS).await;
    eprintln!("VP8 participant egress {id}: {duration:.2} s recorded of {asked:.2} s asked");
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );
    let colour = pixel(&file, duration / 2.0, 320, 300, 16).await;
    assert!(
        colour_distance(colour, VIDEO_RGB) < 30,
        "published colour {VIDEO_RGB:?}, recorded {colour:?}"
    );
}

//! WebM end to end: a web egress with `video_codec: VP8` and the default file type records
//! VP8 + Opus into a `.webm` file (the Go egress would ignore VP8 and record H.264), and VP8
//! with an explicit MP4 file is refused when the egress is started.
//!
//! Needs Xvfb, PulseAudio, Chromium, GStreamer (vp8enc, webmmux) and ffmpeg (scripts/setup).

use std::time::{Duration, Instant};

use egress_e2e::recording::*;
use serde_json::json;

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

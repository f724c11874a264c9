//! Web egress end to end: a real livekit-server and egress, Chrome recording a local test page
//! (a known colour, a moving box, a WebAudio tone) to a local file.
//!
//! Needs Xvfb, PulseAudio, Chromium, GStreamer and ffmpeg (scripts/setup) and the built
//! templates (`templates/dist`).

use std::time::Duration;

use egress_e2e::recording::*;
use egress_e2e::seekable::assert_seekable;
use serde_json::json;

/// How long the tests record after the egress reports ACTIVE.
const RECORD_SECS: f64 = 8.0;
/// Allowed difference between the asked-for and the recorded duration.
const DURATION_TOLERANCE: f64 = 0.5;

#[tokio::test]
async fn web_page_is_recorded_to_mp4_until_stopped() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let page = TestPage::start().await;
    let lk = stack.lk();

    let request =
        json!({ "url": page.url(""), "file_outputs": [{ "filepath": "web/{time}-page.mp4" }] });
    let t0 = std::time::Instant::now();
    let started = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start");
    assert_eq!(started.status, "EGRESS_STARTING", "{}", started.stdout);
    let id = started.egress_id.clone();
    let (active, seen) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    eprintln!(
        "web egress {id}: StartEgress → ACTIVE seen after {:?}",
        seen - t0
    );
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");

    // Stop RECORD_SECS after the first frame (the egress's clock is ours: same host).
    let stop_at = file_started + (RECORD_SECS * 1e9) as i64;
    let wait = (stop_at - unix_nanos()).max(0) as u64;
    tokio::time::sleep(Duration::from_nanos(wait)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;

    assert_eq!(done["details"], "End reason: StopEgress API", "{done:#}");
    assert!(done.get("error").is_none_or(|e| e == ""), "{done:#}");
    let file = &done["file_results"][0];
    let filename = file["filename"].as_str().expect("filename");
    assert!(
        filename.starts_with("web/") && filename.ends_with("-page.mp4"),
        "{filename}"
    );
    let location = std::path::PathBuf::from(file["location"].as_str().expect("location"));
    assert_eq!(
        location.canonicalize().ok(),
        stack.output(filename).canonicalize().ok()
    );
    let size = std::fs::metadata(&location).expect("recorded file").len();
    assert_eq!(file["size"].as_i64(), Some(size as i64));
    assert_eq!(
        done["Result"]["File"], *file,
        "the deprecated single result repeats the file result"
    );

    let p = probe(&location).await;
    let video = p.video.clone().expect("a video stream");
    let audio = p.audio.clone().expect("an audio stream");
    assert_eq!(
        (
            video.codec.as_str(),
            video.profile.as_str(),
            video.width,
            video.height
        ),
        ("h264", "Main", 1280, 720),
        "{p:?}"
    );
    assert!((video.fps - 30.0).abs() < 0.5, "frame rate {}", video.fps);
    assert_eq!(
        (audio.codec.as_str(), audio.sample_rate, audio.channels),
        ("aac", 44100, 2),
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
    assert!(
        (video.duration - audio.duration).abs() < 0.2,
        "tracks differ: {p:?}"
    );
    // No key_frame_interval in the request: x264's own distance, 250 frames.
    assert_seekable(&location, asked, 250.0 / 30.0).await;

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
        "only {distinct} distinct of {frames} frames: Chrome or capture fell behind"
    );

    let manifest_path = location.with_file_name(format!("{id}.json"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest"))
            .expect("manifest json");
    assert_eq!(manifest["egress_id"], id.as_str());
    assert_eq!(manifest["url"], page.url("").as_str());
    assert_eq!(manifest["files"][0]["filename"], filename);
    assert_eq!(
        done["manifest_location"]
            .as_str()
            .map(std::path::PathBuf::from)
            .and_then(|p| p.canonicalize().ok()),
        manifest_path.canonicalize().ok()
    );

    let left = wait_no_processes(&id, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "processes of {id} still running: {left:?}");
}

#[tokio::test]
async fn page_signals_start_and_end_an_audio_only_ogg_recording() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let page = TestPage::start().await;
    let lk = stack.lk();

    // The page starts recording after 2 s and ends it 5 s later.
    let request = json!({
        "url": page.url("start_after=2000&end_after=7000"),
        "audio_only": true,
        "await_start_signal": true,
        "file_outputs": [{ "filepath": "audio/", "file_type": "OGG" }],
    });
    let started = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(40)).await;
    assert_eq!(done["details"], "End reason: Source closed", "{done:#}");

    let file = &done["file_results"][0];
    let filename = file["filename"].as_str().expect("filename");
    assert!(
        filename.starts_with("audio/web-") && filename.ends_with(".ogg"),
        "{filename}"
    );
    let location = std::path::PathBuf::from(file["location"].as_str().expect("location"));
    let p = probe(&location).await;
    assert!(p.video.is_none(), "audio only: {p:?}");
    let audio = p.audio.clone().expect("an audio stream");
    assert_eq!(
        (audio.codec.as_str(), audio.sample_rate, audio.channels),
        ("opus", 48000, 2),
        "{p:?}"
    );
    assert!(
        (p.duration - 5.0).abs() < DURATION_TOLERANCE,
        "recorded {:.2}s of the page's 5 s",
        p.duration
    );
    // Every Opus packet is a sync point; a seek in Ogg lands on a page (oggmux: under 1 s).
    assert_seekable(&location, 5.0, 1.0).await;
    let level = mean_volume(&location).await;
    assert!(level > -30.0, "the tone is missing: mean volume {level} dB");
}

#[tokio::test]
async fn the_session_limit_ends_the_recording_with_limit_reached() {
    let _serial = serial().await;
    let stack = RecordingStack::start_with(|yaml| {
        format!("{yaml}session_limits:\n  file_output_max_duration: 6s\n")
    })
    .await;
    let page = TestPage::start().await;
    let lk = stack.lk();

    let request = json!({ "url": page.url(""), "file_outputs": [{ "filepath": "limited.mp4" }] });
    let id = lk
        .egress_start("web", &request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    let (done, _) = wait_for_status(&lk, &id, status::LIMIT_REACHED, Duration::from_secs(40)).await;
    assert_eq!(done["error"], "Session limit reached", "{done:#}");
    assert_eq!(done["error_code"], 413, "{done:#}");
    assert_eq!(
        done["details"], "End reason: Session limit reached",
        "{done:#}"
    );

    // The limit runs from the start of the egress, as in Go: the file is a little shorter.
    let p = probe(&stack.output("limited.mp4")).await;
    let reported = done["file_results"][0]["duration"].as_i64().unwrap_or(0) as f64 / 1e9;
    assert!(
        p.duration > 3.0 && p.duration <= 6.0 + DURATION_TOLERANCE,
        "recorded {:.2}s",
        p.duration
    );
    assert!(
        (reported - p.duration).abs() < DURATION_TOLERANCE,
        "FileInfo says {reported:.2}s, file has {:.2}s",
        p.duration
    );
    assert!(
        done["manifest_location"]
            .as_str()
            .is_some_and(|m| m.ends_with(&format!("{id}.json"))),
        "{done:#}"
    );
}

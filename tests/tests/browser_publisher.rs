//! Recording what a real browser publishes: headless Chromium with livekit-client
//! (`egress_e2e::browser`) publishes a fake camera (the test colour, a moving box, 960x540@30)
//! and microphone (a tone) as a user's browser would — VP8 with picture IDs and temporal
//! layers (L1T3), with or without simulcast —, and our WebRTC recorders record it: a track
//! egress to WebM (passthrough) and a participant egress to MP4 (decoded, re-encoded).
//!
//! Before an egress starts, each test waits until Chromium's own statistics show it encoding
//! the size the recording is checked for, so a layer the browser dropped (CPU, bandwidth on a
//! busy 2-core machine) fails as the browser's doing, not the recorder's.

use std::path::Path;
use std::time::Duration;

use egress_e2e::browser::{BrowserOptions, BrowserPublisher, PublishedTrack};
use egress_e2e::recording::*;
use serde_json::{Value, json};

const RECORD_SECS: f64 = 6.0;
const DURATION_TOLERANCE: f64 = 0.6;
/// How long Chromium may take to ramp up to the full size (bandwidth estimate, simulcast's top
/// layer last).
const RAMP_UP: Duration = Duration::from_secs(40);

fn sid_of(tracks: &[PublishedTrack], kind: &str) -> String {
    tracks
        .iter()
        .find(|t| t.kind == kind)
        .map(|t| t.sid.clone())
        .unwrap_or_else(|| panic!("the browser published no {kind} track: {tracks:?}"))
}

/// The timestamp of the last video packet in `file`, seconds (a live WebM has no duration).
async fn last_packet_time(file: &Path) -> f64 {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .await
        .expect("run ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .fold(0.0, f64::max)
}

/// How many decoded video frames of `file` have each size: a recording that switched
/// simulcast layers mid-way has frames of several sizes, whatever the container header says.
async fn frame_sizes(file: &Path) -> Vec<((u64, u64), usize)> {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .await
        .expect("run ffprobe");
    let mut sizes: Vec<((u64, u64), usize)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = line
            .trim()
            .trim_end_matches(',')
            .split(',')
            .filter_map(|v| v.parse::<u64>().ok());
        let (Some(w), Some(h)) = (it.next(), it.next()) else {
            continue;
        };
        match sizes.iter_mut().find(|(s, _)| *s == (w, h)) {
            Some((_, n)) => *n += 1,
            None => sizes.push(((w, h), 1)),
        }
    }
    sizes
}

/// Whether every frame of `file` decodes without an error. Unlike `decodes_cleanly`, frames
/// keep their own timestamps at millisecond precision (`-fps_mode passthrough -enc_time_base
/// 1:1000`): a browser's capture times jitter, and two frames 29 ms apart fall into one slot of
/// ffmpeg's default 1/30 s output time base, which its null muxer reports as an error
/// ("non monotonically increasing dts") although both decoded. A corrupt file still fails.
async fn decodes_without_errors(file: &Path) -> Result<(), String> {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "1:1000",
            "-f",
            "null",
            "-",
        ])
        .output()
        .await
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() && errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// (frames equal to the one before, all frames) of `file`'s decoded video. The capture loops
/// every two seconds, so frames recur across loops; a frame equal to the one before it means
/// the picture did not move.
async fn repeated_frames(file: &Path) -> (usize, usize) {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-an", "-fps_mode", "passthrough", "-f", "framemd5", "-"])
        .output()
        .await
        .expect("run ffmpeg framemd5");
    let hashes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_owned()))
        .collect();
    let repeats = hashes.windows(2).filter(|w| w[0] == w[1]).count();
    (repeats, hashes.len())
}

/// Waits for ACTIVE, records about `RECORD_SECS` from the file's start, stops and waits for
/// COMPLETE. Returns the final info and the span asked for (seconds).
async fn record(lk: &egress_e2e::Lk, id: &str) -> (Value, f64) {
    let (active, _) = wait_for_status(lk, id, status::ACTIVE, Duration::from_secs(40)).await;
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");
    let stop_at = file_started + (RECORD_SECS * 1e9) as i64;
    tokio::time::sleep(Duration::from_nanos((stop_at - unix_nanos()).max(0) as u64)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    lk.egress_stop(id).await.expect("egress stop");
    let (done, _) = wait_for_status(lk, id, status::COMPLETE, Duration::from_secs(30)).await;
    (done, asked)
}

/// A browser's `codec` camera recorded by a track egress (VP8 → WebM, H.264 → MP4), checked
/// for: the size the browser sends in the header and in every frame, the published colour,
/// moving frames, a clean decode, the span asked for.
async fn track_egress_of_browser(codec: &str, simulcast: bool) {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let room = format!(
        "browser-{codec}-{}",
        if simulcast { "simulcast" } else { "single" }
    );
    let options = BrowserOptions {
        codec: codec.to_owned(),
        simulcast,
        ..BrowserOptions::default()
    };
    let mut browser = BrowserPublisher::start(&stack.livekit, &room, "browser", &options).await;
    let tracks = browser.wait_published(Duration::from_secs(60)).await;
    let sid = sid_of(&tracks, "video");
    browser
        .wait_sending_video(u64::from(options.width), u64::from(options.height), RAMP_UP)
        .await;
    eprintln!("browser sends: {}", browser.stats_summary());

    let request =
        json!({ "room_name": room, "track_id": sid, "file": { "filepath": "browser/{track_id}" } });
    let id = lk
        .egress_start("track", &request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    let (done, asked) = record(&lk, &id).await;
    eprintln!("browser sent, at the end: {}", browser.stats_summary());
    browser.stop().await;

    let extension = if codec == "h264" { "mp4" } else { "webm" };
    assert_eq!(
        done["file_results"][0]["filename"],
        format!("browser/{sid}.{extension}"),
        "{done:#}"
    );
    let file = location(&done);
    let p = probe(&file).await;
    let v = p.video.clone().expect("a video stream");
    assert!(p.audio.is_none(), "{p:?}");
    assert_eq!(v.codec, codec, "{p:?}");
    let sizes = frame_sizes(&file).await;
    let span = last_packet_time(&file).await;
    let (repeats, frames) = repeated_frames(&file).await;
    let colour = pixel(&file, span / 2.0, 16, options.height - 32, 16).await;
    eprintln!(
        "browser track egress {id}: {}x{} in the header, frame sizes {sizes:?}, {repeats} repeated of {frames} frames, {span:.2} s (asked {asked:.2} s), colour {colour:?}",
        v.width, v.height
    );
    // The highest layer: the header and every decoded frame at the browser's full size.
    let full = (u64::from(options.width), u64::from(options.height));
    assert_eq!(
        (v.width, v.height),
        (i64::from(options.width), i64::from(options.height)),
        "{p:?}"
    );
    assert!(
        sizes.iter().all(|(s, _)| *s == full),
        "frames not all {full:?}: {sizes:?}"
    );
    assert!(
        (span - asked).abs() < DURATION_TOLERANCE,
        "recorded {span:.2}s, asked for {asked:.2}s"
    );
    let reported = done["file_results"][0]["duration"].as_i64().unwrap_or(0) as f64 / 1e9;
    assert!(
        (reported - span).abs() < DURATION_TOLERANCE,
        "FileInfo.duration {reported:.2}s, file {span:.2}s"
    );
    if let Err(errors) = decodes_without_errors(&file).await {
        panic!("the file does not decode cleanly: {errors}");
    }
    assert!(
        colour_distance(colour, options.rgb) < 30,
        "published colour {:?}, recorded {colour:?}",
        options.rgb
    );
    // Chromium may lower the frame rate under CPU pressure (maintain-resolution); the frames
    // it sends must all be there and moving.
    assert!(
        frames as f64 > asked * 10.0,
        "{frames} frames in {asked:.1} s"
    );
    assert!(
        repeats * 10 < frames,
        "{repeats} of {frames} frames repeat the one before: the video is not moving"
    );
}

#[tokio::test]
async fn a_browsers_vp8_camera_is_recorded_to_webm_by_a_track_egress() {
    track_egress_of_browser("vp8", false).await;
}

#[tokio::test]
async fn a_track_egress_of_a_simulcast_browser_records_the_highest_layer() {
    track_egress_of_browser("vp8", true).await;
}

#[tokio::test]
async fn a_browsers_h264_camera_is_recorded_to_mp4_by_a_track_egress() {
    track_egress_of_browser("h264", false).await;
}

#[tokio::test]
async fn a_participant_egress_records_a_browsers_simulcast_vp8_camera_and_microphone() {
    composite_of_browser(
        "participant",
        |room, _| json!({ "room_name": room, "identity": "alice" }),
    )
    .await;
}

#[tokio::test]
async fn a_track_composite_records_a_browsers_simulcast_vp8_and_opus_tracks() {
    composite_of_browser("track-composite", |room, tracks| {
        json!({ "room_name": room, "video_track_id": sid_of(tracks, "video"), "audio_track_id": sid_of(tracks, "audio") })
    })
    .await;
}

/// A composite egress (`egress_type`, its request from `request(room, tracks)`) of a browser
/// publishing a simulcast VP8 camera and an Opus microphone, decoded and re-encoded to MP4:
/// the published colour (not black), moving frames, the tone.
async fn composite_of_browser(
    egress_type: &str,
    request: impl FnOnce(&str, &[PublishedTrack]) -> Value,
) {
    let _serial = serial().await;
    let stack = RecordingStack::start_with(|y| {
        format!("{y}  participant_cpu_cost: 0.5\n  track_composite_cpu_cost: 0.5\n")
    })
    .await;
    let lk = stack.lk();
    let room = format!("browser-{egress_type}");
    let room = room.as_str();
    let options = BrowserOptions {
        simulcast: true,
        ..BrowserOptions::default()
    };
    let mut browser = BrowserPublisher::start(&stack.livekit, room, "alice", &options).await;
    let tracks = browser.wait_published(Duration::from_secs(60)).await;
    browser
        .wait_sending_video(u64::from(options.width), u64::from(options.height), RAMP_UP)
        .await;
    eprintln!("browser sends: {}", browser.stats_summary());

    let mut request = request(room, &tracks);
    request["file_outputs"] = json!([{ "filepath": "composite/alice.mp4" }]);
    request["advanced"] = json!({ "width": options.width, "height": options.height, "framerate": 30, "video_bitrate": 1500 });
    let id = lk
        .egress_start(egress_type, &request.to_string())
        .await
        .expect("egress start")
        .egress_id;
    let (done, asked) = record(&lk, &id).await;
    eprintln!("browser sent, at the end: {}", browser.stats_summary());
    browser.stop().await;

    assert_eq!(
        done["file_results"][0]["filename"], "composite/alice.mp4",
        "{done:#}"
    );
    let file = location(&done);
    let p = probe(&file).await;
    let v = p.video.clone().expect("a video stream");
    assert_eq!(
        (v.codec.as_str(), v.width, v.height),
        ("h264", i64::from(options.width), i64::from(options.height)),
        "{p:?}"
    );
    assert_eq!(
        p.audio.as_ref().map(|a| a.codec.as_str()),
        Some("aac"),
        "{p:?}"
    );
    if let Err(errors) = decodes_without_errors(&file).await {
        panic!("the file does not decode cleanly: {errors}");
    }
    let colour = pixel(&file, p.duration / 2.0, 16, options.height - 32, 16).await;
    let level = mean_volume(&file).await;
    let (repeats, frames) = repeated_frames(&file).await;
    eprintln!(
        "browser {egress_type} egress {id}: {:.2} s (asked {asked:.2} s), colour {colour:?}, {repeats} repeated of {frames} frames, {level:.1} dB",
        p.duration
    );
    assert!(
        (p.duration - asked).abs() < 1.5,
        "recorded {:.2}s, asked for {asked:.2}s",
        p.duration
    );
    assert!(
        colour_distance(colour, options.rgb) < 30,
        "published colour {:?}, recorded {colour:?} (black is [0, 0, 0])",
        options.rgb
    );
    // The output runs at 30 fps whatever comes in (Chromium sends 20–30), so some frames
    // repeat; a stalled video repeats nearly all.
    assert!(
        repeats * 2 < frames,
        "{repeats} of {frames} frames repeat the one before: the video is not moving"
    );
    assert!(
        level > -40.0,
        "the browser's tone is missing: mean volume {level:.1} dB"
    );
}

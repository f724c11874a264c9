//! Room composite end to end: a real room with one video and one audio publisher (test media
//! made with ffmpeg, published with `lk room join --publish`), recorded through the layout
//! template by Chrome to a local MP4.

use std::time::Duration;

use egress_e2e::recording::*;
use serde_json::json;

const RECORD_SECS: f64 = 8.0;
const DURATION_TOLERANCE: f64 = 0.5;

#[tokio::test]
async fn a_room_with_a_video_and_an_audio_publisher_is_recorded() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let media = TestMedia::generate(90).await;
    let room = "composite-room";
    let video = Publisher::start(
        &stack.livekit,
        room,
        "camera",
        &media.video,
        Some(30),
        stack.egress.dir(),
    );
    let audio = Publisher::start(
        &stack.livekit,
        room,
        "microphone",
        &media.audio,
        None,
        stack.egress.dir(),
    );
    wait_for_publishers(&lk, room, 2, Duration::from_secs(30)).await;

    let request = json!({ "room_name": room, "layout": "grid", "file_outputs": [{ "filepath": "rooms/{room_name}-{time}" }] });
    let t0 = std::time::Instant::now();
    let started = lk
        .egress_start_room_composite(&request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, seen) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    eprintln!(
        "room composite {id}: StartEgress → ACTIVE seen after {:?}",
        seen - t0
    );
    assert_eq!(active["room_name"], room);
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");

    let stop_at = file_started + (RECORD_SECS * 1e9) as i64;
    tokio::time::sleep(Duration::from_nanos((stop_at - unix_nanos()).max(0) as u64)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    video.stop().await;
    audio.stop().await;

    assert_eq!(done["details"], "End reason: StopEgress API", "{done:#}");
    let file = &done["file_results"][0];
    let filename = file["filename"].as_str().expect("filename");
    assert!(
        filename.starts_with(&format!("rooms/{room}-")) && filename.ends_with(".mp4"),
        "{filename}"
    );
    let location = std::path::PathBuf::from(file["location"].as_str().expect("location"));
    let p = probe(&location).await;
    let v = p.video.clone().expect("a video stream");
    let a = p.audio.clone().expect("an audio stream");
    assert_eq!(
        (v.codec.as_str(), v.width, v.height),
        ("h264", 1280, 720),
        "{p:?}"
    );
    assert!((v.fps - 30.0).abs() < 0.5, "frame rate {}", v.fps);
    assert_eq!(
        (a.codec.as_str(), a.sample_rate, a.channels),
        ("aac", 44100, 2),
        "{p:?}"
    );
    assert!(
        (p.duration - asked).abs() < DURATION_TOLERANCE,
        "recorded {:.2}s, asked for {asked:.2}s",
        p.duration
    );

    let level = mean_volume(&location).await;
    assert!(
        level > -40.0,
        "the published tone is missing: mean volume {level} dB"
    );
    // One camera in a grid fills the frame; sample away from the moving box.
    let colour = pixel(&location, p.duration / 2.0, 632, 400, 16).await;
    assert!(
        colour_distance(colour, VIDEO_RGB) < 30,
        "published colour {VIDEO_RGB:?}, recorded {colour:?}"
    );
    assert!(decodes_cleanly(&location).await);
    // The published box moves every frame: most recorded frames must differ.
    let (distinct, frames) = unique_frames(&location).await;
    eprintln!("room composite {id}: {distinct} distinct of {frames} frames");
    assert!(
        distinct * 2 > frames,
        "only {distinct} distinct of {frames} frames: the composite fell behind"
    );

    let left = wait_no_processes(&id, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "processes of {id} still running: {left:?}");
}

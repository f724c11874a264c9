//! Track egress end to end, over WebRTC without Chrome: a real room with an Opus, VP8 or H.264
//! publisher (ffmpeg test media published with `lk room join --publish`), a `TrackEgressRequest`
//! started with `lk egress start --type track`, and the Ogg, WebM or MP4 file it writes checked
//! with ffprobe/ffmpeg.

use std::time::Duration;

use egress_e2e::TestDir;
use egress_e2e::recording::*;
use egress_e2e::seekable::assert_seekable;
use serde_json::json;

const RECORD_SECS: f64 = 5.0;
const DURATION_TOLERANCE: f64 = 0.5;

/// Resident memory of a process (`VmRSS`), 0 when it is gone.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The timestamp of the last packet in `file`, seconds (ffprobe).
async fn last_packet_time(file: &std::path::Path) -> f64 {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "0",
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

#[tokio::test]
async fn an_opus_track_is_recorded_to_ogg_without_transcoding() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let media = TestMedia::generate(90).await;
    let room = "track-room";
    let audio = Publisher::start(
        &stack.livekit,
        room,
        "microphone",
        &media.audio,
        None,
        stack.egress.dir(),
    );
    wait_for_publishers(&lk, room, 1, Duration::from_secs(30)).await;
    let sid = track_sid(&stack, room, "microphone", "AUDIO").await;

    let request = json!({ "room_name": room, "track_id": sid, "file": { "filepath": "tracks/{room_name}-{track_id}" } });
    let t0 = std::time::Instant::now();
    let started = lk
        .egress_start("track", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, seen) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    eprintln!(
        "track egress {id}: StartEgress → ACTIVE seen after {:?}",
        seen - t0
    );
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");

    let stop_at = file_started + (RECORD_SECS * 1e9) as i64;
    tokio::time::sleep(Duration::from_nanos((stop_at - unix_nanos()).max(0) as u64)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    // Density figures, printed (not asserted): what one passthrough track costs its handler.
    let cpu = cpu_seconds(&id);
    let rss_kib = handler_pid(&id).map(rss_kib).unwrap_or(0);
    eprintln!(
        "track egress {id}: handler used {cpu:.2} s CPU over {:.1} s since StartEgress, RSS {rss_kib} KiB",
        t0.elapsed().as_secs_f64()
    );
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(30)).await;
    audio.stop().await;

    assert_eq!(done["details"], "End reason: StopEgress API", "{done:#}");
    let filename = done["file_results"][0]["filename"]
        .as_str()
        .expect("filename");
    assert_eq!(filename, format!("tracks/{room}-{sid}.ogg"));
    let file = location(&done);
    let p = probe(&file).await;
    let a = p.audio.clone().expect("an audio stream");
    assert!(p.video.is_none(), "{p:?}");
    assert_eq!(
        (a.codec.as_str(), a.sample_rate, a.channels),
        ("opus", 48000, 1),
        "{p:?}"
    );
    assert!(
        (p.duration - asked).abs() < DURATION_TOLERANCE,
        "recorded {:.2}s, asked for {asked:.2}s",
        p.duration
    );
    let reported = done["file_results"][0]["duration"].as_i64().unwrap_or(0) as f64 / 1e9;
    assert!(
        (reported - p.duration).abs() < DURATION_TOLERANCE,
        "FileInfo.duration {reported:.2}s, file {:.2}s",
        p.duration
    );
    // Every Opus packet can start a decode, but a seek in Ogg lands on a page, and the track
    // writer ends one a second (ogg.rs), so a player lands at most 1 s early (and decodes on).
    assert_seekable(&file, asked, 1.0).await;
    let level = mean_volume(&file).await;
    assert!(
        level > -40.0,
        "the published tone is missing: mean volume {level} dB"
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );
    // The manifest lands beside the file.
    assert!(
        !done["manifest_location"].as_str().unwrap_or("").is_empty(),
        "no manifest: {done:#}"
    );
}

#[tokio::test]
async fn the_recording_completes_when_the_publisher_leaves() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let media = TestMedia::generate(90).await;
    let room = "track-leave-room";
    let audio = Publisher::start(
        &stack.livekit,
        room,
        "microphone",
        &media.audio,
        None,
        stack.egress.dir(),
    );
    wait_for_publishers(&lk, room, 1, Duration::from_secs(30)).await;
    let sid = track_sid(&stack, room, "microphone", "AUDIO").await;

    let request =
        json!({ "room_name": room, "track_id": sid, "file": { "filepath": "leave.ogg" } });
    let started = lk
        .egress_start("track", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    audio.stop().await;
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(60)).await;
    assert_eq!(done["details"], "End reason: Source closed", "{done:#}");
    let p = probe(&location(&done)).await;
    assert_eq!(p.audio.map(|a| a.codec), Some("opus".to_owned()));
    assert!(p.duration > 1.5, "recorded {:.2}s of about 2 s", p.duration);
}

#[tokio::test]
async fn a_track_that_never_appears_fails_with_the_go_error() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    // The room must exist for livekit-server to accept the request.
    let (status_code, body) = twirp(
        &stack.livekit,
        "RoomService/CreateRoom",
        json!({ "roomCreate": true }),
        &json!({ "name": "empty-room" }),
    )
    .await;
    assert_eq!(status_code, 200, "{body}");
    let request = json!({ "room_name": "empty-room", "track_id": "TR_missing", "file": { "filepath": "never.ogg" } });
    let started = lk
        .egress_start("track", &request.to_string())
        .await
        .expect("egress start");
    let (failed, _) = wait_for_status(
        &lk,
        &started.egress_id,
        status::FAILED,
        Duration::from_secs(45),
    )
    .await;
    assert_eq!(failed["error"], "track TR_missing not found", "{failed:#}");
}

#[tokio::test]
async fn a_vp8_track_is_recorded_to_webm_without_transcoding() {
    let _serial = serial().await;
    let media_dir = TestDir::new("vp8-media");
    let video = moving_box_video(&media_dir, "vp8", VIDEO_RGB, 90).await;
    record_video_track(&video, "vp8", ".webm").await;
}

#[tokio::test]
async fn an_h264_track_is_recorded_to_mp4_without_transcoding() {
    let _serial = serial().await;
    let media = TestMedia::generate(90).await;
    record_video_track(&media.video, "h264", ".mp4").await;
}

/// Publishes `video` (640x360@30, the test colour, a moving box), records its track for about
/// 5 s and checks the file: codec, size, span, colour, moving frames, clean decode.
async fn record_video_track(video: &std::path::Path, codec: &str, extension: &str) {
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let room = format!("{codec}-track-room");
    let publisher = Publisher::start(
        &stack.livekit,
        &room,
        "camera",
        video,
        Some(30),
        stack.egress.dir(),
    );
    wait_for_publishers(&lk, &room, 1, Duration::from_secs(30)).await;
    let sid = track_sid(&stack, &room, "camera", "VIDEO").await;

    // The extension follows the codec, whatever the request says.
    let request = json!({ "room_name": room, "track_id": sid, "file": { "filepath": "tracks/{track_id}.ogg" } });
    let started = lk
        .egress_start("track", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");
    let stop_at = file_started + (RECORD_SECS * 1e9) as i64;
    tokio::time::sleep(Duration::from_nanos((stop_at - unix_nanos()).max(0) as u64)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    let cpu = cpu_seconds(&id);
    eprintln!(
        "{codec} track egress {id}: handler used {cpu:.2} s CPU, RSS {} KiB",
        handler_pid(&id).map(rss_kib).unwrap_or(0)
    );
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(30)).await;
    publisher.stop().await;

    assert_eq!(
        done["file_results"][0]["filename"],
        format!("tracks/{sid}{extension}"),
        "{done:#}"
    );
    let file = location(&done);
    let p = probe(&file).await;
    let v = p.video.clone().expect("a video stream");
    assert!(p.audio.is_none(), "{p:?}");
    assert_eq!(
        (v.codec.as_str(), v.width, v.height),
        (codec, 640, 360),
        "{p:?}"
    );
    // Finished: the duration in the format section (WebM too, though it is written
    // append-only), and a seek to the middle lands on a keyframe (the test video has one every
    // half second); a WebM is indexed (SeekHead, Cues).
    let span = assert_seekable(&file, asked, 0.5).await;
    let last = last_packet_time(&file).await;
    assert!(
        (span - last).abs() < 0.1,
        "format duration {span:.2}s, last frame at {last:.2}s"
    );
    let reported = done["file_results"][0]["duration"].as_i64().unwrap_or(0) as f64 / 1e9;
    assert!(
        (reported - span).abs() < DURATION_TOLERANCE,
        "FileInfo.duration {reported:.2}s, file {span:.2}s"
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );
    let colour = pixel(&file, span / 2.0, 320, 300, 16).await;
    assert!(
        colour_distance(colour, VIDEO_RGB) < 30,
        "published colour {VIDEO_RGB:?}, recorded {colour:?}"
    );
    let (distinct, frames) = unique_frames(&file).await;
    eprintln!("{codec} track egress {id}: {distinct} distinct of {frames} frames, {span:.2} s");
    assert!(
        frames as f64 > asked * 25.0,
        "{frames} frames in {asked:.1} s of 30 fps"
    );
    assert!(
        distinct * 2 > frames,
        "only {distinct} distinct of {frames} frames"
    );
}

#[tokio::test]
async fn a_vp9_track_is_recorded_to_webm_without_transcoding() {
    let _serial = serial().await;
    let media_dir = TestDir::new("vp9-media");
    let video = moving_box_video(&media_dir, "vp9", VIDEO_RGB, 40).await;
    record_video_track(&video, "vp9", ".webm").await;
}

#[tokio::test]
async fn an_h265_track_is_recorded_to_mp4_without_transcoding() {
    let _serial = serial().await;
    let media_dir = TestDir::new("h265-media");
    let video = moving_box_video(&media_dir, "h265", VIDEO_RGB, 40).await;
    record_video_track(&video, "hevc", ".mp4").await;
}

/// The local port of `pid`'s established TCP connection to 127.0.0.1:`port` (`ss -tnp`).
async fn tcp_port_of(pid: u32, port: u16) -> Option<u16> {
    let out = tokio::process::Command::new("ss")
        .args([
            "-tnpH",
            "state",
            "established",
            "dst",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .await
        .expect("run ss (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .find_map(|l| {
            l.split_whitespace()
                .nth(2)?
                .rsplit_once(':')?
                .1
                .parse()
                .ok()
        })
}

#[tokio::test]
async fn the_recording_survives_a_dropped_signalling_connection() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let media = TestMedia::generate(90).await;
    let room = "track-resume-room";
    let audio = Publisher::start(
        &stack.livekit,
        room,
        "microphone",
        &media.audio,
        None,
        stack.egress.dir(),
    );
    wait_for_publishers(&lk, room, 1, Duration::from_secs(30)).await;
    let sid = track_sid(&stack, room, "microphone", "AUDIO").await;

    let request =
        json!({ "room_name": room, "track_id": sid, "file": { "filepath": "resume.ogg" } });
    let started = lk
        .egress_start("track", &request.to_string())
        .await
        .expect("egress start");
    let id = started.egress_id.clone();
    let (active, _) = wait_for_status(&lk, &id, status::ACTIVE, Duration::from_secs(30)).await;
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Cut the handler's signalling WebSocket under it (the kernel aborts the TCP connection,
    // as a network drop or a proxy restart would).
    let server = format!("127.0.0.1:{}", stack.livekit.port());
    let handler = processes_mentioning(&server)
        .into_iter()
        .find(|(_, cmd)| cmd.contains("run-handler"))
        .map(|(pid, _)| pid)
        .expect("the handler process");
    let local = tcp_port_of(handler, stack.livekit.port())
        .await
        .expect("the handler's signalling connection");
    let killed = tokio::process::Command::new("ss")
        .args([
            "-K",
            "-tn",
            "src",
            &format!("127.0.0.1:{local}"),
            "dst",
            &server,
        ])
        .status()
        .await
        .expect("run ss -K");
    assert!(killed.success(), "ss -K failed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ne!(
        tcp_port_of(handler, stack.livekit.port()).await,
        Some(local),
        "the connection was not cut"
    );

    // The session is resumed: still recording, and a new connection is up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let info = egress_info(&lk, &id).await.expect("egress info");
    assert_eq!(
        status_of(&info),
        status::ACTIVE,
        "the egress did not survive the drop: {info:#}"
    );
    assert!(
        tcp_port_of(handler, stack.livekit.port()).await.is_some(),
        "no new signalling connection"
    );

    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    lk.egress_stop(&id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, &id, status::COMPLETE, Duration::from_secs(30)).await;
    audio.stop().await;
    assert_eq!(done["details"], "End reason: StopEgress API", "{done:#}");
    let file = location(&done);
    let p = probe(&file).await;
    assert_eq!(
        p.audio.as_ref().map(|a| a.codec.as_str()),
        Some("opus"),
        "{p:?}"
    );
    assert!(
        (p.duration - asked).abs() < DURATION_TOLERANCE,
        "recorded {:.2}s, asked for {asked:.2}s",
        p.duration
    );
    assert!(
        mean_volume(&file).await > -40.0,
        "the published tone is missing"
    );
    assert!(
        decodes_cleanly(&file).await,
        "the file does not decode cleanly"
    );
}

#[tokio::test]
async fn an_av1_track_is_recorded_to_webm_without_transcoding() {
    let _serial = serial().await;
    let media_dir = TestDir::new("av1-media");
    let video = moving_box_video(&media_dir, "av1", VIDEO_RGB, 40).await;
    record_video_track(&video, "av1", ".webm").await;
}

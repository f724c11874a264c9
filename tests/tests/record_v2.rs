//! v2 requests end to end through livekit-server. `lk` 2.18.2 only sends the v1 request types,
//! but livekit-server v1.13.5 serves the unified `StartEgress` on Twirp
//! (`/twirp/livekit.Egress/StartEgress`; `EgressService.StartEgress` wraps it as
//! `rpc.StartEgressRequest{egress: …}` and sends it over psrpc like the v1 types), so these
//! tests call Twirp themselves with a `roomRecord` token, then follow and stop the egress with
//! `lk` and check the file with ffprobe.

use std::path::PathBuf;
use std::time::Duration;

use egress_e2e::recording::*;
use serde_json::{Value, json};

const RECORD_SECS: f64 = 6.0;
const DURATION_TOLERANCE: f64 = 0.5;

/// Starts a v2 egress over Twirp and returns its ID.
async fn start_v2(stack: &RecordingStack, request: Value) -> String {
    let (status, info) = twirp(
        &stack.livekit,
        "Egress/StartEgress",
        json!({ "roomRecord": true }),
        &request,
    )
    .await;
    assert_eq!(status, 200, "StartEgress answered {status}: {info}");
    // Twirp JSON uses the proto field names unless the server asks for camelCase.
    let id = info
        .get("egress_id")
        .or_else(|| info.get("egressId"))
        .and_then(Value::as_str);
    id.unwrap_or_else(|| panic!("no egress ID in {info}"))
        .to_owned()
}

/// Waits for ACTIVE, records `RECORD_SECS` from the first frame, stops, and returns the
/// COMPLETE info, the recorded file and the length asked for.
async fn record(stack: &RecordingStack, id: &str) -> (Value, PathBuf, f64) {
    let lk = stack.lk();
    let (active, _) = wait_for_status(&lk, id, status::ACTIVE, Duration::from_secs(30)).await;
    // The info livekit-server keeps carries the v2 request as it was sent.
    assert!(
        active["Request"]
            .get("Egress")
            .is_some_and(Value::is_object),
        "not a v2 request: {active:#}"
    );
    let file_started = active["file_results"][0]["started_at"]
        .as_i64()
        .expect("file started_at when ACTIVE");
    let stop_at = file_started + (RECORD_SECS * 1e9) as i64;
    tokio::time::sleep(Duration::from_nanos((stop_at - unix_nanos()).max(0) as u64)).await;
    let asked = (unix_nanos() - file_started) as f64 / 1e9;
    lk.egress_stop(id).await.expect("egress stop");
    let (done, _) = wait_for_status(&lk, id, status::COMPLETE, Duration::from_secs(60)).await;
    assert_eq!(done["details"], "End reason: StopEgress API", "{done:#}");
    let location = PathBuf::from(
        done["file_results"][0]["location"]
            .as_str()
            .expect("location"),
    );
    (done, location, asked)
}

/// H.264 720p30 + AAC of the asked length.
async fn check_mp4(location: &std::path::Path, asked: f64) -> Probe {
    let p = probe(location).await;
    let video = p.video.clone().expect("a video stream");
    let audio = p.audio.clone().expect("an audio stream");
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", 1280, 720),
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
    assert!(decodes_cleanly(location).await);
    p
}

#[tokio::test]
async fn a_v2_template_request_records_the_room_to_mp4() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let lk = stack.lk();
    let media = TestMedia::generate(90).await;
    let room = "v2-room";
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

    let id = start_v2(
        &stack,
        json!({
            "room_name": room,
            "template": { "layout": "speaker" },
            "outputs": [{ "file": { "filepath": "v2/{room_name}-template", "file_type": "MP4" } }],
        }),
    )
    .await;
    let (done, location, asked) = record(&stack, &id).await;
    video.stop().await;
    audio.stop().await;

    assert_eq!(done["room_name"], room);
    assert_eq!(
        done["file_results"][0]["filename"],
        format!("v2/{room}-template.mp4")
    );
    let p = check_mp4(&location, asked).await;
    let level = mean_volume(&location).await;
    assert!(
        level > -40.0,
        "the published tone is missing: mean volume {level} dB"
    );
    // One camera alone fills the frame; sample away from the moving box.
    let colour = pixel(&location, p.duration / 2.0, 632, 400, 16).await;
    assert!(
        colour_distance(colour, VIDEO_RGB) < 30,
        "published colour {VIDEO_RGB:?}, recorded {colour:?}"
    );
}

#[tokio::test]
async fn a_v2_web_request_records_the_page_to_mp4() {
    let _serial = serial().await;
    let stack = RecordingStack::start().await;
    let page = TestPage::start().await;

    let id = start_v2(
        &stack,
        json!({
            "web": { "url": page.url("") },
            "outputs": [{ "file": { "filepath": "v2/web-page.mp4" } }],
        }),
    )
    .await;
    let (done, location, asked) = record(&stack, &id).await;

    assert_eq!(done["file_results"][0]["filename"], "v2/web-page.mp4");
    let p = check_mp4(&location, asked).await;
    let level = mean_volume(&location).await;
    assert!(level > -30.0, "the tone is missing: mean volume {level} dB");
    let colour = pixel(&location, p.duration / 2.0, 600, 400, 16).await;
    assert!(
        colour_distance(colour, PAGE_RGB) < 24,
        "page colour {PAGE_RGB:?}, recorded {colour:?}"
    );
}

#[tokio::test]
async fn a_v2_request_without_outputs_is_refused() {
    let stack = RecordingStack::start().await;
    let (status, answer) = twirp(
        &stack.livekit,
        "Egress/StartEgress",
        json!({ "roomRecord": true }),
        &json!({ "web": { "url": "http://127.0.0.1:9/" } }),
    )
    .await;
    // The worker's psrpc error, as livekit-server passes it on (it prefixes the message).
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_argument")),
        "{answer}"
    );
    let msg = answer["msg"].as_str().unwrap_or_default();
    assert!(
        msg.ends_with("request has missing or invalid field: output"),
        "{answer}"
    );
    // Without the grant the server itself refuses.
    let (status, answer) = twirp(
        &stack.livekit,
        "Egress/StartEgress",
        json!({ "roomJoin": true }),
        &json!({}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("unauthenticated")),
        "{answer}"
    );
}
